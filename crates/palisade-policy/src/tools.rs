//! The tool gate: which tools a request's model may be offered and may call, with what
//! arguments, and which calls need a confirmation first.
//!
//! The catalog (`[tools.<name>]`, once per document) says what each tool *is*: its side
//! effect, whether it sends data out, the JSON Schema of its arguments. A tier's
//! `[tiers.<tier>.tool]` table says what requests of that tier may *do*: the allowlist
//! (tiers are assigned per tenant, route and model, so this is the per-tenant and per-route
//! allowlist), what an irreversible call or an egress after untrusted content needs, and
//! the loop caps.
//!
//! ```toml
//! [tools.search_docs]
//! effect = "read_only"
//! schema = { type = "object", properties = { q = { type = "string" } }, required = ["q"] }
//!
//! [tools.send_email]
//! effect = "write"
//! egress = true
//!
//! [tools.delete_file]
//! effect = "irreversible"
//!
//! [tiers.standard.tool]
//! allow = ["search_docs", "send_email", "delete_file"]   # "*": any tool, catalogued or not
//! unlisted_offer = "remove"        # or "refuse": offered tools not allowed
//! irreversible = "confirm"         # allow | flag | confirm | block
//! untrusted_egress = "confirm"     # egress tools once untrusted content is in context
//! untrusted = "flagged"            # "flagged": content the context gate flagged; "any"
//! max_calls_per_response = 8
//! max_rounds = 16                  # tool rounds per conversation
//! max_loop_tokens = 200000         # tokens spent in one conversation's tool loop
//! ```
//!
//! A call's decision ([`Snapshot::decide_tool`]) is `block` (withhold) for a tool not
//! allowed, arguments that are not JSON or fail the schema, or a cap exceeded; `confirm`
//! (or what the tier says) for an irreversible tool or an egress after untrusted content;
//! `allow` otherwise. Every reason is reported, the most severe action wins.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decide::Decision;
use crate::error::PolicyError;
use crate::evidence::Evidence;
use crate::snapshot::{Snapshot, Subject};
use crate::types::{Action, Gate, ReasonCode, RuleAction};

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

/// A compiled JSON Schema.
#[derive(Clone)]
struct Schema(Arc<jsonschema::Validator>);

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Schema(..)")
    }
}

#[derive(Debug, Clone)]
struct CompiledTool {
    effect: SideEffect,
    egress: bool,
    schema: Option<Schema>,
}

/// The compiled catalog.
#[derive(Debug, Clone, Default)]
pub struct ToolCatalog {
    tools: BTreeMap<String, CompiledTool>,
}

/// What the catalog says about one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolInfo {
    /// Side-effect class (`write` for tools the catalog does not list).
    pub effect: SideEffect,
    /// Sends data out.
    pub egress: bool,
    /// The catalog has a schema for it.
    pub has_schema: bool,
    /// The catalog lists it.
    pub catalogued: bool,
}

/// The result of checking a call's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArgumentCheck {
    /// The arguments parse as JSON.
    pub json: bool,
    /// The first schema violation, `pointer: keyword`.
    pub schema_violation: Option<String>,
}

