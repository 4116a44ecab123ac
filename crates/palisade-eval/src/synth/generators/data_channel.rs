//! Data-channel examples (`retrieved`, `tool_output`): instructions planted in documents
//! and tool results (attacks: any instruction addressed to the assistant counts, including
//! benign-looking tasks, TaskTracker's definition), and the clean documents beside them.

use palisade_detect::Channel;

use super::super::compose::{benign_doc, encyclopedia, fill_slots, plant};
use super::super::lexicon::attacks::{
    ACT_OBJECTS, ACT_TARGETS, ACT_VERBS, GOALS, OUTPUT_MANIPULATION, OVERRIDE,
};
use super::super::lexicon::benign::{TOOL_BENIGN, TOOL_WRAPPERS};
use super::super::{pick, with_at_most_chars, Example, Kind, Pools};
use super::data_channel_of;
use crate::rng::Rng;

/// `payload` planted in `carrier`: an injection on a data channel.
fn planted_attack(
    carrier: &str,
    payload: &str,
    channel: Channel,
    source: &str,
    rng: &mut Rng,
) -> Example {
    Example::attack(plant(carrier, payload, rng), channel, source, false)
}

/// Train injections, indirect payloads, benign tasks, overrides and answer-shaping
/// instructions planted in train or synthetic documents.
pub(super) fn planted_instructions(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let short_inj = with_at_most_chars(&p.injections, 600);
    let short_jb = with_at_most_chars(&p.jailbreaks, 700);
    let short_ind = with_at_most_chars(&p.indirect, 400);
    let short_benign = with_at_most_chars(&p.benign, 300);
    for i in 0..2400 {
        let carrier = if rng.chance(0.5) && !p.contexts.is_empty() {
            pick(rng, &p.contexts).to_string()
        } else {
            benign_doc(rng)
        };
        let payload: String = match rng.below(6) {
            5 => pick(rng, OUTPUT_MANIPULATION).to_string(),
            0 => pick(rng, &short_inj).to_string(),
            1 => pick(rng, &short_ind).to_string(),
            2 => pick(rng, &short_benign).to_string(),
            3 => pick(rng, OVERRIDE).replace("{g}", pick(rng, GOALS)),
            _ => pick(rng, &short_jb).to_string(),
        };
        let channel = data_channel_of(i);
        out.push(planted_attack(
            &carrier,
            &payload,
            channel,
            "synth/planted",
            rng,
        ));
    }
}

/// Clean synthetic documents, some joined to a train table/code carrier.
pub(super) fn clean_documents(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    for i in 0..1500 {
        let mut d = benign_doc(rng);
        if rng.chance(0.2) && !p.contexts.is_empty() {
            d = format!("{}\n{}", pick(rng, &p.contexts), d);
        }
        out.push(Example::new(
            d,
            data_channel_of(i),
            Kind::BenignContext,
            "synth/doc",
        ));
    }
}

/// Agent tool outputs (JSON and search results), alternately clean and with a planted
/// agent action ("transfer … to …").
pub(super) fn tool_outputs(rng: &mut Rng, out: &mut Vec<Example>) {
    for i in 0..3000 {
        let attack = i % 2 == 0;
        let content = if attack {
            let mut action = format!(
                "{} {}{}",
                pick(rng, ACT_VERBS),
                pick(rng, ACT_OBJECTS),
                pick(rng, ACT_TARGETS)
            );
            if rng.chance(0.3) {
                action = format!("{} {}", fill_slots(pick(rng, TOOL_BENIGN), rng), action);
            }
            action
        } else {
            fill_slots(pick(rng, TOOL_BENIGN), rng)
        };
        let content = fill_slots(&content, rng).replace('"', "'");
        let text = fill_slots(&pick(rng, TOOL_WRAPPERS).replace("{c}", &content), rng);
        let channel = if rng.chance(0.5) {
            Channel::ToolOutput
        } else {
            Channel::Retrieved
        };
        out.push(if attack {
            Example::attack(text, channel, "synth/tool_action", false)
        } else {
            Example::new(text, channel, Kind::BenignContext, "synth/tool_clean")
        });
    }
}

/// TaskTracker-style planted tasks (a benign task, sometimes after an indirect trigger, in
/// an encyclopedic or ordinary document), each followed by a clean encyclopedic paragraph.
pub(super) fn planted_tasks_and_encyclopedia(p: &Pools<'_>, rng: &mut Rng, out: &mut Vec<Example>) {
    let tasks = with_at_most_chars(&p.benign, 200);
    let triggers = with_at_most_chars(&p.indirect, 200);
    for i in 0..1200 {
        let carrier = if rng.chance(0.6) {
            encyclopedia(rng)
        } else {
            benign_doc(rng)
        };
        let task = pick(rng, &tasks);
        let payload = if rng.chance(0.6) && !triggers.is_empty() {
            format!("{} {}", pick(rng, &triggers), task)
        } else {
            task.to_string()
        };
        let channel = data_channel_of(i);
        out.push(planted_attack(
            &carrier,
            &payload,
            channel,
            "synth/planted_task",
            rng,
        ));
        out.push(Example::new(
            encyclopedia(rng),
            channel,
            Kind::BenignContext,
            "synth/encyclopedia",
        ));
    }
}
