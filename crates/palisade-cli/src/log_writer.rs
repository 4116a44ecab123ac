//! The log writer: every log line (access lines, audit records, warnings) goes through a
//! bounded queue to one thread that writes whatever has queued up in one go.
//!
//! Why not `tracing_appender::non_blocking`: its writer thread is woken for every line and
//! writes each on its own, which cost ~10% of the gateway's CPU per request under load (two
//! or more lines per request), and it drops lines when its queue is full. Audit records must
//! never be dropped.
//!
//! How it batches: after each write the thread sleeps for `linger` (5 ms by default) before
//! it looks at the queue again (unless it just took a full batch: a flood is written as
//! fast as the output takes it), so under load it wakes at most ~200 times a second and
//! writes everything queued meanwhile with one `write(2)`; a request thread only pays a
//! wake-up when the writer is idle and waiting. A line is out at most `linger` plus one
//! write after it was logged.
//!
//! When the queue is full (`capacity` lines waiting: the output cannot keep up), the thread
//! logging the line waits until the writer has taken lines out: nothing is dropped, and the
//! wait is counted in `palisade_log_queue_full_total`. This is back-pressure on request
//! threads, chosen over losing audit records.
//!
//! Must not: format lines (tracing-subscriber does), or drop a line it has accepted.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Lines the queue holds before a logging thread has to wait. The writer empties it every
/// `linger`, so this is ~13 ms of lines at 80k lines/s (four lines per request at 20k
/// requests/s: 2.5 lingers' worth), ~0.5 MB: only an output that has stopped taking lines
/// fills it.
pub(crate) const DEFAULT_CAPACITY: usize = 1024;
/// How long the writer lets lines gather after each write. Not 1 ms: at a moderate rate
/// (a request every 2 ms) the writer then slept and was woken again for every request,
/// and a thread's wake-up and sleep cost more CPU than writing its lines (~35 µs per
/// request at 500 req/s, `docs/benchmarks.md` 2026-12-07). 5 ms gathers a few requests
/// per wake-up and still puts every line out within a few milliseconds.
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// The metric counting lines that found the queue full (and waited).
pub(crate) const QUEUE_FULL: &str = "palisade_log_queue_full_total";

/// What travels to the writer thread.
#[derive(Debug)]
enum Msg {
    Line(Vec<u8>),
    /// Write what is queued and stop (the process is ending).
    Shutdown,
}

/// The logging side: one per process, cloned into each `MakeWriter` call.
#[derive(Clone, Debug)]
pub(crate) struct LogQueue {
    tx: SyncSender<Msg>,
}

/// Stops the writer on drop, after it wrote every line queued before.
#[derive(Debug)]
pub(crate) struct WriterGuard {
    tx: SyncSender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // The subscriber keeps its sender for the life of the process, so the queue never
        // closes by itself: ask the writer to finish.
        if self.tx.send(Msg::Shutdown).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Starts the writer thread over `sink`.
pub(crate) fn spawn<W: Write + Send + 'static>(
    sink: W,
    capacity: usize,
    linger: Duration,
) -> io::Result<(LogQueue, WriterGuard)> {
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    let thread = std::thread::Builder::new()
        .name("palisade-log".into())
        .spawn(move || run(&rx, sink, linger, capacity.max(1)))?;
    Ok((
        LogQueue { tx: tx.clone() },
        WriterGuard {
            tx,
            thread: Some(thread),
        },
    ))
}

fn run<W: Write>(rx: &Receiver<Msg>, mut sink: W, linger: Duration, max_batch: usize) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    // Blocks only when the queue is empty.
    while let Ok(first) = rx.recv() {
        let mut done = false;
        let mut taken = 0;
        // At most one queue's worth per write, so a steady flood still gets written.
        let queued = std::iter::from_fn(|| rx.try_recv().ok()).take(max_batch);
        for msg in std::iter::once(first).chain(queued) {
            taken += 1;
            match msg {
                Msg::Line(line) => batch.extend_from_slice(&line),
                Msg::Shutdown => done = true,
            }
        }
        // A failed write (a closed pipe) loses this batch: there is nowhere left to write.
        let _ = sink.write_all(&batch).and_then(|()| sink.flush());
        batch.clear();
        if done {
            return;
        }
        if batch.capacity() > 1 << 20 {
            batch.shrink_to(64 * 1024);
        }
        // A full batch means a flood: write the next one at once, so the linger
        // never caps how many lines a second get out.
        if taken <= max_batch {
            std::thread::sleep(linger);
        }
    }
}

