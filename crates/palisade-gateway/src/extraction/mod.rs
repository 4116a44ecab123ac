//! Model-extraction defence, the gateway's side: the request path hands each
//! request's text and parameters to a background worker through a bounded
//! channel (never waiting: a full channel drops the record and counts it),
//! the worker computes the features, runs `palisade-extraction`'s tracker,
//! persists features and standings (SQLite, with retention) and publishes
//! each key's standing; the request path reads the published standing on
//! the key's next request and applies the ladder's action.
//!
//! The cross-account hunt ([`hunt`]) runs beside it on its own thread,
//! reading the store; a campaign operators confirm holds its keys at
//! `extraction.hunt.confirmed_action` or above (the `floors` read here).
//!
//! Must not: decide anything itself (the detectors, the ladder and the hunt
//! are in `palisade-extraction`), block a request on the worker or the
//! store, or keep prompt text or raw client data beyond the channel (the
//! store holds hashes and counts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use palisade_config::ExtractionConfig;
use palisade_extraction::{
    sampling_signature, Action, GateOutcome, LadderConfig, ParamPolicy, SamplingSignature,
    Standing, TrackerConfig,
};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::clock::GatewayClock;
use crate::gates::audit::AuditSink;

pub(crate) mod admin;
pub mod hunt;
mod hunt_store;
mod pg_store;
mod store;
mod worker;

pub use store::StoreError;

/// Records dropped because the worker's queue was full.
const RECORDS_DROPPED: &str = "palisade_extraction_records_dropped_total";
/// Requests the ladder slowed or refused, by action.
const LADDER_ACTIONS: &str = "palisade_extraction_ladder_actions_total";

/// Bytes of a prompt handed to the worker; its sketches read 4,096
/// characters, so more would be copied for nothing.
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// What the worker's queue carries.
#[derive(Debug)]
pub(crate) enum Message {
    /// One request to sketch, track and store.
    Request(Record),
    /// Time to pull the standings other replicas wrote (shared stores).
    Sync,
}

/// One request, as handed to the worker.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) at_ms: i64,
    pub(crate) tenant: Arc<str>,
    pub(crate) key: Arc<str>,
    pub(crate) text: String,
    pub(crate) sampling: SamplingSignature,
    pub(crate) outcome: GateOutcome,
    pub(crate) fingerprint: u64,
}

/// What the ladder says about a key's next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve (observe and flag act in the worker and the audit log only).
    Serve,
    /// Serve after this delay.
    Slow(Duration),
    /// Refuse until re-verified; retry after this many seconds.
    Reverify(u64),
    /// Refuse; retry after this many seconds.
    Block(u64),
}

/// Standings of keys above `observe`, published by the worker.
pub(crate) type Published = Arc<RwLock<HashMap<String, Standing>>>;

/// The extraction defence's shared state.
#[derive(Debug)]
pub(crate) struct Extraction {
    enabled: bool,
    enforce: bool,
    default_tier: (String, ParamPolicy),
    tenant_tiers: HashMap<String, (String, ParamPolicy)>,
    ladder: LadderConfig,
    clock: GatewayClock,
    sender: mpsc::Sender<Message>,
    receiver: Mutex<Option<mpsc::Receiver<Message>>>,
    published: Published,
    /// The hunt job's shared state (latest report, confirmed keys' floors).
    pub(crate) hunt: Arc<hunt::HuntShared>,
}

impl Extraction {
    /// Builds the state from a validated config (tiers resolved once).
    pub(crate) fn from_config(config: &ExtractionConfig) -> Self {
        let resolve = |name: &str| (name.to_owned(), config.tier(name).unwrap_or_default());
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        Self {
            enabled: config.enabled,
            enforce: config.enforce,
            default_tier: resolve(&config.default_tier),
            tenant_tiers: config
                .tenant_tiers
                .iter()
                .map(|(tenant, tier)| (tenant.clone(), resolve(tier)))
                .collect(),
            ladder: config.ladder.clone(),
            clock: GatewayClock::system(),
            sender,
            receiver: Mutex::new(Some(receiver)),
            published: Arc::new(RwLock::new(HashMap::new())),
            hunt: Arc::new(hunt::HuntShared::new(config)),
        }
    }

