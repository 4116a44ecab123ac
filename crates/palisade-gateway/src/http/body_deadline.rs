//! The request body read timeout (`server.body_read_timeout_ms`).
//!
//! hyper bounds how long a request *head* may take, not its body: a client
//! that announces 4 MiB and sends a byte a second holds a connection, a task
//! and, in the proxy, an in-flight slot for days. This middleware gives every
//! request body a deadline, counted from the end of its head; a body read
//! past it fails, and the request is answered `408 request_timeout`.
//!
//! The deadline is total, not per chunk: a trickle of one byte just inside
//! any idle timeout would otherwise never end. Handlers that read through
//! [`crate::pipeline::read_body`] turn the failure into the 408 themselves (so
//! their metrics and logs say 408); for handlers that use axum's extractors,
//! the middleware replaces whatever they answered.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use palisade_openai::{ApiError, ErrorCode};
use tokio::time::{Instant, Sleep};

use crate::http::error::error_response;
use crate::http::request_id::RequestId;

/// The error a body read fails with once its deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(crate) struct BodyTimeout;

/// The client-facing error.
pub(crate) fn timed_out() -> ApiError {
    ApiError::new(
        ErrorCode::RequestTimeout,
        "the request body did not arrive within the gateway's body read timeout",
    )
}

/// Whether a body read failed because of the deadline (anywhere in the
/// error's source chain: axum and http-body-util wrap it).
pub(crate) fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A body that fails with [`BodyTimeout`] once `deadline` has passed while
/// it still waits for data.
struct DeadlineBody {
    inner: Body,
    deadline: Instant,
    /// Created on the first wait, so bodies that are already buffered (most
    /// of them) never arm a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    fired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        // Data already here is taken whatever the time: only waiting is bounded.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.fired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How long a request body may take to arrive (`server.body_read_timeout_ms`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyReadTimeout(pub(crate) std::time::Duration);

/// Axum middleware: puts the deadline on the request body, and answers 408
/// when a handler's read ran into it.
pub(crate) async fn layer(
    State(BodyReadTimeout(timeout)): State<BodyReadTimeout>,
    req: Request,
    next: Next,
) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let fired = Arc::new(AtomicBool::new(false));
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let deadline = Instant::now() + timeout;
    let watch = fired.clone();
    let req = req.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline,
            sleep: None,
            fired: watch,
        })
    });
    let resp = next.run(req).await;
    if fired.load(Ordering::Relaxed) {
        return error_response(&timed_out(), request_id.as_deref());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_trickled_body_fails_at_the_deadline_and_a_ready_one_does_not() {
        // One byte every 20 ms, for 400 ms: past the 100 ms deadline.
        let trickle = futures_util::stream::unfold(0, |n| async move {
            if n >= 20 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), n + 1))
        });
        let fired = Arc::new(AtomicBool::new(false));
        let body = Body::new(DeadlineBody {
            inner: Body::from_stream(trickle),
            deadline: Instant::now() + Duration::from_millis(100),
            sleep: None,
            fired: fired.clone(),
        });
        let err = axum::body::to_bytes(body, 1024).await.unwrap_err();
        assert!(is_timeout(&err), "{err}");
        assert!(fired.load(Ordering::Relaxed));

        let ready = Body::new(DeadlineBody {
            inner: Body::from("hello"),
            deadline: Instant::now(),
            sleep: None,
            fired: Arc::new(AtomicBool::new(false)),
        });
        assert_eq!(axum::body::to_bytes(ready, 1024).await.unwrap(), "hello");
    }
}
