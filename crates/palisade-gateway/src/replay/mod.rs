//! Store an outcome, replay it: idempotency keys and the exact-match response
//! cache, on one table type ([`palisade_replay::Table`]) held in this process.
//!
//! **Idempotency** ([`Replay::begin`], after **route**, before the request
//! gates): a request with `Idempotency-Key` claims the key in its tenant's
//! shard, scoped by tenant *and* API key name (another key of the same tenant
//! never sees it), fingerprinted by its endpoint and canonical JSON body.
//! A repeat while the first runs is `409 idempotency_in_flight` with
//! `Retry-After`; with another body, `422 idempotency_key_reused`; after it
//! finished, the stored response. A policy change in between does not matter:
//! the replay is the original (the client asked for *that* outcome).
//!
//! **Cache** ([`Replay::lookup`], after the request gates, before the token
//! budget): a request the gates allowed unflagged, offering no tools, is
//! looked up by tenant, policy version, extraction tier, endpoint, the
//! retrieved-content header and the canonical body. A hit never reaches the
//! upstream. The input gates still run on every hit (they decide blocks and
//! count offences), so a cached answer is never served to a request the
//! current policy refuses, and a new policy version misses.
//!
//! What is stored, in both: the response as the client received it, after
//! the tool and output gates (a stream: the relayed bytes, framing and
//! `[DONE]` included), so a replay never bypasses them. Only successes are
//! stored: an error (a gate's refusal, a limit, an upstream failure, a stream
//! cut short or a client gone) releases the idempotency key, so the retry runs
//! as a new request — every such error is one a retry may cure, and none
//! reached the model twice. A content-filtered stream is stored for
//! idempotency (it is the outcome) but never cached.
//!
//! A replay writes **no ledger row** (nothing was generated, nothing is
//! billed) and one audit record (`gate: output`, `action: allow`, evidence
//! `replay:idempotency` or `replay:cache` and `replay_of:<original id>`,
//! with the original's policy version). Tool calls are not judged again: the
//! replayed capability tokens are the original's, single-use, so a held
//! confirmation and a tool execution stay exactly-once.
//!
//! Must not: store a response before the response filters ran, or look up
//! another tenant's shard.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use palisade_config::Config;
use palisade_limits::Clock;
use palisade_openai::request::{Endpoint, RequestBody};
use palisade_openai::{ApiError, ErrorCode};
use palisade_replay::{scope_key, Begin, Fingerprint, Limits, Stored, Table};

use crate::clock::GatewayClock;
use crate::context::RequestCtx;
use crate::http::auth::Principal;

mod recorder;
pub(crate) use recorder::Recorder;
use recorder::{CacheSlot, IdemHold};

/// The longest `Idempotency-Key` accepted (Stripe's limit).
const MAX_KEY_BYTES: usize = 255;
/// How long past the request's deadline an in-flight entry is held: long
/// enough for the response filters and the ledger to finish after the
/// upstream's last byte.
const LEASE_MARGIN_MS: u64 = 5_000;

/// Which mechanism a replay came from (the `x-palisade-replay` header and
/// the audit evidence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Idempotency,
    Cache,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Idempotency => "idempotency",
            Self::Cache => "cache",
        }
    }
}

/// A table behind its lock, and the clock its entries age by.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    table: Arc<Mutex<Table>>,
    clock: GatewayClock,
}

impl Shared {
    fn new(limits: Limits, clock: GatewayClock) -> Self {
        Self {
            table: Arc::new(Mutex::new(Table::new(limits))),
            clock,
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.now().0 / 1_000_000
    }

    /// Runs `f` on the table. The lock is held for a hash lookup and at most
    /// a few evictions, never across an `.await`.
    fn with<T>(&self, f: impl FnOnce(&mut Table, u64) -> T) -> T {
        let now = self.now_ms();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut table, now)
    }

    fn max_entry_bytes(&self) -> usize {
        self.with(|t, _| t.limits().max_entry_bytes)
    }
}

/// Both tables, as configured (`None`: off).
#[derive(Debug, Default)]
pub(crate) struct Replay {
    idempotency: Option<Shared>,
    cache: Option<Shared>,
}

