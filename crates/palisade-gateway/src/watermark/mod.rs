//! Output watermarking's runtime: the master key (read once at start),
//! each tenant's green list for the current and past periods (built off the
//! async workers, cached and bounded), and the per-tenant daily allowance of
//! detect calls.
//!
//! The scheme itself (key derivation, green lists, the bias map, the
//! z-test) is `palisade-watermark`'s; the request-path phase is
//! [`crate::pipeline::watermark`] and the detect API [`crate::api::watermark`].
//! Must not: decide what is green or how text scores, or read the clock
//! except through its [`GatewayClock`].

use std::sync::{Arc, Mutex};

use hashlink::LruCache;
use palisade_config::WatermarkConfig;
use palisade_watermark::{derive_key, period_of, ClientBias, GreenList, Key};

use crate::clock::GatewayClock;
use crate::cpu::CpuPool;

/// Requests whose body carried the watermark upstream.
pub(crate) const MARKED: &str = "palisade_watermark_marked_total";
/// Client `logit_bias` fields stripped, merged or refused on watermarked
/// models, by action.
pub(crate) const CLIENT_BIAS: &str = "palisade_watermark_client_bias_total";
/// Detect calls answered or refused, by caller kind and outcome.
pub(crate) const DETECT_CALLS: &str = "palisade_watermark_detect_total";

/// Green lists kept: a tenant's current and recent periods for the busiest
/// tenants. Each is `vocab / 8` bytes (16 KiB for a 128k vocabulary).
const CACHED_LISTS: usize = 1024;
/// Tenants whose detect allowance is tracked; beyond it the table is
/// cleared (a day's counts lost, never a refusal made up).
const TRACKED_TENANTS: usize = 100_000;

/// Why watermarking cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatermarkSetupError {
    /// The key variable is unset or not 64 hex digits.
    #[error("watermark key: {0} must hold 64 hex digits (a 32-byte key)")]
    Key(String),
}

/// Green lists by (tenant, period, vocabulary size).
type ListCache = LruCache<(Arc<str>, u64, u32), Arc<GreenList>>;

/// The watermark's state (present only with `[watermark] enabled`).
pub(crate) struct Watermark {
    pub(crate) config: WatermarkConfig,
    master: [u8; 32],
    clock: GatewayClock,
    lists: Mutex<ListCache>,
    /// Tenant → (UTC day, detect calls that day).
    detect_calls: Mutex<std::collections::HashMap<Arc<str>, (i64, u32)>>,
}

impl std::fmt::Debug for Watermark {
    // Never print the master key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watermark")
            .field("models", &self.config.models)
            .finish_non_exhaustive()
    }
}

impl Watermark {
    /// `None` when watermarking is off; the key is read from `env` once.
    pub(crate) fn from_config(
        config: &WatermarkConfig,
        env: &impl Fn(&str) -> Option<String>,
        clock: GatewayClock,
    ) -> Result<Option<Self>, WatermarkSetupError> {
        if !config.enabled {
            return Ok(None);
        }
        let bad = || WatermarkSetupError::Key(config.key_env.clone());
        let hex_key = env(&config.key_env).ok_or_else(bad)?;
        let bytes = hex::decode(hex_key.trim()).map_err(|_| bad())?;
        let master = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad())?;
        metrics::describe_counter!(
            MARKED,
            "Requests sent upstream with the watermark's logit_bias."
        );
        metrics::describe_counter!(
            CLIENT_BIAS,
            "Client logit_bias fields on watermarked models, by action (strip, merge, refuse)."
        );
        metrics::describe_counter!(
            DETECT_CALLS,
            "Watermark detect calls, by caller (admin, tenant) and outcome."
        );
        Ok(Some(Self {
            config: config.clone(),
            master,
            clock,
            lists: Mutex::new(LruCache::new(CACHED_LISTS)),
            detect_calls: Mutex::new(std::collections::HashMap::new()),
        }))
    }

    /// Whether requests of `tenant` to the route `model` are watermarked.
    pub(crate) fn covers(&self, tenant: &str, model: &str) -> bool {
        self.config.covers(tenant) && self.config.models.iter().any(|m| m == model)
    }

    /// What to do with a client's own `logit_bias`.
    pub(crate) fn client_bias(&self) -> ClientBias {
        self.config.client_logit_bias
    }

    /// The current period.
    pub(crate) fn period_now(&self) -> u64 {
        // Validation keeps rotation_hours ≥ 1, so the period is defined.
        period_of(self.clock.unix_ms(), self.config.rotation_ms()).unwrap_or(0)
    }

    /// `tenant`'s key in `period`.
    pub(crate) fn key(&self, tenant: &str, period: u64) -> Key {
        derive_key(&self.master, tenant, period)
    }

    /// `tenant`'s green list in `period` over `vocab` tokens: from the
    /// cache, or built on the CPU pool (one HMAC per vocabulary entry).
    pub(crate) async fn green_list(
        &self,
        cpu: &CpuPool,
        tenant: &Arc<str>,
        period: u64,
        vocab: u32,
    ) -> Result<Arc<GreenList>, palisade_openai::ApiError> {
        let id = (tenant.clone(), period, vocab);
        if let Some(list) = self.lock_lists().get(&id) {
            return Ok(list.clone());
        }
        let key = self.key(tenant, period);
        let gamma = self.config.gamma;
        let built = cpu
            .run(move || GreenList::new(&key, vocab, gamma))
            .await?
            .map_err(|e| {
                // Validation bounds gamma; only a tiny tokenizer can get here.
                tracing::error!(error = %e, "cannot build a watermark green list");
                palisade_openai::ApiError::new(
                    palisade_openai::ErrorCode::InternalError,
                    "internal error",
                )
            })?;
        let list = Arc::new(built);
        self.lock_lists().insert(id, list.clone());
        Ok(list)
    }

    fn lock_lists(&self) -> std::sync::MutexGuard<'_, ListCache> {
        self.lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one of `tenant`'s detect calls for today: `Err(seconds until
    /// the next UTC day)` once the day's allowance is spent.
    pub(crate) fn take_detect_call(&self, tenant: &Arc<str>) -> Result<(), u64> {
        const DAY_MS: i64 = 86_400_000;
        let now = self.clock.unix_ms();
        let day = now.div_euclid(DAY_MS);
        let mut calls = self
            .detect_calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if calls.len() >= TRACKED_TENANTS && !calls.contains_key(tenant) {
            calls.clear();
        }
        let entry = calls.entry(tenant.clone()).or_insert((day, 0));
        if entry.0 != day {
            *entry = (day, 0);
        }
        if entry.1 >= self.config.tenant_detect_per_day {
            let left_ms = DAY_MS - now.rem_euclid(DAY_MS);
            return Err(u64::try_from(left_ms).unwrap_or(1).div_ceil(1000).max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}
