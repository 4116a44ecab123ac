//! Runtime API keys (`[auth.runtime]`): this replica's copy of the ledger
//! store's `api_keys` table, refreshed on an interval so that a key
//! created, rotated or revoked through any replica takes effect here within
//! `auth.runtime.refresh_ms`, without a restart.
//!
//! The table maps SHA-256 hashes to principals, like the config keys; a
//! rotated key's previous hash stays in the table until its overlap window
//! ends. Revoked rows are left out when the table is built, so a revoked key
//! is indistinguishable from one that never existed (`invalid_api_key`, the
//! same lookup, the same timing): a caller holding a stolen, revoked key
//! learns nothing it could use. An expired key answers `key_expired`: only
//! someone holding the real secret can see that, and it tells a legitimate
//! client what to do.
//!
//! Must not: hold or log a plaintext key, or write to the store (the admin
//! API in `api::keys` does).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use palisade_ledger::{KeysVersion, Ledger, LedgerError, StoredKey};
use palisade_openai::{ApiError, ErrorCode};

use crate::http::auth::Principal;

/// One hash's entry: whom it authenticates, and until when.
#[derive(Debug, Clone)]
struct Entry {
    principal: Principal,
    /// The key's expiry (Unix ms): `key_expired` from then on.
    expires_ms: Option<i64>,
    /// For a rotated key's previous secret: unknown from then on.
    valid_until_ms: Option<i64>,
}

/// The key table as last loaded.
#[derive(Debug, Default)]
struct Table {
    by_hash: HashMap<[u8; 32], Entry>,
}

/// The replica's runtime key table and its refresh state.
#[derive(Debug)]
pub(crate) struct RuntimeKeys {
    table: ArcSwap<Table>,
    /// The store's change marker at the last load; `None` before the first.
    version: Mutex<Option<KeysVersion>>,
    /// Serializes refreshes (the poller and the admin API's refresh after a
    /// write), so an older load cannot replace a newer one.
    refreshing: tokio::sync::Mutex<()>,
    pub(crate) refresh: Duration,
    pub(crate) max_keys_per_tenant: u64,
}

fn decode(hex_hash: &str) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut hash).ok()?;
    Some(hash)
}

/// The principal a stored key authenticates as.
pub(crate) fn principal_of(key: &StoredKey) -> Principal {
    Principal {
        tenant: key.tenant.as_str().into(),
        key_name: key.name.as_str().into(),
        admin: key.admin,
        approver: key.approver,
        executor: key.executor,
        priority_class: palisade_config::Priority::Normal.class(),
        models: key.models.as_ref().map(|m| m.iter().cloned().collect()),
        key_id: Some(key.id.as_str().into()),
        budget: budget_of(key),
    }
}

/// The key's budget as the gateway enforces it (`None`: nothing set). A
/// row the admin API would not have written (a negative or out-of-range
/// value, an unknown period: edited by hand) fails closed: the key is
/// given a zero token cap, refusing its requests, and the error is logged.
pub(crate) fn budget_of(key: &StoredKey) -> Option<palisade_limits::KeyBudget> {
    let b = &key.budget;
    let unsigned = |v: Option<i64>| v.map(u64::try_from).transpose();
    let parsed = (|| {
        let period = match b.budget_period.as_deref() {
            None => palisade_limits::BudgetPeriod::Monthly,
            Some(p) => palisade_limits::BudgetPeriod::parse(p).ok_or(())?,
        };
        let budget = palisade_limits::KeyBudget {
            max_cost_micros: unsigned(b.max_budget_micros).map_err(|_| ())?,
            max_tokens: unsigned(b.max_tokens).map_err(|_| ())?,
            period,
            requests_per_minute: unsigned(b.requests_per_minute).map_err(|_| ())?,
            tokens_per_minute: unsigned(b.tokens_per_minute).map_err(|_| ())?,
        };
        budget.validate().map_err(|_| ())?;
        Ok::<_, ()>(budget)
    })();
    match parsed {
        Ok(budget) => budget.is_limited().then_some(budget),
        Err(()) => {
            tracing::error!(key_id = %key.id, "stored key budget is out of range; refusing the key's requests");
            Some(palisade_limits::KeyBudget {
                max_tokens: Some(0),
                ..palisade_limits::KeyBudget::default()
            })
        }
    }
}

