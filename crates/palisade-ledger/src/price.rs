//! Prices and the cost of an entry: a pure function of the token counts.
//!
//! Prices are integers (micro-dollars per million tokens) so that cost is
//! exact and the same on every replica; a config file's decimal dollars are
//! converted once at the edge. A request's cost is rounded to the nearest
//! micro-dollar (half up), so the error is at most half a micro-dollar per
//! request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::LedgerEntry;

/// One model's prices, in micro-dollars per million tokens
/// (`$2.50 / 1M` is `2_500_000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Price {
    /// Price of a prompt token not served from cache.
    pub input_per_mtok_micros: u64,
    /// Price of a completion token (reasoning tokens included).
    pub output_per_mtok_micros: u64,
    /// Price of a cached prompt token; `None` bills them as input.
    #[serde(default)]
    pub cached_input_per_mtok_micros: Option<u64>,
}

/// Prices per model name, with a default for models not listed.
///
/// Names match exactly (the name the client asked for, as recorded in
/// [`LedgerEntry::model`]). The default exists so that an unpriced model is
/// still charged rather than silently free; set it to zero to opt out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PriceTable {
    /// Used for any model not in `models`.
    pub default: Price,
    /// Per-model prices.
    #[serde(default)]
    pub models: BTreeMap<String, Price>,
}

impl PriceTable {
    /// A table with only a default price.
    pub fn new(default: Price) -> Self {
        Self {
            default,
            models: BTreeMap::new(),
        }
    }

    /// Adds or replaces one model's price.
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>, price: Price) -> Self {
        self.models.insert(model.into(), price);
        self
    }

    /// The price that applies to `model`.
    pub fn price_for(&self, model: &str) -> Price {
        self.models.get(model).copied().unwrap_or(self.default)
    }

    /// Cost in micro-dollars of `prompt` tokens (of which `cached` were
    /// cached; clamped to `prompt`) and `completion` tokens of `model`.
    /// Saturates at `i64::MAX` rather than wrapping.
    pub fn cost_micros(
        &self,
        model: &str,
        prompt: u64,
        completion: u64,
        cached: Option<u64>,
    ) -> i64 {
        let p = self.price_for(model);
        let cached = cached.unwrap_or(0).min(prompt);
        let cached_price = p
            .cached_input_per_mtok_micros
            .unwrap_or(p.input_per_mtok_micros);
        let numerator = u128::from(prompt - cached) * u128::from(p.input_per_mtok_micros)
            + u128::from(cached) * u128::from(cached_price)
            + u128::from(completion) * u128::from(p.output_per_mtok_micros);
        let micros = (numerator + 500_000) / 1_000_000;
        i64::try_from(micros).unwrap_or(i64::MAX)
    }

    /// The cost of an entry, from its model and token counts.
    pub fn cost_of(&self, entry: &LedgerEntry) -> i64 {
        self.cost_micros(
            &entry.model,
            entry.prompt_tokens,
            entry.completion_tokens,
            entry.cached_tokens,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        PriceTable::new(Price {
            input_per_mtok_micros: 1_000_000,
            output_per_mtok_micros: 2_000_000,
            cached_input_per_mtok_micros: None,
        })
        .with_model(
            "gpt-4o",
            Price {
                input_per_mtok_micros: 2_500_000,
                output_per_mtok_micros: 10_000_000,
                cached_input_per_mtok_micros: Some(1_250_000),
            },
        )
    }

    #[test]
    fn cost_is_exact_rounded_and_saturating() {
        let t = table();
        let check = |model, prompt, completion, cached, expected: i64| {
            assert_eq!(
                t.cost_micros(model, prompt, completion, cached),
                expected,
                "{model} {prompt}/{completion}/{cached:?}"
            );
        };
        // 1M in at $2.50 + 1M out at $10.
        check("gpt-4o", 1_000_000, 1_000_000, None, 12_500_000);
        // Half the prompt cached at half price.
        check("gpt-4o", 1_000_000, 0, Some(500_000), 1_875_000);
        // Cached larger than the prompt is clamped.
        check("gpt-4o", 100, 0, Some(1_000), 125);
        // Unlisted models use the default: 1000 in = 1000 µ$, 10 out = 20 µ$.
        check("llama", 1_000, 10, None, 1_020);
        // Rounding: 1 input token of gpt-4o is 2.5 µ$, rounded half up.
        check("gpt-4o", 1, 0, None, 3);
        check("llama", 0, 0, None, 0);
        check("gpt-4o", u64::MAX, u64::MAX, None, i64::MAX);
    }

    #[test]
    fn parses_from_config_json() {
        let t: PriceTable = serde_json::from_str(
            r#"{"default":{"input_per_mtok_micros":1,"output_per_mtok_micros":2},
                "models":{"m":{"input_per_mtok_micros":3,"output_per_mtok_micros":4}}}"#,
        )
        .unwrap();
        assert_eq!(t.price_for("m").output_per_mtok_micros, 4);
        assert_eq!(t.price_for("other").input_per_mtok_micros, 1);
    }
}