    /// The tier (name and policy) of `tenant`.
    pub(crate) fn tier_of(&self, tenant: &str) -> &(String, ParamPolicy) {
        self.tenant_tiers.get(tenant).unwrap_or(&self.default_tier)
    }

    /// Starts the worker (once): opens the store, restores standings.
    pub(crate) fn spawn(
        &self,
        config: &ExtractionConfig,
        audit: AuditSink,
        policy: Arc<crate::gates::policy::PolicyStore>,
        webhook: Option<String>,
    ) -> Result<(), StoreError> {
        if !self.enabled {
            return Ok(());
        }
        let Some(receiver) = self.receiver.lock().ok().and_then(|mut r| r.take()) else {
            return Ok(());
        };
        let store = match &config.store {
            Some(url) => Some(
                store::off_runtime(|| {
                    store::Store::open(url, config.retention_hours, config.max_rows)
                })
                .unwrap_or_else(|| {
                    Err(StoreError {
                        url: url.clone(),
                        message: "opening the store panicked".into(),
                    })
                })?,
            ),
            None => None,
        };
        let tracker = TrackerConfig {
            detectors: config.detectors.clone(),
            ladder: config.ladder.clone(),
            max_keys: config.max_keys,
            ..TrackerConfig::default()
        };
        if store.as_ref().is_some_and(store::Store::is_shared) {
            worker::spawn_sync_ticker(self.sender.downgrade());
        }
        worker::spawn(
            receiver,
            tracker,
            store,
            self.published.clone(),
            audit,
            policy,
            self.clock.clone(),
        );
        hunt::spawn(&self.hunt, webhook, self.clock.clone());
        Ok(())
    }

    /// Hands one request to the worker. Never waits: with the queue full
    /// the record is dropped and counted.
    pub(crate) fn record(
        &self,
        tenant: &Arc<str>,
        key: &Arc<str>,
        fields: &Map<String, Value>,
        outcome: GateOutcome,
        fingerprint: u64,
    ) {
        if !self.enabled {
            return;
        }
        let record = Record {
            at_ms: self.clock.unix_ms(),
            tenant: tenant.clone(),
            key: key.clone(),
            text: query_text(fields),
            sampling: sampling_signature(fields),
            outcome,
            fingerprint,
        };
        if self.sender.try_send(Message::Request(record)).is_err() {
            metrics::counter!(RECORDS_DROPPED).increment(1);
        }
    }

    /// The ladder's verdict on `key`'s next request. `Serve` when enforcement
    /// is off or the key stands below `slow`.
    pub(crate) fn verdict(&self, tenant: &str, key: &str) -> Verdict {
        if !self.enabled || !self.enforce {
            return Verdict::Serve;
        }
        let id = worker::key_id(tenant, key);
        let standing = {
            let Ok(map) = self.published.read() else {
                return Verdict::Serve;
            };
            map.get(&id).copied()
        };
        let floor = self.hunt.floor(&id);
        if standing.is_none() && floor.is_none() {
            return Verdict::Serve;
        }
        let now = self.clock.unix_ms();
        let standing = standing.unwrap_or_default();
        // A confirmed campaign holds the key at its floor; the ladder may
        // still take it higher.
        let action = standing
            .action(now, &self.ladder)
            .max(floor.unwrap_or_default());
        let verdict = match action {
            Action::Observe | Action::Flag => return Verdict::Serve,
            Action::Slow => Verdict::Slow(Duration::from_millis(self.ladder.slow_delay_ms)),
            Action::Reverify => Verdict::Reverify(
                standing
                    .retry_after_secs(action, now, &self.ladder)
                    .max(hunt::FLOOR_RETRY_SECS),
            ),
            Action::Block => Verdict::Block(
                standing
                    .retry_after_secs(action, now, &self.ladder)
                    .max(hunt::FLOOR_RETRY_SECS),
            ),
        };
        metrics::counter!(LADDER_ACTIONS, "action" => action.as_str()).increment(1);
        verdict
    }
}

