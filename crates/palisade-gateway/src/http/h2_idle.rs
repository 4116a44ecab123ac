//! An HTTP/2 connection that sends no request holds a connection slot:
//! hyper's HTTP/2 server has no header-read or idle timeout (HTTP/1's
//! request-head timeout covers idle keep-alive, HTTP/2's preface is only
//! sniffed). A client that opens `server.max_connections` connections,
//! sends the preface and a SETTINGS frame, then nothing, starved every
//! other client.
//!
//! So each HTTP/2 connection counts its requests in flight, a request
//! lasting until its response body is done or dropped, and is closed once
//! it has had none for too long: `server.header_read_timeout_ms` before
//! its first request, `server.idle_timeout_ms` after.
//!
//! Must not: close a connection while a request or a response stream is in
//! flight on it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;

/// What one connection has in flight, and since when it has had nothing.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the last request ended (0: none yet).
    last_end_ms: AtomicU64,
    /// Requests begun.
    begun: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            begun: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn since_opened_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long the connection may still stay as it is before it is closed
    /// (`None`: something is in flight, no bound now).
    fn left(&self, first: Duration, idle: Duration) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.since_opened_ms();
        let (since, bound) = if self.begun.load(Ordering::Acquire) == 0 {
            (0, first)
        } else {
            (self.last_end_ms.load(Ordering::Acquire), idle)
        };
        let idle_for = Duration::from_millis(now.saturating_sub(since));
        Some(bound.saturating_sub(idle_for))
    }

    /// Resolves once the connection has been without a request in flight
    /// for longer than its bound (checked at most every `tick`).
    pub(crate) async fn idle(self: Arc<Self>, first: Duration, idle: Duration) {
        let tick = Duration::from_millis(250);
        loop {
            match self.left(first, idle) {
                Some(left) if left.is_zero() => return,
                Some(left) => tokio::time::sleep(left.min(idle).max(tick)).await,
                None => tokio::time::sleep(tick).await,
            }
        }
    }
}

/// One request in flight; ends when dropped (with its response body).
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.since_opened_ms().max(1);
        self.0.last_end_ms.store(now, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is done.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's service, counting what is in flight on `activity`.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    pub(crate) inner: S,
    pub(crate) activity: Arc<Activity>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            Ok(resp.map(|inner| {
                Body::new(TrackedBody {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_runs_only_while_nothing_is_in_flight() {
        let first = Duration::from_secs(10);
        let idle = Duration::from_secs(60);
        let a = Activity::new();
        let left = a.left(first, idle).expect("nothing in flight");
        assert!(left <= first && left > Duration::from_secs(9), "{left:?}");
        let req = a.begin();
        assert_eq!(a.left(first, idle), None, "a request in flight");
        drop(req);
        let left = a.left(first, idle).expect("ended");
        assert!(
            left > Duration::from_secs(59),
            "the idle bound after a request: {left:?}"
        );
    }
}
