//! After admission: what a request really used, and its ledger row.
//!
//! [`TokenAccounting`] follows a request that reached an upstream: its token
//! reservation (when the tenant has a budget), the usage seen in the response
//! or stream, and the settlement when the request ends. [`LedgerRow`] turns
//! the same facts into one row of the token ledger, keyed by the gateway's
//! own request id (never the client's, which could collide).
//!
//! It must not decide limits (the budgets settled into do), and it reads the
//! wall clock only through its [`GatewayClock`].

use std::sync::Arc;
use std::time::Duration;

use palisade_ledger::{Ledger, LedgerEntry, Outcome, PriceTable, UsageSource};
use palisade_openai::usage::StreamTally;

use crate::clock::GatewayClock;
use crate::limits::reservation::TokenReservation;
use crate::limits::usage::ActualUsage;

/// A request's token reservation and the running count of what it used.
#[derive(Debug)]
pub(crate) struct TokenAccounting {
    reservation: Option<TokenReservation>,
    prompt_estimate: u64,
    reserved: u64,
    /// Usage seen in the response or stream, and the generated text counted.
    pub(crate) tally: StreamTally,
    /// The client did not ask for the usage chunk; the gateway did, so it
    /// keeps the chunk to itself.
    pub(crate) strip_usage_chunk: bool,
}

impl TokenAccounting {
    pub(crate) fn new(
        reservation: Option<TokenReservation>,
        prompt_estimate: u64,
        reserved: u64,
        strip_usage_chunk: bool,
    ) -> Self {
        Self {
            reservation,
            prompt_estimate,
            reserved,
            tally: StreamTally::default(),
            strip_usage_chunk,
        }
    }

    /// Tokens the request was expected to use at most (prompt estimate plus
    /// completion allowance): the fair queue's charge.
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved
    }

    /// What the request used, by how it ended: nothing for a request the
    /// upstream refused or never answered, the upstream's usage when it
    /// reported one, our own count (prompt estimate, generated text)
    /// otherwise.
    pub(crate) fn actual(&self, status: u16) -> ActualUsage {
        // The upstream's own figure is charged whatever the client was
        // answered: a completion the output gate withheld (502
        // `output_rejected`) was generated all the same.
        if self.tally.usage.is_none() && refused(status) {
            return ActualUsage::default();
        }
        match self.tally.usage {
            Some(u) => ActualUsage {
                prompt: u.prompt_tokens,
                completion: u.completion_tokens,
                cached: u.cached_tokens,
                reasoning: u.reasoning_tokens,
                source: UsageSource::Upstream,
            },
            None => ActualUsage {
                prompt: self.prompt_estimate,
                completion: self
                    .tally
                    .generated_units
                    .div_ceil(palisade_openai::usage::CHARS_PER_TOKEN),
                cached: None,
                reasoning: None,
                source: UsageSource::Counted,
            },
        }
    }

    /// Releases the whole reservation: nothing was used under it (an
    /// attempt that failed before a fallback reserves again).
    pub(crate) fn cancel(&mut self) {
        if let Some(reservation) = &mut self.reservation {
            reservation.cancel();
        }
    }

    /// Settles the reservation by how the request ended.
    pub(crate) fn settle(&mut self, status: u16) {
        let actual = self.actual(status);
        let Some(reservation) = &mut self.reservation else {
            return;
        };
        if self.tally.usage.is_none() && refused(status) {
            reservation.cancel();
        } else {
            reservation.reconcile(actual);
        }
    }
}

/// The upstream refused or was never reached: no tokens were used.
fn refused(status: u16) -> bool {
    (400..500).contains(&status) && status != 499 || status == 502
}

/// What the request path knows when a request ends, for its ledger row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowFacts<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) model: &'a str,
    pub(crate) status: u16,
    pub(crate) stream_outcome: Option<&'a str>,
    pub(crate) tokens: Option<&'a TokenAccounting>,
    pub(crate) elapsed: Duration,
}

/// A request's ledger row, written once.
#[derive(Debug)]
pub(crate) struct LedgerRow {
    ledger: Arc<Ledger>,
    prices: Arc<PriceTable>,
    id: String,
    key_name: String,
    backend: String,
    endpoint: &'static str,
    written: bool,
    /// The request continues an agent's tool loop (its tokens are the
    /// loop's: `tool_loop_tokens`).
    pub(crate) tool_loop: bool,
    /// Stamps the row.
    clock: GatewayClock,
    /// Upstream attempts (retries and fallbacks included).
    pub(crate) attempts: u32,
}

