//! Token usage: what upstreams report, and estimates for when they don't.
//!
//! Token budgets are reserved before a request is sent (from an estimate)
//! and reconciled afterwards with what was really used: the upstream's
//! `usage` when it reports one, otherwise the gateway's own count of the
//! streamed text.
//!
//! Prompt estimates use the model family's tokenizer where Palisade knows
//! it ([`Tokenizer::for_model`]: OpenAI's `o200k_base` and `cl100k_base`, via
//! `palisade-bpe`, compiled in, no download), a Hugging Face `tokenizer.json` the
//! caller loaded ([`Tokenizer::from_json_bytes`]), and otherwise the
//! documented fallback: about four characters per token, the rule of thumb
//! for English with OpenAI's and Llama's BPE vocabularies. All add a fixed
//! overhead per message for the chat template. The fallback over-counts code
//! and under-counts CJK text; reconciliation corrects the budget either way.
//!
//! Counting is bounded: text is handed to a tokenizer in pieces of at most
//! 4 KiB (see `hf`), and a request's estimate tokenizes at most
//! [`EXACT_TOKENIZE_BYTES`]; the rest is extrapolated. An estimate only sizes
//! a reservation that the upstream's own count reconciles, so spending
//! seconds of CPU to make it exact for a megabyte prompt buys nothing.

use std::sync::Arc;

use serde_json::{Map, Value};

pub use crate::hf::{HfTokenizer, TokenizerError};

/// Characters per token in the fallback estimate.
pub const CHARS_PER_TOKEN: u64 = 4;
/// Tokens a chat template adds per message (role markers, separators).
pub const TOKENS_PER_MESSAGE: u64 = 4;
/// Bytes of a request's text counted with the real tokenizer; beyond them
/// the estimate extrapolates. 64 KiB is ~16k tokens, more than most prompts,
/// and a few milliseconds of BPE.
pub const EXACT_TOKENIZE_BYTES: usize = 64 * 1024;

/// Token counts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    pub completion_tokens: u64,
    /// Prompt tokens served from the upstream's prefix cache, when reported.
    pub cached_tokens: Option<u64>,
    /// Reasoning tokens (part of the completion), when reported.
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// Prompt plus completion.
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// Reads the `usage` object of a response or chunk, if present: chat
    /// and completions name it `prompt_tokens`/`completion_tokens`, the
    /// Responses API `input_tokens`/`output_tokens` (in a stream, on the
    /// `response` object of its `response.completed` event).
    pub fn from_response(body: &Value) -> Option<Usage> {
        let u = match body.get("usage") {
            Some(u) if !u.is_null() => u,
            _ => body
                .get("response")
                .filter(|_| is_response_event(body))?
                .get("usage")?,
        };
        let u = u.as_object()?;
        let int = |v: Option<&Value>| v.and_then(Value::as_u64);
        let either = |a: &str, b: &str| int(u.get(a)).or_else(|| int(u.get(b)));
        let detail = |a: &str, b: &str, key: &str| {
            int(u.get(a).or_else(|| u.get(b)).and_then(|d| d.get(key)))
        };
        Some(Usage {
            prompt_tokens: either("prompt_tokens", "input_tokens").unwrap_or(0),
            completion_tokens: either("completion_tokens", "output_tokens").unwrap_or(0),
            cached_tokens: detail(
                "prompt_tokens_details",
                "input_tokens_details",
                "cached_tokens",
            ),
            reasoning_tokens: detail(
                "completion_tokens_details",
                "output_tokens_details",
                "reasoning_tokens",
            ),
        })
    }
}

/// Whether a streamed event is the Responses API's (`"type": "response.…"`).
pub fn is_response_event(event: &Value) -> bool {
    event
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("response."))
}

/// Generated text as the fallback count reads it, in units of which
/// [`CHARS_PER_TOKEN`] make a token: an ASCII character is one unit, any
/// other three (a CJK character or an emoji is a token or more; counted as
/// a quarter token it let a stream cut before its usage chunk be charged a
/// fraction of what it generated).
pub fn text_units(s: &str) -> u64 {
    s.chars().map(|c| if c.is_ascii() { 1 } else { 3 }).sum()
}

fn text_chars(v: &Value) -> u64 {
    match v {
        Value::String(s) => text_units(s),
        // Content parts: count the text ones; images are priced by the
        // upstream in ways we cannot see, and the reconciliation fixes it.
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => text_units(s),
                _ => p.get("text").map_or(0, text_chars),
            })
            .sum(),
        _ => 0,
    }
}

