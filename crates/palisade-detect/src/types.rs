//! Public value types: what goes into a scan and what comes out.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a piece of text came from. The same words mean different things per channel:
/// an imperative addressed to the assistant is normal from the `user`, an attack inside a
/// `retrieved` document or a `tool_output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Operator instructions (trusted; scanned like user text if asked).
    System,
    /// The end user's message.
    #[default]
    User,
    /// A document, web page or email pulled into the context.
    Retrieved,
    /// The result of a tool or function call.
    ToolOutput,
}

impl Channel {
    /// The stable snake_case name (same as serde).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::System => "system",
            Channel::User => "user",
            Channel::Retrieved => "retrieved",
            Channel::ToolOutput => "tool_output",
        }
    }

    /// True for channels that carry data rather than instructions.
    pub fn is_data(self) -> bool {
        matches!(self, Channel::Retrieved | Channel::ToolOutput)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when parsing an unknown channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?} (expected system, user, retrieved or tool_output)")]
pub struct ParseChannelError(pub String);

impl FromStr for Channel {
    type Err = ParseChannelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "system" => Ok(Channel::System),
            "user" => Ok(Channel::User),
            "retrieved" | "document" | "context" => Ok(Channel::Retrieved),
            "tool_output" | "tool" | "tool-output" => Ok(Channel::ToolOutput),
            other => Err(ParseChannelError(other.to_string())),
        }
    }
}

/// One piece of text to scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanInput<'a> {
    /// The text, exactly as received.
    pub text: &'a str,
    /// Where it came from.
    pub channel: Channel,
    /// The operator instructions the text may be trying to get around, if known.
    pub system_prompt: Option<&'a str>,
}

impl<'a> ScanInput<'a> {
    /// A `user` input with no system prompt.
    pub fn user(text: &'a str) -> Self {
        ScanInput {
            text,
            channel: Channel::User,
            system_prompt: None,
        }
    }
    /// An input on the given channel with no system prompt.
    pub fn new(text: &'a str, channel: Channel) -> Self {
        ScanInput {
            text,
            channel,
            system_prompt: None,
        }
    }
}

/// The action suggested by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Below the flag threshold.
    Allow,
    /// Suspicious: log, review, or apply a softer policy.
    Flag,
    /// Confident attack (or a leaked canary).
    Block,
}

/// What kind of problem dominates the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Category {
    /// Nothing notable.
    None,
    /// Direct prompt injection: override, hijack, extract instructions or secrets.
    Injection,
    /// A wrapper that tries to talk the model out of its rules.
    Jailbreak,
    /// An instruction planted in a document or tool output.
    IndirectInjection,
    /// A plainly harmful request without an attack wrapper (content safety, not an attack).
    HarmfulRequest,
    /// A credential or key in the text.
    Secret,
    /// Personal data in the text.
    Pii,
    /// A canary token leaked.
    CanaryLeak,
}

/// One reason contributing to a scan result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// Stable snake_case identifier, e.g. `zero_width_smuggling`.
    pub code: &'static str,
    /// Optional human-readable detail (never contains a full secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Byte span into the original text, when the reason is localised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<Range<usize>>,
}

impl Reason {
    /// A reason with only a code.
    pub fn code(code: &'static str) -> Self {
        Reason {
            code,
            detail: None,
            span: None,
        }
    }
    /// A reason with a detail.
    pub fn with_detail(code: &'static str, detail: impl Into<String>) -> Self {
        Reason {
            code,
            detail: Some(detail.into()),
            span: None,
        }
    }
    /// A reason with a span.
    pub fn with_span(code: &'static str, span: Range<usize>) -> Self {
        Reason {
            code,
            detail: None,
            span: Some(span),
        }
    }
}

/// Kind of a secret or PII finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// A credential, key or token.
    Secret,
    /// Personal data.
    Pii,
    /// A leaked canary marker.
    Canary,
}

/// A secret, PII item or canary located in the original text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Secret, PII or canary.
    pub kind: FindingKind,
    /// Stable rule identifier, e.g. `aws-access-token`, `email`, `credit-card`.
    pub rule: &'static str,
    /// Byte span into the ORIGINAL text (suitable for redaction).
    pub span: Range<usize>,
}

/// The result of scanning one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scan {
    /// Attack likelihood in `[0, 1]`; higher means more likely an injection or jailbreak.
    pub score: f32,
    /// Suggested action at the detector's (or the caller's) thresholds.
    pub verdict: Verdict,
    /// Dominant category.
    pub category: Category,
    /// Why: normalization findings, rules, model signals.
    pub reasons: Vec<Reason>,
    /// Secrets, PII and canaries with byte spans into the original text.
    pub findings: Vec<Finding>,
    /// The second stage's attack logit, when the input fell in its band and it answered
    /// (see `cascade`); `None` when the first stage decided alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_stage: Option<f32>,
}

/// Flag and block thresholds on [`Scan::score`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Scores at or above this are flagged.
    pub flag: f32,
    /// Scores at or above this are blocked.
    pub block: f32,
}

impl Thresholds {
    /// Maps a score to a verdict.
    pub fn verdict(&self, score: f32) -> Verdict {
        if score >= self.block {
            Verdict::Block
        } else if score >= self.flag {
            Verdict::Flag
        } else {
            Verdict::Allow
        }
    }
}
