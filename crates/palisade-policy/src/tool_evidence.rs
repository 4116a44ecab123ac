//! The facts about one tool call that the tool gate judges (and the audit log keeps,
//! arguments only as their hash).

use serde::{Deserialize, Serialize};

/// The facts about one tool call that the tool gate judges, recorded in the audit log in
/// place of the arguments (only their hash).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ToolEvidence {
    /// The tool's name.
    pub name: String,
    /// The model's id for the call.
    #[serde(default)]
    pub call_id: String,
    /// SHA-256 of the canonical arguments; `None` when they are not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_sha256: Option<String>,
    /// The arguments parse as JSON.
    #[serde(default)]
    pub args_json: bool,
    /// The first schema violation, `pointer: keyword`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_violation: Option<String>,
    /// Retrieved content or tool output is in the conversation.
    #[serde(default)]
    pub untrusted_context: bool,
    /// The context gate flagged (or quarantined) some of it.
    #[serde(default)]
    pub flagged_context: bool,
    /// 0-based position among the response's calls.
    #[serde(default)]
    pub position: u32,
    /// The conversation's tool round this response makes (1 for the first).
    #[serde(default)]
    pub round: u32,
    /// Tokens the conversation has spent in its tool loop before this response.
    #[serde(default)]
    pub loop_tokens: u64,
}
