//! The overlay's `__metadata__`: format tag, output names and windowing.
//!
//! Parsing and range checks only; whether the windowing leaves room for text
//! after each channel's tokens is checked where the tokenizer is known
//! (`Encoder::from_bytes`).

use std::collections::{BTreeMap, HashMap};

use crate::EncoderError;

/// The only overlay format this crate reads.
pub const FORMAT: &str = "palisade-encoder-1";

/// The keys [`EncoderMeta`] has fields for.
const KNOWN: [&str; 5] = ["format", "outputs", "max_tokens", "stride", "max_windows"];

/// Positions the base model has embeddings for (BERT's 512): no window may be
/// longer.
pub const MAX_POSITIONS: usize = 512;

/// What the tuned overlay says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderMeta {
    /// Always [`FORMAT`] (anything else is refused when loading).
    pub format: String,
    /// The names of the K logits `score` returns, in order (e.g. `attack`).
    pub outputs: Vec<String>,
    /// Tokens per window, `[CLS]`, channel, `[SEP]`s and text together.
    pub max_tokens: usize,
    /// Text tokens from one window's start to the next.
    pub stride: usize,
    /// Windows scored per text at most; longer texts keep their first and
    /// last windows.
    pub max_windows: usize,
    /// Every other key (training provenance, the cascade's calibration), as written.
    pub extra: BTreeMap<String, String>,
}

impl EncoderMeta {
    /// Reads and range-checks the metadata of a safetensors header.
    pub(crate) fn parse(meta: Option<&HashMap<String, String>>) -> Result<Self, EncoderError> {
        let empty = HashMap::new();
        let meta = meta.unwrap_or(&empty);
        let format = meta.get("format");
        if format.map(String::as_str) != Some(FORMAT) {
            return Err(EncoderError::Format {
                found: format.cloned(),
                expected: FORMAT,
            });
        }
        let outputs: Vec<String> = get(meta, "outputs")?
            .split(',')
            .map(|name| name.trim().to_owned())
            .collect();
        if outputs.iter().any(String::is_empty) {
            return Err(EncoderError::Metadata {
                key: "outputs",
                reason: "an output name is empty".to_owned(),
            });
        }
        let max_tokens = number(meta, "max_tokens")?;
        if max_tokens > MAX_POSITIONS {
            return Err(EncoderError::Metadata {
                key: "max_tokens",
                reason: format!("{max_tokens} is more than the model's {MAX_POSITIONS} positions"),
            });
        }
        Ok(Self {
            format: FORMAT.to_owned(),
            outputs,
            max_tokens,
            stride: number(meta, "stride")?,
            max_windows: number(meta, "max_windows")?,
            extra: meta
                .iter()
                .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

fn get<'a>(meta: &'a HashMap<String, String>, key: &'static str) -> Result<&'a str, EncoderError> {
    meta.get(key)
        .map(String::as_str)
        .ok_or_else(|| EncoderError::Metadata {
            key,
            reason: "missing".to_owned(),
        })
}

/// A positive integer.
fn number(meta: &HashMap<String, String>, key: &'static str) -> Result<usize, EncoderError> {
    let value = get(meta, key)?;
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(EncoderError::Metadata {
            key,
            reason: format!("{value:?} is not a positive integer"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn good() -> HashMap<String, String> {
        meta(&[
            ("format", FORMAT),
            ("outputs", "attack, jailbreak"),
            ("max_tokens", "256"),
            ("stride", "192"),
            ("max_windows", "8"),
        ])
    }

    #[test]
    fn parses_the_trainer_metadata() {
        let parsed = EncoderMeta::parse(Some(&good())).unwrap();
        assert_eq!(parsed.outputs, ["attack", "jailbreak"]);
        assert_eq!(
            (parsed.max_tokens, parsed.stride, parsed.max_windows),
            (256, 192, 8)
        );
        assert_eq!(parsed.format, FORMAT);
    }

    #[test]
    fn refuses_other_formats_and_no_metadata() {
        let mut other = good();
        other.insert("format".into(), "pt".into());
        assert!(matches!(
            EncoderMeta::parse(Some(&other)),
            Err(EncoderError::Format { found: Some(f), .. }) if f == "pt"
        ));
        assert!(matches!(
            EncoderMeta::parse(None),
            Err(EncoderError::Format { found: None, .. })
        ));
    }

    #[test]
    fn refuses_bad_numbers_and_names() {
        for (key, value) in [
            ("max_tokens", "0"),
            ("max_tokens", "513"),
            ("stride", "-1"),
            ("stride", "x"),
            ("max_windows", ""),
            ("outputs", "attack,"),
        ] {
            let mut bad = good();
            bad.insert(key.into(), value.into());
            match EncoderMeta::parse(Some(&bad)) {
                Err(EncoderError::Metadata { key: k, .. }) => assert_eq!(k, key, "{value:?}"),
                other => panic!("{key}={value:?}: {other:?}"),
            }
        }
        let mut missing = good();
        missing.remove("stride");
        assert!(matches!(
            EncoderMeta::parse(Some(&missing)),
            Err(EncoderError::Metadata { key: "stride", .. })
        ));
    }
}
