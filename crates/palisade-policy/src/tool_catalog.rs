//! The compiled tool catalog (argument schemas compiled once) and a tier's compiled
//! tool gate, from the document's specs ([`crate::tool_spec`]).
//!
//! Must not: decide anything about a call; [`crate::tools`] does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::error::PolicyError;
use crate::types::{Action, RuleAction};

use crate::tool_spec::{SideEffect, ToolGateSpec, ToolSpec, UnlistedOffer, UntrustedScope};

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
    pub(crate) allow_any: bool,
    pub(crate) allow: BTreeSet<String>,
    pub(crate) unlisted_offer: UnlistedOffer,
    pub(crate) irreversible: Action,
    pub(crate) untrusted_egress: Action,
    pub(crate) untrusted: UntrustedScope,
    pub(crate) max_calls_per_response: Option<u32>,
    pub(crate) max_rounds: Option<u32>,
    pub(crate) max_loop_tokens: Option<u64>,
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
