//! The policy document: the TOML an operator writes, parsed as is (no validation beyond the
//! schema; [`Snapshot::compile`](crate::Snapshot::compile) validates).
//!
//! Every table denies unknown fields, so a misspelled key, or a detector placed at a gate
//! that never evaluates it (`canary` under `input`), is an error rather than a rule that
//! silently never fires.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::PolicyError;
use crate::tool_spec::{ToolGateSpec, ToolSpec};
use crate::types::{Action, DetectorKind, Gate, RuleAction, SaturationMode, Spotlight, TextRole};

/// A parsed policy document. See the crate documentation for the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Human label, e.g. `"2026-11 default"`. Part of the version hash.
    #[serde(default)]
    pub label: String,
    /// The tier of requests no `[[assign]]` entry matches.
    pub default_tier: String,
    /// Risk tiers by name.
    #[serde(default)]
    pub tiers: BTreeMap<String, TierSpec>,
    /// The link allowlist for the `links` detector.
    #[serde(default)]
    pub links: LinksSpec,
    /// Tier assignments; the first matching entry wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assign: Vec<AssignSpec>,
    /// The tool catalog: what each tool an agent may call does, and the JSON Schema of its
    /// arguments. Which tools a request may use is the tier's `tool.allow`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, ToolSpec>,
}

/// One risk tier: a rule set per gate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// Rules for the user's messages.
    #[serde(default)]
    pub input: InputSpec,
    /// Rules for retrieved documents and tool results.
    #[serde(default)]
    pub context: ContextSpec,
    /// Rules for completions.
    #[serde(default)]
    pub output: OutputSpec,
    /// The tool gate: which tools the model may be offered and call, and what needs a
    /// confirmation. Absent: tool calls pass unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolGateSpec>,
    /// What a request of this tier gets when the detection pool is saturated:
    /// `"closed"` (default: refused with `503 detector_saturated`) or `"degrade"` (first
    /// stage only, audited as degraded).
    #[serde(default, skip_serializing_if = "SaturationMode::is_closed")]
    pub on_detector_saturated: SaturationMode,
}

/// Rules of the input gate. An absent detector never triggers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Direct prompt injection (score-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<RuleSpec>,
    /// Jailbreaks (score-based, category `jailbreak`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jailbreak: Option<RuleSpec>,
    /// Plainly harmful requests (category `harmful_request`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harmful: Option<RuleSpec>,
    /// Secrets the user pasted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<RuleSpec>,
    /// Personal data in the user's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<RuleSpec>,
    /// The scored rules (`injection`, `jailbreak`) for text of other roles: `system`,
    /// `assistant`, `tool_definitions`. A role listed here is judged by its own scored rules
    /// (an absent one never triggers); a role not listed is judged like user text. The
    /// other detectors (`harmful`, `secrets`, `pii`) apply to every role as above.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<TextRole, RoleRulesSpec>,
}

/// The scored rules of one role at the input gate.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRulesSpec {
    /// Injection score rule for this role's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<RuleSpec>,
    /// Jailbreak rule for this role's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jailbreak: Option<RuleSpec>,
}

/// Rules of the context gate (untrusted data).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    /// Indirect prompt injection (score-based). There is no `jailbreak` here: the detector
    /// reports every attack in data as indirect injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<RuleSpec>,
    /// Secrets inside documents or tool results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<RuleSpec>,
    /// Personal data inside documents or tool results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<RuleSpec>,
    /// HTML comments, zero-width and tag characters: text the model reads and a human
    /// reviewing the document does not see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_markup: Option<RuleSpec>,
    /// Prompt hardening applied to untrusted channels.
    #[serde(default)]
    pub spotlight: Spotlight,
}

