//! The tool catalog and a tier's tool gate as the policy document writes them
//! (`[tools.<name>]`, `[tiers.<tier>.tool]`); see [`crate::tools`] for the semantics.
//!
//! Plain, serializable data: compiling it is [`crate::tool_catalog`], judging a call
//! is [`crate::tools`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::RuleAction;

/// What a tool does to the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideEffect {
    /// Reads only (search, fetch a record).
    ReadOnly,
    /// Changes state that can be changed back (create a draft, update a ticket). The default
    /// for a tool the catalog does not describe.
    #[default]
    Write,
    /// Cannot be undone (delete, pay, send, deploy): needs a confirmation per policy.
    Irreversible,
}

impl SideEffect {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SideEffect::ReadOnly => "read_only",
            SideEffect::Write => "write",
            SideEffect::Irreversible => "irreversible",
        }
    }
}

/// One catalog entry, `[tools.<name>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// Side-effect class; default `write`.
    #[serde(default)]
    pub effect: SideEffect,
    /// The tool can send data out of the organization (email, HTTP POST, upload).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub egress: bool,
    /// JSON Schema of the arguments. Absent: the schema the client declared with the tool
    /// (`function.parameters`) is used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

/// What to do with offered tools (`tools` in the request) that the tier does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnlistedOffer {
    /// Remove them before the upstream sees the request.
    #[default]
    Remove,
    /// Refuse the request (403 `tool_not_allowed`).
    Refuse,
}

/// What counts as untrusted content for `untrusted_egress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UntrustedScope {
    /// Retrieved content or tool output the context gate flagged (or worse).
    #[default]
    Flagged,
    /// Any retrieved content or tool output at all.
    Any,
}

fn confirm() -> RuleAction {
    RuleAction::Confirm
}

fn is_confirm(a: &RuleAction) -> bool {
    *a == RuleAction::Confirm
}

/// A tier's tool gate, `[tiers.<tier>.tool]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolGateSpec {
    /// Tool names the model may be offered and call; `"*"` allows any name.
    pub allow: Vec<String>,
    /// Offered tools not allowed: removed (default) or the request refused.
    #[serde(default)]
    pub unlisted_offer: UnlistedOffer,
    /// Action for calls of an irreversible tool: `allow`, `flag`, `confirm` (default),
    /// `block`.
    #[serde(default = "confirm", skip_serializing_if = "is_confirm")]
    pub irreversible: RuleAction,
    /// Action for calls of an egress tool once untrusted content is in the conversation.
    #[serde(default = "confirm", skip_serializing_if = "is_confirm")]
    pub untrusted_egress: RuleAction,
    /// What counts as untrusted content.
    #[serde(default)]
    pub untrusted: UntrustedScope,
    /// Calls allowed in one response; later ones are withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls_per_response: Option<u32>,
    /// Tool rounds (assistant turns with tool calls) allowed per conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rounds: Option<u32>,
    /// Tokens a conversation may spend while in a tool loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_loop_tokens: Option<u64>,
}
