//! A bundle store on a loopback port for the signed-bundle tests: serves
//! whatever bundle the test published with an `ETag` (answering 304 to a
//! matching `If-None-Match`), or misbehaves as scripted (503, slow, an
//! endless body). Counts what it was asked.
//!
//! It judges nothing: a test publishes good, stale, forged or huge bundles
//! and checks what the replica does with them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// How the store answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// The published bundle (or 404 when none), with its ETag.
    Serve,
    /// 503 to everything.
    Unavailable,
    /// Waits this long, then serves.
    Slow(Duration),
    /// A chunked body of `x` that never ends (no `Content-Length`).
    Endless,
}

#[derive(Debug)]
struct Shared {
    bundle: Mutex<Option<(Vec<u8>, String)>>,
    mode: Mutex<StoreMode>,
    published: AtomicUsize,
    requests: AtomicUsize,
    not_modified: AtomicUsize,
}

/// The store.
#[derive(Debug)]
pub struct BundleStore {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

async fn answer(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let mode = *shared.mode.lock().unwrap_or_else(PoisonError::into_inner);
    match mode {
        StoreMode::Unavailable => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        StoreMode::Slow(delay) => tokio::time::sleep(delay).await,
        StoreMode::Endless => {
            let chunks = futures_util::stream::repeat_with(|| {
                Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 64 * 1024]))
            });
            return Response::new(Body::from_stream(chunks));
        }
        StoreMode::Serve => {}
    }
    let bundle = shared
        .bundle
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let Some((bytes, etag)) = bundle else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    if matches {
        shared.not_modified.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (StatusCode::OK, [(header::ETAG, etag)], bytes).into_response()
}

impl BundleStore {
    /// Starts an empty store (404 until something is published).
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            bundle: Mutex::new(None),
            mode: Mutex::new(StoreMode::Serve),
            published: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/bundle", get(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// The bundle's URL.
    pub fn url(&self) -> String {
        format!("http://{}/bundle", self.addr)
    }

    /// Serves `bytes` from now on, under a new ETag.
    pub fn publish(&self, bytes: Vec<u8>) {
        let n = self.shared.published.fetch_add(1, Ordering::SeqCst) + 1;
        *self
            .shared
            .bundle
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((bytes, format!("\"v{n}\"")));
    }

    /// Serves `bytes` under the given ETag (a store whose bytes are swapped
    /// while its ETag stays, as a tampered object store would).
    pub fn publish_with_etag(&self, bytes: Vec<u8>, etag: &str) {
        *self
            .shared
            .bundle
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((bytes, etag.to_owned()));
    }

    /// Changes how the store answers.
    pub fn set_mode(&self, mode: StoreMode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// 304 answers sent so far.
    pub fn not_modified(&self) -> usize {
        self.shared.not_modified.load(Ordering::SeqCst)
    }
}

impl Drop for BundleStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}
