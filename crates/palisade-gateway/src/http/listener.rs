//! The accept loop: a connection cap, a request-head timeout, and graceful
//! shutdown.
//!
//! `axum::serve` gives no way to bound slow clients: hyper's HTTP/1 header
//! read timeout needs a timer it does not set, it has no connection limit,
//! and its protocol sniffing (HTTP/1 or HTTP/2 with prior knowledge) waits
//! for the first bytes forever. So connections are served here, with hyper's
//! per-connection builders:
//!
//! - at most `server.max_connections` at once; beyond that a connection is
//!   answered `503 overloaded` with `Retry-After: 1` and closed, not queued
//!   (a queue hides the overload from load balancers, which should send the
//!   client to another replica);
//! - the first bytes (to tell HTTP/2's preface from an HTTP/1 request) and
//!   every HTTP/1 request head must arrive within
//!   `server.header_read_timeout_ms`, idle keep-alive included, or the
//!   connection is closed. HTTP/2 frames its headers itself (hyper bounds
//!   their size); its bodies are bounded by the body read timeout, and a
//!   connection with no request in flight is closed after the same
//!   head timeout before its first request and `server.idle_timeout_ms`
//!   after ([`super::h2_idle`]).
//!
//! - a write to a client that stopped reading may stay pending
//!   `server.write_stall_timeout_ms`, then the connection is closed (and a
//!   stream's relay with it, releasing its slots and reservation).
//!
//! On shutdown the listener closes and every connection is told to finish
//! its in-flight requests (HTTP/1 closes once idle, HTTP/2 sends GOAWAY).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use palisade_openai::{ApiError, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// What bounds a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// For the first bytes and for each HTTP/1 request head.
    pub(crate) header_read_timeout: Duration,
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// How long a write to the client may stay pending before the
    /// connection is closed ([`super::write_stall`]).
    pub(crate) write_stall_timeout: Duration,
    /// How long an HTTP/2 connection may stay without a request in flight
    /// after its first ([`super::h2_idle`]).
    pub(crate) idle_timeout: Duration,
}

/// The HTTP/2 connection preface a prior-knowledge client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Refused connections answered at once (each waits up to
/// [`REFUSAL_LINGER`] for the client to finish sending); more are closed
/// without an answer, so a flood cannot turn refusals into a resource sink.
const MAX_REFUSING: usize = 64;
/// How long a refused connection is drained before it closes: closing with
/// unread request bytes sends a reset, which can destroy the 503 in flight.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// Connections refused at the cap.
const REFUSED_TOTAL: &str = "palisade_connections_refused_total";
/// HTTP/2 connections closed for having no request in flight too long.
const IDLE_CLOSED_TOTAL: &str = "palisade_connections_idle_closed_total";

/// Serves `app` on `listener` until `shutdown` resolves, then waits for
/// open connections to finish (the caller bounds that wait).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let graceful = GracefulShutdown::new();
    // Connections still being sniffed are not watched by `graceful` yet:
    // they learn of shutdown here, and close instead of waiting out the
    // header timeout.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => (tcp, peer),
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let (tcp, peer) = tcp;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(REFUSED_TOTAL).increment(1);
            if let Ok(permit) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(tcp).await;
                    drop(permit);
                });
            }
            continue;
        };
        // Streams are many small writes: without TCP_NODELAY, Nagle's
        // algorithm holds each token until the client's delayed ACK (~40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let (app, watcher, stopping) = (app.clone(), graceful.watcher(), stopping.clone());
        tokio::spawn(async move {
            serve_connection(tcp, peer, app, limits, watcher, stopping).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    graceful.shutdown().await;
}

/// An accept error: per-connection ones (the peer reset before we accepted)
/// are skipped; others (out of file descriptors) pause the loop briefly
/// rather than spin.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; pausing the listener");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Answers a connection over the cap with `503 overloaded` and closes it.
async fn refuse(mut tcp: TcpStream) {
    let body = ApiError::new(
        ErrorCode::Overloaded,
        "the gateway is at its connection limit; retry shortly",
    )
    .to_json(None);
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nx-should-retry: true\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let answer = async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(&body).await?;
        tcp.shutdown().await?;
        // Drain what the client sent until it closes, so our close is a FIN.
        let mut sink = [0u8; 4096];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, answer).await;
}

/// Whether the client opens with the HTTP/2 preface. `Err` when it closes
/// first.
async fn sniff_h2(tcp: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 24];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far: `peek` returns at once while those
        // bytes wait, so pause rather than spin until the rest arrives.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The connection's peer address, on every request's extensions: the one
/// client address no header can forge.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub(crate) std::net::SocketAddr);

async fn serve_connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    limits: ConnLimits,
    watcher: Watcher,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let sniffed = tokio::select! {
        sniffed = tokio::time::timeout(limits.header_read_timeout, sniff_h2(&tcp)) => sniffed,
        _ = stopping.wait_for(|stop| *stop) => return,
    };
    let h2 = match sniffed {
        Ok(Ok(h2)) => h2,
        // Silent past the timeout, or gone: nothing to answer.
        _ => return,
    };
    let app = app.layer(axum::Extension(PeerAddr(peer)));
    let service = hyper_util::service::TowerToHyperService::new(app);
    let io = TokioIo::new(super::write_stall::WriteStallBound::new(
        tcp,
        limits.write_stall_timeout,
    ));
    let result = if h2 {
        let activity = super::h2_idle::Activity::new();
        let service = super::h2_idle::Tracked {
            inner: service,
            activity: activity.clone(),
        };
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, service);
        tokio::select! {
            result = watcher.watch(conn) => result,
            () = activity.idle(limits.header_read_timeout, limits.idle_timeout) => {
                metrics::counter!(IDLE_CLOSED_TOTAL).increment(1);
                Ok(())
            }
        }
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(io, service);
        watcher.watch(conn).await
    };
    if let Err(e) = result {
        // Timeouts and clients that went away end here; not the operator's
        // concern unless debugging.
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
