//! Palisade's policy engine: turns detector evidence into enforced, explainable, versioned
//! decisions.
//!
//! An operator writes a TOML policy ([`PolicyDocument`]); [`Snapshot::compile`] validates
//! it (errors name the key path) and compiles it into an immutable [`Snapshot`] whose
//! [`version`](Snapshot::version) is a content hash of what the policy says. For each gate
//! of a request the gateway fills an [`Evidence`] from the detectors and asks
//! [`Snapshot::decide`] for a [`Decision`]: the action to enforce, the stable reason codes
//! that explain it, and what shadow rules would have done. Decisions are written as
//! [`AuditRecord`]s, which [`simulate`] re-judges under a candidate policy; [`diff`] says
//! what a new document changes. [`Snapshot::builtin`] is the policy used when none is
//! configured (`policies/default.toml`, which doubles as the format's reference).
//!
//! **Invariant:** this crate is pure. No I/O (the caller reads policy files and writes audit
//! lines), no async, no threads, no clock (timestamps and latencies come from the caller),
//! no randomness (canary tokens are planted by the gateway). It never sees request or
//! response text: evidence is scores, rule names, codes and counts, so neither a decision
//! nor an audit record can leak a prompt or a secret. It does not detect anything itself and
//! does not know HTTP: what `block` or `redact` mean on the wire is the gateway's business.
//!
//! # Policy document
//!
//! ```toml
//! label = "2026-11 default"          # human label (part of the version)
//! default_tier = "standard"          # required; must name a tier
//!
//! [tiers.standard]
//! on_detector_saturated = "degrade"  # pool full: "closed" (default, 503) | "degrade"
//!
//! [tiers.standard.input]             # gates: input, context, output
//! injection = { threshold = 0.90, action = "block" }   # score >= threshold -> action
//! jailbreak = { threshold = 0.90, action = "block" }
//! harmful = { action = "flag" }      # event rules: any occurrence -> action
//! secrets = { action = "flag" }
//! pii = { action = "allow" }
//!
//! [tiers.standard.context]           # retrieved documents and tool results
//! injection = { threshold = 0.70, action = "block" }
//! secrets = { action = "flag" }
//! pii = { action = "allow" }
//! hidden_markup = { action = "redact" }
//! spotlight = "datamark"             # "off" (default) | "datamark" | "base64"
//!
//! [tiers.standard.output]
//! secrets = { action = "redact" }
//! pii = { action = "redact" }
//! canary = { action = "block" }
//! links = { action = "redact" }
//! hidden_markup = { action = "redact" }
//! schema = { action = "shadow", shadow_action = "block" }  # trial before enforcing
//! canaries = true                    # plant canary tokens in the system prompt
//!
//! [links]
//! allowed_domains = ["example.com", "*.docs.example.com"]
//!
//! [[assign]]                         # first match wins; each field an optional glob
//! tenant = "acme"
//! model = "gpt-4o*"
//! tier = "standard"
//! ```
//!
//! Every table denies unknown keys. A detector absent from a gate never triggers there.
//!
//! | gate | detectors |
//! |---|---|
//! | `input` | `injection`, `jailbreak`, `harmful`, `secrets`, `pii` |
//! | `context` | `injection`, `secrets`, `pii`, `hidden_markup`; `spotlight` |
//! | `output` | `secrets`, `pii`, `canary`, `links`, `hidden_markup`, `schema`; `canaries` |
//! | `tool` | settings, not detector rules: `allow`, `irreversible`, `untrusted_egress`, caps |
//!
//! The tool gate and the tool catalog (`[tools.<name>]`) are described in [`ToolGateSpec`];
//! a call is judged by [`Snapshot::decide_tool`] on a [`ToolEvidence`], and a request that
//! continues a tool loop by [`Snapshot::decide_loop`] on a [`LoopEvidence`] (its caps on
//! rounds and loop tokens).
//!
//! Actions: `allow`, `flag` (log only), `redact` (only for `secrets`, `pii`, `links` and
//! `hidden_markup`: the others have no span to remove), `quarantine` (only `injection` at
//! the context gate: the offending document or tool result is replaced by a quoted, marked
//! copy), `confirm` (tool gate only: hold the call for approval), `block`, and `shadow`
//! (enforce nothing, report `shadow_action`, default `block`, in [`Decision::shadowed`]).
//! The most severe enforced action wins: `block > confirm > quarantine > redact > flag >
//! allow`.
//!
//! `injection` and `jailbreak` share the detector's one attack score; the evidence's category
//! routes it: a `jailbreak` goes to the `jailbreak` rule when the gate has one, everything
//! else (and a jailbreak when it has none) to `injection`.
//!
//! # Decisions
//!
//! [`Decision::enforced_action`] is what the gateway must do. [`Decision::action`] is what
//! the policy would do were its shadow rules enforced too (`max(enforced_action,
//! shadowed)`), for reporting a shadow rollout; the two differ only when a shadow rule
//! triggered. Reasons are listed in detector order (attacks first); `allow` rules that
//! trigger add none. A whole candidate policy can be shadowed as well: decide with both
//! snapshots and record the second with [`AuditRecord::with_shadow`].
//!
//! # Reason codes
//!
//! Stable; never renamed or reused.
//!
//! | code | detector | gate | triggers when |
//! |---|---|---|---|
//! | `prompt_injection` | `injection` | input | injection score ≥ threshold |
//! | `jailbreak` | `jailbreak` | input | category `jailbreak` and score ≥ threshold |
//! | `indirect_injection` | `injection` | context | injection score ≥ threshold |
//! | `harmful_request` | `harmful` | input | category `harmful_request` |
//! | `secret_in_input` | `secrets` | input | a secret finding |
//! | `secret_in_context` | `secrets` | context | a secret finding |
//! | `secret_in_output` | `secrets` | output | a secret finding |
//! | `pii_in_input` | `pii` | input | a PII finding |
//! | `pii_in_context` | `pii` | context | a PII finding |
//! | `pii_in_output` | `pii` | output | a PII finding |
//! | `canary_leak` | `canary` | output | a canary token appeared |
//! | `exfiltration_link` | `links` | output | a link or image to a non-allowlisted domain, a `data:` or `javascript:` URL |
//! | `hidden_markup` | `hidden_markup` | context, output | HTML comments, zero-width or tag characters |
//! | `schema_violation` | `schema` | output | the completion violates the `response_format` schema |
//! | `tool_not_allowed` | `allow` | tool | the tool is not on the tier's allowlist |
//! | `tool_arguments_invalid` | — | tool | the call's arguments are not valid JSON |
//! | `tool_schema_violation` | schema | tool | the arguments fail the tool's JSON Schema |
//! | `tool_irreversible` | `irreversible` | tool | a call of an irreversible tool |
//! | `tool_egress_after_untrusted` | `untrusted_egress` | tool | an egress tool after untrusted content |
//! | `tool_call_limit` | `max_calls_per_response` | tool | a call beyond the per-response cap |
//! | `tool_round_limit` | `max_rounds` | tool | a tool round beyond the conversation's cap |
//! | `tool_token_limit` | `max_loop_tokens` | tool | the conversation's tool loop spent too many tokens |
//!
//! # Example
//!
//! ```
//! use palisade_policy::{Action, Evidence, Gate, ReasonCode, Snapshot, Subject};
//!
//! let policy = Snapshot::builtin();
//! let who = Subject { tenant: "acme", route: "chat", model: "gpt-4o" };
//! let evidence = Evidence { injection_score: 0.99, ..Evidence::default() };
//! let d = policy.decide(Gate::Input, &who, &evidence);
//! assert_eq!(d.enforced_action, Action::Block);
//! assert_eq!(d.reasons, [ReasonCode::PromptInjection]);
//! assert_eq!(d.policy_version, policy.version());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
mod decide;
mod diff;
mod document;
mod error;
mod evidence;
mod loop_caps;
mod matching;
pub mod schema;
pub mod signature;
mod snapshot;
mod tool_catalog;
mod tool_evidence;
mod tool_spec;
mod tools;
mod types;
mod version;

