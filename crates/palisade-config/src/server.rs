//! `[server]` and `[auth]`: the listener's bounds and the API keys.

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
            max_connections: 1024,
            cpu_workers: 0,
            cpu_queue_timeout_ms: 2_000,
        }
    }
}

/// Authentication mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No keys: every caller is the tenant `local`. Only on loopback.
    Open,
    /// `Authorization: Bearer <key>`, matched by SHA-256 against `auth.keys`.
    Keys,
}

/// Who may call the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `open` or `keys`. When absent: `keys` if any key is configured,
    /// otherwise `open`.
    pub mode: Option<AuthMode>,
    /// API keys, stored as hashes. `palisade keys hash` prints one.
    pub keys: Vec<ApiKeyConfig>,
}

impl AuthConfig {
    /// The mode in force after applying the default.
    pub fn effective_mode(&self) -> AuthMode {
        self.mode.unwrap_or(if self.keys.is_empty() {
            AuthMode::Open
        } else {
            AuthMode::Keys
        })
    }
}

/// One API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A label for logs and metrics (never the key itself).
    pub name: String,
    /// The tenant this key acts for.
    pub tenant: String,
    /// Lower-case hex SHA-256 of the key. Keys themselves are never stored, so
    /// a leaked config does not leak credentials.
    pub sha256: String,
    /// May call the `/admin/*` endpoints.
    #[serde(default)]
    pub admin: bool,
    /// May confirm held tool calls of its tenant (`POST /v1/tools/confirm`).
    /// Give it to the approval service or the human's console, not to the
    /// agent: a key that can confirm its own calls makes confirmation moot.
    #[serde(default)]
    pub approver: bool,
    /// Runs tool calls: `POST /v1/tools/verify` hands this key the tenant's
    /// tool credentials (`[tenants.NAME] tool_credentials_env`). Other keys
    /// of the tenant can verify tokens but never receive a credential: an
    /// agent key must not be able to collect them.
    #[serde(default)]
    pub executor: bool,
    /// Priority class at saturated backends: `high` is served first,
    /// `low` is shed rather than queued.
    #[serde(default)]
    pub priority: Priority,
}

/// A request's priority class at a saturated backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Served before everything queued.
    High,
    /// The default.
    #[default]
    Normal,
    /// Shed while the backend is saturated.
    Low,
}

impl Priority {
    /// 0 (high) to 2 (low).
    pub fn class(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }
}