impl Table {
    fn build(keys: &[StoredKey]) -> Self {
        let mut by_hash = HashMap::new();
        for key in keys.iter().filter(|k| k.revoked_ms.is_none()) {
            let principal = principal_of(key);
            if let Some(hash) = decode(&key.sha256) {
                by_hash.insert(
                    hash,
                    Entry {
                        principal: principal.clone(),
                        expires_ms: key.expires_ms,
                        valid_until_ms: None,
                    },
                );
            }
            if let (Some(old), Some(until)) = (&key.old_sha256, key.old_until_ms) {
                if let Some(hash) = decode(old) {
                    by_hash.insert(
                        hash,
                        Entry {
                            principal,
                            expires_ms: key.expires_ms,
                            valid_until_ms: Some(until),
                        },
                    );
                }
            }
        }
        Self { by_hash }
    }
}

impl RuntimeKeys {
    /// An empty table; [`refresh`](Self::refresh) fills it.
    pub(crate) fn new(config: &palisade_config::RuntimeKeysConfig) -> Self {
        Self {
            table: ArcSwap::from_pointee(Table::default()),
            version: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            refresh: Duration::from_millis(config.refresh_ms),
            max_keys_per_tenant: config.max_keys_per_tenant,
        }
    }

    /// Looks a key hash up at `now_ms`. `None`: not a runtime key (or a
    /// revoked one, or a rotated secret past its overlap). `Some(Err)`:
    /// the key is known but expired.
    pub(crate) fn lookup(
        &self,
        hash: &[u8; 32],
        now_ms: i64,
    ) -> Option<Result<Principal, ApiError>> {
        let table = self.table.load();
        let entry = table.by_hash.get(hash)?;
        if entry.valid_until_ms.is_some_and(|until| now_ms >= until) {
            return None;
        }
        if entry.expires_ms.is_some_and(|at| now_ms >= at) {
            return Some(Err(ApiError::new(
                ErrorCode::KeyExpired,
                "this API key has expired",
            )));
        }
        Some(Ok(entry.principal.clone()))
    }

    /// Reloads the table if the store changed since the last load. Returns
    /// whether it reloaded. On error the running table stays.
    pub(crate) async fn refresh(&self, ledger: &Ledger) -> Result<bool, LedgerError> {
        let _one = self.refreshing.lock().await;
        let version = ledger.keys_version().await?;
        let last = *self.version.lock().unwrap_or_else(PoisonError::into_inner);
        if last == Some(version) {
            return Ok(false);
        }
        let keys = ledger.keys_load().await?;
        self.table.store(Arc::new(Table::build(&keys)));
        *self.version.lock().unwrap_or_else(PoisonError::into_inner) = Some(version);
        metrics::gauge!(crate::metrics::RUNTIME_KEYS)
            .set(keys.iter().filter(|k| k.revoked_ms.is_none()).count() as f64);
        Ok(true)
    }

