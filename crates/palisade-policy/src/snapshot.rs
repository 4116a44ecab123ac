//! [`Snapshot`]: a validated, compiled, immutable policy. The gateway holds the current one
//! in an `Arc` and swaps it atomically on reload; a request keeps the snapshot it started
//! with, so one request is never judged by two policies.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::document::{PolicyDocument, RuleSpec, TierSpec};
use crate::error::PolicyError;
use crate::matching::{glob_match, normalize_domain_pattern, DomainAllowlist};
use crate::tool_catalog::{compile_catalog, ToolCatalog, ToolGate};
use crate::types::{Action, DetectorKind, Gate, RuleAction, SaturationMode, Spotlight, TextRole};
use crate::version::PolicyVersion;

/// The built-in policy, `policies/default.toml`: what Palisade enforces with no policy file.
pub const BUILTIN_TOML: &str = include_str!("../policies/default.toml");

/// Who a request is for: what `[[assign]]` entries match on. Borrowed, so picking a tier
/// allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Subject<'a> {
    /// The authenticated tenant id.
    pub tenant: &'a str,
    /// The route the gateway took (client-facing model name or alias); `""` if none.
    pub route: &'a str,
    /// The upstream model name.
    pub model: &'a str,
}

/// A tier name shared between the snapshot and the decisions it makes (cloning is a
/// reference-count increment, not an allocation).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TierName(Arc<str>);

impl TierName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TierName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TierName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for TierName {
    fn from(s: &str) -> Self {
        TierName(Arc::from(s))
    }
}

impl Serialize for TierName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TierName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(TierName(Arc::from(String::deserialize(d)?)))
    }
}

/// What a compiled rule does when it triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Enforce this action.
    Enforce(Action),
    /// Enforce nothing; report this action as what would have happened.
    Shadow(Action),
}

/// A compiled rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// For scored detectors, the injection score at or above which the rule triggers.
    pub threshold: Option<f32>,
    /// What happens when it triggers.
    pub effect: Effect,
}

/// The compiled rules of one gate of one tier, indexed by detector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatePolicy {
    rules: [Option<Rule>; DetectorKind::COUNT],
    /// Input gate: the scored rules of roles that have their own
    /// (`[tiers.<t>.input.roles.<role>]`), indexed by [`TextRole`]; each holds only
    /// `injection` and `jailbreak` rules.
    roles: [Option<Box<GatePolicy>>; TextRole::COUNT],
}

impl GatePolicy {
    /// The rule for `detector`, if the gate has one.
    pub fn rule(&self, detector: DetectorKind) -> Option<&Rule> {
        self.rules.get(detector.index()).and_then(Option::as_ref)
    }

    /// The scored rules for text of `role`, when the role has its own (input gate only).
    pub fn role_rules(&self, role: TextRole) -> Option<&GatePolicy> {
        self.roles.get(role as usize).and_then(Option::as_deref)
    }

    /// Every rule present, in [`DetectorKind::ALL`] order.
    pub fn rules(&self) -> impl Iterator<Item = (DetectorKind, &Rule)> {
        DetectorKind::ALL
            .into_iter()
            .zip(&self.rules)
            .filter_map(|(d, r)| r.as_ref().map(|r| (d, r)))
    }
}

/// A compiled risk tier.
#[derive(Debug, Clone, PartialEq)]
pub struct TierPolicy {
    name: TierName,
    gates: [GatePolicy; 3],
    /// Empty: the tool gate has no detector rules.
    no_rules: GatePolicy,
    spotlight: Spotlight,
    canaries: bool,
    tool: Option<ToolGate>,
    on_detector_saturated: SaturationMode,
}

impl TierPolicy {
    /// The tier's name.
    pub fn name(&self) -> &TierName {
        &self.name
    }

    /// The rules of `gate`.
    pub fn gate(&self, gate: Gate) -> &GatePolicy {
        match gate {
            Gate::Input => &self.gates[0],
            Gate::Context => &self.gates[1],
            Gate::Output => &self.gates[2],
            Gate::Tool => &self.no_rules,
        }
    }

    /// The tool gate, when the tier has one (`[tiers.<name>.tool]`).
    pub fn tool_gate(&self) -> Option<&ToolGate> {
        self.tool.as_ref()
    }

    /// Prompt hardening for untrusted channels (`context.spotlight`).
    pub fn spotlight(&self) -> Spotlight {
        self.spotlight
    }

    /// Whether the gateway should plant canary tokens in the system prompt
    /// (`output.canaries`).
    pub fn canaries(&self) -> bool {
        self.canaries
    }

    /// What a request gets when the detection pool is saturated
    /// (`on_detector_saturated`).
    pub fn on_detector_saturated(&self) -> SaturationMode {
        self.on_detector_saturated
    }
}

