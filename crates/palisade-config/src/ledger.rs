//! `[ledger]`: where the token ledger lives and the prices it charges.
//!
//! Validation checks the URL's form and the prices; it must not open the
//! database (the gateway does, at start).

use super::*;

/// The token ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// `sqlite:PATH` (embedded; WAL) or `postgres://user@host/db` (fleets).
    /// Absent: no ledger.
    pub url: Option<String>,
    /// Prices in US dollars per million tokens, by public model name; the
    /// entry `default` applies to every other model. Costs are stored as
    /// integer micro-dollars.
    pub prices: BTreeMap<String, PriceConfig>,
}

/// The price of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Dollars per million prompt tokens.
    pub input_usd_per_mtok: f64,
    /// Dollars per million completion tokens.
    pub output_usd_per_mtok: f64,
}

impl LedgerConfig {
    /// The URL names a store this build can reach, and every price is a
    /// usable number of dollars.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        stores::validate_postgres_tls("ledger.url", self.url.as_deref())?;
        if let Some(url) = &self.url {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|p| url.starts_with(p)) {
                return Err(invalid(
                    "ledger.url",
                    "must start with sqlite:, postgres:// or postgresql://",
                ));
            }
        }
        for (model, price) in &self.prices {
            for (field, usd) in [
                ("input_usd_per_mtok", price.input_usd_per_mtok),
                ("output_usd_per_mtok", price.output_usd_per_mtok),
            ] {
                if !(usd.is_finite() && usd >= 0.0) {
                    return Err(invalid(
                        format!("ledger.prices.{model}.{field}"),
                        "prices must be finite and not negative",
                    ));
                }
            }
        }
        Ok(())
    }
}
