//! Feature extraction shared by inference and training (so both see exactly the same thing).
//!
//! Two kinds of features:
//! - **hashed n-grams** of the normalized text (word 1–2-grams, character 3–5-grams) for the
//!   linear heads; in data channels (`retrieved`, `tool_output`) word n-grams are emitted a
//!   second time under a channel salt, so the model learns that an imperative addressed to the
//!   assistant means something else inside a document;
//! - **signals**: a small dense vector (head scores, character- and token-LM surprise, rule hits,
//!   normalization findings, system-prompt overlap, channel) combined by the final calibrated
//!   logistic layer.

use crate::charlm::{CharLm, LmStats};
use crate::concepts::{
    concepts, imperative_count, imperative_ratio, Concepts, AGENT_ACTION, AI_ADDRESS, PAIRS,
    YOUR_OUTPUT,
};
use crate::hash::{hash_bytes, mix64};
use crate::normalize::{canonical, Normalized};
use crate::rules::{match_rules, ATTACK_RULES};
use crate::suffix::{suffix_stats, SuffixStats};
use crate::tokenlm::{TokStats, TokenLm};
use crate::types::{Channel, ScanInput};

/// Segmentation is shared with `concepts` and lives below both; re-exported here because
/// this was its public home.
pub use crate::segment::{segments, SEGMENT_BYTES};

/// Bytes of the system prompt the overlap features read (its first 8 KiB:
/// operator prompts are rarely longer, and what a text could quote back
/// from it is there).
pub const SYSTEM_PROMPT_REACH: usize = 8 * 1024;

/// The part of a system prompt a scan reads (the first [`SYSTEM_PROMPT_REACH`] bytes,
/// cut at a character boundary): all a scan's result depends on, so a cache may key on it.
pub fn system_prompt_read(sp: &str) -> &str {
    let mut end = sp.len().min(SYSTEM_PROMPT_REACH);
    while !sp.is_char_boundary(end) {
        end -= 1;
    }
    &sp[..end]
}

const NS_WORD: u64 = 1;
const NS_BIGRAM: u64 = 2;
const NS_CHAR: u64 = 3;
const NS_DATA_WORD: u64 = 4;
const NS_DATA_BIGRAM: u64 = 5;