fn valid_tool_name(name: &str) -> bool {
    // OpenAI's rule for function names.
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn compile_catalog(
    specs: &BTreeMap<String, ToolSpec>,
) -> Result<ToolCatalog, PolicyError> {
    let mut tools = BTreeMap::new();
    for (name, spec) in specs {
        if !valid_tool_name(name) {
            return Err(PolicyError::BadTool {
                path: format!("tools.{name}"),
                reason: "tool names are 1 to 64 characters of a-z, A-Z, 0-9, '_' and '-'"
                    .to_owned(),
            });
        }
        let schema = match &spec.schema {
            Some(s) => Some(Schema(Arc::new(jsonschema::validator_for(s).map_err(
                |e| PolicyError::BadTool {
                    path: format!("tools.{name}.schema"),
                    reason: format!("not a valid JSON Schema: {e}"),
                },
            )?))),
            None => None,
        };
        tools.insert(
            name.clone(),
            CompiledTool {
                effect: spec.effect,
                egress: spec.egress,
                schema,
            },
        );
    }
    Ok(ToolCatalog { tools })
}

/// The first way `instance` fails `validator`, as `pointer: keyword` — never the value,
/// which may be anything a model wrote.
fn first_violation(validator: &jsonschema::Validator, instance: &Value) -> Option<String> {
    validator.iter_errors(instance).next().map(|e| {
        let pointer = e.instance_path().to_string();
        let keyword = format!("{:?}", e.kind())
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or("invalid")
            .to_ascii_lowercase();
        format!(
            "{}: {keyword}",
            if pointer.is_empty() { "/" } else { &pointer }
        )
    })
}

/// The first way the JSON `text` fails `schema` (`pointer: keyword`), `/: not valid JSON`
/// when it does not parse, or a note when the schema itself does not compile or `text` is
/// over [`MAX_CHECKED_BYTES`](crate::schema::MAX_CHECKED_BYTES). `None` when it conforms.
/// `schema` is the client's: its patterns run on the linear-time engine (see
/// [`crate::schema`]).
pub fn first_schema_violation(schema: &Value, text: &str) -> Option<String> {
    if text.len() > crate::schema::MAX_CHECKED_BYTES {
        return Some(crate::schema::too_large());
    }
    let Ok(instance) = serde_json::from_str::<Value>(text) else {
        return Some("/: not valid JSON".to_owned());
    };
    match crate::schema::client_validator(schema) {
        Ok(v) => first_violation(&v, &instance),
        Err(_) => Some("/: the schema does not compile".to_owned()),
    }
}

impl ToolCatalog {
    /// What the catalog says about `name`.
    pub fn info(&self, name: &str) -> ToolInfo {
        match self.tools.get(name) {
            Some(t) => ToolInfo {
                effect: t.effect,
                egress: t.egress,
                has_schema: t.schema.is_some(),
                catalogued: true,
            },
            None => ToolInfo {
                effect: SideEffect::Write,
                egress: false,
                has_schema: false,
                catalogued: false,
            },
        }
    }

    /// Checks a call's `arguments` (a JSON-encoded string) against the catalog's schema,
    /// or else `declared` (the client's `function.parameters`), or else only that it is a
    /// JSON object... or any JSON value, as the API does not require objects.
    /// Arguments over [`MAX_CHECKED_BYTES`](crate::schema::MAX_CHECKED_BYTES) are not
    /// parsed: they count as a schema violation where a schema applies.
    pub fn check_arguments(
        &self,
        name: &str,
        arguments: &str,
        declared: Option<&Value>,
    ) -> ArgumentCheck {
        let catalogued = self.tools.get(name).and_then(|t| t.schema.as_ref());
        if arguments.len() > crate::schema::MAX_CHECKED_BYTES {
            return ArgumentCheck {
                json: true,
                schema_violation: (catalogued.is_some() || declared.is_some())
                    .then(crate::schema::too_large),
            };
        }
        let Ok(instance) = serde_json::from_str::<Value>(arguments) else {
            return ArgumentCheck {
                json: false,
                schema_violation: None,
            };
        };
        let schema_violation = match catalogued {
            Some(schema) => first_violation(&schema.0, &instance),
            None => match declared {
                Some(schema) => match crate::schema::client_validator(schema) {
                    Ok(v) => first_violation(&v, &instance),
                    // The client's own schema is broken: it cannot vouch for anything,
                    // and refusing would punish the user for the developer's mistake.
                    Err(_) => None,
                },
                None => None,
            },
        };
        ArgumentCheck {
            json: true,
            schema_violation,
        }
    }

    /// Number of catalogued tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// True when the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// A tier's compiled tool gate.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolGate {
    allow_any: bool,
    allow: BTreeSet<String>,
    unlisted_offer: UnlistedOffer,
    irreversible: Action,
    untrusted_egress: Action,
    untrusted: UntrustedScope,
    max_calls_per_response: Option<u32>,
    max_rounds: Option<u32>,
    max_loop_tokens: Option<u64>,
}

impl ToolGate {
    pub(crate) fn compile(
        path: &str,
        spec: &ToolGateSpec,
        catalog: &ToolCatalog,
    ) -> Result<ToolGate, PolicyError> {
        let mut allow = BTreeSet::new();
        let mut allow_any = false;
        for (i, name) in spec.allow.iter().enumerate() {
            if name == "*" {
                allow_any = true;
            } else if !valid_tool_name(name) {
                return Err(PolicyError::BadTool {
                    path: format!("{path}.allow[{i}]"),
                    reason: format!("{name:?} is not a tool name (or \"*\")"),
                });
            } else {
                allow.insert(name.clone());
            }
        }
        let action = |field: &str, a: RuleAction| match a {
            RuleAction::Allow | RuleAction::Flag | RuleAction::Confirm | RuleAction::Block => {
                Ok(a.enforced().unwrap_or(Action::Block))
            }
            other => Err(PolicyError::BadTool {
                path: format!("{path}.{field}"),
                reason: format!(
                    "{} is not valid here (expected one of: allow, flag, confirm, block)",
                    other.as_str()
                ),
            }),
        };
        let _ = catalog; // names outside the catalog are allowed: they get the defaults
        Ok(ToolGate {
            allow_any,
            allow,
            unlisted_offer: spec.unlisted_offer,
            irreversible: action("irreversible", spec.irreversible)?,
            untrusted_egress: action("untrusted_egress", spec.untrusted_egress)?,
            untrusted: spec.untrusted,
            max_calls_per_response: spec.max_calls_per_response,
            max_rounds: spec.max_rounds,
            max_loop_tokens: spec.max_loop_tokens,
        })
    }

    /// Whether the model may be offered and may call `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.allow_any || self.allow.contains(name)
    }

    /// What to do with offered tools that are not allowed.
    pub fn unlisted_offer(&self) -> UnlistedOffer {
        self.unlisted_offer
    }

    /// What counts as untrusted content.
    pub fn untrusted(&self) -> UntrustedScope {
        self.untrusted
    }

    /// The per-response call cap.
    pub fn max_calls_per_response(&self) -> Option<u32> {
        self.max_calls_per_response
    }

    /// The per-conversation round cap.
    pub fn max_rounds(&self) -> Option<u32> {
        self.max_rounds
    }

    /// The per-conversation tool-loop token cap.
    pub fn max_loop_tokens(&self) -> Option<u64> {
        self.max_loop_tokens
    }
}

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

