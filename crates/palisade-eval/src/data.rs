//! Reading JSONL datasets.

use std::io::BufRead;
use std::path::Path;

use palisade_detect::Channel;
use serde::Deserialize;

use crate::EvalError;

/// One dataset row (unknown fields are ignored).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Row {
    /// The text to scan.
    pub text: String,
    /// `injection`, `jailbreak`, `indirect_injection`, `benign`, `benign_context` or
    /// `harmful_request`.
    #[serde(default)]
    pub label: Option<String>,
    /// Finer label from the source.
    #[serde(default)]
    pub subtype: Option<String>,
    /// Upstream dataset.
    #[serde(default)]
    pub source: Option<String>,
    /// Language tag.
    #[serde(default)]
    pub lang: Option<String>,
    /// The instructions the text targets.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Explicit channel.
    #[serde(default)]
    pub channel: Option<String>,
}

impl Row {
    /// Channel to scan this row on: explicit override, then the row's own `channel`, then
    /// `retrieved` for `indirect_injection`/`benign_context` rows, else `user`.
    pub fn channel(&self, override_: Option<Channel>) -> Result<Channel, EvalError> {
        if let Some(c) = override_ {
            return Ok(c);
        }
        if let Some(c) = &self.channel {
            return c
                .parse()
                .map_err(|e: palisade_detect::ParseChannelError| EvalError::BadRow(e.to_string()));
        }
        Ok(match self.label.as_deref() {
            Some("indirect_injection" | "benign_context") => Channel::Retrieved,
            _ => Channel::User,
        })
    }

    /// The label, or an empty string.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or("")
    }
}

/// Reads every row of a JSONL stream; a malformed line is an error.
pub fn read_rows(input: impl BufRead, origin: &str) -> Result<Vec<Row>, EvalError> {
    let mut rows = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| EvalError::Io {
            path: origin.to_string(),
            source: e,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let row: Row = serde_json::from_str(&line)
            .map_err(|e| EvalError::BadRow(format!("{origin}:{}: {e}", i + 1)))?;
        rows.push(row);
    }
    Ok(rows)
}

/// Reads a JSONL file.
pub fn read_jsonl(path: &Path) -> Result<Vec<Row>, EvalError> {
    let f = std::fs::File::open(path).map_err(|e| EvalError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    read_rows(std::io::BufReader::new(f), &path.display().to_string())
}
