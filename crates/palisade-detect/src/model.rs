//! The trained model and its on-disk artifact format.
//!
//! Layout (little-endian): magic `PLSDMDL1`, `u32` header length, JSON header
//! ([`ModelMeta`]), then for each linear head `f32 scale` + `i16 × 2^bits` quantized weights,
//! then the character-LM tables as raw bytes, then (when the header says `token_lm`) the
//! token-LM tables: unigram and back-off bytes, then `u16` bigram entries. Quantizing to i16 halves the size at no
//! measurable accuracy cost. The format is read here (pure) and written by `palisade-eval`.

use serde::{Deserialize, Serialize};

use crate::charlm::{CharLm, QUAD_BITS, SYMBOLS, TRI_BITS};
use crate::error::DetectError;
use crate::features::{STAGE2_DIM, STAGE2_NAMES};
use crate::tokenlm::{TokenLm, BI_BITS, VOCAB};
use crate::types::Thresholds;

const MAGIC: &[u8; 8] = b"PLSDMDL1";

/// A linear model over hashed features.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// log2 of the number of weights.
    pub bits: u32,
    /// Intercept.
    pub bias: f32,
    /// One weight per hashed bucket.
    pub weights: Vec<f32>,
}

impl Head {
    /// An all-zero head.
    pub fn zero(bits: u32) -> Head {
        Head {
            bits,
            bias: 0.0,
            weights: vec![0.0; 1 << bits],
        }
    }

    /// Logit for hashed feature indexes (repetitions count), L2-normalized by sqrt(count).
    #[inline]
    pub fn logit(&self, idx: &[u32]) -> f32 {
        if idx.is_empty() {
            return self.bias;
        }
        let mask = (1u32 << self.bits) - 1;
        let mut s = 0.0f32;
        for &i in idx {
            s += self.weights[(i & mask) as usize];
        }
        self.bias + s / (idx.len() as f32).sqrt()
    }
}

/// The final calibrated logistic layer over dense signals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage2 {
    /// Input names (must equal [`STAGE2_NAMES`]).
    pub names: Vec<String>,
    /// Standardization means.
    pub mean: Vec<f32>,
    /// Standardization scales.
    pub std: Vec<f32>,
    /// Weights on standardized inputs.
    pub weights: Vec<f32>,
    /// Intercept.
    pub bias: f32,
}

impl Stage2 {
    /// Logit of the final layer.
    pub fn logit(&self, x: &[f32; STAGE2_DIM]) -> f32 {
        let mut s = self.bias;
        for (i, xi) in x.iter().enumerate() {
            s += self.weights[i] * (xi - self.mean[i]) / self.std[i];
        }
        s
    }
}

/// Header of the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Human-readable version, e.g. `2026-11-24.1`.
    pub version: String,
    /// Training seed.
    pub seed: u64,
    /// Calibrated thresholds (cross-validation on train).
    pub thresholds: Thresholds,
    /// log2 buckets of the attack head.
    pub attack_bits: u32,
    /// log2 buckets of the harmful-request head.
    pub harm_bits: u32,
    /// log2 buckets of the jailbreak-vs-injection head.
    pub jb_bits: u32,
    /// Intercepts of the three heads.
    pub biases: [f32; 3],
    /// Final layer (user and system channels; also data channels when `stage2_data` is absent).
    pub stage2: Stage2,
    /// Final layer for data channels (`retrieved`, `tool_output`): the same inputs mean
    /// different things inside a document, so data channels get their own weights.
    #[serde(default)]
    pub stage2_data: Option<Stage2>,
    /// Logit shift for data channels (`retrieved`, `tool_output`), so one pair of thresholds
    /// gives the calibrated false-positive rate on both benign prompts and clean documents.
    #[serde(default)]
    pub data_offset: f32,
    /// The artifact carries token-LM tables (absent: the token signals are zero). Not
    /// written when false, so artifacts without a token LM keep their bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token_lm: bool,
}

/// Everything the detector needs from training.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Header.
    pub meta: ModelMeta,
    /// Attack (injection/jailbreak/indirect) versus benign.
    pub attack: Head,
    /// Harmful request versus benign.
    pub harm: Head,
    /// Jailbreak (1) versus injection (0), among attacks; used for the category only.
    pub jb: Head,
    /// Character LM of benign text.
    pub lm: CharLm,
    /// Token-level LM of benign text (empty when the artifact has none).
    pub tok: TokenLm,
}

fn quantize_head(h: &Head, out: &mut Vec<u8>) {
    let max = h.weights.iter().fold(0.0f32, |m, w| m.max(w.abs()));
    let scale = if max > 0.0 { max / 32767.0 } else { 1.0 };
    out.extend_from_slice(&scale.to_le_bytes());
    for w in &h.weights {
        let q = (w / scale).round().clamp(-32767.0, 32767.0) as i16;
        out.extend_from_slice(&q.to_le_bytes());
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DetectError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(DetectError::Truncated)?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, DetectError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn f32(&mut self) -> Result<f32, DetectError> {
        Ok(f32::from_bits(self.u32()?))
    }
    fn head(&mut self, bits: u32, bias: f32) -> Result<Head, DetectError> {
        if bits > 24 {
            return Err(DetectError::BadHeader(format!(
                "head too large: {bits} bits"
            )));
        }
        let scale = self.f32()?;
        let n = 1usize << bits;
        let raw = self.take(n * 2)?;
        let weights = raw
            .chunks_exact(2)
            .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) * scale)
            .collect();
        Ok(Head {
            bits,
            bias,
            weights,
        })
    }
}

