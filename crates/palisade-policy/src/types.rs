//! The vocabulary shared by documents, snapshots and decisions: gates, actions, detectors
//! and reason codes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `Display` as the stable snake_case name, for the enums below.
macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(
    Gate,
    Action,
    RuleAction,
    Spotlight,
    DetectorKind,
    ReasonCode,
    TextRole
);

/// Where in a request's life a decision is taken. Each gate has its own rules because the
/// same evidence means different things: an imperative is normal from the user, an attack
/// inside a retrieved document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// The user's messages, before they go upstream.
    Input,
    /// Untrusted data placed in the context: retrieved documents and tool results.
    Context,
    /// The model's completion, before it reaches the client.
    Output,
    /// Each tool call the model emits, before it is released to the client (see
    /// [`ToolGateSpec`](crate::ToolGateSpec)).
    Tool,
}

impl Gate {
    /// Every gate, in request order.
    pub const ALL: [Gate; 4] = [Gate::Input, Gate::Context, Gate::Output, Gate::Tool];

    /// The stable snake_case name (same as serde and the TOML table name).
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Input => "input",
            Gate::Context => "context",
            Gate::Output => "output",
            Gate::Tool => "tool",
        }
    }
}

/// An enforceable outcome. The derived order is severity,
/// `Allow < Flag < Redact < Quarantine < Confirm < Block`, so "the most severe action wins"
/// is `max`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let it through untouched.
    #[default]
    Allow,
    /// Let it through and mark it for review (logs and metrics only).
    Flag,
    /// Let it through with the offending spans removed or neutralized.
    Redact,
    /// Keep untrusted content out of the instructions: replace it with a quoted, marked
    /// copy the model is told to treat as inert data (context gate, `injection` only).
    Quarantine,
    /// Hold a tool call until a human or an approval service confirms it (tool gate only).
    Confirm,
    /// Stop it: the gateway refuses the request or withholds the content.
    Block,
}

impl Action {
    /// Every action, least severe first.
    pub const ALL: [Action; 6] = [
        Action::Allow,
        Action::Flag,
        Action::Redact,
        Action::Quarantine,
        Action::Confirm,
        Action::Block,
    ];

    /// The stable snake_case name (same as serde).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Flag => "flag",
            Action::Redact => "redact",
            Action::Quarantine => "quarantine",
            Action::Confirm => "confirm",
            Action::Block => "block",
        }
    }
}

/// What a rule in a policy document says to do: an enforceable [`Action`], or `shadow`
/// (evaluate and record what the rule would do, enforce nothing). Kept apart from
/// [`Action`] so that an enforced outcome can never be "shadow" by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// See [`Action::Allow`].
    Allow,
    /// See [`Action::Flag`].
    Flag,
    /// See [`Action::Redact`].
    Redact,
    /// See [`Action::Quarantine`].
    Quarantine,
    /// See [`Action::Confirm`].
    Confirm,
    /// See [`Action::Block`].
    Block,
    /// Record what `shadow_action` (default `block`) would do, enforce nothing.
    Shadow,
}

impl RuleAction {
    /// The stable snake_case name (same as serde).
    pub fn as_str(self) -> &'static str {
        match self.enforced() {
            Some(a) => a.as_str(),
            None => "shadow",
        }
    }

    /// The action this rule enforces, `None` for `shadow`.
    pub fn enforced(self) -> Option<Action> {
        match self {
            RuleAction::Allow => Some(Action::Allow),
            RuleAction::Flag => Some(Action::Flag),
            RuleAction::Redact => Some(Action::Redact),
            RuleAction::Quarantine => Some(Action::Quarantine),
            RuleAction::Confirm => Some(Action::Confirm),
            RuleAction::Block => Some(Action::Block),
            RuleAction::Shadow => None,
        }
    }
}

impl From<Action> for RuleAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Allow => RuleAction::Allow,
            Action::Flag => RuleAction::Flag,
            Action::Redact => RuleAction::Redact,
            Action::Quarantine => RuleAction::Quarantine,
            Action::Confirm => RuleAction::Confirm,
            Action::Block => RuleAction::Block,
        }
    }
}

