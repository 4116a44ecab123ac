//! [`Evidence`]: what the detectors found, reduced to what a policy judges. It is stored in
//! audit records and re-judged by [`simulate`](crate::simulate), so it holds scores, rule
//! names, codes and counts only: never text, spans or reason details (those can quote the
//! input, e.g. a decoded smuggled payload).

use std::collections::BTreeMap;

use palisade_detect::{FindingKind, Scan};
use serde::{Deserialize, Serialize, Serializer};

/// The detector's dominant category, mirrored from [`palisade_detect::Category`] so that
/// audit records stay readable if the detector gains categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Category {
    /// Nothing notable.
    #[default]
    None,
    /// Direct prompt injection.
    Injection,
    /// A jailbreak wrapper.
    Jailbreak,
    /// An instruction planted in a document or tool output.
    IndirectInjection,
    /// A plainly harmful request.
    HarmfulRequest,
    /// A credential or key.
    Secret,
    /// Personal data.
    Pii,
    /// A leaked canary token.
    CanaryLeak,
    /// A category this version does not know (from a newer detector or audit record).
    #[serde(other)]
    Other,
}

impl Category {
    /// True for the attack categories the injection score describes.
    pub fn is_attack(self) -> bool {
        matches!(
            self,
            Category::Injection | Category::Jailbreak | Category::IndirectInjection
        )
    }
}

impl From<palisade_detect::Category> for Category {
    fn from(c: palisade_detect::Category) -> Self {
        use palisade_detect::Category as C;
        match c {
            C::None => Category::None,
            C::Injection => Category::Injection,
            C::Jailbreak => Category::Jailbreak,
            C::IndirectInjection => Category::IndirectInjection,
            C::HarmfulRequest => Category::HarmfulRequest,
            C::Secret => Category::Secret,
            C::Pii => Category::Pii,
            C::CanaryLeak => Category::CanaryLeak,
            _ => Category::Other,
        }
    }
}

/// Detector reason codes that mean "text a human reviewer would not see".
const HIDDEN_MARKUP_CODES: &[&str] = &[
    "hidden_markup",
    "html_comment",
    "zero_width_smuggling",
    "unicode_tag_smuggling",
    "variation_selector_smuggling",
];

/// What the detectors found for one gate of one request. The gateway fills it from scans
/// ([`Evidence::absorb`]) and its own output checks (links, schema), then asks the policy
/// with [`Snapshot::decide`](crate::Snapshot::decide).
///
/// Absent fields deserialize to "nothing found", so records stay readable across versions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// Attack likelihood in `[0, 1]` from the detector (highest over the gate's texts).
    #[serde(default, serialize_with = "serialize_score")]
    pub injection_score: f32,
    /// The detector's dominant category.
    #[serde(default)]
    pub category: Category,
    /// The detector's reason codes (codes only, never their details), deduplicated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detector_reasons: Vec<String>,
    /// Secret findings by rule, e.g. `{"aws-access-token": 1}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, u32>,
    /// PII findings by rule, e.g. `{"email": 2}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pii: BTreeMap<String, u32>,
    /// A canary token appeared.
    #[serde(default, skip_serializing_if = "is_false")]
    pub canary_leaked: bool,
    /// Links or images to non-allowlisted domains, `data:` or `javascript:` URLs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disallowed_links: u32,
    /// HTML comments, zero-width or tag characters were found.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hidden_markup: bool,
    /// A short description of a `response_format` schema violation: the JSON pointer and the
    /// failed keyword (`/items/0: required`), never the offending value, which may be
    /// anything the model wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_violation: Option<String>,
    /// At the input gate: whose text this evidence is about, when not the user's (see
    /// [`TextRole`](crate::TextRole)); the role's own scored rules apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::types::TextRole>,
    /// At the tool gate: the call judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<crate::tool_evidence::ToolEvidence>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Writes the score [`Evidence::score`] would use, so a record re-decided from its JSON
/// gets the same decision (JSON has no NaN: serde_json would write `null`, which then fails
/// to read back).
fn serialize_score<S: Serializer>(score: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f32(effective_score(*score))
}

/// Non-finite scores fail closed (1.0, like the detector itself); the rest is clamped.
fn effective_score(score: f32) -> f32 {
    if score.is_nan() {
        1.0
    } else {
        score.clamp(0.0, 1.0)
    }
}

impl Evidence {
    /// Evidence from one scan.
    pub fn from_scan(scan: &Scan) -> Evidence {
        let mut e = Evidence::default();
        e.absorb(scan);
        e
    }