impl Model {
    /// Serializes to the artifact format.
    pub fn to_bytes(&self) -> Result<Vec<u8>, DetectError> {
        let header =
            serde_json::to_vec(&self.meta).map_err(|e| DetectError::BadHeader(e.to_string()))?;
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        quantize_head(&self.attack, &mut out);
        quantize_head(&self.harm, &mut out);
        quantize_head(&self.jb, &mut out);
        out.extend_from_slice(&self.lm.uni);
        out.extend_from_slice(&self.lm.bi);
        out.extend_from_slice(&self.lm.tri);
        out.extend_from_slice(&self.lm.quad);
        if self.meta.token_lm {
            if self.tok.uni.len() != VOCAB
                || self.tok.backoff.len() != VOCAB
                || self.tok.bi.len() != 1 << BI_BITS
            {
                return Err(DetectError::BadHeader(
                    "token LM tables have the wrong size".into(),
                ));
            }
            out.extend_from_slice(&self.tok.uni);
            out.extend_from_slice(&self.tok.backoff);
            for e in &self.tok.bi {
                out.extend_from_slice(&e.to_le_bytes());
            }
        }
        Ok(out)
    }

    /// Parses an artifact.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, DetectError> {
        let mut r = Reader { b: bytes, pos: 0 };
        if r.take(8)? != MAGIC {
            return Err(DetectError::BadMagic);
        }
        let hlen = r.u32()? as usize;
        let meta: ModelMeta = serde_json::from_slice(r.take(hlen)?)
            .map_err(|e| DetectError::BadHeader(e.to_string()))?;
        if meta.stage2_data.as_ref().is_some_and(|s| {
            s.names != STAGE2_NAMES
                || s.weights.len() != STAGE2_DIM
                || s.mean.len() != STAGE2_DIM
                || s.std.len() != STAGE2_DIM
        }) {
            return Err(DetectError::BadHeader(
                "data-channel final layer inputs do not match this build".into(),
            ));
        }
        if meta.stage2.names != STAGE2_NAMES
            || meta.stage2.weights.len() != STAGE2_DIM
            || meta.stage2.mean.len() != STAGE2_DIM
            || meta.stage2.std.len() != STAGE2_DIM
        {
            return Err(DetectError::BadHeader(
                "final layer inputs do not match this build".into(),
            ));
        }
        let attack = r.head(meta.attack_bits, meta.biases[0])?;
        let harm = r.head(meta.harm_bits, meta.biases[1])?;
        let jb = r.head(meta.jb_bits, meta.biases[2])?;
        let lm = CharLm {
            uni: r.take(SYMBOLS)?.to_vec(),
            bi: r.take(SYMBOLS * SYMBOLS)?.to_vec(),
            tri: r.take(1 << TRI_BITS)?.to_vec(),
            quad: r.take(1 << QUAD_BITS)?.to_vec(),
        };
        let tok = if meta.token_lm {
            TokenLm {
                uni: r.take(VOCAB)?.to_vec(),
                backoff: r.take(VOCAB)?.to_vec(),
                bi: r
                    .take(2 << BI_BITS)?
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            }
        } else {
            TokenLm::empty()
        };
        if r.pos != bytes.len() {
            return Err(DetectError::Truncated);
        }
        Ok(Model {
            meta,
            attack,
            harm,
            jb,
            lm,
            tok,
        })
    }

    /// A model with no learned weights: the detector then relies on rules only.
    pub fn untrained() -> Model {
        let mut weights = vec![0.0; STAGE2_DIM];
        // Rules alone: any rule hit lands above the default flag threshold.
        weights[13] = 4.0;
        Model {
            meta: ModelMeta {
                version: "untrained".into(),
                seed: 0,
                thresholds: Thresholds {
                    flag: 0.5,
                    block: 0.9,
                },
                attack_bits: 4,
                harm_bits: 4,
                jb_bits: 4,
                biases: [0.0; 3],
                stage2: Stage2 {
                    names: STAGE2_NAMES.iter().map(|s| s.to_string()).collect(),
                    mean: vec![0.0; STAGE2_DIM],
                    std: vec![1.0; STAGE2_DIM],
                    weights,
                    bias: -2.0,
                },
                stage2_data: None,
                data_offset: 0.0,
                token_lm: false,
            },
            attack: Head::zero(4),
            harm: Head::zero(4),
            jb: Head::zero(4),
            lm: CharLm::empty(),
            tok: TokenLm::empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let mut m = Model::untrained();
        m.attack.weights[3] = 1.5;
        m.attack.weights[5] = -0.25;
        let bytes = m.to_bytes().unwrap();
        let back = Model::from_bytes(&bytes).unwrap();
        assert_eq!(back.meta, m.meta);
        assert!((back.attack.weights[3] - 1.5).abs() < 1e-3);
        assert!((back.attack.weights[5] + 0.25).abs() < 1e-3);
        assert!(matches!(
            Model::from_bytes(&bytes[..bytes.len() - 1]),
            Err(DetectError::Truncated)
        ));
        assert!(matches!(
            Model::from_bytes(b"NOPE0000"),
            Err(DetectError::BadMagic)
        ));
    }
}
