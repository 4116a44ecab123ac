//! Errors of the policy engine. Every validation error names the offending key path in the
//! document (`tiers.high.input.injection.threshold`) so an operator can fix the file without
//! reading code.

use crate::types::{DetectorKind, RuleAction};

/// Why a policy document was rejected, or an audit line could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not TOML, or does not fit the schema: an unknown key (a typo, or a
    /// detector placed at a gate that does not evaluate it), a wrong type, a missing
    /// `default_tier` or `threshold`. The message carries the line and key.
    #[error("policy document: {0}")]
    Parse(#[from] toml::de::Error),
    /// `default_tier` names a tier that has no `[tiers.<name>]` table.
    #[error("default_tier: tier {tier:?} is not defined under [tiers]")]
    MissingDefaultTier {
        /// The tier named by `default_tier`.
        tier: String,
    },
    /// An `[[assign]]` entry names a tier that has no `[tiers.<name>]` table (often a typo).
    #[error("{path}: tier {tier:?} is not defined under [tiers]")]
    UnknownTier {
        /// Key path, e.g. `assign[2].tier`.
        path: String,
        /// The undefined tier.
        tier: String,
    },
    /// An `[[assign]]` entry has no `tenant`, `route` or `model`: it would match every
    /// request and make `default_tier` and every later entry unreachable.
    #[error("{path}: an assignment needs at least one of tenant, route or model")]
    EmptyAssignment {
        /// Key path, e.g. `assign[0]`.
        path: String,
    },
    /// A tier name that is empty, too long or has characters other than ASCII letters,
    /// digits, `_` and `-`. Tier names end up in key paths, logs and metric labels.
    #[error("{path}: tier names are 1 to 64 characters of a-z, A-Z, 0-9, '_' and '-'")]
    BadTierName {
        /// Key path, e.g. `tiers.my tier`.
        path: String,
    },
    /// A score threshold outside `[0, 1]` (or NaN): detector scores are probabilities, so
    /// such a rule would trigger always or never.
    #[error("{path}: must be within [0, 1], got {value}")]
    ThresholdOutOfRange {
        /// Key path, e.g. `tiers.high.input.injection.threshold`.
        path: String,
        /// The value found.
        value: f64,
    },
    /// A rule of `injection` or `jailbreak` without a `threshold`: a score rule needs to
    /// know from which score on it triggers.
    #[error("{path}: required for score-based detectors")]
    MissingThreshold {
        /// Key path, e.g. `tiers.standard.input.injection.threshold`.
        path: String,
    },
    /// A `threshold` on a detector that has no score (`secrets`, `canary`, ...): it would
    /// be ignored, so the rule does not mean what its author thinks.
    #[error("{path}: {detector} has no score; its rule triggers on any occurrence")]
    UnexpectedThreshold {
        /// Key path, e.g. `tiers.standard.output.secrets.threshold`.
        path: String,
        /// The detector the rule belongs to.
        detector: DetectorKind,
    },
    /// An action the detector cannot carry out, e.g. `redact` on `injection` (a score has
    /// no span to remove).
    #[error("{path}: {action} is not valid for {detector} (expected one of: {allowed})")]
    InvalidAction {
        /// Key path, e.g. `tiers.standard.input.injection.action`.
        path: String,
        /// The action found.
        action: RuleAction,
        /// The detector the rule belongs to.
        detector: DetectorKind,
        /// The valid actions, comma-separated.
        allowed: String,
    },
    /// `shadow_action` on a rule whose `action` is not `shadow`: it would be ignored, which
    /// is almost certainly not what the author meant.
    #[error("{path}: only allowed together with action = \"shadow\"")]
    ShadowActionWithoutShadow {
        /// Key path, e.g. `tiers.standard.output.links.shadow_action`.
        path: String,
    },
    /// An entry of `links.allowed_domains` that is not a host name or `*.` + host name.
    #[error("{path}: bad domain pattern {pattern:?}: {reason}")]
    BadDomainPattern {
        /// Key path, e.g. `links.allowed_domains[1]`.
        path: String,
        /// The pattern found.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `[tiers.<t>.input.roles.user]`: user text is judged by the input gate's own rules,
    /// so a second set would be ambiguous.
    #[error("{path}: user text is judged by the input gate's own rules; set them there")]
    UserRoleRules {
        /// Key path, e.g. `tiers.standard.input.roles.user`.
        path: String,
    },
    /// A tool catalog entry or tool gate setting that cannot be used: a bad tool name, a
    /// schema that does not compile, an action the tool gate cannot take.
    #[error("{path}: {reason}")]
    BadTool {
        /// Key path, e.g. `tools.send_email.schema`.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A line of an audit log is not a valid [`AuditRecord`](crate::AuditRecord): a
    /// truncated write or a record from an incompatible version.
    #[error("audit record: {0}")]
    AuditRecord(#[source] serde_json::Error),
    /// The document could not be serialized for hashing. Not expected with this crate's
    /// types; reported rather than panicking.
    #[error("policy document could not be canonicalized: {0}")]
    Canonicalize(#[source] serde_json::Error),
}
