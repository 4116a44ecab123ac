//! A connection whose client stopped reading is closed after
//! `server.write_stall_timeout_ms` of writes that cannot proceed.
//!
//! hyper pulls a response body only as fast as the socket takes it: a
//! client that never reads leaves a stream's relay unpolled, so its
//! deadline never fires and it keeps what it holds (the backend's in-flight
//! slot, the key's stream slot, the token reservation) for as long as the
//! client keeps the connection open. A tenant with a few keys could pin a
//! backend's every slot. Wrapping the socket bounds that: once a write has
//! been pending for the timeout, the write fails, hyper closes the
//! connection, and the relay is dropped, releasing everything.
//!
//! Must not: time anything but a write that is pending (an idle keep-alive
//! connection, or a stream whose upstream is silent, writes nothing and is
//! bounded elsewhere).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `io` with a bound on how long a write may stay pending.
pub(crate) struct WriteStallBound<T> {
    io: T,
    limit: Duration,
    /// Armed when a write first returns `Pending`; cleared by progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteStallBound<T> {
    pub(crate) fn new(io: T, limit: Duration) -> Self {
        Self {
            io,
            limit,
            stalled: None,
        }
    }

    /// Called when a write returned `Pending`: arms the timer (first time)
    /// and fails once it has run out.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing for the write stall timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStallBound<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStallBound<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that never reads: writes fill the pipe, then fail after the
    /// bound; a peer that reads keeps them going.
    #[tokio::test]
    async fn a_write_pending_past_the_bound_fails_and_progress_resets_it() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut bounded = WriteStallBound::new(near, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let chunk = [0u8; 512];
        let err = loop {
            match bounded.write_all(&chunk).await {
                Ok(()) => assert!(started.elapsed() < Duration::from_secs(5), "never stalled"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));

        // A reader that drains slowly (every 50 ms, under the bound) never
        // trips it.
        let (near, mut far2) = tokio::io::duplex(1024);
        let mut bounded = WriteStallBound::new(near, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tokio::io::AsyncReadExt::read(&mut far2, &mut buf).await;
            }
        });
        for _ in 0..20 {
            bounded.write_all(&chunk).await.expect("a reading peer");
        }
        // Closed, so the reader's last reads see the end.
        drop(bounded);
        reader.await.expect("reader");
        let _ = far.shutdown().await;
    }
}
