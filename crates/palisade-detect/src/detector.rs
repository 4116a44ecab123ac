//! The [`Detector`]: runs normalization, rules, the trained model, secrets and PII on one
//! input and returns a [`Scan`].

use std::sync::Arc;

use crate::cascade::{combine, SecondStage};
use crate::error::DetectError;
use crate::features::{hashed_segmented, signals, stage2_vector, Signals, STAGE2_DIM};
use crate::model::Model;
use crate::normalize::{normalize, Normalized};
use crate::pii::find_pii;
use crate::rules::ATTACK_RULES;
use crate::secrets::find_secrets;
use crate::types::{Category, Reason, Scan, ScanInput, Thresholds, Verdict};

/// The committed model artifact (see `model/TRAINING.md` for how it was trained).
static EMBEDDED: &[u8] = include_bytes!("../model/palisade-detect.model");

/// Probability of the harmful-request head above which a request is labelled
/// [`Category::HarmfulRequest`] (informational: it does not change the verdict).
const HARM_CATEGORY_P: f32 = 0.9;

/// A ready-to-use detector. Immutable after construction: `Send + Sync`, share it in an `Arc`.
#[derive(Debug, Clone)]
pub struct Detector {
    model: Model,
    thresholds: Thresholds,
    version: String,
    /// Consulted for inputs in the uncertain band (see [`crate::cascade`]).
    second: Option<Arc<dyn SecondStage>>,
}