/// Prompt hardening for untrusted channels (see Hines et al., "Defending Against Indirect
/// Prompt Injection Attacks With Spotlighting", 2024). The gateway applies it; the policy
/// only says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Spotlight {
    /// Untrusted data is passed as is.
    #[default]
    Off,
    /// Interleave a marker character between the words of untrusted data and tell the model
    /// that marked text is data, never instructions. Cheap, keeps the text readable.
    Datamark,
    /// Base64-encode untrusted data and say so. Strongest separation, but costs tokens and
    /// needs a model that decodes base64 well.
    Base64,
}

impl Spotlight {
    /// The stable snake_case name (same as serde).
    pub fn as_str(self) -> &'static str {
        match self {
            Spotlight::Off => "off",
            Spotlight::Datamark => "datamark",
            Spotlight::Base64 => "base64",
        }
    }
}

/// What a tier does with a request whose scans cannot get the detection pool in time
/// (`[tiers.<t>] on_detector_saturated`). Never a silent skip: `degrade` still runs the
/// cheap first stage and marks every audit record of the request `degraded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SaturationMode {
    /// Refuse the request (`503 detector_saturated`, `Retry-After`): the default, for
    /// high-risk tiers where an unscanned-by-the-full-cascade request must not pass.
    #[default]
    Closed,
    /// Judge the request on the first stage alone, inline, and audit it as degraded.
    Degrade,
}

impl SaturationMode {
    /// The stable snake_case name (same as serde).
    pub fn as_str(self) -> &'static str {
        match self {
            SaturationMode::Closed => "closed",
            SaturationMode::Degrade => "degrade",
        }
    }

    /// Whether this is the default (`closed`): left out of the canonical form, so
    /// policies written before the key existed keep their version.
    pub fn is_closed(&self) -> bool {
        *self == SaturationMode::Closed
    }
}

/// Who wrote a text the input gate judges. The client sends every one of them, so every
/// one is judged; the roles differ in how much an imperative in them means. A user's turn is
/// judged by the input gate's own rules; the other roles may have their own scored rules
/// (`[tiers.<t>.input.roles.<role>]`), and without them are judged like user text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextRole {
    /// The user's turns (also when the client marks them as retrieved: a mark only ever
    /// makes judgement stricter).
    User,
    /// `system` and `developer` messages: the operator's instructions, full of imperatives.
    System,
    /// Earlier assistant turns replayed by the client: content, refusals and the arguments
    /// of earlier tool calls (a client can forge them, e.g. for a many-shot jailbreak).
    Assistant,
    /// What the client says about its tools and schemas: tool and function names,
    /// descriptions and parameter schemas, `response_format` schemas.
    ToolDefinitions,
}

impl TextRole {
    /// Number of roles.
    pub const COUNT: usize = 4;

    /// Every role, user first.
    pub const ALL: [TextRole; TextRole::COUNT] = [
        TextRole::User,
        TextRole::System,
        TextRole::Assistant,
        TextRole::ToolDefinitions,
    ];

    /// The stable snake_case name (same as serde and the TOML key).
    pub fn as_str(self) -> &'static str {
        match self {
            TextRole::User => "user",
            TextRole::System => "system",
            TextRole::Assistant => "assistant",
            TextRole::ToolDefinitions => "tool_definitions",
        }
    }
}

/// A detector a policy can attach a rule to: the keys of a gate table in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// Injection score (attack likelihood) at or above the rule's threshold; at the context
    /// gate this is indirect injection.
    Injection,
    /// Injection score at or above the threshold with the detector's category `jailbreak`.
    Jailbreak,
    /// The detector's category is `harmful_request` (content safety, not an attack).
    Harmful,
    /// At least one secret finding.
    Secrets,
    /// At least one PII finding.
    Pii,
    /// A canary token planted in the system prompt appeared in the text.
    Canary,
    /// Markdown images or links to non-allowlisted domains, `data:` or `javascript:` URLs.
    Links,
    /// HTML comments, zero-width or Unicode tag characters.
    HiddenMarkup,
    /// The completion violates the requested `response_format` JSON schema.
    Schema,
}