/// Most bytes of the user agent hashed (a longer one is no more telling).
const MAX_UA_BYTES: usize = 256;
/// Most header names hashed.
const MAX_HEADER_NAMES: usize = 32;

/// The client's address: the connection's peer, or, when the peer is a
/// trusted proxy (`server.trusted_proxies`), the nearest `X-Forwarded-For`
/// hop (read right to left) that is not. Without a trusted peer the header
/// is not read: any client can write it, and its first hop is whatever the
/// client wrote. `None` when no peer is known.
pub(crate) fn client_address(
    peer: Option<std::net::IpAddr>,
    headers: &http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> Option<std::net::IpAddr> {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    // IPv4 peers of a dual-stack listener arrive IPv4-mapped (`::ffff:a.b.c.d`).
    let mut client = peer?.to_canonical();
    if !is_trusted(&client) {
        return Some(client);
    }
    // Every X-Forwarded-For line, in order, as one list; the hops nearest
    // the gateway are the ones proxies appended, so the bound keeps the
    // last 64 (a client writing many hops cannot push the real ones out).
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev().take(64) {
        match hop
            .trim()
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.to_canonical())
        {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A hop that is no address: stop at the last one trusted.
            Err(_) => break,
        }
    }
    Some(client)
}

/// What the gateway can see of the client, hashed: the user agent, the
/// header names in the order they arrived (values never, so no secret is
/// read), and the client's IP prefix (/24 for IPv4, /48 for IPv6; see
/// [`client_address`]). A hash for the hunt to compare, never stored raw;
/// 0 is "nothing seen".
pub(crate) fn fingerprint(headers: &http::HeaderMap, client: Option<std::net::IpAddr>) -> u64 {
    use palisade_extraction::sketch::{hash_bytes, mix64};
    let ua = headers
        .get(http::header::USER_AGENT)
        .map(|v| &v.as_bytes()[..v.len().min(MAX_UA_BYTES)])
        .unwrap_or_default();
    let mut h = hash_bytes(ua);
    for name in headers.keys().take(MAX_HEADER_NAMES) {
        h = mix64(h ^ hash_bytes(name.as_str().as_bytes()));
    }
    let prefix = client
        .map(|ip| match ip {
            std::net::IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}", o[0], o[1], o[2])
            }
            std::net::IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}", s[0], s[1], s[2])
            }
        })
        .unwrap_or_default();
    mix64(h ^ hash_bytes(prefix.as_bytes()).rotate_left(17)) | 1
}

/// The request's new input: a chat's user and tool messages after its last
/// assistant turn (a query split over several user messages, or put before
/// a fixed last line, is read whole), the prompt of a completion, the input
/// of an embedding or a Responses request (its user items' content too); at
/// most [`MAX_TEXT_BYTES`]. System and developer text is left out: an
/// application's is one template for all its traffic (it would make every
/// request look like the next), and the gateway adds its own canary there.
fn query_text(fields: &Map<String, Value>) -> String {
    let asked = |m: &&Value| {
        matches!(
            m.get("role").and_then(Value::as_str),
            Some("user" | "tool") | None
        )
    };
    let text = if let Some(Value::Array(messages)) = fields.get("messages") {
        let start = messages
            .iter()
            .rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
            .map_or(0, |i| i + 1);
        let turn: Vec<String> = messages[start..]
            .iter()
            .filter(asked)
            .filter_map(|m| m.get("content"))
            .map(content_text)
            .filter(|t| !t.is_empty())
            .collect();
        turn.join("\n")
    } else {
        match fields.get("prompt").or_else(|| fields.get("input")) {
            // Responses input items: the user's (not the developer item
            // carrying the gateway's canary, nor the client's instructions).
            Some(Value::Array(items)) if items.iter().any(|i| i.get("role").is_some()) => {
                let user: Vec<Value> = items.iter().filter(asked).cloned().collect();
                content_text(&Value::Array(user))
            }
            Some(v) => content_text(v),
            None => String::new(),
        }
    };
    truncate(text, MAX_TEXT_BYTES)
}