impl Replay {
    /// From `[idempotency]` and `[cache]`.
    pub(crate) fn from_config(config: &Config, clock: GatewayClock) -> Self {
        let idem = &config.idempotency;
        let cache = &config.cache;
        Self {
            idempotency: idem.enabled.then(|| {
                Shared::new(
                    Limits {
                        ttl_ms: idem.ttl_secs.saturating_mul(1_000),
                        max_entries: idem.max_entries_per_tenant,
                        max_bytes: idem.max_bytes_per_tenant,
                        max_entry_bytes: idem.max_entry_bytes,
                    },
                    clock.clone(),
                )
            }),
            cache: cache.enabled.then(|| {
                Shared::new(
                    Limits {
                        ttl_ms: cache.ttl_secs.saturating_mul(1_000),
                        max_entries: cache.max_entries_per_tenant,
                        max_bytes: cache.max_bytes_per_tenant,
                        max_entry_bytes: cache.max_entry_bytes,
                    },
                    clock,
                )
            }),
        }
    }

    /// Idempotency, for a request with an `Idempotency-Key`: `Ok(Some)` is
    /// the first request's response to replay; `Ok(None)`: go on (the key is
    /// held on `ctx` until the response is stored, or released when the
    /// request fails). `Err`: 400 (a malformed key), 409, 422, or 429 when
    /// the tenant's quota is all running requests.
    pub(crate) fn begin(
        &self,
        principal: &Principal,
        headers: &HeaderMap,
        endpoint: Endpoint,
        body: &[u8],
        deadline_ms: u64,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Arc<Stored>>, ApiError> {
        let Some(shared) = &self.idempotency else {
            return Ok(None);
        };
        let Some(value) = headers.get("idempotency-key") else {
            return Ok(None);
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_BYTES)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "Idempotency-Key must be 1 to {MAX_KEY_BYTES} visible ASCII characters"
                    ),
                )
                .with_param("Idempotency-Key")
            })?;
        let label = endpoint.label();
        let fp =
            Fingerprint::of_json(label, body).unwrap_or_else(|| Fingerprint::of_bytes(label, body));
        let tenant = &*principal.tenant;
        let slot = scope_key(&[
            b"idempotency",
            tenant.as_bytes(),
            principal.key_name.as_bytes(),
            key.as_bytes(),
        ]);
        let lease_ms = deadline_ms.saturating_add(LEASE_MARGIN_MS);
        let begun = shared.with(|t, now| t.begin(tenant, slot, fp, lease_ms, now));
        crate::metrics::replay_lookup("idempotency", begin_label(&begun));
        match begun {
            Begin::Fresh(lease) => {
                ctx.replay
                    .get_or_insert_with(|| Recorder::new(shared.max_entry_bytes()))
                    .idem = Some(IdemHold::new(shared.clone(), tenant, slot, lease));
                Ok(None)
            }
            Begin::Replay(stored) => Ok(Some(stored)),
            // Retry-After is a poll interval, not the lease: the first
            // request usually ends within seconds, and a repeat costs a
            // hash lookup. It never exceeds what is left of the lease.
            Begin::InFlight { retry_after_ms } => Err(ApiError::new(
                ErrorCode::IdempotencyInFlight,
                "a request with this Idempotency-Key is still running; retry after it ends",
            )
            .with_retry_after(Some(retry_after_ms.div_ceil(1_000).clamp(1, 2)))),
            Begin::Mismatch => Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request body",
            )
            .with_param("Idempotency-Key")),
            Begin::Full => Err(ApiError::new(
                ErrorCode::ConcurrencyLimited,
                "too many requests with an Idempotency-Key are running for this tenant",
            )
            .with_retry_after(Some(1))),
        }
    }

    /// The cache, after the request gates allowed `request`: `Some` is a hit
    /// to replay; on a miss, a cacheable request carries its slot on `ctx`
    /// and its response is stored when it succeeds.
    pub(crate) fn lookup(
        &self,
        principal: &Principal,
        headers: &HeaderMap,
        body: &[u8],
        request: &RequestBody,
        tier: &str,
        ctx: &mut RequestCtx,
    ) -> Option<Arc<Stored>> {
        let shared = self.cache.as_ref()?;
        if let Some(plan) = &ctx.gates {
            // A flagged request is judged on its own every time; its answer
            // is never reused as if it had been allowed outright.
            if plan.flagged || plan.flagged_context {
                return None;
            }
        }
        // Tool calls carry single-use capability tokens and may be held for
        // confirmation, and a tool loop's rounds are counted: an agent's
        // requests are never answered from the cache (nor are responses
        // carrying tool calls stored: see the recorder).
        let fields = request.fields();
        let tool_turn = fields
            .get("messages")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|m| {
                m.iter().any(|msg| {
                    msg.get("role").and_then(serde_json::Value::as_str) == Some("tool")
                        || msg.get("tool_calls").is_some()
                })
            });
        if tool_turn
            || ["tools", "functions"]
                .iter()
                .any(|k| fields.contains_key(*k))
        {
            return None;
        }
        let label = ctx.endpoint.label();
        let fp = Fingerprint::of_json(label, body)?;
        let version = policy_version(ctx);
        let retrieved = headers
            .get("x-palisade-retrieved")
            .map_or(&b""[..], HeaderValue::as_bytes);
        let tenant = &*principal.tenant;
        let slot = scope_key(&[
            b"cache",
            tenant.as_bytes(),
            version.as_bytes(),
            tier.as_bytes(),
            retrieved,
            &fp.0,
        ]);
        let hit = shared.with(|t, now| t.get(tenant, slot, now));
        crate::metrics::replay_lookup("cache", if hit.is_some() { "hit" } else { "miss" });
        if hit.is_none() {
            ctx.replay
                .get_or_insert_with(|| Recorder::new(shared.max_entry_bytes()))
                .cache = Some(CacheSlot::new(shared.clone(), tenant, slot));
        }
        hit
    }
}