impl Snapshot {
    /// Judges one tool call (`evidence.tool`) for `subject`. `allow` with no reasons when
    /// the tier has no tool gate or the evidence has no call. Total: never panics.
    pub fn decide_tool(&self, subject: &Subject<'_>, evidence: &Evidence) -> Decision {
        let tier = self.tier_for(subject);
        let mut d = Decision::allow(Gate::Tool, tier.name(), self.version());
        let (Some(gate), Some(call)) = (tier.tool_gate(), evidence.tool.as_ref()) else {
            return d;
        };
        let mut hit = |action: Action, reason: ReasonCode| {
            if action != Action::Allow {
                d.enforced_action = d.enforced_action.max(action);
                d.reasons.push(reason);
            }
        };
        if !gate.allows(&call.name) {
            hit(Action::Block, ReasonCode::ToolNotAllowed);
        }
        if !call.args_json {
            hit(Action::Block, ReasonCode::ToolArgumentsInvalid);
        }
        if call.schema_violation.is_some() {
            hit(Action::Block, ReasonCode::ToolSchemaViolation);
        }
        if gate
            .max_calls_per_response
            .is_some_and(|cap| call.position >= cap)
        {
            hit(Action::Block, ReasonCode::ToolCallLimit);
        }
        if gate.max_rounds.is_some_and(|cap| call.round > cap) {
            hit(Action::Block, ReasonCode::ToolRoundLimit);
        }
        if gate
            .max_loop_tokens
            .is_some_and(|cap| call.loop_tokens > cap)
        {
            hit(Action::Block, ReasonCode::ToolTokenLimit);
        }
        let info = self.tools().info(&call.name);
        if info.effect == SideEffect::Irreversible {
            hit(gate.irreversible, ReasonCode::ToolIrreversible);
        }
        let tainted = match gate.untrusted {
            UntrustedScope::Flagged => call.flagged_context,
            UntrustedScope::Any => call.untrusted_context || call.flagged_context,
        };
        if info.egress && tainted {
            hit(gate.untrusted_egress, ReasonCode::ToolEgressAfterUntrusted);
        }
        d.action = d.enforced_action;
        d
    }
}