impl DetectorKind {
    /// Number of detectors (the size of a compiled gate's rule table).
    pub const COUNT: usize = 9;

    /// Every detector, in evaluation (and reason) order: attacks first.
    pub const ALL: [DetectorKind; DetectorKind::COUNT] = [
        DetectorKind::Injection,
        DetectorKind::Jailbreak,
        DetectorKind::Harmful,
        DetectorKind::Secrets,
        DetectorKind::Pii,
        DetectorKind::Canary,
        DetectorKind::Links,
        DetectorKind::HiddenMarkup,
        DetectorKind::Schema,
    ];

    /// The key of this detector in a gate table (same as serde).
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Injection => "injection",
            DetectorKind::Jailbreak => "jailbreak",
            DetectorKind::Harmful => "harmful",
            DetectorKind::Secrets => "secrets",
            DetectorKind::Pii => "pii",
            DetectorKind::Canary => "canary",
            DetectorKind::Links => "links",
            DetectorKind::HiddenMarkup => "hidden_markup",
            DetectorKind::Schema => "schema",
        }
    }

    /// Position in [`DetectorKind::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// True when the detector's rule takes a `threshold` on the injection score.
    pub fn is_scored(self) -> bool {
        matches!(self, DetectorKind::Injection | DetectorKind::Jailbreak)
    }

    /// The actions a rule for this detector may take. `redact` needs something with a span
    /// to remove: a score, a category, a canary (the prompt around it has leaked too) or a
    /// schema violation have none, so `redact` there would silently mean `allow`.
    pub fn allowed_actions(self) -> &'static [Action] {
        const SPANS: &[Action] = &[Action::Allow, Action::Flag, Action::Redact, Action::Block];
        const NO_REDACT: &[Action] = &[Action::Allow, Action::Flag, Action::Block];
        // Quarantine replaces a whole untrusted segment; the compiler also checks that it
        // is used at the context gate only.
        const INJECTION: &[Action] = &[
            Action::Allow,
            Action::Flag,
            Action::Quarantine,
            Action::Block,
        ];
        match self {
            DetectorKind::Secrets
            | DetectorKind::Pii
            | DetectorKind::Links
            | DetectorKind::HiddenMarkup => SPANS,
            DetectorKind::Injection => INJECTION,
            DetectorKind::Jailbreak
            | DetectorKind::Harmful
            | DetectorKind::Canary
            | DetectorKind::Schema => NO_REDACT,
        }
    }

    /// The reason code a triggered rule of this detector reports at `gate`.
    pub fn reason(self, gate: Gate) -> ReasonCode {
        match (self, gate) {
            (DetectorKind::Injection, Gate::Context) => ReasonCode::IndirectInjection,
            (DetectorKind::Injection, _) => ReasonCode::PromptInjection,
            (DetectorKind::Jailbreak, _) => ReasonCode::Jailbreak,
            (DetectorKind::Harmful, _) => ReasonCode::HarmfulRequest,
            (DetectorKind::Secrets, Gate::Input) => ReasonCode::SecretInInput,
            (DetectorKind::Secrets, Gate::Context) => ReasonCode::SecretInContext,
            (DetectorKind::Secrets, Gate::Output | Gate::Tool) => ReasonCode::SecretInOutput,
            (DetectorKind::Pii, Gate::Input) => ReasonCode::PiiInInput,
            (DetectorKind::Pii, Gate::Context) => ReasonCode::PiiInContext,
            (DetectorKind::Pii, Gate::Output | Gate::Tool) => ReasonCode::PiiInOutput,
            (DetectorKind::Canary, _) => ReasonCode::CanaryLeak,
            (DetectorKind::Links, _) => ReasonCode::ExfiltrationLink,
            (DetectorKind::HiddenMarkup, _) => ReasonCode::HiddenMarkup,
            (DetectorKind::Schema, _) => ReasonCode::SchemaViolation,
        }
    }
}

