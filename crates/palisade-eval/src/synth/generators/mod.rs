//! The per-family generators, and the three entry points that run them in a fixed order.
//!
//! Each family is one function appending its examples to `out`. The order of the calls in
//! [`synthesize`], [`synthesize_more`] and [`synthesize_counterfactual`] (and the order of
//! those three in training) is the order of draws from the shared [`Rng`], so it must not
//! change: see the module invariant in [`crate::synth`].

mod benign_prompts;
mod data_channel;
mod tool_documents;
mod user_attacks;

use palisade_detect::Channel;

use super::{Example, Pools};
use crate::rng::Rng;

/// Generates the synthetic examples: templated attacks, planted instructions, clean
/// documents, benign prompts under system prompts, obfuscations, hard negatives.
pub fn synthesize(p: &Pools<'_>, rng: &mut Rng) -> Vec<Example> {
    let mut out = Vec::new();
    user_attacks::overrides(p, rng, &mut out);
    user_attacks::wrapped_harmful(p, rng, &mut out);
    data_channel::planted_instructions(p, rng, &mut out);
    data_channel::clean_documents(p, rng, &mut out);
    benign_prompts::under_system_prompt(p, rng, &mut out);
    user_attacks::obfuscated(p, rng, &mut out);
    benign_prompts::obfuscated(p, rng, &mut out);
    benign_prompts::hard_negatives(p, rng, &mut out);
    benign_prompts::role_play(p, rng, &mut out);
    out
}

/// The compositional generators (more variety, less memorization): tool outputs, composed
/// persuasion, suffix soup, appended hijacks, composed and long benign prompts.
pub fn synthesize_more(p: &Pools<'_>, rng: &mut Rng) -> Vec<Example> {
    let mut out = Vec::new();
    data_channel::tool_outputs(rng, &mut out);
    user_attacks::composed_persuasion(p, rng, &mut out);
    user_attacks::suffix_soup(p, rng, &mut out);
    user_attacks::appended_hijacks(p, rng, &mut out);
    benign_prompts::composed_role_play(rng, &mut out);
    benign_prompts::long(p, rng, &mut out);
    benign_prompts::output_requests(p, rng, &mut out);
    benign_prompts::code_questions(p, rng, &mut out);
    out
}

/// Counterfactual role play and TaskTracker-style planted tasks.
pub fn synthesize_counterfactual(p: &Pools<'_>, rng: &mut Rng) -> Vec<Example> {
    let mut out = Vec::new();
    user_attacks::persuasion_narratives(p, rng, &mut out);
    user_attacks::redirect_hijacks(p, rng, &mut out);
    benign_prompts::defanged_jailbreaks(p, &mut out);
    data_channel::planted_tasks_and_encyclopedia(p, rng, &mut out);
    out
}

/// Clean tool outputs of many kinds with their injected twins, and instructions planted in
/// clean documentation chunks (`docs`: text and cross-validation group). Drawn after the
/// three generators above, from its own RNG, so their data is unchanged.
pub fn synthesize_documents(docs: &[(&str, &str)], rng: &mut Rng) -> Vec<Example> {
    let mut out = Vec::new();
    tool_documents::tool_documents(2000, rng, &mut out);
    tool_documents::planted_in_documents(docs, 1500, rng, &mut out);
    out
}

/// The data channel of the `i`-th generated document: every third is a tool output.
fn data_channel_of(i: usize) -> Channel {
    match i % 3 {
        0 => Channel::ToolOutput,
        _ => Channel::Retrieved,
    }
}
