//! `[server]`: the listener's address and the bounds it puts on clients.
//!
//! Validation checks values only; it must not bind the address (whether
//! the address may serve unauthenticated is an `[auth]` rule, checked by
//! [`Config::validate`] because it spans both sections).

use super::*;

/// Listener, body limits and shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted; larger bodies get 413. 4 MiB holds a
    /// long multi-turn chat with images by URL, but not an accidental upload.
    pub max_body_bytes: usize,
    /// Largest single server-sent event accepted from an upstream. One event
    /// is one token delta in practice; 1 MiB leaves ample room for tool-call
    /// arguments while bounding memory per stream.
    pub max_sse_event_bytes: usize,
    /// While a stream's upstream is silent (a model thinking, the output
    /// gate holding text), send an SSE comment this often so proxies and
    /// clients do not drop the connection as idle. 0: never.
    pub sse_heartbeat_ms: u64,
    /// On SIGTERM/SIGINT: how long in-flight requests and streams may run
    /// before they are cut. Kubernetes' default grace period is 30 s, so 25 s
    /// leaves time to exit cleanly before SIGKILL.
    pub shutdown_grace_ms: u64,
    /// How long a client may take to send a request head (HTTP/1), counted
    /// from when the connection is ready for one (idle keep-alive included);
    /// past it the connection is closed. Headers trickled a byte at a time
    /// would otherwise hold a connection forever. 10 s is ample on any link.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request body, counted from the
    /// end of its head; past it the request gets 408 `request_timeout`. A
    /// 4 MiB body needs ~1.1 Mbit/s to arrive in 30 s.
    pub body_read_timeout_ms: u64,
    /// How long a write to a client may stay pending (it read nothing)
    /// before the connection is closed. A client that stops reading a
    /// stream would otherwise hold its backend slot and token reservation
    /// for as long as it keeps the connection open.
    pub write_stall_timeout_ms: u64,
    /// Connections held at once. Beyond it a new connection is answered
    /// `503 overloaded` (with `Retry-After`) and closed rather than queued:
    /// a queue would hide the overload from load balancers. Each proxied
    /// request also holds an upstream connection, so keep `ulimit -n` above
    /// twice this.
    pub max_connections: usize,
    /// Threads of the pool that runs CPU-heavy checks (detector scans of
    /// large inputs, client JSON Schemas, tokenization) off the async
    /// workers, so `/healthz` and streams stay responsive. 0: one per core.
    pub cpu_workers: usize,
    /// How long a request waits for a thread of that pool before it gets
    /// `503 overloaded` with `Retry-After`. The check is never skipped.
    pub cpu_queue_timeout_ms: u64,
    /// `GET /metrics` answers admin keys only. Its series carry every
    /// tenant's name, models, token counts and spend; leave it off only
    /// when the listener is reachable by the scraper and operators alone.
    pub metrics_require_admin: bool,
    /// Addresses of the load balancers and proxies in front of the gateway
    /// (`"10.0.0.0/8"`, `"192.0.2.7"`). The client's address is the
    /// connection's peer, or, when the peer is one of these, the nearest
    /// `X-Forwarded-For` hop that is not. Empty (the default): the header is
    /// ignored, since any client can write it. Used by the extraction
    /// defence's client fingerprint.
    pub trusted_proxies: Vec<String>,
    /// An HTTP/2 connection with no request in flight is closed after this
    /// long (before its first request: `header_read_timeout_ms`). HTTP/1's
    /// idle keep-alive is bounded by `header_read_timeout_ms`. 300 s: longer
    /// than client pools keep idle connections (reqwest and Go 90 s), so a
    /// client closes first and never races a request against the close.
    pub idle_timeout_ms: u64,
}

/// A `trusted_proxies` entry: a network, or one address.
pub fn parse_proxy(entry: &str) -> Option<ipnet::IpNet> {
    let entry = entry.trim();
    entry.parse::<ipnet::IpNet>().ok().or_else(|| {
        entry
            .parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("constant address parses"),
            max_body_bytes: 4 * 1024 * 1024,
            max_sse_event_bytes: 1024 * 1024,
            sse_heartbeat_ms: 15_000,
            shutdown_grace_ms: 25_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            write_stall_timeout_ms: 30_000,
            max_connections: 1024,
            cpu_workers: 0,
            cpu_queue_timeout_ms: 2_000,
            metrics_require_admin: false,
            trusted_proxies: Vec::new(),
            idle_timeout_ms: 300_000,
        }
    }
}

impl ServerConfig {
    /// Every bound must admit something: a zero would refuse every request
    /// or connection.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("write_stall_timeout_ms", self.write_stall_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(format!("server.{field}"), "must be greater than 0"));
            }
        }
        if let Some(bad) = self
            .trusted_proxies
            .iter()
            .find(|e| parse_proxy(e).is_none())
        {
            return Err(invalid(
                "server.trusted_proxies",
                format!("{bad:?} is neither an address nor a network (\"10.0.0.0/8\")"),
            ));
        }
        if self.max_sse_event_bytes < 1024 {
            return Err(invalid(
                "server.max_sse_event_bytes",
                "must be at least 1024",
            ));
        }
        Ok(())
    }
}