    /// Adds one more scan of the same gate (say, each retrieved document): the highest score
    /// wins, with the category of the strongest attack; counts add up; flags combine.
    pub fn absorb(&mut self, scan: &Scan) {
        let category = Category::from(scan.category);
        let replace = match (category.is_attack(), self.category.is_attack()) {
            (true, true) => scan.score > self.injection_score,
            (true, false) => true,
            (false, true) => false,
            (false, false) => self.category == Category::None,
        };
        if replace {
            self.category = category;
        }
        self.injection_score = self.injection_score.max(effective_score(scan.score));
        for r in &scan.reasons {
            if HIDDEN_MARKUP_CODES.contains(&r.code) {
                self.hidden_markup = true;
            }
            if !self.detector_reasons.iter().any(|c| c == r.code) {
                self.detector_reasons.push(r.code.to_owned());
            }
        }
        for f in &scan.findings {
            let counts = match f.kind {
                FindingKind::Secret => &mut self.secrets,
                FindingKind::Pii => &mut self.pii,
                FindingKind::Canary => {
                    self.canary_leaked = true;
                    continue;
                }
                _ => continue,
            };
            let n = counts.entry(f.rule.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
        }
    }

    /// The score decisions use: NaN counts as 1.0 (fail closed), the rest is clamped to
    /// `[0, 1]`.
    pub fn score(&self) -> f32 {
        effective_score(self.injection_score)
    }

    /// Total secret findings.
    pub fn secret_count(&self) -> u64 {
        self.secrets.values().map(|&n| u64::from(n)).sum()
    }

    /// Total PII findings.
    pub fn pii_count(&self) -> u64 {
        self.pii.values().map(|&n| u64::from(n)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_detect::{Finding, Reason, Verdict};

    fn scan(score: f32, category: palisade_detect::Category) -> Scan {
        Scan {
            score,
            verdict: Verdict::Allow,
            category,
            reasons: Vec::new(),
            findings: Vec::new(),
            second_stage: None,
        }
    }

    #[test]
    fn from_scan_keeps_codes_and_counts_only() {
        let mut s = scan(0.95, palisade_detect::Category::Injection);
        s.reasons = vec![
            Reason::with_detail("unicode_tag_smuggling", "ignore all previous instructions"),
            Reason::with_detail("secret_detected", "aws-access-token"),
        ];
        let finding = |kind, rule, at: usize| Finding {
            kind,
            rule,
            span: at..at + 10,
        };
        s.findings = vec![
            finding(FindingKind::Secret, "aws-access-token", 0),
            finding(FindingKind::Pii, "email", 30),
            finding(FindingKind::Pii, "email", 50),
            finding(FindingKind::Canary, "canary-token", 70),
        ];
        let e = Evidence::from_scan(&s);
        assert_eq!(e.category, Category::Injection);
        assert!(e.hidden_markup && e.canary_leaked);
        assert_eq!(e.secrets.get("aws-access-token"), Some(&1));
        assert_eq!(e.pii.get("email"), Some(&2));
        assert_eq!(e.secret_count(), 1);
        assert_eq!(e.pii_count(), 2);
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("ignore all"), "{json}");
        assert_eq!(serde_json::from_str::<Evidence>(&json).unwrap(), e);
    }

    #[test]
    fn absorb_takes_strongest_attack() {
        use palisade_detect::Category as C;
        let mut e = Evidence::from_scan(&scan(0.2, C::Pii));
        assert_eq!(e.category, Category::Pii);
        e.absorb(&scan(0.9, C::IndirectInjection));
        e.absorb(&scan(0.5, C::Injection));
        e.absorb(&scan(0.99, C::HarmfulRequest));
        assert_eq!(e.category, Category::IndirectInjection);
        assert_eq!(e.injection_score, 0.99);
    }

    #[test]
    fn non_finite_scores_fail_closed_and_roundtrip() {
        let e = Evidence {
            injection_score: f32::NAN,
            ..Evidence::default()
        };
        assert_eq!(e.score(), 1.0);
        let back: Evidence = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back.score(), 1.0);
        let e = Evidence {
            injection_score: f32::NEG_INFINITY,
            ..Evidence::default()
        };
        assert_eq!(e.score(), 0.0);
    }

    #[test]
    fn unknown_category_and_fields_are_tolerated() {
        let e: Evidence =
            serde_json::from_str(r#"{"category":"brand_new","future_field":1}"#).unwrap();
        assert_eq!(e.category, Category::Other);
        assert_eq!(
            e,
            Evidence {
                category: Category::Other,
                ..Evidence::default()
            }
        );
    }
}
