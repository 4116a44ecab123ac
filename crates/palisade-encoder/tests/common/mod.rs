//! Shared test inputs: the fetched base model and the committed fixtures.

#![allow(dead_code)] // each test binary uses part of it

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use palisade_encoder::Encoder;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `models/minilm-l6/` at the workspace root, where `scripts/fetch-encoder`
/// puts the base weights. Missing weights fail the test: a skipped parity
/// test would pass without checking anything.
pub fn model_file(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/minilm-l6")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/fetch-encoder first (it downloads the base encoder weights)",
            path.display()
        )
    })
}

pub fn base() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| model_file("model.safetensors"))
}

pub fn tokenizer() -> &'static [u8] {
    static TOKENIZER: OnceLock<Vec<u8>> = OnceLock::new();
    TOKENIZER.get_or_init(|| model_file("tokenizer.json"))
}

pub fn overlay() -> &'static [u8] {
    static OVERLAY: OnceLock<Vec<u8>> = OnceLock::new();
    OVERLAY.get_or_init(|| std::fs::read(fixtures().join("overlay.safetensors")).unwrap())
}

/// The fixture encoder, loaded once per test binary.
pub fn encoder() -> &'static Encoder {
    static ENCODER: OnceLock<Encoder> = OnceLock::new();
    ENCODER.get_or_init(|| Encoder::from_bytes(base(), overlay(), tokenizer()).unwrap())
}

/// The fixture's metadata.
pub fn fixture_meta() -> HashMap<String, String> {
    let (_, header) = SafeTensors::read_metadata(overlay()).unwrap();
    header.metadata().clone().unwrap()
}

/// A tensor to put in a test overlay.
pub struct Owned {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Owned {
    pub fn f32(shape: &[usize], value: f32) -> Self {
        let n: usize = shape.iter().product();
        Self {
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            data: value.to_le_bytes().repeat(n),
        }
    }
}

/// The fixture overlay's tensors.
pub fn fixture_tensors() -> HashMap<String, Owned> {
    let st = SafeTensors::deserialize(overlay()).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let owned = Owned {
                dtype: view.dtype(),
                shape: view.shape().to_vec(),
                data: view.data().to_vec(),
            };
            (name, owned)
        })
        .collect()
}

/// A safetensors file of `tensors` with `meta` as its `__metadata__`.
pub fn serialize(
    tensors: &HashMap<String, Owned>,
    meta: Option<HashMap<String, String>>,
) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, meta).unwrap()
}
