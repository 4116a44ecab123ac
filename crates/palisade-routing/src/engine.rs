//! What a serving engine says about itself: the Prometheus text a vLLM or
//! llama.cpp server exposes, read into the few figures routing and
//! operators care about — KV-cache use, queue depth, requests running, and
//! speculative decoding's acceptance (the share of drafted tokens the target
//! model accepted, and the tokens emitted per verification step).
//!
//! Counters are turned into rates between two scrapes ([`EngineStats::since`]):
//! an engine's lifetime acceptance says little about the last minute.
//!
//! Must not: do I/O, read the clock, or fail on text it does not know (an
//! unknown or malformed line is skipped: an engine's exposition is input
//! from another process, and a new engine version adds series).

/// The figures read from one scrape. `None`: the engine does not export it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineStats {
    /// KV-cache in use, `0..=1`.
    pub kv_cache_usage: Option<f64>,
    /// Requests waiting for a slot.
    pub requests_waiting: Option<f64>,
    /// Requests being decoded.
    pub requests_running: Option<f64>,
    /// Speculative decoding, cumulative: draft tokens proposed.
    pub draft_tokens_total: Option<f64>,
    /// Speculative decoding, cumulative: draft tokens accepted.
    pub accepted_tokens_total: Option<f64>,
    /// Speculative decoding, cumulative: verification steps (drafts).
    pub drafts_total: Option<f64>,
    /// An acceptance rate the engine computes itself (vLLM V0's gauge).
    pub acceptance_gauge: Option<f64>,
}

/// Speculative decoding over an interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speculation {
    /// Accepted / drafted tokens, `0..=1`.
    pub acceptance_rate: f64,
    /// Tokens emitted per verification step: accepted / steps + the one
    /// token the target model always adds.
    pub tokens_per_step: Option<f64>,
}

/// Series names per figure, vLLM (V0 and V1) and llama.cpp server; the first
/// present wins.
const KV_CACHE: &[&str] = &[
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "llamacpp:kv_cache_usage_ratio",
];
const WAITING: &[&str] = &["vllm:num_requests_waiting", "llamacpp:requests_deferred"];
const RUNNING: &[&str] = &["vllm:num_requests_running", "llamacpp:requests_processing"];
const DRAFT_TOKENS: &[&str] = &["vllm:spec_decode_num_draft_tokens_total"];
const ACCEPTED_TOKENS: &[&str] = &["vllm:spec_decode_num_accepted_tokens_total"];
const DRAFTS: &[&str] = &["vllm:spec_decode_num_drafts_total"];
const ACCEPTANCE: &[&str] = &["vllm:spec_decode_draft_acceptance_rate"];

/// Lines read at most (an engine with many models exports a few hundred).
const MAX_LINES: usize = 20_000;

impl EngineStats {
    /// Reads a Prometheus text exposition. Series with labels (one per
    /// model, say) are summed, except ratios, of which the largest is kept.
    pub fn parse(text: &str) -> EngineStats {
        let mut s = EngineStats::default();
        for line in text.lines().take(MAX_LINES) {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = sample(line) else {
                continue;
            };
            let is = |names: &[&str]| names.contains(&name);
            if is(KV_CACHE) {
                s.kv_cache_usage = Some(s.kv_cache_usage.map_or(value, |v| v.max(value)));
            } else if is(ACCEPTANCE) {
                s.acceptance_gauge = Some(s.acceptance_gauge.map_or(value, |v| v.max(value)));
            } else if is(WAITING) {
                add(&mut s.requests_waiting, value);
            } else if is(RUNNING) {
                add(&mut s.requests_running, value);
            } else if is(DRAFT_TOKENS) {
                add(&mut s.draft_tokens_total, value);
            } else if is(ACCEPTED_TOKENS) {
                add(&mut s.accepted_tokens_total, value);
            } else if is(DRAFTS) {
                add(&mut s.drafts_total, value);
            }
        }
        s
    }

    /// Speculative decoding between `earlier` and `self` (counters), or the
    /// engine's own gauge; `None` when nothing was drafted in between or
    /// the engine does not speculate. A counter that went down (the engine
    /// restarted) gives `None` for this interval.
    pub fn since(&self, earlier: Option<&EngineStats>) -> Option<Speculation> {
        let delta = |now: Option<f64>, then: Option<f64>| -> Option<f64> {
            let d = now? - then?;
            (d >= 0.0).then_some(d)
        };
        if let Some(earlier) = earlier {
            let drafted = delta(self.draft_tokens_total, earlier.draft_tokens_total);
            let accepted = delta(self.accepted_tokens_total, earlier.accepted_tokens_total);
            if let (Some(drafted), Some(accepted)) = (drafted, accepted) {
                if drafted > 0.0 && accepted <= drafted {
                    let steps = delta(self.drafts_total, earlier.drafts_total).filter(|s| *s > 0.0);
                    return Some(Speculation {
                        acceptance_rate: accepted / drafted,
                        tokens_per_step: steps.map(|s| 1.0 + accepted / s),
                    });
                }
                return None;
            }
        }
        self.acceptance_gauge
            .filter(|v| (0.0..=1.0).contains(v))
            .map(|acceptance_rate| Speculation {
                acceptance_rate,
                tokens_per_step: None,
            })
    }
}