/// Everything computed for one input before the verdict (for training, debugging and eval).
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Normalization result.
    pub normalized: Normalized,
    /// Attack-head logit.
    pub attack_logit: f32,
    /// Harmful-request-head logit.
    pub harm_logit: f32,
    /// Jailbreak-vs-injection logit.
    pub jb_logit: f32,
    /// Highest attack-head logit over sentence segments.
    pub segment_max: f32,
    /// Dense signals.
    pub signals: Signals,
    /// Final-layer input.
    pub stage2: [f32; STAGE2_DIM],
    /// Final score in `[0, 1]`.
    pub score: f32,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Detector {
    /// Loads the model artifact committed in the repository (compiled into the binary).
    pub fn embedded() -> Result<Detector, DetectError> {
        Detector::from_model_bytes(EMBEDDED)
    }

    /// The committed model artifact's bytes (what [`Detector::embedded`] loads), for callers
    /// that must tell whether an artifact named only by its digest is this build's own
    /// (a signed bundle may name the detector it expects without carrying it).
    pub fn embedded_artifact() -> &'static [u8] {
        EMBEDDED
    }

    /// Loads a model artifact from bytes. An empty slice gives the rules-only detector.
    pub fn from_model_bytes(bytes: &[u8]) -> Result<Detector, DetectError> {
        if bytes.is_empty() {
            return Ok(Detector::from_model(Model::untrained()));
        }
        let mut d = Detector::from_model(Model::from_bytes(bytes)?);
        d.version = format!("{}+{}", d.model.meta.version, content_hash(bytes));
        Ok(d)
    }

    /// Wraps an in-memory model (used by training).
    pub fn from_model(model: Model) -> Detector {
        crate::warm_up();
        if !model.tok.is_empty() {
            crate::tokenlm::warm_up();
        }
        let thresholds = model.meta.thresholds;
        let version = model.meta.version.clone();
        Detector {
            model,
            thresholds,
            version,
            second: None,
        }
    }

    /// Adds a second stage, consulted for inputs whose first-stage score lies in its band.
    /// The detector's version then names both stages (`first|second`), so audit records
    /// say which weights judged.
    pub fn with_second_stage(mut self, stage: Arc<dyn SecondStage>) -> Detector {
        self.version = format!("{}|{}", self.version, stage.version());
        self.second = Some(stage);
        self
    }

    /// The second stage, if one is attached.
    pub fn second_stage(&self) -> Option<&dyn SecondStage> {
        self.second.as_deref()
    }

    /// The second stage, shared, to attach it to another first stage.
    pub fn second_stage_arc(&self) -> Option<Arc<dyn SecondStage>> {
        self.second.clone()
    }

    /// The first stage's score and, when the input falls in the second stage's band, the
    /// cascade's score and the second stage's logit.
    fn cascade_score(
        &self,
        input: &ScanInput<'_>,
        s1: f32,
        t: Thresholds,
        second: bool,
    ) -> (f32, Option<f32>) {
        let Some(stage) = self.second.as_ref().filter(|_| second) else {
            return (s1, None);
        };
        let cal = stage.calibration();
        if !cal.consults(input.channel, s1, t.block) {
            return (s1, None);
        }
        match stage.attack_logit(input.channel, input.text) {
            Ok(logit) => (
                combine(s1, logit, cal.scale(input.channel), self.thresholds),
                Some(logit),
            ),
            // No opinion: the first stage decides, as it does without a second stage.
            Err(_) => (s1, None),
        }
    }

    /// The model behind this detector.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The thresholds in use (calibrated on train unless overridden).
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Replaces the thresholds.
    pub fn with_thresholds(mut self, t: Thresholds) -> Result<Detector, DetectError> {
        validate(t)?;
        self.thresholds = t;
        Ok(self)
    }

    /// Artifact version and content hash, e.g. `2026-11-24.1+3f2a9c0d1e4b`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Scans one input at the detector's thresholds.
    pub fn scan(&self, input: &ScanInput<'_>) -> Scan {
        self.scan_with_thresholds(input, self.thresholds)
    }

    /// Scans with a caller-chosen flag threshold; the block threshold is the larger of the
    /// calibrated one and `flag`. Out-of-range values are clamped to `[0, 1]`.
    pub fn scan_with_threshold(&self, input: &ScanInput<'_>, flag: f32) -> Scan {
        let flag = if flag.is_nan() {
            self.thresholds.flag
        } else {
            flag.clamp(0.0, 1.0)
        };
        self.scan_with_thresholds(
            input,
            Thresholds {
                flag,
                block: self.thresholds.block.max(flag),
            },
        )
    }

    /// Runs every stage and returns the intermediate values.
    pub fn analyze(&self, input: &ScanInput<'_>) -> Analysis {
        let mut a = self.analyze_as_written(input);
        // A disguise never lowers the score: the model learned its weights on text as people
        // write it, and a look-alike letter, a spaced-out word or SHOUTING moves the raw-text
        // signals (character statistics, script census, case) in ways an attacker can use to
        // hide. The text the disguise hides is scored as plain text too; the higher counts.
        if disguised(&a.normalized, &a.signals) {
            // The canonical text (lower case, letters joined, payloads decoded), and for
            // look-alike letters and invisible characters also the text with only those
            // undone (case is a signal the canonical form drops).
            let mut revealed = vec![a.normalized.combined()];
            if a.normalized
                .reasons
                .iter()
                .any(|r| LETTER_DISGUISES.contains(&r.code))
            {
                revealed.push(crate::normalize::unmasked(input.text));
            }
            // An encoded payload is also read on its own, as if it had been sent as written.
            revealed.extend(
                a.normalized
                    .payloads
                    .iter()
                    .take(MAX_REVEALED_PAYLOADS)
                    .map(|p| p.text.clone()),
            );
            for text in &revealed {
                let plain = ScanInput { text, ..*input };
                a.score = a.score.max(self.analyze_as_written(&plain).score);
            }
        }
        a
    }

    /// [`Detector::analyze`] of the text exactly as written, without the second look at
    /// what a disguise hides (for diagnosis: how much the second look changes).
    pub fn analyze_as_written(&self, input: &ScanInput<'_>) -> Analysis {
        let normalized = normalize(input.text);
        let combined = if normalized.payloads.is_empty() {
            std::borrow::Cow::Borrowed(normalized.text.as_str())
        } else {
            std::borrow::Cow::Owned(normalized.combined())
        };
        let m = &self.model;
        let mut idx = Vec::with_capacity(combined.len() * 3 + 16);
        let mut per_segment = Vec::new();
        hashed_segmented(
            &combined,
            input.channel,
            m.meta.attack_bits,
            &mut idx,
            &mut per_segment,
        );
        let attack_logit = m.attack.logit(&idx);
        let harm_logit = m.harm.logit(&idx);
        let jb_logit = m.jb.logit(&idx);
        let segment_max = per_segment
            .iter()
            .map(|v| m.attack.logit(v))
            .fold(attack_logit, f32::max);
        let signals = signals(input, &normalized, &combined, &m.lm, &m.tok);
        let stage2 = stage2_vector(&signals, attack_logit, segment_max, harm_logit);
        let offset = if input.channel.is_data() {
            m.meta.data_offset
        } else {
            0.0
        };
        let layer = match (&m.meta.stage2_data, input.channel.is_data()) {
            (Some(d), true) => d,
            _ => &m.meta.stage2,
        };
        let mut score = sigmoid(layer.logit(&stage2) + offset);
        // High-precision rules (on train: 62 attack vs 1 benign hits or better) put the score at
        // least halfway between the calibrated flag and block thresholds: a known attack shape
        // is flagged even when the model is unsure, but one rule alone never blocks.
        // Hidden ASCII in Unicode tag characters or variation selectors has no legitimate use
        // in prompts or documents (emoji flags are exempt in normalization): same floor.
        let smuggled = normalized.reasons.iter().any(|r| {
            matches!(
                r.code,
                "unicode_tag_smuggling" | "variation_selector_smuggling"
            )
        });
        // An optimizer-made suffix (GCG/DSN) is a known attack shape with its own calibrated
        // rule (`crate::suffix`), silent when the artifact carries no token LM.
        let suffix = !input.channel.is_data() && signals.suffix.fires(crate::suffix::THRESHOLDS);
        if suffix || smuggled || signals.rules.iter().any(|&i| ATTACK_RULES[i].floor) {
            let t = m.meta.thresholds;
            score = score.max(0.5 * (t.flag + t.block));
        }
        Analysis {
            normalized,
            attack_logit,
            harm_logit,
            jb_logit,
            segment_max,
            signals,
            stage2,
            score,
        }
    }

    /// Scans one input at the given thresholds.
    pub fn scan_with_thresholds(&self, input: &ScanInput<'_>, t: Thresholds) -> Scan {
        self.scan_staged(input, t, true)
    }

    /// Scans with the first stage alone, whatever is attached: for callers that bound how
    /// much second-stage work one request may cause (a request of many texts must not buy
    /// seconds of encoder time).
    pub fn scan_first_stage(&self, input: &ScanInput<'_>) -> Scan {
        self.scan_staged(input, self.thresholds, false)
    }

    fn scan_staged(&self, input: &ScanInput<'_>, t: Thresholds, second: bool) -> Scan {
        let a = self.analyze(input);
        let first = if a.score.is_finite() {
            a.score.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let (score, second_logit) = self.cascade_score(input, first, t, second);
        let mut verdict = t.verdict(score);
        let mut reasons = a.normalized.reasons;
        for &i in &a.signals.rules {
            reasons.push(Reason::code(ATTACK_RULES[i].code));
        }
        if !input.channel.is_data() && a.signals.suffix.fires(crate::suffix::THRESHOLDS) {
            reasons.push(Reason::with_detail(
                "adversarial_suffix",
                format!(
                    "{:.1} bits/token window vs {:.1} elsewhere",
                    a.signals.suffix.worst, a.signals.suffix.rest
                ),
            ));
        }
        let attack_p = sigmoid(a.attack_logit);
        let harm_p = sigmoid(a.harm_logit);
        if verdict != Verdict::Allow {
            if a.signals.lm.max_window > 7.0 || a.signals.lm.soup_frac > 0.05 {
                reasons.push(Reason::with_detail(
                    "token_soup",
                    format!("{:.1} bits/char", a.signals.lm.max_window),
                ));
            }
            if harm_p > 0.5 && attack_p > 0.5 {
                reasons.push(Reason::code("harmful_request_in_wrapper"));
            }
            if a.signals.sp_present && a.signals.sp_overlap > 0 {
                reasons.push(Reason::with_detail(
                    "targets_system_prompt",
                    format!("{} shared terms", a.signals.sp_overlap),
                ));
            }
            if input.channel.is_data() {
                reasons.push(Reason::code("instruction_in_data"));
            }
            reasons.push(Reason::with_detail(
                "classifier",
                format!("attack p={attack_p:.2}"),
            ));
            if let Some(logit) = second_logit.filter(|_| t.verdict(first) < verdict) {
                reasons.push(Reason::with_detail(
                    "second_stage",
                    format!("encoder logit={logit:.2}"),
                ));
            }
        }

        let mut findings = find_secrets(input.text);
        let secret_rules: Vec<&'static str> = findings.iter().map(|f| f.rule).collect();
        let pii = find_pii(input.text);
        let has_pii = !pii.is_empty();
        findings.extend(pii);
        findings.sort_by_key(|f| f.span.start);

        let category = if verdict != Verdict::Allow {
            if input.channel.is_data() {
                Category::IndirectInjection
            } else if a.jb_logit > 0.0 {
                Category::Jailbreak
            } else {
                Category::Injection
            }
        } else if !secret_rules.is_empty() {
            // A specific credential shape is worth a flag (leak gate); the generic rule alone is not.
            if secret_rules.iter().any(|r| *r != "generic-api-key") {
                verdict = Verdict::Flag;
            }
            Category::Secret
        } else if has_pii {
            Category::Pii
        } else if harm_p >= HARM_CATEGORY_P {
            Category::HarmfulRequest
        } else {
            Category::None
        };
        for r in secret_rules {
            reasons.push(Reason::with_detail("secret_detected", r));
        }
        if category == Category::HarmfulRequest {
            reasons.push(Reason::with_detail(
                "harmful_request",
                format!("p={harm_p:.2}"),
            ));
        }
        Scan {
            score,
            verdict,
            category,
            reasons,
            findings,
            second_stage: second_logit,
        }
    }
}

