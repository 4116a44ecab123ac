//! Building blocks the generators assemble examples from: clean documents, encyclopedic
//! paragraphs, an instruction planted inside a carrier text, adversarial token soup, and a
//! jailbreak with its rule breaking removed.
//!
//! Pure functions of their inputs and the caller's seeded [`Rng`]; the order of the draws
//! is part of the generated data.

use super::lexicon::attacks::{PLANT_WRAPPERS, RULE_BREAKING, SOUP_PUNCT};
use super::lexicon::benign::{
    DATES, DOC_TEMPLATES, ENCYCLOPEDIA_BACK_REFERENCES, ENCYCLOPEDIA_FACTS, ENCYCLOPEDIA_SUBJECTS,
    MORE_DOCS, NAMES, ON_TOPIC_QUESTIONS,
};
use super::pick;
use crate::rng::Rng;

/// Fills the `{n}`, `{m}` (names) and `{d}` (date) slots of a template.
pub(crate) fn fill_slots(template: &str, rng: &mut Rng) -> String {
    template
        .replace("{n}", pick(rng, NAMES))
        .replace("{m}", pick(rng, NAMES))
        .replace("{d}", pick(rng, DATES))
}

/// Synthesizes a benign document.
pub fn benign_doc(rng: &mut Rng) -> String {
    let template = |rng: &mut Rng| {
        if rng.chance(0.5) {
            pick(rng, DOC_TEMPLATES)
        } else {
            pick(rng, MORE_DOCS)
        }
    };
    let mut d = fill_slots(template(rng), rng);
    let extra = rng.below(4);
    for _ in 0..extra {
        d.push_str(if rng.chance(0.5) { "\n\n" } else { " " });
        d.push_str(&fill_slots(template(rng), rng));
    }
    d
}

/// Encyclopedic paragraphs (TaskTracker-style carriers), composed from slots.
pub(crate) fn encyclopedia(rng: &mut Rng) -> String {
    let subject = pick(rng, ENCYCLOPEDIA_SUBJECTS);
    let n = 3 + rng.below(4);
    let mut s = String::new();
    for i in 0..n {
        let f = pick(rng, ENCYCLOPEDIA_FACTS)
            .replace("{y}", &(1500 + rng.below(500)).to_string())
            .replace("{p}", &(1000 + rng.below(90000)).to_string());
        let who = if i == 0 {
            subject.to_string()
        } else {
            pick(rng, ENCYCLOPEDIA_BACK_REFERENCES).to_string()
        };
        s.push_str(&format!("{who} {f} "));
    }
    s.trim().to_string()
}

/// A harmless question reusing a word of the system prompt.
pub(crate) fn on_topic_benign(sp: &str, rng: &mut Rng) -> String {
    let words: Vec<&str> = sp
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 5)
        .collect();
    let w = if words.is_empty() {
        "this"
    } else {
        pick(rng, &words)
    };
    pick(rng, ON_TOPIC_QUESTIONS).replace("{w}", w)
}

/// Plants `payload` in `carrier` at a random position (between lines or sentences).
pub fn plant(carrier: &str, payload: &str, rng: &mut Rng) -> String {
    let wrapped = pick(rng, PLANT_WRAPPERS).replace("{p}", payload.trim());
    let cuts: Vec<usize> = carrier
        .match_indices(['\n', '.'])
        .map(|(i, _)| i + 1)
        .filter(|&i| carrier.is_char_boundary(i))
        .collect();
    let at = match rng.below(3) {
        0 => 0,
        1 => carrier.len(),
        _ if !cuts.is_empty() => cuts[rng.below(cuts.len())],
        _ => carrier.len(),
    };
    format!("{} {} {}", &carrier[..at], wrapped, &carrier[at..])
}

/// Adversarial-suffix-like token soup made of `words` and markup punctuation.
pub fn soup(words: &[&str], rng: &mut Rng) -> String {
    let n = 8 + rng.below(20);
    let mut out = String::new();
    for i in 0..n {
        if i > 0 && rng.chance(0.7) {
            out.push(' ');
        }
        match rng.below(6) {
            0 | 1 => out.push_str(pick(rng, SOUP_PUNCT)),
            2 => {
                // camelCase join of two words
                let a = pick(rng, words);
                let b = pick(rng, words);
                out.push_str(&a.to_lowercase());
                let mut c = b.chars();
                if let Some(f) = c.next() {
                    out.extend(f.to_uppercase());
                    out.push_str(c.as_str());
                }
            }
            3 => out.push_str(&pick(rng, words).to_uppercase()),
            4 => {
                let w = pick(rng, words);
                let cut = w
                    .char_indices()
                    .nth(1 + rng.below(3))
                    .map_or(w.len(), |(i, _)| i);
                out.push_str(&w[..cut]);
            }
            _ => out.push_str(pick(rng, words)),
        }
    }
    out
}

/// Counterfactual benign prompts: a jailbreak with every sentence that carries rule-breaking
/// vocabulary removed. What remains is role-play scaffolding ("you will answer as ...", "use
/// this format ..."), which on its own is ordinary; this keeps the model from treating the
/// scaffolding as the attack.
pub fn defang(jailbreak: &str) -> Option<String> {
    let mut kept = Vec::new();
    let mut total = 0usize;
    for sent in jailbreak.split_inclusive(['.', '!', '?', '\n']) {
        total += 1;
        let low = sent.to_lowercase();
        if RULE_BREAKING.iter().any(|w| low.contains(w)) {
            continue;
        }
        kept.push(sent.trim());
    }
    let out = kept.join(" ");
    let ok = out.chars().filter(|c| c.is_alphabetic()).count() >= 80 && kept.len() * 3 >= total;
    ok.then_some(out)
}
