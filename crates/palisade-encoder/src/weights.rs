//! Assembling the model's tensors: base file, tuned overlay, head.
//!
//! Every tensor the forward pass reads is listed with its shape
//! ([`bert_shapes`]), so a wrong or incomplete file is a typed error here,
//! not a failure deep in the tensor library. Reads bytes given by the
//! caller; opens no file.

use std::collections::HashMap;

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::EncoderError;

/// all-MiniLM-L6-v2's architecture (its `config.json`); the weights files
/// carry no config, and the crate is built for this one model.
pub const HIDDEN: usize = 384;
/// Transformer layers.
pub const LAYERS: usize = 6;
/// Attention heads per layer.
pub const HEADS: usize = 12;
/// Feed-forward width.
pub const INTERMEDIATE: usize = 1536;
/// Uncased WordPiece vocabulary.
pub const VOCAB: usize = 30522;
/// Segment (token type) embeddings.
pub const TYPE_VOCAB: usize = 2;

/// The head's tensors, all in the overlay.
pub const HEAD_DENSE_WEIGHT: &str = "head.dense.weight";
/// See [`HEAD_DENSE_WEIGHT`].
pub const HEAD_DENSE_BIAS: &str = "head.dense.bias";
/// See [`HEAD_DENSE_WEIGHT`].
pub const HEAD_OUT_WEIGHT: &str = "head.out.weight";
/// See [`HEAD_DENSE_WEIGHT`].
pub const HEAD_OUT_BIAS: &str = "head.out.bias";

/// Every BERT tensor the forward pass reads, with its shape, named as in
/// Hugging Face's `BertModel` without a prefix.
pub fn bert_shapes() -> Vec<(String, Vec<usize>)> {
    let mut shapes = vec![
        (
            "embeddings.word_embeddings.weight".to_owned(),
            vec![VOCAB, HIDDEN],
        ),
        (
            "embeddings.position_embeddings.weight".to_owned(),
            vec![crate::meta::MAX_POSITIONS, HIDDEN],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_owned(),
            vec![TYPE_VOCAB, HIDDEN],
        ),
        ("embeddings.LayerNorm.weight".to_owned(), vec![HIDDEN]),
        ("embeddings.LayerNorm.bias".to_owned(), vec![HIDDEN]),
    ];
    for layer in 0..LAYERS {
        let p = format!("encoder.layer.{layer}");
        for linear in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
        ] {
            shapes.push((format!("{p}.{linear}.weight"), vec![HIDDEN, HIDDEN]));
            shapes.push((format!("{p}.{linear}.bias"), vec![HIDDEN]));
        }
        shapes.extend([
            (
                format!("{p}.attention.output.dense.weight"),
                vec![HIDDEN, HIDDEN],
            ),
            (format!("{p}.attention.output.dense.bias"), vec![HIDDEN]),
            (
                format!("{p}.attention.output.LayerNorm.weight"),
                vec![HIDDEN],
            ),
            (format!("{p}.attention.output.LayerNorm.bias"), vec![HIDDEN]),
            (
                format!("{p}.intermediate.dense.weight"),
                vec![INTERMEDIATE, HIDDEN],
            ),
            (format!("{p}.intermediate.dense.bias"), vec![INTERMEDIATE]),
            (
                format!("{p}.output.dense.weight"),
                vec![HIDDEN, INTERMEDIATE],
            ),
            (format!("{p}.output.dense.bias"), vec![HIDDEN]),
            (format!("{p}.output.LayerNorm.weight"), vec![HIDDEN]),
            (format!("{p}.output.LayerNorm.bias"), vec![HIDDEN]),
        ]);
    }
    shapes
}

/// A parsed safetensors file and its `__metadata__`.
pub struct File<'a> {
    tensors: SafeTensors<'a>,
    /// `__metadata__`, if the file has one.
    pub metadata: Option<HashMap<String, String>>,
    which: &'static str,
}