impl LedgerRow {
    pub(crate) fn new(
        ledger: Arc<Ledger>,
        prices: Arc<PriceTable>,
        id: &str,
        key_name: &str,
        backend: &str,
        endpoint: &'static str,
    ) -> Self {
        Self {
            ledger,
            prices,
            id: id.to_owned(),
            key_name: key_name.to_owned(),
            backend: backend.to_owned(),
            endpoint,
            written: false,
            tool_loop: false,
            clock: GatewayClock::system(),
            attempts: 1,
        }
    }

    /// The backend that served the request, after a retry or fallback
    /// moved it.
    pub(crate) fn set_backend(&mut self, backend: &str) {
        backend.clone_into(&mut self.backend);
    }

    fn entry(&self, facts: RowFacts<'_>) -> LedgerEntry {
        let RowFacts {
            tenant,
            model,
            status,
            stream_outcome,
            tokens,
            elapsed,
        } = facts;
        let outcome = match (status, stream_outcome) {
            (_, Some("client_disconnected")) | (499, _) => Outcome::ClientDisconnected,
            (_, Some("timeout")) | (504, _) => Outcome::Timeout,
            (_, Some("upstream_error")) => Outcome::UpstreamError,
            (s, _) if s >= 500 => Outcome::UpstreamError,
            (s, _) if s >= 400 => Outcome::Refused,
            _ => Outcome::Completed,
        };
        let (actual, estimated) = match tokens {
            Some(t) => (t.actual(status), t.reserved),
            None => (ActualUsage::default(), 0),
        };
        let mut entry = LedgerEntry {
            request_id: self.id.clone(),
            ts: self.clock.unix_ms(),
            tenant: tenant.to_owned(),
            key_name: self.key_name.clone(),
            model: model.to_owned(),
            backend: self.backend.clone(),
            endpoint: self.endpoint.to_owned(),
            status,
            outcome,
            prompt_tokens: actual.prompt,
            completion_tokens: actual.completion,
            cached_tokens: actual.cached,
            reasoning_tokens: actual.reasoning,
            // A request that continues an agent's tool loop: all of its
            // tokens are the loop's.
            tool_loop_tokens: self
                .tool_loop
                .then_some(actual.prompt.saturating_add(actual.completion)),
            estimated_tokens: estimated,
            usage_source: actual.source,
            cost_micros: 0,
            latency_ms: elapsed.as_millis() as u64,
            attempts: self.attempts.max(1),
        };
        entry.cost_micros = self.prices.cost_of(&entry);
        entry
    }

    /// The row, the first time it is asked for; `None` once written.
    fn take(&mut self, facts: RowFacts<'_>) -> Option<LedgerEntry> {
        if std::mem::replace(&mut self.written, true) {
            return None;
        }
        let entry = self.entry(facts);
        crate::metrics::usage(
            &entry.tenant,
            &entry.model,
            entry.prompt_tokens,
            entry.completion_tokens,
            entry.cost_micros,
        );
        Some(entry)
    }

    fn failed(&self, e: &palisade_ledger::LedgerError) {
        metrics::counter!(crate::metrics::LEDGER_ERRORS).increment(1);
        tracing::error!(error = %e, id = %self.id, "ledger write failed");
    }

    /// Writes the row and waits until it is committed.
    pub(crate) async fn write(&mut self, facts: RowFacts<'_>) {
        if let Some(entry) = self.take(facts) {
            if let Err(e) = self.ledger.record(&entry).await {
                self.failed(&e);
            }
        }
    }

    /// Queues the row without waiting (for requests that end where the
    /// request path cannot await: a dropped stream, a cancelled future).
    pub(crate) fn write_nowait(&mut self, facts: RowFacts<'_>) {
        if let Some(entry) = self.take(facts) {
            if let Err(e) = self.ledger.record_nowait(entry) {
                self.failed(&e);
            }
        }
    }
}

/// The price table from config (dollars per million tokens → micro-dollars).
pub(crate) fn price_table(config: &palisade_config::LedgerConfig) -> PriceTable {
    let micros = |usd: f64| (usd * 1_000_000.0).round() as u64;
    let price = |p: &palisade_config::PriceConfig| palisade_ledger::Price {
        input_per_mtok_micros: micros(p.input_usd_per_mtok),
        output_per_mtok_micros: micros(p.output_usd_per_mtok),
        cached_input_per_mtok_micros: None,
    };
    let default = config
        .prices
        .get("default")
        .map(price)
        .unwrap_or(palisade_ledger::Price {
            input_per_mtok_micros: 0,
            output_per_mtok_micros: 0,
            cached_input_per_mtok_micros: None,
        });
    config
        .prices
        .iter()
        .filter(|(m, _)| m.as_str() != "default")
        .fold(PriceTable::new(default), |t, (m, p)| {
            t.with_model(m.clone(), price(p))
        })
}