    /// Polls the store every `refresh` for as long as the process runs.
    /// A failed poll is logged and counted; the running table keeps
    /// serving (a store outage must not log everyone out).
    pub(crate) fn spawn(self: &Arc<Self>, ledger: Arc<Ledger>) {
        let keys = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(keys.refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let result = match keys.refresh(&ledger).await {
                    Ok(true) => "reloaded",
                    Ok(false) => "unchanged",
                    Err(e) => {
                        tracing::warn!(error = %e, "runtime key refresh failed; keeping the loaded keys");
                        "error"
                    }
                };
                metrics::counter!(crate::metrics::RUNTIME_KEYS_REFRESH, "result" => result)
                    .increment(1);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: &str) -> StoredKey {
        StoredKey {
            id: id.into(),
            tenant: "acme".into(),
            name: id.into(),
            sha256: hex::encode(crate::http::auth::hash_key(secret)),
            old_sha256: None,
            old_until_ms: None,
            admin: false,
            approver: false,
            executor: false,
            models: None,
            expires_ms: None,
            created_ms: 0,
            rotated_ms: None,
            revoked_ms: None,
            budget: palisade_ledger::StoredBudget::default(),
        }
    }

    fn check(keys: Vec<StoredKey>, secret: &str, now_ms: i64, expected: Option<&str>) {
        let rk = RuntimeKeys::new(&palisade_config::RuntimeKeysConfig::default());
        rk.table.store(Arc::new(Table::build(&keys)));
        let got = rk
            .lookup(&crate::http::auth::hash_key(secret), now_ms)
            .map(|r| match r {
                Ok(p) => p.key_name.to_string(),
                Err(e) => e.code.as_str().to_owned(),
            });
        assert_eq!(got.as_deref(), expected, "{secret} at {now_ms}");
    }

    #[test]
    fn lookups_follow_expiry_overlap_and_revocation() {
        let live = key("a", "s-a");
        check(vec![live.clone()], "s-a", 5, Some("a"));
        check(vec![live.clone()], "s-x", 5, None);
        let expiring = StoredKey {
            expires_ms: Some(10),
            ..live.clone()
        };
        check(vec![expiring.clone()], "s-a", 9, Some("a"));
        check(vec![expiring], "s-a", 10, Some("key_expired"));
        let revoked = StoredKey {
            revoked_ms: Some(1),
            ..live.clone()
        };
        check(vec![revoked], "s-a", 5, None);
        let rotated = StoredKey {
            sha256: hex::encode(crate::http::auth::hash_key("s-new")),
            old_sha256: Some(live.sha256.clone()),
            old_until_ms: Some(100),
            ..live
        };
        check(vec![rotated.clone()], "s-a", 99, Some("a"));
        check(vec![rotated.clone()], "s-a", 100, None);
        check(vec![rotated], "s-new", 1_000, Some("a"));
    }

    #[test]
    fn a_stored_budget_is_read_back_and_a_hand_edited_one_fails_closed() {
        use palisade_ledger::StoredBudget;
        use palisade_limits::{BudgetPeriod, KeyBudget};
        let with = |budget: StoredBudget| StoredKey {
            budget,
            ..key("a", "s-a")
        };
        let frozen = Some(KeyBudget {
            max_tokens: Some(0),
            ..KeyBudget::default()
        });
        let cases = [
            (StoredBudget::default(), None),
            (
                StoredBudget {
                    max_budget_micros: Some(5_000_000),
                    budget_period: Some("daily".into()),
                    requests_per_minute: Some(60),
                    ..StoredBudget::default()
                },
                Some(KeyBudget {
                    max_cost_micros: Some(5_000_000),
                    period: BudgetPeriod::Daily,
                    requests_per_minute: Some(60),
                    ..KeyBudget::default()
                }),
            ),
            (
                StoredBudget {
                    max_budget_micros: Some(-1),
                    ..StoredBudget::default()
                },
                frozen,
            ),
            (
                StoredBudget {
                    requests_per_minute: Some(0),
                    ..StoredBudget::default()
                },
                frozen,
            ),
            (
                StoredBudget {
                    max_tokens: Some(10),
                    budget_period: Some("weekly".into()),
                    ..StoredBudget::default()
                },
                frozen,
            ),
        ];
        for (stored, expected) in cases {
            assert_eq!(budget_of(&with(stored.clone())), expected, "{stored:?}");
        }
    }
}