/// A chat delta's generated text besides `content` and tool calls: what
/// reasoning models stream before the answer, refusals, and speech's
/// transcript. The output gate relays them; the tally counts them.
const DELTA_TEXT_FIELDS: [&str; 3] = ["reasoning_content", "reasoning", "refusal"];

/// How prompt tokens are counted. Cheap to clone (a Hugging Face tokenizer
/// is shared behind an [`Arc`]).
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// [`CHARS_PER_TOKEN`] characters per token: any model.
    Approximate,
    /// OpenAI `cl100k_base` (GPT-4, GPT-3.5, text-embedding-3).
    Cl100k,
    /// OpenAI `o200k_base` (GPT-4o, GPT-4.1, o-series, GPT-5).
    O200k,
    /// A Hugging Face `tokenizer.json` (see [`Tokenizer::from_json_bytes`]).
    HuggingFace(Arc<HfTokenizer>),
}

/// Equal when the same kind, and for Hugging Face the same loaded instance
/// (comparing vocabularies would cost more than it tells).
impl PartialEq for Tokenizer {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Tokenizer::HuggingFace(a), Tokenizer::HuggingFace(b)) => Arc::ptr_eq(a, b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Eq for Tokenizer {}

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json` from its bytes (the caller
    /// reads the file). Its truncation and padding settings are ignored, and
    /// counting adds no special tokens: the per-message overhead stands for
    /// the chat template.
    pub fn from_json_bytes(json: &[u8]) -> Result<Tokenizer, TokenizerError> {
        HfTokenizer::from_json_bytes(json).map(|t| Tokenizer::HuggingFace(Arc::new(t)))
    }

    /// The tokenizer of a model family, by the model's name; the
    /// approximation for models whose vocabulary is not bundled.
    pub fn for_model(model: &str) -> Tokenizer {
        let m = model.to_ascii_lowercase();
        let m = m.rsplit('/').next().unwrap_or(&m);
        if m.starts_with("gpt-4o")
            || m.starts_with("gpt-4.1")
            || m.starts_with("gpt-5")
            || m.starts_with("o1")
            || m.starts_with("o3")
            || m.starts_with("o4")
        {
            Tokenizer::O200k
        } else if m.starts_with("gpt-4")
            || m.starts_with("gpt-3.5")
            || m.starts_with("text-embedding-3")
            || m.starts_with("text-embedding-ada")
        {
            Tokenizer::Cl100k
        } else {
            Tokenizer::Approximate
        }
    }

    /// Loads the bundled vocabularies now (~150 ms each) instead of on the
    /// first request that needs them.
    pub fn warm() {
        let _ = Tokenizer::Cl100k.count("");
        let _ = Tokenizer::O200k.count("");
    }

    /// Tokens in `text`. Linear in its length for every variant: text is
    /// tokenized in pieces of at most 4 KiB (BPE merging inside one long
    /// "word" is superlinear, and tiktoken's regex gives up, with a panic, on
    /// a megabyte of whitespace).
    pub fn count(&self, text: &str) -> u64 {
        let bpe = match self {
            Tokenizer::Approximate => None,
            Tokenizer::Cl100k => palisade_bpe::cl100k().ok(),
            Tokenizer::O200k => palisade_bpe::o200k().ok(),
            Tokenizer::HuggingFace(hf) => return hf.count(text, approximate),
        };
        match bpe {
            Some(bpe) => crate::hf::Pieces(text)
                .map(|piece| bpe.encode_ordinary(piece).len() as u64)
                .sum(),
            None => approximate(text),
        }
    }
}

impl Tokenizer {
    /// The token ids of `text` (no special tokens), for a Hugging Face
    /// `tokenizer.json`; `None` for the other variants (watermark detection
    /// needs the served model's own vocabulary). Linear in the text.
    pub fn encode_ids(&self, text: &str) -> Option<Vec<u32>> {
        match self {
            Tokenizer::HuggingFace(hf) => Some(hf.encode_ids(text)),
            _ => None,
        }
    }

    /// Entries in a Hugging Face vocabulary (added tokens included); `None`
    /// for the other variants.
    pub fn vocab_size(&self) -> Option<u32> {
        match self {
            Tokenizer::HuggingFace(hf) => u32::try_from(hf.vocab_size()).ok(),
            _ => None,
        }
    }
}

/// The fallback: [`CHARS_PER_TOKEN`] characters per token, rounded up.
fn approximate(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(CHARS_PER_TOKEN)
}

fn collect_text<'a>(v: &'a Value, out: &mut Vec<std::borrow::Cow<'a, str>>) {
    match v {
        Value::String(s) => out.push(s.as_str().into()),
        Value::Array(parts) => {
            for p in parts {
                match p {
                    Value::String(s) => out.push(s.as_str().into()),
                    _ => {
                        // A content part's `text`; a Responses input item's
                        // `content` or a tool result's `output`.
                        for key in ["text", "content", "output"] {
                            if let Some(t) = p.get(key) {
                                collect_text(t, out);
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Estimated prompt tokens of a chat, completion or embeddings request,
/// with the approximate tokenizer.
pub fn estimate_prompt_tokens(fields: &Map<String, Value>) -> u64 {
    estimate_prompt_tokens_with(fields, &Tokenizer::Approximate)
}

/// Estimated prompt tokens of a request with the given tokenizer.
pub fn estimate_prompt_tokens_with(fields: &Map<String, Value>, tokenizer: &Tokenizer) -> u64 {
    let mut pieces: Vec<std::borrow::Cow<'_, str>> = Vec::new();
    let mut messages = 0u64;
    if let Some(Value::Array(list)) = fields.get("messages") {
        for m in list {
            messages += 1;
            if let Some(c) = m.get("content") {
                collect_text(c, &mut pieces);
            }
            // Tool calls the assistant made are part of the prompt too.
            if let Some(calls) = m.get("tool_calls") {
                pieces.push(calls.to_string().into());
            }
        }
    }
    let mut ids = 0u64;
    for field in ["prompt", "input", "instructions"] {
        if let Some(v) = fields.get(field) {
            collect_text(v, &mut pieces);
            ids = ids.saturating_add(token_ids(v));
        }
    }
    if let Some(tools) = fields.get("tools") {
        pieces.push(tools.to_string().into());
    }
    let tokens: u64 = match tokenizer {
        // Characters are summed first so short pieces do not each round up.
        Tokenizer::Approximate => pieces
            .iter()
            .map(|p| p.chars().count() as u64)
            .sum::<u64>()
            .div_ceil(CHARS_PER_TOKEN),
        exact => count_capped(exact, &pieces, EXACT_TOKENIZE_BYTES),
    };
    // At least one: a request is never free, so a spent budget refuses it
    // (`spent + reserved + 0 <= limit` would still hold).
    tokens
        .saturating_add(ids)
        .saturating_add(messages * TOKENS_PER_MESSAGE)
        .max(1)
}

/// Tokens given as ids instead of text (`prompt` or `input` as `[1, 2, 3]`,
/// or a batch `[[1, 2], [3]]`): one each. The text estimate reads none of
/// them, and a 4 MiB body holds two million.
fn token_ids(v: &Value) -> u64 {
    let Value::Array(items) = v else {
        return 0;
    };
    items
        .iter()
        .map(|item| match item {
            Value::Number(_) => 1,
            Value::Array(inner) => inner.iter().filter(|x| x.is_number()).count() as u64,
            _ => 0,
        })
        .fold(0u64, u64::saturating_add)
}

/// Tokens in `pieces`, tokenizing at most `cap` bytes of them. The rest is
/// extrapolated at the rate measured on what was tokenized, but never below
/// the [`CHARS_PER_TOKEN`] fallback: text that tokenizes cheaply up front
/// (a run of spaces) must not make a dense tail look free.
fn count_capped(tokenizer: &Tokenizer, pieces: &[std::borrow::Cow<'_, str>], cap: usize) -> u64 {
    let mut budget = cap;
    let (mut tokens, mut counted_chars, mut rest_chars) = (0u64, 0u64, 0u64);
    for piece in pieces {
        let head_len = floor_char_boundary(piece, piece.len().min(budget));
        let (head, tail) = piece.split_at(head_len);
        if !head.is_empty() {
            tokens += tokenizer.count(head);
            counted_chars += head.chars().count() as u64;
            budget -= head.len();
        }
        rest_chars += tail.chars().count() as u64;
    }
    if rest_chars == 0 {
        return tokens;
    }
    let extrapolated = if counted_chars == 0 {
        0
    } else {
        // u128: chars × tokens of a 4 MiB body fits, but say so in the types.
        (u128::from(rest_chars) * u128::from(tokens)).div_ceil(u128::from(counted_chars)) as u64
    };
    tokens + extrapolated.max(rest_chars.div_ceil(CHARS_PER_TOKEN))
}

/// The largest character boundary of `s` at or below `i` (`i <= s.len()`).
fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The completion limit the client asked for (`max_completion_tokens`, the
/// newer name, wins over `max_tokens`; the Responses API's is
/// `max_output_tokens`).
pub fn requested_max_tokens(fields: &Map<String, Value>) -> Option<u64> {
    ["max_completion_tokens", "max_output_tokens", "max_tokens"]
        .iter()
        .find_map(|k| fields.get(*k).and_then(Value::as_u64))
}

/// How many completions the request makes the upstream generate (`n`, or
/// `best_of` for a legacy completion, which generates that many and returns
/// `n`): each may use the whole completion limit. At least 1; the request
/// parser has checked both are integers up to
/// [`crate::request::MAX_CHOICES`].
pub fn requested_choices(fields: &Map<String, Value>) -> u64 {
    ["n", "best_of"]
        .iter()
        .filter_map(|k| fields.get(*k).and_then(Value::as_u64))
        .max()
        .unwrap_or(1)
        .clamp(1, crate::request::MAX_CHOICES)
}

/// What one streamed event was, for the tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// A chunk with choices (content, tool calls, finish reason).
    Content,
    /// The final usage-only chunk (`choices: []` with `usage`).
    UsageOnly,
    /// `[DONE]`, an error, or something that is not a JSON chunk.
    Other,
}

/// Counts a stream as it passes: the upstream's usage if it sends one, and
/// the characters of generated text as the fallback.
#[derive(Debug, Clone, Default)]
pub struct StreamTally {
    /// The upstream's usage, if a chunk carried one.
    pub usage: Option<Usage>,
    /// Generated text seen (content, reasoning, refusals, transcripts and
    /// tool-call arguments), in [`text_units`].
    pub generated_units: u64,
}

impl StreamTally {
    /// Observes one event's `data`.
    pub fn observe(&mut self, data: &str) -> ChunkKind {
        self.observe_parsed(serde_json::from_str::<Value>(data).ok().as_ref())
    }

    /// Observes one event's `data`, parsing it into a `Value` only when it is
    /// not a plain chat chunk (see `tally_view`): a usage chunk, a Responses
    /// event, tool calls, or any shape the borrowed reading does not know.
    /// The tally is never less than [`Self::observe`] makes it. Returns the
    /// `Value` when it parsed one (`None`: a plain chunk, or unparseable), so
    /// the caller need not parse the event again.
    pub fn observe_event(&mut self, data: &str) -> (ChunkKind, Option<Value>) {
        if let Some(plain) = crate::tally_view::read(data) {
            if !plain.has_choices {
                return (ChunkKind::Other, None);
            }
            self.generated_units += plain.units;
            return (ChunkKind::Content, None);
        }
        let value = serde_json::from_str::<Value>(data).ok();
        (self.observe_parsed(value.as_ref()), value)
    }

    /// Observes one event's `data` already parsed (`None`: it did not parse), so
    /// a relay that parses each event for its gates does not parse it twice.
    pub fn observe_parsed(&mut self, chunk: Option<&Value>) -> ChunkKind {
        let Some(chunk) = chunk else {
            return ChunkKind::Other;
        };
        if let Some(usage) = Usage::from_response(chunk) {
            self.usage = Some(usage);
        }
        if is_response_event(chunk) {
            // Responses API: text arrives as `delta` strings of `*.delta`
            // events (output text, call arguments, reasoning, refusals).
            if let Some(Value::String(delta)) = chunk.get("delta") {
                self.generated_units += text_units(delta);
            }
            return ChunkKind::Content;
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return ChunkKind::Other;
        };
        if choices.is_empty() {
            return if chunk.get("usage").is_some_and(Value::is_object) {
                ChunkKind::UsageOnly
            } else {
                ChunkKind::Other
            };
        }
        for choice in choices {
            let delta = choice.get("delta");
            let content = delta
                .and_then(|d| d.get("content"))
                .or_else(|| choice.get("text"));
            self.generated_units += content.map_or(0, text_chars);
            for field in DELTA_TEXT_FIELDS {
                if let Some(Value::String(t)) = delta.and_then(|d| d.get(field)) {
                    self.generated_units += text_units(t);
                }
            }
            if let Some(Value::String(t)) = delta.and_then(|d| d.pointer("/audio/transcript")) {
                self.generated_units += text_units(t);
            }
            if let Some(Value::Array(calls)) = delta.and_then(|d| d.get("tool_calls")) {
                for call in calls {
                    self.generated_units +=
                        call.pointer("/function/arguments").map_or(0, text_chars);
                }
            }
        }
        ChunkKind::Content
    }

    /// Observes a complete (non-streamed) response body.
    pub fn observe_response(&mut self, body: &Value) {
        self.usage = Usage::from_response(body);
        // Responses API: `output` items' text parts and call arguments.
        if let Some(Value::Array(items)) = body.get("output") {
            for item in items {
                if let Some(Value::Array(parts)) = item.get("content") {
                    self.generated_units += parts
                        .iter()
                        .filter_map(|p| p.get("text"))
                        .map(text_chars)
                        .sum::<u64>();
                }
                self.generated_units += item.get("arguments").map_or(0, text_chars);
            }
        }
        if let Some(Value::Array(choices)) = body.get("choices") {
            for choice in choices {
                let content = choice
                    .pointer("/message/content")
                    .or_else(|| choice.get("text"));
                self.generated_units += content.map_or(0, text_chars);
            }
        }
    }

    /// Tokens used: the upstream's figure, else the estimate from the text.
    /// Returns the total and whether it came from the upstream.
    pub fn total(&self, prompt_estimate: u64) -> (u64, bool) {
        match self.usage {
            Some(u) => (u.total(), true),
            None => (
                prompt_estimate + self.generated_units.div_ceil(CHARS_PER_TOKEN),
                false,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_usage_with_details() {
        let body = json!({"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 2}}});
        let u = Usage::from_response(&body).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total()),
            (10, 5, 15)
        );
        assert_eq!((u.cached_tokens, u.reasoning_tokens), (Some(8), Some(2)));
        assert!(Usage::from_response(&json!({"usage": null})).is_none());
    }

    #[test]
    fn every_generated_choice_counts() {
        let choices = |v: Value| requested_choices(v.as_object().expect("object"));
        assert_eq!(choices(json!({})), 1);
        assert_eq!(choices(json!({"n": 8})), 8);
        // A legacy completion generates `best_of` and returns `n`.
        assert_eq!(choices(json!({"n": 2, "best_of": 5})), 5);
        assert_eq!(choices(json!({"n": null})), 1);
    }

    #[test]
    fn estimates_prompt_and_reads_max_tokens() {
        let req = json!({"messages": [{"role": "user", "content": "12345678"},
                                      {"role": "user", "content": [{"type": "text", "text": "abcd"}]}],
                         "max_tokens": 50, "max_completion_tokens": 70});
        let fields = req.as_object().unwrap();
        // 12 chars → 3 tokens, plus 2 messages × 4.
        assert_eq!(estimate_prompt_tokens(fields), 3 + 8);
        assert_eq!(requested_max_tokens(fields), Some(70));
        let emb = json!({"input": ["abcd", "efgh"]});
        assert_eq!(estimate_prompt_tokens(emb.as_object().unwrap()), 2);
    }

    /// A stream cut before its usage chunk is charged what it generated:
    /// reasoning, refusals and transcripts count, and a CJK character is
    /// about a token, not a quarter of one.
    #[test]
    fn the_fallback_count_reads_every_generated_text() {
        let mut t = StreamTally::default();
        for data in [
            r#"{"choices":[{"delta":{"reasoning_content":"abcdefgh"}}]}"#,
            r#"{"choices":[{"delta":{"refusal":"abcd"}}]}"#,
            r#"{"choices":[{"delta":{"audio":{"transcript":"abcd"}}}]}"#,
            r#"{"choices":[{"delta":{"content":"日本語です"}}]}"#,
        ] {
            t.observe_event(data);
        }
        assert_eq!(t.generated_units, 8 + 4 + 4 + 5 * 3);
        assert_eq!(
            t.total(0),
            ((8 + 4 + 4 + 15u64).div_ceil(CHARS_PER_TOKEN), false)
        );
    }

    /// Token ids count one each (a batch of id lists too), and no request
    /// is estimated at zero.
    #[test]
    fn token_ids_count_and_nothing_is_free() {
        let est = |v: Value| estimate_prompt_tokens(v.as_object().unwrap());
        assert_eq!(est(json!({"input": [1, 2, 3, 4, 5]})), 5);
        assert_eq!(
            est(json!({"input": [[1, 2, 3], [4, 5], "abcdefgh"]})),
            5 + 2
        );
        assert_eq!(est(json!({"prompt": vec![7; 1000]})), 1000);
        assert_eq!(est(json!({"input": []})), 1);
        assert_eq!(est(json!({})), 1);
    }

    #[test]
    fn openai_families_use_their_tokenizers() {
        assert_eq!(Tokenizer::for_model("gpt-4o-mini"), Tokenizer::O200k);
        assert_eq!(Tokenizer::for_model("openai/gpt-4.1"), Tokenizer::O200k);
        assert_eq!(Tokenizer::for_model("gpt-4-turbo"), Tokenizer::Cl100k);
        assert_eq!(Tokenizer::for_model("llama-3.1-8b"), Tokenizer::Approximate);
        // "hello world" is two tokens in both OpenAI vocabularies.
        assert_eq!(Tokenizer::O200k.count("hello world"), 2);
        assert_eq!(Tokenizer::Cl100k.count("hello world"), 2);
        let req = json!({"messages": [{"role": "user", "content": "hello world"}]});
        assert_eq!(
            estimate_prompt_tokens_with(req.as_object().unwrap(), &Tokenizer::O200k),
            2 + TOKENS_PER_MESSAGE
        );
    }

    #[test]
    fn long_whitespace_and_long_words_count_without_panicking() {
        // 1 MB of spaces made tiktoken's regex give up (a panic, then a 500);
        // 100k of one letter is one "word" whose BPE merging is superlinear.
        for text in [" ".repeat(1_100_000), "a".repeat(100_000)] {
            for tok in [Tokenizer::O200k, Tokenizer::Cl100k] {
                assert!(tok.count(&text) > 0);
            }
        }
        // A request's estimate tokenizes a bounded prefix whatever its size.
        let fields = json!({"messages": [{"role": "user", "content": " ".repeat(4_000_000)}]});
        let started = std::time::Instant::now();
        let est = estimate_prompt_tokens_with(fields.as_object().unwrap(), &Tokenizer::O200k);
        assert!(est >= 4_000_000 / CHARS_PER_TOKEN - 16_384, "{est}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn estimates_beyond_the_cap_extrapolate_and_never_fall_below_the_fallback() {
        let words = "hello world ".repeat(20_000); // 240 KB, 2 tokens per 12 bytes
        let fields = json!({"messages": [{"role": "user", "content": words}]});
        let fields = fields.as_object().unwrap();
        let est = estimate_prompt_tokens_with(fields, &Tokenizer::O200k) - TOKENS_PER_MESSAGE;
        // Exact would be 40,000: 64 KiB are counted (10,923 tokens), the
        // remaining 174,464 characters at the fallback rate, which is higher
        // than the measured one here (43,616): over-reserving is the safe side.
        assert_eq!(est, 10_923 + 43_616);
        // Cheap text first does not make a dense tail free.
        let cheap_then_dense = format!("{}{}", " ".repeat(70_000), "é".repeat(40_000));
        let fields = json!({"messages": [{"role": "user", "content": cheap_then_dense}]});
        let est = estimate_prompt_tokens_with(fields.as_object().unwrap(), &Tokenizer::O200k);
        assert!(est >= 10_000, "{est}");
        // Under the cap the count is exact.
        let small = json!({"messages": [{"role": "user", "content": "hello world"}]});
        assert_eq!(
            estimate_prompt_tokens_with(small.as_object().unwrap(), &Tokenizer::Cl100k),
            2 + TOKENS_PER_MESSAGE
        );
    }

    #[test]
    fn tally_prefers_upstream_usage_and_falls_back_to_counting() {
        let mut t = StreamTally::default();
        assert_eq!(
            t.observe(r#"{"choices":[{"delta":{"content":"hello wor"}}]}"#),
            ChunkKind::Content
        );
        assert_eq!(
            t.observe(
                r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]}"#
            ),
            ChunkKind::Content
        );
        assert_eq!(t.observe("[DONE]"), ChunkKind::Other);
        // 9 + 7 chars → 4 tokens, plus the prompt estimate.
        assert_eq!(t.total(10), (14, false));
        assert_eq!(
            t.observe(r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":6}}"#),
            ChunkKind::UsageOnly
        );
        assert_eq!(t.total(10), (18, true));
    }
}