fn begin_label(begun: &Begin) -> &'static str {
    match begun {
        Begin::Fresh(_) => "new",
        Begin::Replay(_) => "replay",
        Begin::InFlight { .. } => "in_flight",
        Begin::Mismatch => "mismatch",
        Begin::Full => "full",
    }
}

/// The version that judged this request: its gate plan's snapshot, or (for
/// embeddings, which pass no gate) the live one.
pub(crate) fn policy_version(ctx: &RequestCtx) -> String {
    match &ctx.gates {
        Some(plan) => plan.snapshot.version().to_string(),
        None => String::new(),
    }
}

/// Answers `ctx`'s request with `stored`, audited as a replay. A cache hit
/// under an idempotency key is also stored for that key, so its repeats
/// replay the same bytes. No ledger row: nothing reached the upstream.
pub(crate) fn respond(
    state: &crate::state::GatewayState,
    stored: Arc<Stored>,
    kind: Kind,
    mut ctx: RequestCtx,
) -> Response {
    audit(state, &stored, kind, &ctx);
    if let Some(recorder) = ctx.replay.take() {
        recorder.commit_copy(&stored);
    }
    let mut resp = Response::new(Body::from(stored.body.clone()));
    *resp.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let headers = resp.headers_mut();
    for (name, value) in &stored.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    headers.insert("x-palisade-replay", HeaderValue::from_static(kind.as_str()));
    if let Ok(v) = HeaderValue::from_str(&stored.origin) {
        headers.insert("x-palisade-replay-of", v);
    }
    ctx.stamp(headers);
    ctx.finish(stored.status, None);
    resp
}

/// One audit record per replay: what was served, from which request, under
/// which policy version.
fn audit(state: &crate::state::GatewayState, stored: &Stored, kind: Kind, ctx: &RequestCtx) {
    use palisade_policy::{AuditRecord, Evidence, Gate};
    let Some(version) = stored
        .policy_version
        .parse()
        .ok()
        .or_else(|| ctx.gates.as_ref().map(|p| p.snapshot.version()))
    else {
        // Embeddings pass no gate and carry no version: nothing to audit.
        return;
    };
    let record = AuditRecord {
        ts_ms: u64::try_from(GatewayClock::system().unix_ms()).unwrap_or(0),
        request_id: ctx.internal_id.clone(),
        tenant: ctx.tenant.as_deref().unwrap_or("-").to_owned(),
        route: ctx.route.to_owned(),
        model: ctx.model_label.to_string(),
        gate: Gate::Output,
        tier: "-".to_owned(),
        policy_version: version,
        evidence: Evidence {
            detector_reasons: vec![
                format!("replay:{}", kind.as_str()),
                format!("replay_of:{}", stored.origin),
            ],
            ..Evidence::default()
        },
        action: palisade_policy::Action::Allow,
        reasons: Vec::new(),
        latency_us: 0,
        shadow: None,
        degraded: None,
    };
    state.gates.audit.write(&record);
}
