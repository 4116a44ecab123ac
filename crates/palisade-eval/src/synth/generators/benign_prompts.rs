//! Benign user prompts the classifier must not flag: prompts under a system prompt, hard
//! negatives with trigger words, role play, long multi-part prompts, code questions,
//! answer-shaping requests, obfuscated benign text and defanged jailbreak scaffolding.

use super::super::compose::{benign_doc, defang, on_topic_benign};
use super::super::lexicon::attacks::OUTPUT_MANIPULATION;
use super::super::lexicon::benign::{
    BENIGN_CONSTRAINTS, BENIGN_DUTIES, BENIGN_FIRST, BENIGN_ROLES, CODE_QUESTIONS, HARD_NEGATIVES,
    LONG_OPENERS, LONG_QUESTIONS, ROLES, ROLE_OPENERS, ROLE_TASKS,
};
use super::super::obfuscation::obfuscate;
use super::super::{pick, with_at_most_chars, Example, Pools};
use crate::rng::Rng;

/// Benign prompts under a system prompt (so having one is not itself a signal), plus a few
/// that mention the system prompt's own topic harmlessly.
pub(super) fn under_system_prompt(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    for _ in 0..1200 {
        let sp = pick(rng, &p.system_prompts).to_string();
        let u = if rng.chance(0.85) {
            pick(rng, &p.benign).to_string()
        } else {
            on_topic_benign(&sp, rng)
        };
        let mut e = Example::benign_user(u, "synth/benign_with_sp");
        e.sp = Some(sp);
        out.push(e);
    }
}

/// A smaller set of obfuscated benign prompts (so an obfuscation alone is not an attack).
pub(super) fn obfuscated(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let short_benign = with_at_most_chars(&p.benign, 300);
    for _ in 0..400 {
        let src = pick(rng, &short_benign).to_string();
        let (t, trick) = obfuscate(&src, rng, true);
        // Hidden tag characters carrying even a benign instruction are smuggling; skip those.
        if trick == "unicode_tags" || trick == "zero_width" {
            continue;
        }
        out.push(Example::benign_user(t, "synth/obfuscated_benign"));
    }
}

/// Benign prompts with trigger words, alone or followed by an ordinary request.
pub(super) fn hard_negatives(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let short_benign = with_at_most_chars(&p.benign, 300);
    for t in HARD_NEGATIVES {
        for _ in 0..4 {
            let t = if rng.chance(0.5) {
                t.to_string()
            } else {
                format!("{} {}", t, pick(rng, &short_benign))
            };
            out.push(Example::benign_user(t, "synth/hard_negative"));
        }
    }
}

/// "Act as a …" prompts with a task and sometimes a request.
pub(super) fn role_play(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let short_benign = with_at_most_chars(&p.benign, 300);
    for _ in 0..700 {
        let t = format!(
            "{} {} {}",
            pick(rng, ROLE_OPENERS).replace("{r}", pick(rng, ROLES)),
            pick(rng, ROLE_TASKS),
            if rng.chance(0.5) {
                pick(rng, &short_benign).to_string()
            } else {
                String::new()
            }
        );
        out.push(Example::benign_user(t, "synth/role_play"));
    }
}

/// "Act as a …" with one of the benign roles (role drawn first, then the opener).
fn benign_role_opener(rng: &mut Rng) -> String {
    let role = pick(rng, BENIGN_ROLES);
    pick(rng, ROLE_OPENERS).replace("{r}", role)
}

/// Role play composed from role, duties, constraints and a first request (prompt libraries
/// are full of these).
pub(super) fn composed_role_play(rng: &mut Rng, out: &mut Vec<Example>) {
    for _ in 0..2000 {
        let opener = benign_role_opener(rng);
        let mut t = format!(
            "{} {} {}",
            opener,
            pick(rng, BENIGN_DUTIES),
            pick(rng, BENIGN_CONSTRAINTS)
        );
        if rng.chance(0.5) {
            t = format!("{} {}", t, pick(rng, BENIGN_DUTIES));
        }
        t = format!("{} {}", t, pick(rng, BENIGN_FIRST));
        out.push(Example::benign_user(
            t.trim().to_string(),
            "synth/role_play_composed",
        ));
    }
}

/// Long benign prompts: several requests, or a document plus a question. Real benign
/// prompts are often long; without these, length alone would look like an attack.
pub(super) fn long(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    for i in 0..2000 {
        let mut t = pick(rng, LONG_OPENERS).to_string();
        let parts = 2 + rng.below(5);
        for k in 0..parts {
            let piece = match (i + k) % 4 {
                0 => benign_doc(rng),
                1 if !p.contexts.is_empty() && rng.chance(0.5) => {
                    pick(rng, &p.contexts).to_string()
                }
                2 => format!("{} {}", benign_role_opener(rng), pick(rng, BENIGN_DUTIES)),
                _ => pick(rng, &p.benign).to_string(),
            };
            if rng.chance(0.5) {
                t.push_str(&format!("\n{}. {}", k + 1, piece));
            } else {
                t.push('\n');
                t.push_str(&piece);
            }
        }
        t.push('\n');
        t.push_str(pick(rng, LONG_QUESTIONS));
        out.push(Example::benign_user(
            t.trim().to_string(),
            "synth/long_benign",
        ));
    }
}

/// The answer-shaping phrases planted in documents, as ordinary requests from a user.
pub(super) fn output_requests(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let short_benign = with_at_most_chars(&p.benign, 300);
    for _ in 0..400 {
        let b = pick(rng, &short_benign);
        let t = format!("{} {}", b, pick(rng, OUTPUT_MANIPULATION));
        out.push(Example::benign_user(t, "synth/user_output_request"));
    }
}

/// Benign prompts with code or logs (punctuation-heavy but natural).
pub(super) fn code_questions(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let code: Vec<&str> = p
        .contexts
        .iter()
        .copied()
        .filter(|c| c.contains('(') || c.contains('{'))
        .collect();
    if code.is_empty() {
        return;
    }
    for _ in 0..400 {
        let q = pick(rng, CODE_QUESTIONS);
        out.push(Example::benign_user(
            format!("{q}\n{}", pick(rng, &code)),
            "synth/code_question",
        ));
    }
}

/// Jailbreaks with their rule-breaking sentences removed: the remaining scaffolding is
/// ordinary (see [`defang`]).
pub(super) fn defanged_jailbreaks(p: &Pools<'_>, out: &mut Vec<Example>) {
    for j in &p.jailbreaks {
        if let Some(t) = defang(j) {
            out.push(Example::benign_user(t, "synth/defanged_jailbreak"));
        }
    }
}