impl LogQueue {
    fn send(&self, line: Vec<u8>) -> io::Result<()> {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(line)) => {
                metrics::counter!(QUEUE_FULL).increment(1);
                self.tx.send(line).map_err(|_| closed())
            }
            Err(TrySendError::Disconnected(_)) => Err(closed()),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "log writer has stopped")
}

impl Write for LogQueue {
    /// One call per formatted event (tracing-subscriber formats the whole line first).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf.to_vec())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogQueue {
    type Writer = LogQueue;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A sink that records what it got and in how many writes; `gate` (if any) must be
    /// opened before the first write completes.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicUsize>,
        gate: Option<Arc<Mutex<Receiver<()>>>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(gate) = &self.gate {
                // Waits (once) for the test to open the gate; bounded so a broken test ends.
                let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(20));
            }
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(sink: &Sink) -> Vec<String> {
        String::from_utf8(sink.bytes.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_line_is_written_in_order_from_each_thread() {
        let sink = Sink::default();
        let (queue, guard) = spawn(sink.clone(), 64, Duration::from_micros(200)).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut q = queue.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        q.write_all(format!("t{t} {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let got = lines(&sink);
        assert_eq!(got.len(), 8_000);
        for t in 0..4 {
            let mine: Vec<usize> = got
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("t{t} ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..2_000).collect::<Vec<_>>(), "thread {t}");
        }
        // Lines that queued up together went out together.
        assert!(sink.writes.load(Ordering::SeqCst) < 8_000);
    }

    /// A full queue makes the logging thread wait; it never drops the line.
    #[test]
    fn a_full_queue_blocks_the_logger_and_loses_nothing() {
        let (open, gate) = mpsc::channel();
        let sink = Sink {
            gate: Some(Arc::new(Mutex::new(gate))),
            ..Sink::default()
        };
        let capacity = 4;
        let (queue, guard) = spawn(sink.clone(), capacity, Duration::ZERO).unwrap();
        let sent = Arc::new(AtomicUsize::new(0));
        let producer = {
            let (mut q, sent) = (queue.clone(), Arc::clone(&sent));
            std::thread::spawn(move || {
                for i in 0..20 {
                    q.write_all(format!("line {i}\n").as_bytes()).unwrap();
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        // Wait until the producer stops making progress (the writer is stuck in its first
        // write, the queue is full), at most 5 s.
        let mut last = usize::MAX;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(50));
            let now = sent.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        let stuck_at = sent.load(Ordering::SeqCst);
        // The writer's batch (its first line and up to `capacity` more), `capacity` queued
        // again, one waiting in `send`: never all 20.
        assert!(
            stuck_at <= 2 * capacity + 2,
            "{stuck_at} lines sent past a full queue"
        );
        assert!(!producer.is_finished());
        open.send(()).unwrap();
        drop(open); // later writes pass the gate at once
        producer.join().unwrap();
        drop(guard);
        let want: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        assert_eq!(lines(&sink), want);
    }

    /// A flood is written as fast as the output takes it: a full batch is not followed
    /// by the linger, so the linger never caps the lines written per second (a hostile
    /// flood must not make every logging request wait on a sleeping writer).
    #[test]
    fn full_batches_are_not_followed_by_the_linger() {
        let (tx, rx) = mpsc::sync_channel(64);
        for i in 0..20 {
            tx.send(Msg::Line(format!("line {i}\n").into_bytes()))
                .unwrap();
        }
        tx.send(Msg::Shutdown).unwrap();
        let sink = Sink::default();
        let (done_tx, done_rx) = mpsc::channel();
        let writer_sink = sink.clone();
        // Batches of five (one line and four more); a linger after any of the first
        // four full ones would hold the writer for a minute.
        std::thread::spawn(move || {
            run(&rx, writer_sink, Duration::from_secs(60), 4);
            let _ = done_tx.send(());
        });
        assert!(
            done_rx.recv_timeout(Duration::from_secs(30)).is_ok(),
            "the writer lingered after a full batch"
        );
        let want: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        assert_eq!(lines(&sink), want);
    }

    #[test]
    fn lines_logged_before_shutdown_are_written() {
        let sink = Sink::default();
        let (mut queue, guard) = spawn(sink.clone(), 16, Duration::from_millis(300)).unwrap();
        queue.write_all(b"first\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // The writer now lingers; these wait in the queue and still go out.
        queue.write_all(b"second\nthird\n").unwrap();
        drop(guard);
        assert_eq!(lines(&sink), ["first", "second", "third"]);
    }
}