/// Appends hashed feature indexes (with repetition = term frequency) of `text` to `out`.
/// Indexes are in `0..(1 << bits)`.
pub fn hashed(text: &str, channel: Channel, bits: u32, out: &mut Vec<u32>) {
    crate::work::add(crate::work::Unit::FeatureBytes, text.len());
    let shift = 64 - bits;
    let data = channel.is_data();
    let idx = |h: u64| (h >> shift) as u32;
    // Words: alphanumeric runs (apostrophes kept inside), at most 32 bytes each.
    let mut prev: Option<&str> = None;
    for w in text
        .split(|c: char| !(crate::ctype::is_alphanumeric(c) || c == '\''))
        .filter(|w| !w.is_empty())
    {
        let w = if w.len() > 32 {
            &w[..floor_boundary(w, 32)]
        } else {
            w
        };
        let h = hash_bytes(NS_WORD, w.as_bytes());
        out.push(idx(h));
        if data {
            out.push(idx(hash_bytes(NS_DATA_WORD, w.as_bytes())));
        }
        if let Some(p) = prev {
            let hb = hash_bytes(NS_BIGRAM ^ (hash_bytes(0, p.as_bytes()) << 8), w.as_bytes());
            out.push(idx(hb));
            if data {
                out.push(idx(hash_bytes(
                    NS_DATA_BIGRAM ^ (hash_bytes(0, p.as_bytes()) << 8),
                    w.as_bytes(),
                )));
            }
        }
        prev = Some(w);
    }
    // Character 3..=5-grams over the whole normalized string (punctuation included: template
    // tokens and markup are informative).
    // For each position, extend backwards over the last five characters with a cheap FNV
    // step and emit the 3-, 4- and 5-gram hashes (one mix each): O(1) per character.
    let mut window = [0u32; 5];
    let mut n = 0usize;
    for c in text.chars() {
        window.rotate_left(1);
        window[4] = c as u32;
        n += 1;
        let mut h: u64 = NS_CHAR.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for k in 1..=5usize.min(n) {
            h = (h ^ u64::from(window[5 - k])).wrapping_mul(0x100_0000_01b3);
            if k >= 3 {
                out.push(idx(mix64(h ^ ((k as u64) << 56))));
            }
        }
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Hashed features of the whole text, computed segment by segment: `whole` receives the
/// concatenation and `per_segment` (when there is more than one segment) each segment's own
/// list. One pass serves both the text-level and the segment-level scores.
pub fn hashed_segmented(
    text: &str,
    channel: Channel,
    bits: u32,
    whole: &mut Vec<u32>,
    per_segment: &mut Vec<Vec<u32>>,
) {
    let segs = segments(text);
    if segs.len() <= 1 {
        hashed(text, channel, bits, whole);
        return;
    }
    for r in segs {
        let mut v = Vec::new();
        hashed(&text[r], channel, bits, &mut v);
        whole.extend_from_slice(&v);
        per_segment.push(v);
    }
}

/// Dense signals that do not depend on the linear heads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Character-LM surprise of the raw text.
    pub lm: LmStats,
    /// Token-LM surprisal statistics, filled by the trainer from out-of-fold models (the
    /// detector leaves them zero: no stage reads them, and tokenizing twice costs latency).
    pub tok: TokStats,
    /// Windowed token surprisal behind the `adversarial_suffix` rule.
    pub suffix: SuffixStats,
    /// Indexes into [`ATTACK_RULES`] that matched.
    pub rules: Vec<usize>,
    /// Length in characters of the input.
    pub chars: usize,
    /// Channel of the input.
    pub channel: Channel,
    /// A system prompt was supplied.
    pub sp_present: bool,
    /// Fraction of the input's content words whose stem appears in the system prompt.
    pub sp_overlap_frac: f32,
    /// Number of such words.
    pub sp_overlap: usize,
    /// Invisible-character tricks (zero-width, bidi, tags, variation selectors).
    pub invisible: bool,
    /// Homoglyphs in Latin words.
    pub homoglyph: bool,
    /// Spaced-out letters.
    pub spaced: bool,
    /// Leetspeak spelling trigger words.
    pub leet: bool,
    /// A base64/hex/url/rot13 payload was decoded.
    pub encoded: bool,
    /// HTML comments or hidden markup.
    pub hidden_markup: bool,
    /// Density of words addressing the assistant (you/your/assistant/please ...).
    pub address_density: f32,
    /// Fraction of letters that are upper case in the raw text.
    pub upper_frac: f32,
    /// Fraction of letters that are not ASCII.
    pub non_ascii_frac: f32,
    /// Concept lexicon hits.
    pub concepts: Concepts,
    /// Fraction of sentences opening with an imperative verb.
    pub imperative: f32,
    /// Number of sentences opening with an imperative verb.
    pub imperative_count: usize,
    /// Highest fraction of "soup" tokens in any window of [`SOUP_WINDOW`] tokens.
    pub soup: f32,
}

/// Tokens per window for [`soup_score`].
pub const SOUP_WINDOW: usize = 12;

/// Is a whitespace token typical of adversarial-suffix soup? camelCase joins inside a token
/// ("similarlyNow"), letters glued to brackets or markup characters ("**ONE", "oppositeley.]("),
/// or runs of such characters ("](", "!--"). URLs and paths are exempt.
fn soup_token(t: &str) -> bool {
    if t.contains("://") || t.starts_with('/') || t.starts_with("www.") {
        return false;
    }
    // Markdown (`*`, `#`, backticks), money, percent and handles are ordinary; brackets and
    // operators glued to words are not.
    let odd = |c: char| {
        matches!(
            c,
            '[' | ']' | '{' | '}' | '(' | ')' | '<' | '>' | '\\' | '|' | '=' | '^' | '~'
        )
    };
    let mut prev_lower = false;
    let mut camel = false;
    let mut letters = 0usize;
    let mut odds = 0usize;
    let first_lower = t.chars().next().is_some_and(crate::ctype::is_lowercase);
    for (i, c) in t.chars().enumerate() {
        // "similarlyNow" counts; "iPhone", "eBay", "JavaScript" do not.
        if crate::ctype::is_uppercase(c) && prev_lower && first_lower && i >= 3 {
            camel = true;
        }
        prev_lower = crate::ctype::is_lowercase(c);
        if crate::ctype::is_alphabetic(c) {
            letters += 1;
        } else if odd(c) {
            odds += 1;
        }
    }
    camel || odds >= 2 && letters > 0 || (letters == 0 && odds >= 2)
}

/// Is a whitespace word soup-like (see `soup_token`)? Used by [`crate::suffix`] to find
/// where in a long text to tokenize.
pub fn soup_word(t: &str) -> bool {
    soup_token(t)
}

/// Highest fraction of soup tokens over windows of [`SOUP_WINDOW`] whitespace tokens of the
/// raw text (linear time).
pub fn soup_score(text: &str) -> f32 {
    let flags: Vec<bool> = text.split_whitespace().map(soup_token).collect();
    if flags.len() < 4 {
        return 0.0;
    }
    let w = SOUP_WINDOW.min(flags.len());
    let mut count = flags[..w].iter().filter(|&&f| f).count();
    let mut best = count;
    for i in w..flags.len() {
        count += usize::from(flags[i]);
        count -= usize::from(flags[i - w]);
        best = best.max(count);
    }
    best as f32 / w as f32
}

/// Words that address the reader/assistant in several languages. Used only as a density.
const ADDRESS: &[&str] = &[
    "you",
    "your",
    "yourself",
    "assistant",
    "ai",
    "please",
    "must",
    "should",
    "now",
    "du",
    "sie",
    "ihr",
    "dein",
    "vous",
    "tu",
    "votre",
    "ton",
    "usted",
    "tú",
    "su",
    "tuo",
    "você",
    "ты",
    "вы",
    "你",
    "您",
    "あなた",
    "당신",
    "आप",
    "तुम",
];

/// Computes the dense signals for one input.
pub fn signals(
    input: &ScanInput<'_>,
    norm: &Normalized,
    combined: &str,
    lm: &CharLm,
    tok: &TokenLm,
) -> Signals {
    let text = input.text;
    let mut s = Signals {
        lm: lm.stats(text),
        tok: TokStats::default(),
        // The `adversarial_suffix` rule judges user and system text only (`crate::suffix`):
        // tokenizing a document for statistics nobody reads would cost every data scan.
        suffix: if input.channel.is_data() {
            SuffixStats::default()
        } else {
            suffix_stats(tok, text)
        },
        rules: match_rules(combined),
        concepts: concepts(combined),
        imperative: imperative_ratio(combined),
        imperative_count: imperative_count(combined),
        soup: soup_score(text),
        chars: text.chars().count(),
        channel: input.channel,
        ..Signals::default()
    };
    for r in &norm.reasons {
        match r.code {
            "zero_width_smuggling"
            | "bidi_control"
            | "unicode_tag_smuggling"
            | "variation_selector_smuggling" => s.invisible = true,
            "homoglyph_mixed_script" => s.homoglyph = true,
            "spaced_letters" => s.spaced = true,
            "leetspeak" => s.leet = true,
            "base64_payload" | "hex_payload" | "url_encoded_payload" | "rot13_payload" => {
                s.encoded = true
            }
            "html_comment" | "hidden_markup" => s.hidden_markup = true,
            _ => {}
        }
    }
    let (mut upper, mut letters, mut non_ascii) = (0usize, 0usize, 0usize);
    for c in text.chars() {
        if crate::ctype::is_alphabetic(c) {
            letters += 1;
            if crate::ctype::is_uppercase(c) {
                upper += 1;
            }
            if !c.is_ascii() {
                non_ascii += 1;
            }
        }
    }
    if letters > 0 {
        s.upper_frac = upper as f32 / letters as f32;
        s.non_ascii_frac = non_ascii as f32 / letters as f32;
    }
    let mut words = 0usize;
    let mut addr = 0usize;
    for w in combined
        .split(|c: char| !crate::ctype::is_alphanumeric(c))
        .filter(|w| !w.is_empty())
    {
        words += 1;
        if ADDRESS.contains(&w) {
            addr += 1;
        }
    }
    if words > 0 {
        s.address_density = addr as f32 / words as f32;
    }
    if let Some(sp) = input.system_prompt.filter(|sp| !sp.trim().is_empty()) {
        s.sp_present = true;
        // The same system prompt comes with every text of a request: its
        // reach is bounded, so a scan costs O(text + SYSTEM_PROMPT_REACH),
        // not O(text + prompt) (a megabyte prompt with a hundred thousand
        // short texts was quadratic in the request).
        let sp = system_prompt_read(sp);
        let sp_stems: std::collections::HashSet<String> = content_stems(&canonical(sp)).collect();
        let mut total = 0usize;
        let mut hit = 0usize;
        let mut seen = std::collections::HashSet::new();
        for st in content_stems(combined) {
            if !seen.insert(st.clone()) {
                continue;
            }
            total += 1;
            if sp_stems.contains(&st) {
                hit += 1;
            }
        }
        s.sp_overlap = hit;
        s.sp_overlap_frac = if total > 0 {
            hit as f32 / total as f32
        } else {
            0.0
        };
    }
    s
}

/// Stems of content words: words of at least 4 characters, cut to their first 5 characters
/// (a crude, language-agnostic stemmer: "password"/"passwords", "пароль"/"паролем").
fn content_stems(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !crate::ctype::is_alphanumeric(c))
        .filter(|w| w.chars().count() >= 4)
        .map(|w| w.chars().take(5).collect())
}