/// A string, or the text parts of an array (chat content parts, prompt lists).
fn content_text(value: &Value) -> String {
    match value {
        Value::String(s) => s[..floor_boundary(s, MAX_TEXT_BYTES)].to_owned(),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                // A string, a content part's `text`, or a Responses message
                // item's `content` (a string or parts).
                let nested;
                let s = match p {
                    Value::String(s) => s.as_str(),
                    Value::Object(o) => match (o.get("text"), o.get("content")) {
                        (Some(Value::String(t)), _) => t.as_str(),
                        (_, Some(c @ (Value::String(_) | Value::Array(_)))) => {
                            nested = content_text(c);
                            nested.as_str()
                        }
                        _ => "",
                    },
                    _ => "",
                };
                if s.is_empty() {
                    continue;
                }
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(
                    &s[..floor_boundary(s, MAX_TEXT_BYTES - out.len().min(MAX_TEXT_BYTES))],
                );
                if out.len() >= MAX_TEXT_BYTES {
                    break;
                }
            }
            out
        }
        _ => String::new(),
    }
}

fn truncate(mut s: String, max: usize) -> String {
    let end = floor_boundary(&s, max);
    s.truncate(end);
    s
}

/// The largest char boundary of `s` at or below `max`.
fn floor_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// The recording call's cost, for the criterion bench only.
#[doc(hidden)]
pub mod bench {
    use super::*;

    /// A recorder whose queue is drained by nobody (the bench measures the
    /// request path's share: building the record and `try_send`).
    #[derive(Debug)]
    pub struct Recorder {
        extraction: Extraction,
        tenant: Arc<str>,
        key: Arc<str>,
        _drain: mpsc::Receiver<Message>,
    }

    impl Recorder {
        /// A recorder with a queue large enough for one bench batch; the
        /// queue is emptied by [`Recorder::drain`].
        pub fn new() -> Self {
            let mut extraction = Extraction::from_config(&ExtractionConfig {
                queue_capacity: 1 << 20,
                ..ExtractionConfig::default()
            });
            let drain = extraction
                .receiver
                .get_mut()
                .ok()
                .and_then(Option::take)
                .unwrap_or_else(|| mpsc::channel(1).1);
            Self {
                extraction,
                tenant: Arc::from("acme"),
                key: Arc::from("key-1"),
                _drain: drain,
            }
        }

        /// Records one request body's fields, as the pipeline does.
        pub fn record(&self, fields: &Map<String, Value>) {
            self.extraction
                .record(&self.tenant, &self.key, fields, GateOutcome::Passed, 0);
        }

        /// Empties the queue (outside the measured loop).
        pub fn drain(&mut self) {
            while self._drain.try_recv().is_ok() {}
        }

        /// The ladder lookup on the request path.
        pub fn verdict(&self) -> bool {
            self.extraction.verdict("acme", "key-1") == Verdict::Serve
        }
    }