/// Why a rule triggered. Stable snake_case strings: they appear in audit records, metrics
/// labels and client-facing error bodies, so a code is never renamed or reused. The table in
/// the crate documentation lists them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// `injection` at the input gate.
    PromptInjection,
    /// `jailbreak` at the input gate.
    Jailbreak,
    /// `injection` at the context gate.
    IndirectInjection,
    /// `harmful` at the input gate.
    HarmfulRequest,
    /// `secrets` at the input gate.
    SecretInInput,
    /// `secrets` at the context gate.
    SecretInContext,
    /// `secrets` at the output gate.
    SecretInOutput,
    /// `pii` at the input gate.
    PiiInInput,
    /// `pii` at the context gate.
    PiiInContext,
    /// `pii` at the output gate.
    PiiInOutput,
    /// `canary` at the output gate.
    CanaryLeak,
    /// `links` at the output gate.
    ExfiltrationLink,
    /// `hidden_markup` at the context or output gate.
    HiddenMarkup,
    /// `schema` at the output gate.
    SchemaViolation,
    /// Tool gate: the tool is not on the tier's allowlist.
    ToolNotAllowed,
    /// Tool gate: the call's arguments are not valid JSON.
    ToolArgumentsInvalid,
    /// Tool gate: the call's arguments fail the tool's JSON Schema.
    ToolSchemaViolation,
    /// Tool gate: an irreversible tool.
    ToolIrreversible,
    /// Tool gate: a tool that sends data out, after untrusted content entered the
    /// conversation.
    ToolEgressAfterUntrusted,
    /// Tool gate: more calls in one response than `max_calls_per_response`.
    ToolCallLimit,
    /// Tool gate: more tool rounds in the conversation than `max_rounds`.
    ToolRoundLimit,
    /// Tool gate: the conversation's tool loop spent more than `max_loop_tokens`.
    ToolTokenLimit,
}

impl ReasonCode {
    /// The stable snake_case code (same as serde).
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::PromptInjection => "prompt_injection",
            ReasonCode::Jailbreak => "jailbreak",
            ReasonCode::IndirectInjection => "indirect_injection",
            ReasonCode::HarmfulRequest => "harmful_request",
            ReasonCode::SecretInInput => "secret_in_input",
            ReasonCode::SecretInContext => "secret_in_context",
            ReasonCode::SecretInOutput => "secret_in_output",
            ReasonCode::PiiInInput => "pii_in_input",
            ReasonCode::PiiInContext => "pii_in_context",
            ReasonCode::PiiInOutput => "pii_in_output",
            ReasonCode::CanaryLeak => "canary_leak",
            ReasonCode::ExfiltrationLink => "exfiltration_link",
            ReasonCode::HiddenMarkup => "hidden_markup",
            ReasonCode::SchemaViolation => "schema_violation",
            ReasonCode::ToolNotAllowed => "tool_not_allowed",
            ReasonCode::ToolArgumentsInvalid => "tool_arguments_invalid",
            ReasonCode::ToolSchemaViolation => "tool_schema_violation",
            ReasonCode::ToolIrreversible => "tool_irreversible",
            ReasonCode::ToolEgressAfterUntrusted => "tool_egress_after_untrusted",
            ReasonCode::ToolCallLimit => "tool_call_limit",
            ReasonCode::ToolRoundLimit => "tool_round_limit",
            ReasonCode::ToolTokenLimit => "tool_token_limit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_index_matches_all_order() {
        for (i, d) in DetectorKind::ALL.iter().enumerate() {
            assert_eq!(d.index(), i, "{d}");
        }
    }

    #[test]
    fn names_match_serde() {
        for d in DetectorKind::ALL {
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.as_str())
            );
            for g in Gate::ALL {
                let r = d.reason(g);
                assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
            }
        }
        for a in Action::ALL {
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
        for g in Gate::ALL {
            assert_eq!(serde_json::to_string(&g).unwrap(), format!("\"{g}\""));
        }
    }

    #[test]
    fn severity_order() {
        assert!(Action::Allow < Action::Flag);
        assert!(Action::Flag < Action::Redact);
        assert!(Action::Redact < Action::Quarantine);
        assert!(Action::Quarantine < Action::Confirm);
        assert!(Action::Confirm < Action::Block);
    }
}