/// Names of the final layer's inputs, in order (stored in the artifact for checking).
pub const STAGE2_NAMES: &[&str] = &[
    "attack_logit",
    "segment_max_logit",
    "data_x_segment_max",
    "harm_logit",
    "harm_x_attack",
    "lm_window_excess",
    "lm_soup_frac",
    "data_channel",
    "data_x_attack",
    "sp_present",
    "sp_overlap_frac",
    "sp_overlap_log",
    "sp_x_attack",
    "rule_any",
    "rule_ignore_previous_instructions",
    "rule_system_prompt_extraction",
    "rule_persona_override",
    "rule_chat_template_injection",
    "rule_markdown_exfiltration",
    "rule_new_instructions_marker",
    "rule_addressed_to_assistant",
    "invisible",
    "homoglyph",
    "spaced",
    "leet",
    "encoded",
    "hidden_markup",
    "address_density",
    "data_x_address",
    "upper_frac",
    "non_ascii_frac",
    "p_override+instr_ref",
    "p_identity+no_limits",
    "p_secret+reveal",
    "p_authority+instr_ref",
    "p_ai_address+agent_action",
    "p_ai_address+output_control",
    "p_fiction+no_limits",
    "concept_count",
    "data_x_ai_address",
    "data_x_agent_pair",
    "data_x_imperative",
    "data_x_agent_action",
    "data_x_imperative_count",
    "soup_window",
    "soup_excess",
    "data_x_your_output",
];

