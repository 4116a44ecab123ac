//! A loopback webhook receiver that records every JSON body POSTed to it, with its arrival
//! time: the alert, fleet-event and anomaly webhooks are tested against it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The receiver; it serves until the test process ends.
#[derive(Debug, Clone)]
pub struct WebhookRecorder {
    url: String,
    received: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl WebhookRecorder {
    /// Binds a free loopback port and serves `POST /hook`.
    ///
    /// # Panics
    /// When no loopback port can be bound (a test environment failure).
    pub async fn start() -> Self {
        let received: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((Instant::now(), body));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("http://{}/hook", listener.local_addr().expect("local addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, received }
    }

    /// The URL to configure as the webhook.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every body received so far, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        self.timed().into_iter().map(|(_, v)| v).collect()
    }

    /// Every body with its arrival time.
    pub fn timed(&self) -> Vec<(Instant, Value)> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits (at most 10 s) until `n` bodies arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.bodies();
            if got.len() >= n || Instant::now() > until {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
