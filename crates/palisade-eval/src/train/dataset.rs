//! Training data: the train files as examples, the synthetic examples drawn from them, and
//! every example prepared once (normalized, hashed n-grams, dense signals, CV fold).
//!
//! Reads only `train/` (and, when asked, the committed clean-document corpus); never `eval/`.

use std::path::Path;

use palisade_detect::charlm::CharLm;
use palisade_detect::features::{hashed_segmented, signals, Signals};
use palisade_detect::tokenlm::{tokens, TokenLm};
use palisade_detect::{normalize, Channel, ScanInput};

use super::{ATTACK_BITS, FOLDS, MAX_TRAIN_BYTES};
use crate::clean_docs::read_clean_docs;
use crate::data::read_jsonl;
use crate::rng::Rng;
use crate::synth::{
    synthesize, synthesize_counterfactual, synthesize_documents, synthesize_more, Example, Kind,
    Pools,
};
use crate::EvalError;

/// An example with its features extracted once (they do not change between folds).
pub(super) struct Prepared {
    pub ex: Example,
    pub idx: Vec<u32>,
    /// Per-segment features (empty when the text is a single segment).
    pub seg_idx: Vec<Vec<u32>>,
    pub signals: Signals,
    /// BPE token ids of the training prefix (what the token LM learns from and scores).
    pub tokens: Vec<u32>,
    pub fold: usize,
}

/// The cross-validation group of a train row: file, upstream source and subtype family.
fn group_of(file: &str, r: &crate::data::Row) -> String {
    let st = r.subtype.as_deref().unwrap_or("");
    let family = st.split([':', '(']).next().unwrap_or("");
    format!("{file}|{}|{family}", r.source.as_deref().unwrap_or(""))
}

/// Loads the five train files into examples (channel, kind, jailbreak flag, CV group).
pub(super) fn load(train_dir: &Path) -> Result<Vec<Example>, EvalError> {
    let mut out = Vec::new();
    let file = |name: &str| train_dir.join(format!("{name}.jsonl"));
    for r in read_jsonl(&file("injection"))? {
        let mut e = Example::new(
            r.text.clone(),
            Channel::User,
            Kind::Attack,
            "train/injection",
        );
        e.sp = r.system_prompt.clone().filter(|s| !s.trim().is_empty());
        e.jb = Some(false);
        e.group = group_of("injection", &r);
        out.push(e);
    }
    for r in read_jsonl(&file("jailbreak"))? {
        let mut e = Example::new(
            r.text.clone(),
            Channel::User,
            Kind::Attack,
            "train/jailbreak",
        );
        e.jb = Some(true);
        e.group = group_of("jailbreak", &r);
        out.push(e);
    }
    for r in read_jsonl(&file("indirect"))? {
        let mut e = if r.label() == "indirect_injection" {
            let mut e = Example::new(
                r.text.clone(),
                Channel::Retrieved,
                Kind::Attack,
                "train/indirect",
            );
            e.jb = Some(false);
            e
        } else {
            Example::new(
                r.text.clone(),
                Channel::Retrieved,
                Kind::BenignContext,
                "train/benign_context",
            )
        };
        e.group = group_of("indirect", &r);
        out.push(e);
    }
    for r in read_jsonl(&file("benign"))? {
        let mut e = Example::new(
            r.text.clone(),
            Channel::User,
            Kind::BenignUser,
            "train/benign",
        );
        e.group = group_of("benign", &r);
        out.push(e);
    }
    for r in read_jsonl(&file("harmful_request"))? {
        let mut e = Example::new(
            r.text.clone(),
            Channel::User,
            Kind::Harmful,
            "train/harmful_request",
        );
        if r.lang.as_deref() == Some("en") {
            e.source = "train/harmful_request_en".into();
        }
        e.group = group_of("harmful", &r);
        out.push(e);
    }
    Ok(out)
}

/// Normalizes one example and extracts its hashed n-grams and dense signals.
fn prepare(ex: Example, bits: u32) -> Prepared {
    let text = training_prefix(&ex.text);
    let norm = normalize(text);
    let combined = norm.combined();
    let mut idx = Vec::new();
    let mut seg_idx = Vec::new();
    hashed_segmented(&combined, ex.channel, bits, &mut idx, &mut seg_idx);
    let input = ScanInput {
        text,
        channel: ex.channel,
        system_prompt: ex.sp.as_deref(),
    };
    // Both LMs are fitted per fold: their statistics are filled in out-of-fold.
    let signals = signals(
        &input,
        &norm,
        &combined,
        &CharLm::empty(),
        &TokenLm::empty(),
    );
    let tokens = tokens(text);
    // Folds by group (source family): out-of-fold scores then measure transfer to a source
    // the heads never saw, which is what eval (and production) asks of them.
    let group = palisade_detect::hash_bytes(98, ex.group.as_bytes());
    let fold = (group % FOLDS as u64) as usize;
    Prepared {
        ex,
        idx,
        seg_idx,
        signals,
        tokens,
        fold,
    }
}

