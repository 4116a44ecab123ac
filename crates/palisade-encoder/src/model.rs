//! The forward pass: BERT, mean pooling over the attention mask, the head.
//!
//! Must stay identical to `python/encoder_ref.py` (`Scorer.window_logits`).
//! Runs on the calling thread plus candle's own compute threads (see the
//! crate README for pinning them to one).

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::bert::{BertModel, Config, HiddenAct, PositionEmbeddingType};

use crate::weights::{self, Weights};
use crate::{EncoderError, Window};

/// BERT with the classification head.
pub struct Model {
    bert: BertModel,
    dense: Linear,
    out: Linear,
}

impl Model {
    /// Builds the model from assembled weights.
    pub fn new(weights: Weights) -> Result<Self, EncoderError> {
        let config = Config {
            vocab_size: weights::VOCAB,
            hidden_size: weights::HIDDEN,
            num_hidden_layers: weights::LAYERS,
            num_attention_heads: weights::HEADS,
            intermediate_size: weights::INTERMEDIATE,
            // Hugging Face's "gelu" is the exact (erf) GELU.
            hidden_act: HiddenAct::Gelu,
            hidden_dropout_prob: 0.0,
            max_position_embeddings: crate::meta::MAX_POSITIONS,
            type_vocab_size: weights::TYPE_VOCAB,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: PositionEmbeddingType::Absolute,
            use_cache: false,
            classifier_dropout: None,
            model_type: None,
        };
        let vb = VarBuilder::from_tensors(weights.bert, DType::F32, &Device::Cpu);
        let bert = BertModel::load(vb, &config)?;
        let head = weights.head;
        Ok(Self {
            bert,
            dense: Linear::new(head.dense_weight, Some(head.dense_bias)),
            out: Linear::new(head.out_weight, Some(head.out_bias)),
        })
    }

    /// Logits per window, `[windows, K]`, all windows in one padded batch.
    pub fn window_logits(&self, windows: &[Window]) -> Result<Tensor, EncoderError> {
        let rows = windows.len();
        let len = windows.iter().map(|w| w.input_ids.len()).max().unwrap_or(0);
        let mut ids = vec![0u32; rows * len];
        let mut types = vec![0u32; rows * len];
        let mut mask = vec![0f32; rows * len];
        for (row, window) in windows.iter().enumerate() {
            let at = row * len;
            let n = window.input_ids.len();
            ids[at..at + n].copy_from_slice(&window.input_ids);
            types[at..at + n].copy_from_slice(&window.token_type_ids);
            mask[at..at + n].fill(1.0);
        }
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, (rows, len), &device)?;
        let types = Tensor::from_vec(types, (rows, len), &device)?;
        let mask = Tensor::from_vec(mask, (rows, len), &device)?;
        let hidden = self.bert.forward(&ids, &types, Some(&mask))?;
        // Mean over the real tokens of each window: padding contributes nothing.
        let weights = mask.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&weights)?.sum(1)?;
        let pooled = summed.broadcast_div(&weights.sum(1)?)?;
        let logits = self.out.forward(&self.dense.forward(&pooled)?.tanh()?)?;
        Ok(logits)
    }

    /// Per output, the largest logit over the windows.
    pub fn score(&self, windows: &[Window]) -> Result<Vec<f32>, EncoderError> {
        Ok(self.window_logits(windows)?.max(D::Minus2)?.to_vec1()?)
    }
}
