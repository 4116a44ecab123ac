//! Bad inputs give typed errors, never a panic.

mod common;

use std::collections::HashMap;

use common::{fixture_meta, fixture_tensors, serialize, Owned};
use palisade_encoder::{Encoder, EncoderError};

fn load(tuned: &[u8]) -> Result<Encoder, EncoderError> {
    Encoder::from_bytes(common::base(), tuned, common::tokenizer())
}

fn with_metas(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut meta = fixture_meta();
    for (key, value) in pairs {
        meta.insert((*key).to_owned(), (*value).to_owned());
    }
    serialize(&fixture_tensors(), Some(meta))
}

fn with_meta(key: &str, value: &str) -> Vec<u8> {
    with_metas(&[(key, value)])
}

#[test]
fn wrong_or_missing_format_is_refused() {
    match load(&with_meta("format", "palisade-encoder-2")) {
        Err(EncoderError::Format { found, expected }) => {
            assert_eq!(found.as_deref(), Some("palisade-encoder-2"));
            assert_eq!(expected, "palisade-encoder-1");
        }
        other => panic!("{other:?}"),
    }
    // The base model itself is no overlay: it has `format: pt`.
    assert!(matches!(
        load(common::base()),
        Err(EncoderError::Format { .. })
    ));
    let no_meta = serialize(&fixture_tensors(), None);
    assert!(matches!(
        load(&no_meta),
        Err(EncoderError::Format { found: None, .. })
    ));
}

#[test]
fn unknown_channel_is_refused() {
    let encoder = common::encoder();
    for channel in ["assistant", "USER", "tool", ""] {
        match encoder.score(channel, "hello") {
            Err(EncoderError::Channel(c)) => assert_eq!(c, channel),
            other => panic!("{channel:?}: {other:?}"),
        }
    }
}

#[test]
fn mismatched_shapes_are_refused() {
    // A tuned layer tensor whose shape differs from the base tensor it replaces.
    let mut tensors = fixture_tensors();
    tensors.insert(
        "encoder.layer.4.attention.self.query.weight".into(),
        Owned::f32(&[384, 383], 0.0),
    );
    match load(&serialize(&tensors, Some(fixture_meta()))) {
        Err(EncoderError::ShapeMismatch {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "encoder.layer.4.attention.self.query.weight");
            assert_eq!((expected, found), (vec![384, 384], vec![384, 383]));
        }
        other => panic!("{other:?}"),
    }
    // A head with more outputs than the metadata names.
    let mut tensors = fixture_tensors();
    tensors.insert("head.out.weight".into(), Owned::f32(&[3, 384], 0.0));
    match load(&serialize(&tensors, Some(fixture_meta()))) {
        Err(EncoderError::ShapeMismatch { name, expected, .. }) => {
            assert_eq!(name, "head.out.weight");
            assert_eq!(expected, vec![2, 384]);
        }
        other => panic!("{other:?}"),
    }
    // The metadata names one output, the head has two.
    assert!(matches!(
        load(&with_meta("outputs", "attack")),
        Err(EncoderError::ShapeMismatch { name, .. }) if name == "head.out.weight"
    ));
}

#[test]
fn overlay_tensors_must_exist_somewhere() {
    // A prefixed name would otherwise be ignored and the untuned layer used.
    let mut tensors = fixture_tensors();
    let tuned = tensors
        .remove("encoder.layer.5.output.dense.weight")
        .unwrap();
    tensors.insert("bert.encoder.layer.5.output.dense.weight".into(), tuned);
    assert!(matches!(
        load(&serialize(&tensors, Some(fixture_meta()))),
        Err(EncoderError::UnexpectedTensor { name }) if name.starts_with("bert.")
    ));
    let mut tensors = fixture_tensors();
    tensors.remove("head.out.bias");
    assert!(matches!(
        load(&serialize(&tensors, Some(fixture_meta()))),
        Err(EncoderError::MissingTensor { name }) if name == "head.out.bias"
    ));
    let mut tensors = fixture_tensors();
    tensors.insert(
        "encoder.layer.0.output.dense.bias".into(),
        Owned {
            dtype: safetensors::Dtype::I32,
            shape: vec![384],
            data: vec![0; 384 * 4],
        },
    );
    assert!(matches!(
        load(&serialize(&tensors, Some(fixture_meta()))),
        Err(EncoderError::DType { name, .. }) if name == "encoder.layer.0.output.dense.bias"
    ));
}

#[test]
fn windowing_metadata_must_leave_room_for_text() {
    // `tool_output` is 3 tokens: 6 tokens leave none for text.
    assert!(matches!(
        load(&with_metas(&[("max_tokens", "6"), ("stride", "1")])),
        Err(EncoderError::Metadata {
            key: "max_tokens",
            ..
        })
    ));
    assert!(matches!(
        load(&with_meta("max_tokens", "1024")),
        Err(EncoderError::Metadata {
            key: "max_tokens",
            ..
        })
    ));
    // A stride longer than a window would skip text between windows.
    assert!(matches!(
        load(&with_meta("stride", "126")),
        Err(EncoderError::Metadata { key: "stride", .. })
    ));
    assert!(matches!(
        load(&with_meta("max_windows", "none")),
        Err(EncoderError::Metadata {
            key: "max_windows",
            ..
        })
    ));
}

#[test]
fn garbage_bytes_are_refused() {
    assert!(matches!(
        load(b"not safetensors"),
        Err(EncoderError::Safetensors { which: "tuned", .. })
    ));
    let overlay = common::overlay();
    assert!(matches!(
        load(&overlay[..overlay.len() - 10]),
        Err(EncoderError::Safetensors { which: "tuned", .. })
    ));
    assert!(matches!(
        Encoder::from_bytes(&common::base()[..1000], overlay, common::tokenizer()),
        Err(EncoderError::Safetensors { which: "base", .. })
    ));
    assert!(matches!(
        Encoder::from_bytes(common::base(), overlay, b"{}"),
        Err(EncoderError::Tokenizer(_))
    ));
    // A truncated base model: a tensor the forward pass needs is missing.
    let empty: HashMap<String, Owned> = HashMap::new();
    assert!(matches!(
        Encoder::from_bytes(&serialize(&empty, None), overlay, common::tokenizer()),
        Err(EncoderError::UnexpectedTensor { .. } | EncoderError::MissingTensor { .. })
    ));
}