impl<'a> File<'a> {
    /// Parses `bytes` (`which` names the file in errors: `base` or `tuned`).
    pub fn parse(which: &'static str, bytes: &'a [u8]) -> Result<Self, EncoderError> {
        let invalid = |e: safetensors::SafeTensorError| EncoderError::Safetensors {
            which,
            reason: e.to_string(),
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
        let tensors = SafeTensors::deserialize(bytes).map_err(invalid)?;
        Ok(Self {
            tensors,
            metadata: header.metadata().clone(),
            which,
        })
    }

    fn view(&self, name: &str) -> Option<TensorView<'a>> {
        self.tensors.tensor(name).ok()
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.names().into_iter()
    }
}

/// The classification head, from the overlay.
pub struct Head {
    /// `head.dense.weight`, `[HIDDEN, HIDDEN]`.
    pub dense_weight: Tensor,
    /// `head.dense.bias`, `[HIDDEN]`.
    pub dense_bias: Tensor,
    /// `head.out.weight`, `[K, HIDDEN]`.
    pub out_weight: Tensor,
    /// `head.out.bias`, `[K]`.
    pub out_bias: Tensor,
}

/// The tensors of one encoder, all f32 on the CPU.
pub struct Weights {
    /// The BERT tensors, overlay applied, keyed as in [`bert_shapes`].
    pub bert: HashMap<String, Tensor>,
    /// The head with `K` outputs.
    pub head: Head,
}

impl Weights {
    /// Base tensors, each replaced by the overlay's tensor of the same name
    /// when there is one, plus the overlay's head with `outputs` logits.
    pub fn assemble(
        base: &File<'_>,
        tuned: &File<'_>,
        outputs: usize,
    ) -> Result<Self, EncoderError> {
        const HEAD: [&str; 4] = [
            HEAD_DENSE_WEIGHT,
            HEAD_DENSE_BIAS,
            HEAD_OUT_WEIGHT,
            HEAD_OUT_BIAS,
        ];
        for name in tuned.names() {
            match (base.view(name), tuned.view(name)) {
                (Some(b), Some(t)) if b.shape() != t.shape() => {
                    return Err(mismatch(name, b.shape(), t.shape()))
                }
                (None, _) if !HEAD.contains(&name) => {
                    return Err(EncoderError::UnexpectedTensor {
                        name: name.to_owned(),
                    })
                }
                _ => {}
            }
        }
        let mut bert = HashMap::new();
        for (name, shape) in bert_shapes() {
            let (file, view) = match (tuned.view(&name), base.view(&name)) {
                (Some(view), _) => (tuned, view),
                (None, Some(view)) => (base, view),
                (None, None) => return Err(EncoderError::MissingTensor { name }),
            };
            let tensor = load(file, &name, &view, &shape)?;
            bert.insert(name, tensor);
        }
        let head = |name: &str, shape: &[usize]| match tuned.view(name) {
            Some(view) => load(tuned, name, &view, shape),
            None => Err(EncoderError::MissingTensor {
                name: name.to_owned(),
            }),
        };
        let head = Head {
            dense_weight: head(HEAD_DENSE_WEIGHT, &[HIDDEN, HIDDEN])?,
            dense_bias: head(HEAD_DENSE_BIAS, &[HIDDEN])?,
            out_weight: head(HEAD_OUT_WEIGHT, &[outputs, HIDDEN])?,
            out_bias: head(HEAD_OUT_BIAS, &[outputs])?,
        };
        Ok(Self { bert, head })
    }
}

fn mismatch(name: &str, expected: &[usize], found: &[usize]) -> EncoderError {
    EncoderError::ShapeMismatch {
        name: name.to_owned(),
        expected: expected.to_vec(),
        found: found.to_vec(),
    }
}

/// One tensor as f32 (f16 and bf16 are widened), after its shape is checked.
fn load(
    file: &File<'_>,
    name: &str,
    view: &TensorView<'_>,
    shape: &[usize],
) -> Result<Tensor, EncoderError> {
    if view.shape() != shape {
        return Err(mismatch(name, shape, view.shape()));
    }
    if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        return Err(EncoderError::DType {
            name: name.to_owned(),
            found: format!("{:?} in {} weights", view.dtype(), file.which),
        });
    }
    Ok(view.load(&Device::Cpu)?.to_dtype(DType::F32)?)
}