/// Rules of the output gate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Secrets in the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<RuleSpec>,
    /// Personal data in the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<RuleSpec>,
    /// A canary token from the system prompt in the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<RuleSpec>,
    /// Links and images that could exfiltrate data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<RuleSpec>,
    /// Hidden markup in the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_markup: Option<RuleSpec>,
    /// `response_format` JSON-schema violations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<RuleSpec>,
    /// Place canary tokens in the system prompt (needed for `canary` to ever trigger).
    #[serde(default)]
    pub canaries: bool,
}

/// One detector's rule: `{ threshold = 0.9, action = "block" }` for the scored detectors
/// (`injection`, `jailbreak`: `score >= threshold` triggers), `{ action = "redact" }` for the
/// others (any occurrence triggers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// In `[0, 1]`; required on scored detectors, rejected on the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// What to do when triggered.
    pub action: RuleAction,
    /// With `action = "shadow"`: the action to record as what would have happened
    /// (default `block`, the usual thing to trial before enforcing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_action: Option<Action>,
}

/// The link allowlist.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinksSpec {
    /// Host names (`example.com`, exact) and suffix patterns (`*.docs.example.com`, any
    /// subdomain, not the apex). Matching is ASCII case-insensitive.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
}

/// One `[[assign]]` entry: requests whose tenant, route and model all match the given globs
/// (`*` matches any run of characters; absent fields match anything) get `tier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignSpec {
    /// Glob on the tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Glob on the route (the client-facing model name or path the gateway routed on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Glob on the upstream model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The tier to apply.
    pub tier: String,
}

impl TierSpec {
    /// The rules present at `gate`, in [`DetectorKind::ALL`] order.
    pub(crate) fn rules(&self, gate: Gate) -> Vec<(DetectorKind, RuleSpec)> {
        use DetectorKind as D;
        let all = match gate {
            Gate::Input => {
                let g = &self.input;
                vec![
                    g.injection.map(|r| (D::Injection, r)),
                    g.jailbreak.map(|r| (D::Jailbreak, r)),
                    g.harmful.map(|r| (D::Harmful, r)),
                    g.secrets.map(|r| (D::Secrets, r)),
                    g.pii.map(|r| (D::Pii, r)),
                ]
            }
            Gate::Context => {
                let g = &self.context;
                vec![
                    g.injection.map(|r| (D::Injection, r)),
                    g.secrets.map(|r| (D::Secrets, r)),
                    g.pii.map(|r| (D::Pii, r)),
                    g.hidden_markup.map(|r| (D::HiddenMarkup, r)),
                ]
            }
            Gate::Output => {
                let g = &self.output;
                vec![
                    g.secrets.map(|r| (D::Secrets, r)),
                    g.pii.map(|r| (D::Pii, r)),
                    g.canary.map(|r| (D::Canary, r)),
                    g.links.map(|r| (D::Links, r)),
                    g.hidden_markup.map(|r| (D::HiddenMarkup, r)),
                    g.schema.map(|r| (D::Schema, r)),
                ]
            }
            // The tool gate has settings, not detector rules (see `ToolGateSpec`).
            Gate::Tool => Vec::new(),
        };
        all.into_iter().flatten().collect()
    }
}

impl PolicyDocument {
    /// Parses a document. Checks the schema only; [`Snapshot::compile`] validates the
    /// values.
    ///
    /// [`Snapshot::compile`]: crate::Snapshot::compile
    pub fn from_toml(text: &str) -> Result<PolicyDocument, PolicyError> {
        Ok(toml::from_str(text)?)
    }

    /// The document with its semantically unordered parts normalized: allowed domains are
    /// lower-cased, stripped of one trailing dot, sorted and deduplicated. Tiers are a
    /// sorted map already; assignments keep their order because it is meaningful (first
    /// match wins).
    pub fn canonical(&self) -> PolicyDocument {
        let mut doc = self.clone();
        let domains = &mut doc.links.allowed_domains;
        for d in domains.iter_mut() {
            let trimmed = d.strip_suffix('.').unwrap_or(d);
            *d = trimmed.to_ascii_lowercase();
        }
        domains.sort();
        domains.dedup();
        doc
    }
}
