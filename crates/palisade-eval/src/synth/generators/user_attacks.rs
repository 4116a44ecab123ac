//! Attacks typed by the user: overrides, jailbreak and persuasion wrappers around harmful
//! asks, obfuscated injections, adversarial suffix soup, hijacks appended to a request.

use palisade_detect::Channel;

use super::super::compose::soup;
use super::super::lexicon::attacks::{
    DEMANDS, FRAMINGS, GOALS, HIJACK_SEPARATORS, JUSTIFICATIONS, OVERRIDE, PERSONAS, REDIRECTS,
    SCENARIOS, STAKES, WRAPPERS,
};
use super::super::obfuscation::obfuscate;
use super::super::{lower_first, pick, with_at_most_chars, Example, Pools};
use crate::rng::Rng;

/// Templated multilingual overrides with an extraction goal or an arbitrary new task.
pub(super) fn overrides(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let short_benign = with_at_most_chars(&p.benign, 300);
    for _ in 0..900 {
        let g = if rng.chance(0.7) {
            pick(rng, GOALS).to_string()
        } else {
            lower_first(pick(rng, &short_benign))
        };
        let t = pick(rng, OVERRIDE).replace("{g}", &g);
        out.push(Example::attack(t, Channel::User, "synth/override", false));
    }
}

/// Harmful asks in persuasion / role-play wrappers (PAIR-like).
pub(super) fn wrapped_harmful(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    for _ in 0..900 {
        let h = pick(rng, &p.harmful);
        let t = pick(rng, WRAPPERS).replace("{g}", h);
        out.push(Example::attack(
            t,
            Channel::User,
            "synth/wrapped_harmful",
            true,
        ));
    }
}

/// Train injections and jailbreaks, obfuscated.
pub(super) fn obfuscated(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let short_inj = with_at_most_chars(&p.injections, 600);
    let short_jb = with_at_most_chars(&p.jailbreaks, 700);
    for _ in 0..1500 {
        let (src, jb) = match rng.below(3) {
            0 => (pick(rng, &short_jb).to_string(), true),
            _ => (pick(rng, &short_inj).to_string(), false),
        };
        let (t, _) = obfuscate(&src, rng, false);
        out.push(Example::attack(t, Channel::User, "synth/obfuscated", jb));
    }
}

/// PAIR-like persuasion composed of a persona, a justification and the harmful ask in
/// random order, then a demand.
pub(super) fn composed_persuasion(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    for _ in 0..1200 {
        let h = pick(rng, &p.harmful);
        let mut parts = vec![
            pick(rng, PERSONAS).to_string(),
            pick(rng, JUSTIFICATIONS).to_string(),
        ];
        rng.shuffle(&mut parts);
        let pos = rng.below(3);
        parts.insert(pos.min(parts.len()), h.to_string());
        parts.push(pick(rng, DEMANDS).to_string());
        out.push(Example::attack(
            parts.join(" ").trim().to_string(),
            Channel::User,
            "synth/persuasion",
            true,
        ));
    }
}

/// Adversarial-suffix soup after a harmful (mostly) or arbitrary request.
pub(super) fn suffix_soup(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let short_benign = with_at_most_chars(&p.benign, 300);
    let vocab: Vec<&str> = p
        .benign
        .iter()
        .flat_map(|t| t.split_whitespace())
        .filter(|w| w.len() >= 3 && w.len() <= 12 && w.chars().all(char::is_alphanumeric))
        .take(20_000)
        .collect();
    for _ in 0..1000 {
        let base = if rng.chance(0.8) {
            pick(rng, &p.harmful)
        } else {
            pick(rng, &short_benign)
        };
        out.push(Example::attack(
            format!("{} {}", base, soup(&vocab, rng)),
            Channel::User,
            "synth/suffix_soup",
            true,
        ));
    }
}

/// Hijacks appended to an ordinary request.
pub(super) fn appended_hijacks(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let short_benign = with_at_most_chars(&p.benign, 300);
    for _ in 0..800 {
        let b = pick(rng, &short_benign);
        let g = pick(rng, GOALS);
        let t = pick(rng, OVERRIDE).replace("{g}", g);
        let sep = pick(rng, HIJACK_SEPARATORS);
        out.push(Example::attack(
            format!("{b}{sep}{t}"),
            Channel::User,
            "synth/appended_hijack",
            false,
        ));
    }
}

/// Longer persuasion narratives around harmful asks: scenario, stakes, framing, demand.
pub(super) fn persuasion_narratives(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    for _ in 0..1200 {
        let h = lower_first(pick(rng, &p.harmful));
        let mut parts = vec![pick(rng, SCENARIOS).to_string()];
        if rng.chance(0.7) {
            parts.push(pick(rng, STAKES).to_string());
        }
        parts.push(pick(rng, FRAMINGS).replace("{h}", &h));
        if rng.chance(0.5) {
            parts.push(pick(rng, DEMANDS).to_string());
        }
        out.push(Example::attack(
            parts.join(" ").trim().to_string(),
            Channel::User,
            "synth/persuasion_long",
            true,
        ));
    }
}

/// Hijacks that redirect to an arbitrary task, after some ordinary content.
pub(super) fn redirect_hijacks(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let short_benign = with_at_most_chars(&p.benign, 200);
    for _ in 0..800 {
        let g = lower_first(pick(rng, &short_benign));
        let t = pick(rng, REDIRECTS).replace("{g}", &g);
        let t = if rng.chance(0.5) {
            format!("{} {}", pick(rng, &short_benign), t)
        } else {
            t
        };
        out.push(Example::attack(
            t,
            Channel::User,
            "synth/redirect_hijack",
            false,
        ));
    }
}