/// Window surprise (bits/char) above which the LM signal starts counting.
pub const LM_HINGE_BITS: f32 = 6.5;

/// Number of final-layer inputs.
pub const STAGE2_DIM: usize = 31 + PAIRS.len() + 9;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Builds the final layer's input vector.
pub fn stage2_vector(
    s: &Signals,
    attack_logit: f32,
    segment_max: f32,
    harm_logit: f32,
) -> [f32; STAGE2_DIM] {
    let a = attack_logit.clamp(-20.0, 20.0);
    let seg = segment_max.clamp(-20.0, 20.0).max(a);
    let h = harm_logit.clamp(-20.0, 20.0);
    let data = f32::from(u8::from(s.channel.is_data()));
    let sp = f32::from(u8::from(s.sp_present));
    let b = |x: bool| f32::from(u8::from(x));
    let rule = |code: &str| b(s.rules.iter().any(|&i| ATTACK_RULES[i].code == code));
    let mut v = [0.0f32; STAGE2_DIM];
    let base = [
        a,
        seg,
        data * seg,
        h,
        sigmoid(a) * sigmoid(h),
        // Hinge: only extreme local surprise counts. A plain maximum grows with text length
        // (more windows, more chances), which would make every long prompt look suspicious.
        (s.lm.max_window - LM_HINGE_BITS).max(0.0),
        s.lm.soup_frac,
        data,
        data * a,
        sp,
        s.sp_overlap_frac,
        (1.0 + s.sp_overlap as f32).ln(),
        sp * a,
        b(!s.rules.is_empty()),
        rule("ignore_previous_instructions"),
        rule("system_prompt_extraction"),
        rule("persona_override"),
        rule("chat_template_injection"),
        rule("markdown_exfiltration"),
        rule("new_instructions_marker"),
        rule("addressed_to_assistant"),
        b(s.invisible),
        b(s.homoglyph),
        b(s.spaced),
        b(s.leet),
        b(s.encoded),
        b(s.hidden_markup),
        s.address_density,
        data * s.address_density,
        s.upper_frac,
        s.non_ascii_frac,
    ];
    v[..base.len()].copy_from_slice(&base);
    let mut k = base.len();
    // Single concepts are trigger words: only their co-occurrence (pairs) and count enter the
    // final layer, so "forget" or "instructions" alone never fires.
    for p in 0..PAIRS.len() {
        v[k] = b(s.concepts.pairs & (1 << p) != 0);
        k += 1;
    }
    v[k] = s.concepts.present.count_ones() as f32;
    v[k + 1] = data * b(s.concepts.present & (1 << AI_ADDRESS) != 0);
    v[k + 2] = data * b(s.concepts.pairs & (1 << 4) != 0);
    // Imperatives are ordinary from a user; they only count inside data.
    v[k + 3] = data * s.imperative;
    v[k + 4] = data * b(s.concepts.present & (1 << AGENT_ACTION) != 0);
    v[k + 5] = data * (1.0 + s.imperative_count as f32).ln();
    v[k + 6] = s.soup;
    v[k + 7] = (s.soup - 0.25).max(0.0);
    v[k + 8] = data * b(s.concepts.present & (1 << YOUR_OUTPUT) != 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_dim() {
        assert_eq!(STAGE2_NAMES.len(), STAGE2_DIM);
        for r in ATTACK_RULES {
            assert!(
                STAGE2_NAMES.contains(&format!("rule_{}", r.code).as_str()),
                "{}",
                r.code
            );
        }
    }

    #[test]
    fn hashed_is_deterministic_and_channel_aware() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        hashed("ignore the rules", Channel::User, 18, &mut a);
        hashed("ignore the rules", Channel::Retrieved, 18, &mut b);
        assert!(b.len() > a.len());
        assert!(a.iter().all(|&i| i < (1 << 18)));
        let mut c = Vec::new();
        hashed("ignore the rules", Channel::User, 18, &mut c);
        assert_eq!(a, c);
    }
}