pub use audit::{
    escape_unicode_line_breaks, simulate, AuditContext, AuditRecord, Changed, ShadowOutcome,
    SimulationReport,
};
pub use decide::{Decision, Scores};
pub use diff::{diff, Change, ChangeKind};
pub use document::{
    AssignSpec, ContextSpec, InputSpec, LinksSpec, OutputSpec, PolicyDocument, RuleSpec, TierSpec,
};
pub use error::PolicyError;
pub use evidence::{Category, Evidence};
pub use loop_caps::LoopEvidence;
pub use schema::{check_client_schema, ClientSchemaError};
pub use snapshot::{
    Effect, GatePolicy, Rule, Snapshot, Subject, TierName, TierPolicy, BUILTIN_TOML,
};
pub use tool_catalog::{first_schema_violation, ArgumentCheck, ToolCatalog, ToolGate, ToolInfo};
pub use tool_evidence::ToolEvidence;
pub use tool_spec::{SideEffect, ToolGateSpec, ToolSpec, UnlistedOffer, UntrustedScope};
pub use types::{
    Action, DetectorKind, Gate, ReasonCode, RuleAction, SaturationMode, Spotlight, TextRole,
};
pub use version::{ParseVersionError, PolicyVersion};

#[cfg(test)]
mod tests;