    impl Default for Recorder {
        fn default() -> Self {
            Self::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_query_is_the_turn_after_the_last_assistant_message() {
        let body = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url"}]}
        ]});
        assert_eq!(query_text(body.as_object().unwrap()), "second");
        let body = json!({"prompt": "complete me"});
        assert_eq!(query_text(body.as_object().unwrap()), "complete me");
    }

    /// An extractor's varying query hidden where the last user line is not:
    /// an earlier user message of the turn before a fixed last line, or a
    /// Responses input of message items (recorded as empty text before,
    /// which blinded every text-based detector). The gateway's own canary
    /// (a system message, a developer item) is never part of it.
    #[test]
    fn a_query_before_a_fixed_line_or_in_input_items_is_read() {
        let body = json!({"messages": [
            {"role": "system", "content": "canary line"},
            {"role": "user", "content": "Translate: the varying query 17"},
            {"role": "user", "content": "Answer the above."}
        ]});
        assert_eq!(
            query_text(body.as_object().unwrap()),
            "Translate: the varying query 17\nAnswer the above."
        );
        let body = json!({"input": [
            {"role": "developer", "content": "canary line"},
            {"role": "user", "content": "the varying query 18"},
            {"role": "user", "content": [{"type": "input_text", "text": "and more"}]}
        ]});
        assert_eq!(
            query_text(body.as_object().unwrap()),
            "the varying query 18\nand more"
        );
    }

    fn header_map(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_fingerprint_reads_agent_header_order_and_prefix_never_values() {
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        let one = header_map(&[("user-agent", "sdk/1"), ("authorization", "Bearer one")]);
        let two = header_map(&[("user-agent", "sdk/1"), ("authorization", "Bearer two")]);
        let a = fingerprint(&one, ip("203.0.113.7"));
        // Another key, another host in the same /24: the same client.
        assert_eq!(a, fingerprint(&two, ip("203.0.113.99")));
        let other_ua = fingerprint(
            &header_map(&[("user-agent", "sdk/2"), ("authorization", "Bearer one")]),
            ip("203.0.113.7"),
        );
        let other_order = fingerprint(
            &header_map(&[("authorization", "Bearer one"), ("user-agent", "sdk/1")]),
            ip("203.0.113.7"),
        );
        let other_net = fingerprint(&one, ip("198.51.100.7"));
        assert!(a != other_ua && a != other_order && a != other_net);
        assert_ne!(fingerprint(&http::HeaderMap::new(), None), 0);
    }

    /// The finding this closes: the prefix came from the first
    /// `X-Forwarded-For` hop, which the client writes. Any client could take
    /// another's prefix (and be linked to it, or spread a confirmed
    /// campaign's mark to it) or shed its own.
    #[test]
    fn the_client_address_is_the_peer_unless_a_trusted_proxy_forwards_it() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let forged = header_map(&[("x-forwarded-for", "198.51.100.7")]);
        let via_lb = header_map(&[("x-forwarded-for", "198.51.100.7, 203.0.113.5, 10.1.2.3")]);
        // 70 hops the client wrote before the real ones: they are not what the bound keeps.
        let padded = format!("{}203.0.113.5, 10.1.2.3", "198.51.100.7, ".repeat(70));
        let padded = header_map(&[("x-forwarded-for", padded.as_str())]);
        let table = [
            // (peer, headers, trusted, expected client)
            (
                Some("203.0.113.5"),
                &forged,
                &trusted[..],
                Some("203.0.113.5"),
            ),
            (Some("203.0.113.5"), &forged, &[][..], Some("203.0.113.5")),
            (Some("10.9.9.9"), &forged, &[][..], Some("10.9.9.9")),
            // Through the load balancer: the nearest untrusted hop, not the first.
            (Some("10.9.9.9"), &via_lb, &trusted[..], Some("203.0.113.5")),
            (Some("10.9.9.9"), &padded, &trusted[..], Some("203.0.113.5")),
            // A dual-stack listener's IPv4 peer, IPv4-mapped.
            (
                Some("::ffff:10.9.9.9"),
                &via_lb,
                &trusted[..],
                Some("203.0.113.5"),
            ),
            (
                Some("10.9.9.9"),
                &forged,
                &trusted[..],
                Some("198.51.100.7"),
            ),
            (
                Some("10.9.9.9"),
                &header_map(&[]),
                &trusted[..],
                Some("10.9.9.9"),
            ),
            (
                Some("10.9.9.9"),
                &header_map(&[("x-forwarded-for", "junk, 10.1.1.1")]),
                &trusted[..],
                Some("10.1.1.1"),
            ),
            (None, &forged, &trusted[..], None),
        ];
        for (peer, headers, trusted, want) in table {
            assert_eq!(
                client_address(peer.map(ip), headers, trusted),
                want.map(ip),
                "{peer:?} {headers:?}"
            );
        }
    }

    #[test]
    fn huge_prompts_are_cut_at_a_char_boundary() {
        let s = "é".repeat(MAX_TEXT_BYTES);
        let body = json!({ "prompt": s });
        let text = query_text(body.as_object().unwrap());
        assert!(text.len() <= MAX_TEXT_BYTES && text.chars().all(|c| c == 'é'));
    }
}