/// The fold of a text when folds are drawn by text hash rather than by source group.
pub(super) fn text_fold(text: &str) -> usize {
    (palisade_detect::hash_bytes(97, text.as_bytes()) % FOLDS as u64) as usize
}

/// The part of a text training sees: its first [`MAX_TRAIN_BYTES`] (cut at a character
/// boundary); inference sees everything.
pub(super) fn training_prefix(text: &str) -> &str {
    let mut cut = text.len().min(MAX_TRAIN_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// The train texts by role, for the synthetic generators.
fn pools(examples: &[Example]) -> Pools<'_> {
    let texts_of = |source: &str| -> Vec<&str> {
        examples
            .iter()
            .filter(|e| e.source == source)
            .map(|e| e.text.as_str())
            .collect()
    };
    Pools {
        injections: texts_of("train/injection"),
        jailbreaks: texts_of("train/jailbreak"),
        indirect: texts_of("train/indirect"),
        benign: texts_of("train/benign"),
        contexts: texts_of("train/benign_context"),
        harmful: texts_of("train/harmful_request_en"),
        system_prompts: {
            let mut v: Vec<&str> = examples.iter().filter_map(|e| e.sp.as_deref()).collect();
            v.sort_unstable();
            v.dedup();
            v
        },
    }
}

/// The synthetic examples for these train examples, drawn in the fixed order the shipped
/// model was trained with.
pub(super) fn synthetic_examples(
    train: &[Example],
    rng: &mut Rng,
) -> Result<Vec<Example>, EvalError> {
    let pools = pools(train);
    let missing = pools.missing();
    if !missing.is_empty() {
        return Err(EvalError::MissingPools(missing.join(", ")));
    }
    let mut v = synthesize(&pools, rng);
    v.extend(synthesize_more(&pools, rng));
    v.extend(synthesize_counterfactual(&pools, rng));
    Ok(v)
}

/// Source tag of the committed Debian documentation chunks used for training.
pub(super) const CLEAN_DOCS_SOURCE: &str = "debian/clean_docs";

/// The train split of the committed clean-document corpus as clean documents (grouped by
/// package), synthetic tool outputs with injected twins, and instructions planted in those
/// chunks. Its own RNG, so the other synthetic data does not move.
pub(super) fn clean_document_examples(corpus: &Path, seed: u64) -> Result<Vec<Example>, EvalError> {
    let docs = read_clean_docs(corpus)?;
    let train: Vec<(&str, String)> = docs
        .iter()
        .filter(|d| !d.is_heldout())
        .map(|d| (d.text.as_str(), d.source.clone()))
        .collect();
    let mut out: Vec<Example> = train
        .iter()
        .enumerate()
        .map(|(i, (text, group))| {
            let channel = if i % 3 == 0 {
                Channel::ToolOutput
            } else {
                Channel::Retrieved
            };
            let mut e = Example::new(*text, channel, Kind::BenignContext, CLEAN_DOCS_SOURCE);
            e.group = group.clone();
            e
        })
        .collect();
    let pairs: Vec<(&str, &str)> = train.iter().map(|(t, g)| (*t, g.as_str())).collect();
    out.extend(synthesize_documents(&pairs, &mut Rng::new(seed ^ 0xD0C5)));
    Ok(out)
}

/// Prepares every example, in parallel over two halves (order kept).
pub(super) fn prepare_all(mut examples: Vec<Example>) -> Vec<Prepared> {
    let half = examples.len() / 2;
    let second = examples.split_off(half);
    let (mut prepared, rest) = std::thread::scope(|s| {
        let h = s.spawn(move || {
            second
                .into_iter()
                .map(|e| prepare(e, ATTACK_BITS))
                .collect::<Vec<_>>()
        });
        let a: Vec<Prepared> = examples
            .into_iter()
            .map(|e| prepare(e, ATTACK_BITS))
            .collect();
        (a, h.join().expect("feature thread"))
    });
    prepared.extend(rest);
    prepared
}