fn add(slot: &mut Option<f64>, value: f64) {
    *slot = Some(slot.unwrap_or(0.0) + value);
}

/// `name{labels} value [timestamp]` → (name, value); `None` for anything
/// else, or a value that is not a finite number.
fn sample(line: &str) -> Option<(&str, f64)> {
    let (name, rest) = match line.find(['{', ' ', '\t']) {
        Some(i) if line.as_bytes()[i] == b'{' => {
            // Label values may hold spaces and braces inside quotes.
            let mut quoted = false;
            let mut escaped = false;
            let mut end = None;
            for (j, c) in line[i..].char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if quoted => escaped = true,
                    '"' => quoted = !quoted,
                    '}' if !quoted => {
                        end = Some(i + j + 1);
                        break;
                    }
                    _ => {}
                }
            }
            (&line[..i], &line[end?..])
        }
        Some(i) => (&line[..i], &line[i..]),
        None => return None,
    };
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// vLLM V1, abridged from a real `/metrics` (two models on one engine).
    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 3.0
vllm:num_requests_running{engine="0",model_name="qwen"} 1.0
vllm:num_requests_waiting{engine="0",model_name="llama"} 7.0
vllm:kv_cache_usage_perc{engine="0",model_name="llama"} 0.42
vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.61
vllm:spec_decode_num_drafts_total{engine="0",model_name="llama"} 100.0
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="llama"} 400.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="llama"} 250.0
vllm:prompt_tokens_total{engine="0",model_name="llama"} 123456.0
"#;

    const LLAMA_CPP: &str =
        "# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.\n\
# TYPE llamacpp:kv_cache_usage_ratio gauge\n\
llamacpp:kv_cache_usage_ratio 0.125\n\
llamacpp:requests_processing 2\n\
llamacpp:requests_deferred 0\n";

    #[test]
    fn reads_vllm_and_llama_cpp() {
        let v = EngineStats::parse(VLLM);
        assert_eq!(v.kv_cache_usage, Some(0.61));
        assert_eq!(v.requests_running, Some(4.0));
        assert_eq!(v.requests_waiting, Some(7.0));
        assert_eq!(v.draft_tokens_total, Some(400.0));
        let l = EngineStats::parse(LLAMA_CPP);
        assert_eq!(l.kv_cache_usage, Some(0.125));
        assert_eq!(l.requests_running, Some(2.0));
        assert_eq!(l.requests_waiting, Some(0.0));
        assert_eq!(l.since(None), None, "llama.cpp exports no speculation here");
    }

    #[test]
    fn acceptance_is_a_rate_between_two_scrapes() {
        let before = EngineStats::parse(VLLM);
        let after = EngineStats::parse(
            &VLLM
                .replace("} 100.0", "} 150.0")
                .replace("} 400.0", "} 600.0")
                .replace("} 250.0", "} 400.0"),
        );
        let s = after.since(Some(&before)).unwrap();
        assert!((s.acceptance_rate - 0.75).abs() < 1e-9, "{s:?}");
        assert!((s.tokens_per_step.unwrap() - 4.0).abs() < 1e-9, "{s:?}");
        // Nothing drafted in between, or the engine restarted: no figure.
        assert_eq!(before.since(Some(&before)), None);
        assert_eq!(before.since(Some(&after)), None);
    }

    #[test]
    fn a_gauge_stands_in_when_there_are_no_counters() {
        let v0 =
            EngineStats::parse("vllm:spec_decode_draft_acceptance_rate{model_name=\"m\"} 0.8\n");
        assert_eq!(
            v0.since(None),
            Some(Speculation {
                acceptance_rate: 0.8,
                tokens_per_step: None
            })
        );
        let silly = EngineStats::parse("vllm:spec_decode_draft_acceptance_rate 7\n");
        assert_eq!(silly.since(None), None);
    }

    #[test]
    fn hostile_text_is_skipped_not_trusted() {
        let text = "vllm:num_requests_waiting{model_name=\"a } b\\\" 9\"} 5\n\
                    vllm:num_requests_waiting NaN\n\
                    vllm:num_requests_waiting +Inf\n\
                    vllm:num_requests_running{unterminated=\"x 3\n\
                    vllm:kv_cache_usage_perc\n\
                    garbage line without value\n\
                    vllm:num_requests_running 1 1700000000000\n";
        let s = EngineStats::parse(text);
        assert_eq!(s.requests_waiting, Some(5.0));
        assert_eq!(s.requests_running, Some(1.0));
        assert_eq!(s.kv_cache_usage, None);
        assert_eq!(EngineStats::parse(""), EngineStats::default());
    }
}