/// Normalization's reasons for a text written to hide what it says (not those that are an
/// attack signal in themselves, like smuggled tag characters, which are floored anyway).
const DISGUISES: &[&str] = &[
    "homoglyph_mixed_script",
    "spaced_letters",
    "leetspeak",
    "zero_width_smuggling",
    "bidi_control",
    "base64_payload",
    "hex_payload",
    "url_encoded_payload",
    "rot13_payload",
];

/// Decoded payloads scored on their own, at most (each is one more scan of a text that is
/// already bounded by the decoding budget).
const MAX_REVEALED_PAYLOADS: usize = 4;

/// The disguises of single letters, undone by [`crate::normalize::unmasked`].
const LETTER_DISGUISES: &[&str] = &[
    "homoglyph_mixed_script",
    "zero_width_smuggling",
    "bidi_control",
];

/// Upper-case letters' share above which a text counts as written in capitals (with at
/// least [`CAPITALS_MIN_CHARS`] characters): SHOUTED text hides nothing from the
/// lower-casing classifier, but moves the case signal.
const CAPITALS_FRAC: f32 = 0.6;
const CAPITALS_MIN_CHARS: usize = 12;

/// Whether `n` undid a disguise, so the revealed text is worth a second look.
fn disguised(n: &Normalized, s: &Signals) -> bool {
    n.reasons.iter().any(|r| DISGUISES.contains(&r.code))
        || (s.upper_frac >= CAPITALS_FRAC && s.chars >= CAPITALS_MIN_CHARS)
}

fn validate(t: Thresholds) -> Result<(), DetectError> {
    let ok = (0.0..=1.0).contains(&t.flag) && (0.0..=1.0).contains(&t.block) && t.flag <= t.block;
    if ok {
        Ok(())
    } else {
        Err(DetectError::BadThresholds {
            flag: t.flag,
            block: t.block,
        })
    }
}

/// First 12 hex digits of the SHA-256 of the artifact.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(bytes)[..6])
}