/// A compiled `[[assign]]` entry.
#[derive(Debug, Clone)]
struct Assignment {
    tenant: Option<String>,
    route: Option<String>,
    model: Option<String>,
    tier: Arc<TierPolicy>,
}

impl Assignment {
    fn matches(&self, s: &Subject<'_>) -> bool {
        let field = |glob: &Option<String>, value: &str| {
            glob.as_deref().is_none_or(|g| glob_match(g, value))
        };
        field(&self.tenant, s.tenant) && field(&self.route, s.route) && field(&self.model, s.model)
    }
}

/// A validated, compiled, immutable policy. `Send + Sync`; share it in an `Arc`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    version: PolicyVersion,
    document: PolicyDocument,
    tiers: Vec<Arc<TierPolicy>>,
    default_tier: Arc<TierPolicy>,
    assignments: Vec<Assignment>,
    links: DomainAllowlist,
    catalog: ToolCatalog,
}

impl Snapshot {
    /// Parses, validates and compiles a TOML policy.
    pub fn from_toml(text: &str) -> Result<Snapshot, PolicyError> {
        Snapshot::compile(PolicyDocument::from_toml(text)?)
    }

    /// The built-in policy ([`BUILTIN_TOML`]). Parses and hashes on each call: call it once
    /// and share the result.
    pub fn builtin() -> Snapshot {
        // Constant input, not reachable by any request; `builtin_policy_compiles` proves it
        // compiles, so this cannot fire in a tested build.
        Snapshot::from_toml(BUILTIN_TOML).expect("policies/default.toml is a valid policy")
    }

    /// Validates a document and compiles it. Reports the first problem found, naming its key
    /// path; checked in this order: link domains, tiers (by name, then gate, then detector),
    /// `default_tier`, assignments.
    pub fn compile(document: PolicyDocument) -> Result<Snapshot, PolicyError> {
        // Check every pattern as written, before canonicalization reorders them, so that
        // the error names the position the author sees.
        for (i, p) in document.links.allowed_domains.iter().enumerate() {
            normalize_domain_pattern(p).map_err(|reason| PolicyError::BadDomainPattern {
                path: format!("links.allowed_domains[{i}]"),
                pattern: p.clone(),
                reason,
            })?;
        }
        let document = document.canonical();
        let version = PolicyVersion::of(&document)?;
        let catalog = compile_catalog(&document.tools)?;
        let mut tiers = Vec::with_capacity(document.tiers.len());
        for (name, spec) in &document.tiers {
            tiers.push(Arc::new(compile_tier(name, spec, &catalog)?));
        }
        let find = |name: &str| tiers.iter().find(|t| t.name.as_str() == name).cloned();
        let default_tier =
            find(&document.default_tier).ok_or_else(|| PolicyError::MissingDefaultTier {
                tier: document.default_tier.clone(),
            })?;
        let mut assignments = Vec::with_capacity(document.assign.len());
        for (i, a) in document.assign.iter().enumerate() {
            if a.tenant.is_none() && a.route.is_none() && a.model.is_none() {
                return Err(PolicyError::EmptyAssignment {
                    path: format!("assign[{i}]"),
                });
            }
            let tier = find(&a.tier).ok_or_else(|| PolicyError::UnknownTier {
                path: format!("assign[{i}].tier"),
                tier: a.tier.clone(),
            })?;
            assignments.push(Assignment {
                tenant: a.tenant.clone(),
                route: a.route.clone(),
                model: a.model.clone(),
                tier,
            });
        }
        let links = DomainAllowlist::new(document.links.allowed_domains.iter().map(String::as_str));
        Ok(Snapshot {
            version,
            document,
            tiers,
            default_tier,
            assignments,
            links,
            catalog,
        })
    }

    /// The tool catalog (`[tools.<name>]`).
    pub fn tools(&self) -> &ToolCatalog {
        &self.catalog
    }

    /// The content hash of the policy (see [`PolicyVersion`]).
    pub fn version(&self) -> PolicyVersion {
        self.version
    }

    /// The document's human label.
    pub fn label(&self) -> &str {
        &self.document.label
    }

    /// The canonical document this snapshot was compiled from (for [`diff`](crate::diff)).
    pub fn document(&self) -> &PolicyDocument {
        &self.document
    }

    /// Every tier, sorted by name.
    pub fn tiers(&self) -> impl Iterator<Item = &TierPolicy> {
        self.tiers.iter().map(|t| &**t)
    }

    /// The tier for a request: the first `[[assign]]` entry whose globs all match, else
    /// `default_tier`.
    pub fn tier_for(&self, subject: &Subject<'_>) -> &TierPolicy {
        self.assignments
            .iter()
            .find(|a| a.matches(subject))
            .map_or(&self.default_tier, |a| &a.tier)
    }

