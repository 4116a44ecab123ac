//! A raw HTTP/1.1 fake deployment for the routing, hedging and cascade
//! tests and benches: each connection serves one request
//! (`Connection: close`), so "killed" means killed — the accept loop and
//! every open connection end at once — and failures can be scripted at the
//! byte level (close after reading the body, before or after the head).
//!
//! It knows nothing of the gateway: a loopback socket, a scripted answer,
//! and a record of what arrived. It must not grow gateway knowledge (the
//! gateway start-up lives in the gateway's `tests/support`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the upstream answers.
#[derive(Debug, Clone)]
pub enum DeploymentMode {
    /// 200 with a completion naming this upstream, after `delay`.
    Ok { delay: Duration },
    /// This status with this JSON body and optional `Retry-After`.
    Status {
        status: u16,
        body: String,
        retry_after: Option<u64>,
    },
    /// Read the whole request, then close without a byte of response (the
    /// body reached the model; the outcome is unknown).
    DropAfterBody,
    /// 200 with this exact assistant text; with `logprobs: true` in the
    /// request, every token (word) gets `logprob`. `raw` replaces the whole
    /// body (a malformed answer).
    Answer {
        content: String,
        logprob: f64,
        raw: Option<String>,
    },
    /// A cheap model's mix, chosen by the start of the last user message:
    /// `refuse…` a refusal, `json…` broken JSON, `unsure…` valid JSON
    /// with low log-probabilities (-3 per token), anything else a good
    /// answer (-0.1 per token).
    ByPrompt,
    /// Like `Ok`, but every `every`-th request (the 1st, then every
    /// `every` more) waits `slow` instead of `fast`: a long tail.
    Tail {
        every: usize,
        fast: Duration,
        slow: Duration,
    },
}

#[derive(Debug, Default)]
struct Shared {
    received: Mutex<Vec<(Instant, Value)>>,
    /// Requests whose client closed the connection while this upstream was
    /// still working on the answer (a cancelled attempt).
    cancelled: std::sync::atomic::AtomicUsize,
}

/// One fake deployment on a loopback port.
#[derive(Debug)]
pub struct Deployment {
    pub name: &'static str,
    pub addr: SocketAddr,
    mode: Arc<Mutex<DeploymentMode>>,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Deployment {
    pub async fn start(name: &'static str, mode: DeploymentMode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let mode = Arc::new(Mutex::new(mode));
        let shared = Arc::new(Shared::default());
        let (m, s) = (mode.clone(), shared.clone());
        let task = tokio::spawn(async move {
            // Owned here: aborting this task drops the set, which aborts
            // every connection still open.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (m, s) = (m.clone(), s.clone());
                conns.spawn(async move {
                    let _ = serve(tcp, name, m, s).await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Self {
            name,
            addr,
            mode,
            shared,
            task: Some(task),
        }
    }

    /// A URL where nothing listens (a deployment that is down).
    pub async fn dead_url() -> String {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = l.local_addr().expect("local addr");
        drop(l);
        format!("http://{addr}/v1")
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set(&self, mode: DeploymentMode) {
        *lock(&self.mode) = mode;
    }

    /// Stops accepting and cuts every open connection.
    pub fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub fn received(&self) -> Vec<Value> {
        lock(&self.shared.received)
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn received_at(&self) -> Vec<Instant> {
        lock(&self.shared.received)
            .iter()
            .map(|(t, _)| *t)
            .collect()
    }

    /// Requests the client gave up on (closed the connection) before the
    /// answer was sent.
    pub fn cancelled(&self) -> usize {
        self.shared
            .cancelled
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn hits(&self) -> usize {
        lock(&self.shared.received).len()
    }
}

/// A poisoned lock (a test task panicked while holding it) still holds
/// consistent data here: every critical section is a single assignment or read.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve(
    mut tcp: TcpStream,
    name: &str,
    mode: Arc<Mutex<DeploymentMode>>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Value =
        serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    let is_get = head.starts_with("get ");
    let mut nth = 0;
    if !is_get {
        let mut received = lock(&shared.received);
        received.push((Instant::now(), body.clone()));
        nth = received.len();
    }
    let prompt = crate::last_user_message(&body).unwrap_or("").to_owned();
    let mode = match lock(&mode).clone() {
        DeploymentMode::ByPrompt => {
            let (content, logprob) = if prompt.starts_with("refuse") {
                ("I'm sorry, but I can't help with that.", -0.1)
            } else if prompt.starts_with("json") {
                ("{\"answer\": ", -0.1)
            } else if prompt.starts_with("unsure") {
                ("{\"answer\": \"Lyon\"}", -3.0)
            } else {
                ("{\"answer\": \"Paris\"}", -0.1)
            };
            DeploymentMode::Answer {
                content: content.to_owned(),
                logprob,
                raw: None,
            }
        }
        DeploymentMode::Tail { every, fast, slow } => DeploymentMode::Ok {
            delay: if (nth - 1) % every.max(1) == 0 {
                slow
            } else {
                fast
            },
        },
        other => other,
    };
    let (status, text, retry_after) = match (is_get, mode) {
        (true, DeploymentMode::Ok { .. }) => {
            (200, r#"{"object":"list","data":[]}"#.to_owned(), None)
        }
        (_, DeploymentMode::Ok { delay }) => {
            // Working on the answer; a client that closes meanwhile
            // cancelled it (the request was read whole: a read can only
            // see the end of the connection).
            let mut probe = [0u8; 1];
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                r = tcp.read(&mut probe) => {
                    if matches!(r, Ok(0) | Err(_)) {
                        shared.cancelled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return Ok(());
                    }
                    tokio::time::sleep(delay).await;
                }
            }
            let model = body["model"].as_str().unwrap_or("");
            let answer = serde_json::json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("{name}: {prompt}")}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
            });
            let text = if body.get("input").is_some() {
                serde_json::json!({"object": "list", "model": model, "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}], "usage": {"prompt_tokens": 1, "total_tokens": 1}}).to_string()
            } else {
                answer.to_string()
            };
            (200, text, None)
        }
        (
            _,
            DeploymentMode::Status {
                status,
                body,
                retry_after,
            },
        ) => (status, body, retry_after),
        (_, DeploymentMode::DropAfterBody) => return Ok(()),
        (_, DeploymentMode::Answer { raw: Some(raw), .. }) => (200, raw, None),
        (
            _,
            DeploymentMode::Answer {
                content, logprob, ..
            },
        ) => {
            let mut choice = serde_json::json!({"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"});
            if body["logprobs"] == serde_json::json!(true) {
                let tokens: Vec<Value> = content
                    .split(' ')
                    .map(|t| serde_json::json!({"token": t, "logprob": logprob}))
                    .collect();
                choice["logprobs"] = serde_json::json!({"content": tokens});
            }
            let answer = serde_json::json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [choice],
                "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
            });
            (200, answer.to_string(), None)
        }
        (_, DeploymentMode::Tail { .. } | DeploymentMode::ByPrompt) => {
            unreachable!("resolved above")
        }
    };
    let extra = retry_after
        .map(|s| format!("retry-after: {s}\r\n"))
        .unwrap_or_default();
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{text}",
        text.len()
    );
    tcp.write_all(response.as_bytes()).await?;
    tcp.shutdown().await
}