    /// True when links to `host` are allowed: an exact entry, or a `*.` entry of which
    /// `host` is a strict subdomain, compared ASCII case-insensitively, ignoring one
    /// trailing dot.
    ///
    /// IDNA-naive: `host` must be in ASCII (punycode) form, as a URL parser yields it; a
    /// Unicode host, or anything with a port, path or `@`, is never allowed (fail closed).
    pub fn link_allowed(&self, host: &str) -> bool {
        self.links.allows(host)
    }
}

fn valid_tier_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn compile_tier(
    name: &str,
    spec: &TierSpec,
    catalog: &ToolCatalog,
) -> Result<TierPolicy, PolicyError> {
    if !valid_tier_name(name) {
        return Err(PolicyError::BadTierName {
            path: format!("tiers.{name}"),
        });
    }
    let mut gates: [GatePolicy; 3] = Default::default();
    for (slot, gate) in gates.iter_mut().zip(Gate::ALL) {
        for (detector, rule) in spec.rules(gate) {
            let path = format!("tiers.{name}.{gate}.{detector}");
            let compiled = compile_rule(&path, detector, rule)?;
            // Quarantine rewrites an untrusted segment: only the context gate has one.
            let quarantines = matches!(compiled.effect, Effect::Enforce(Action::Quarantine))
                || matches!(compiled.effect, Effect::Shadow(Action::Quarantine));
            if quarantines && gate != Gate::Context {
                return Err(PolicyError::InvalidAction {
                    path: format!("{path}.action"),
                    action: RuleAction::Quarantine,
                    detector,
                    allowed: "allow, flag, block, shadow (quarantine is for the context gate)"
                        .to_owned(),
                });
            }
            slot.rules[detector.index()] = Some(compiled);
        }
    }
    for (role, rules) in &spec.input.roles {
        let base = format!("tiers.{name}.input.roles.{role}");
        if *role == TextRole::User {
            return Err(PolicyError::UserRoleRules { path: base });
        }
        let mut compiled = GatePolicy::default();
        for (detector, rule) in [
            (DetectorKind::Injection, rules.injection),
            (DetectorKind::Jailbreak, rules.jailbreak),
        ] {
            if let Some(rule) = rule {
                let path = format!("{base}.{detector}");
                compiled.rules[detector.index()] = Some(compile_rule(&path, detector, rule)?);
            }
        }
        if let Some(slot) = gates[0].roles.get_mut(*role as usize) {
            *slot = Some(Box::new(compiled));
        }
    }
    let tool = match &spec.tool {
        Some(t) => Some(ToolGate::compile(
            &format!("tiers.{name}.tool"),
            t,
            catalog,
        )?),
        None => None,
    };
    Ok(TierPolicy {
        name: TierName::from(name),
        gates,
        no_rules: GatePolicy::default(),
        spotlight: spec.context.spotlight,
        canaries: spec.output.canaries,
        tool,
        on_detector_saturated: spec.on_detector_saturated,
    })
}

fn compile_rule(path: &str, detector: DetectorKind, r: RuleSpec) -> Result<Rule, PolicyError> {
    let threshold_path = || format!("{path}.threshold");
    let threshold = match (detector.is_scored(), r.threshold) {
        (true, None) => {
            return Err(PolicyError::MissingThreshold {
                path: threshold_path(),
            })
        }
        (false, Some(_)) => {
            return Err(PolicyError::UnexpectedThreshold {
                path: threshold_path(),
                detector,
            })
        }
        (_, Some(t)) if !(0.0..=1.0).contains(&t) => {
            return Err(PolicyError::ThresholdOutOfRange {
                path: threshold_path(),
                value: t,
            })
        }
        // The score is an f32; so is the comparison, so a threshold written as the
        // detector's own f32 value compares equal to it.
        (_, t) => t.map(|t| t as f32),
    };
    let check = |field: &str, action: Action| {
        if detector.allowed_actions().contains(&action) {
            Ok(action)
        } else {
            Err(PolicyError::InvalidAction {
                path: format!("{path}.{field}"),
                action: RuleAction::from(action),
                detector,
                allowed: allowed_list(detector),
            })
        }
    };
    let effect = match (r.action.enforced(), r.shadow_action) {
        (Some(_), Some(_)) => {
            return Err(PolicyError::ShadowActionWithoutShadow {
                path: format!("{path}.shadow_action"),
            })
        }
        (Some(a), None) => Effect::Enforce(check("action", a)?),
        (None, shadow) => Effect::Shadow(check("shadow_action", shadow.unwrap_or(Action::Block))?),
    };
    Ok(Rule { threshold, effect })
}

fn allowed_list(detector: DetectorKind) -> String {
    let mut names: Vec<&str> = detector
        .allowed_actions()
        .iter()
        .map(|a| a.as_str())
        .collect();
    names.push("shadow");
    names.join(", ")
}
