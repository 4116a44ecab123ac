//! The downstream budget of a backend: at most `max_in_flight` requests at
//! the model server, and a fair queue in front of it.
//!
//! A saturated model server gets slower for everyone; queueing in the gateway
//! instead keeps its latency stable and lets us choose *who* goes next. The
//! choice is VTC-style weighted fair queueing (`palisade_limits::FairQueue`):
//! the backlogged tenant that has received the least service goes first, so
//! one heavy tenant cannot starve a light one. Service is charged at dispatch
//! as the request's token reservation (prompt estimate + max_tokens), or one
//! unit per request when no token budget applies.
//!
//! Requests carry a priority class (from their API key): queued high-priority
//! requests go before normal ones, and low-priority requests are shed (not
//! queued at all) while the backend is saturated, so overload falls on the
//! work that can best wait.
//!
//! Queues are bounded per tenant (in requests) and in all (in tokens: the
//! queued requests' reservations, so a few huge prompts cannot pile up
//! minutes of work), and waits are bounded by the queue timeout (and the
//! request's own deadline); every refusal is 503 `upstream_overloaded` with
//! `Retry-After`.
//!
//! With adaptive concurrency on, the in-flight limit moves between
//! `min_in_flight` and `max_in_flight` by AIMD (`palisade_limits::AdaptiveLimit`,
//! which decides; this module only feeds it each response head).
//!
//! This module owns the lock, the wakeups and the timers; it must not hold
//! limit arithmetic of its own, and it reads time only through its
//! [`GatewayClock`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use palisade_limits::{AdaptiveLimit, FairQueue, FairQueueConfig, Nanos};
use palisade_openai::{ApiError, ErrorCode};
use tokio::sync::oneshot;

use crate::clock::GatewayClock;

struct Waiter {
    ticket: u64,
    cost: u64,
    wake: oneshot::Sender<()>,
}

/// Priority classes, served in this order.
pub const CLASSES: usize = 3;
/// The class that is shed rather than queued under saturation.
const LOW: usize = CLASSES - 1;

struct Inner {
    in_flight: u32,
    /// The current limit (fixed at `max_in_flight` unless adaptive).
    limit: AdaptiveLimit,
    /// One fair queue per priority class.
    fair: [FairQueue; CLASSES],
    waiters: HashMap<(usize, Arc<str>), VecDeque<Waiter>>,
    next_ticket: u64,
    /// The sum of the queued waiters' costs.
    queued_tokens: u64,
}

/// One backend's in-flight budget and fair queue.
pub struct BackendScheduler {
    name: String,
    max_in_flight: u32,
    adaptive: Option<Adaptive>,
    queue_timeout: Duration,
    max_queued_tokens: Option<u64>,
    clock: GatewayClock,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for BackendScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendScheduler")
            .field("name", &self.name)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// Adaptive concurrency settings.
#[derive(Debug, Clone, Copy)]
pub struct Adaptive {
    /// The floor of the limit.
    pub min_in_flight: u32,
    /// Response heads slower than this count as overload.
    pub target_latency: Duration,
}

/// A request's place at the backend; frees it (and wakes the next request
/// in fair order) when dropped.
#[derive(Debug)]
pub struct BackendSlot {
    scheduler: Arc<BackendScheduler>,
}

impl BackendSlot {
    /// Reports how the backend answered (status of the response head, or
    /// `None` for a timeout or failure, and the time it took), for adaptive
    /// concurrency.
    pub fn observe(&self, status: Option<u16>, head_latency: Duration) {
        self.scheduler.observe(status, head_latency);
    }
}

impl Drop for BackendSlot {
    fn drop(&mut self) {
        self.scheduler.release();
    }
}

fn overloaded(backend: &str, why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamOverloaded,
        format!("backend `{backend}` is at capacity: {why}"),
    )
    .with_retry_after(Some(1))
}

impl BackendScheduler {
    /// A scheduler admitting `max_in_flight` requests at once, queueing up to
    /// `max_queued_per_tenant` more per tenant for at most `queue_timeout`.
    pub fn new(
        name: &str,
        max_in_flight: u32,
        max_queued_per_tenant: u32,
        queue_timeout: Duration,
        adaptive: Option<Adaptive>,
    ) -> Result<Self, palisade_limits::LimitError> {
        // Without adaptive settings the limit never moves: nothing observes it.
        let limit = match adaptive {
            Some(a) => AdaptiveLimit::new(
                a.min_in_flight,
                max_in_flight,
                Nanos::from(a.target_latency),
            ),
            None => AdaptiveLimit::new(max_in_flight, max_in_flight, Nanos::MAX),
        };
        Ok(Self {
            name: name.to_owned(),
            max_in_flight,
            adaptive,
            queue_timeout,
            max_queued_tokens: None,
            clock: GatewayClock::system(),
            inner: Mutex::new(Inner {
                in_flight: 0,
                limit,
                fair: {
                    let queue = || {
                        FairQueue::new(FairQueueConfig {
                            default_weight: 1,
                            max_queued_per_tenant,
                        })
                    };
                    [queue()?, queue()?, queue()?]
                },
                waiters: HashMap::new(),
                next_ticket: 0,
                queued_tokens: 0,
            }),
        })
    }

    /// Bounds the tokens waiting in the queue, all tenants together.
    #[must_use]
    pub fn with_max_queued_tokens(mut self, max: Option<u64>) -> Self {
        self.max_queued_tokens = max;
        self
    }

    /// Tokens waiting in the queue now.
    #[cfg(test)]
    pub fn queued_tokens(&self) -> u64 {
        self.lock().queued_tokens
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Requests currently at the backend.
    #[cfg(test)]
    pub fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// At its limit: a new request would wait (or, if low priority, be shed).
    pub fn is_saturated(&self) -> bool {
        let inner = self.lock();
        inner.in_flight >= inner.limit.limit()
    }

    /// The current in-flight limit.
    #[cfg(test)]
    pub fn limit(&self) -> u32 {
        self.lock().limit.limit()
    }

    fn observe(&self, status: Option<u16>, head_latency: Duration) {
        if self.adaptive.is_none() {
            return;
        }
        let limit = self.lock().limit.observe(status, Nanos::from(head_latency));
        metrics::gauge!(crate::metrics::BACKEND_LIMIT, "backend" => self.name.clone())
            .set(f64::from(limit));
    }

    /// Waits for a slot at the backend, at most until `deadline`. `class`
    /// is the priority class, 0 (high) to `CLASSES - 1` (low).
    pub async fn acquire(
        self: &Arc<Self>,
        tenant: &str,
        class: usize,
        cost: u64,
        deadline: std::time::Instant,
    ) -> Result<BackendSlot, ApiError> {
        let class = class.min(LOW);
        let (ticket, rx) = {
            let mut inner = self.lock();
            let queued: u64 = inner.fair.iter().map(FairQueue::total_queued).sum();
            if inner.in_flight < inner.limit.limit() && queued == 0 {
                inner.in_flight += 1;
                inner.fair[class].charge(tenant, cost);
                return Ok(BackendSlot {
                    scheduler: self.clone(),
                });
            }
            if class == LOW {
                metrics::counter!(crate::metrics::SHED, "backend" => self.name.clone())
                    .increment(1);
                return Err(overloaded(
                    &self.name,
                    "low-priority requests are shed while it is saturated",
                ));
            }
            if let Some(max) = self.max_queued_tokens {
                if inner.queued_tokens.saturating_add(cost) > max {
                    return Err(overloaded(
                        &self.name,
                        &format!(
                            "{} tokens already queued (limit {max}); this request needs {cost}",
                            inner.queued_tokens
                        ),
                    ));
                }
            }
            if inner.fair[class].enqueue(tenant).is_err() {
                return Err(overloaded(&self.name, "this tenant's queue is full"));
            }
            let (tx, rx) = oneshot::channel();
            let ticket = inner.next_ticket;
            inner.next_ticket += 1;
            inner.queued_tokens += cost;
            inner
                .waiters
                .entry((class, Arc::from(tenant)))
                .or_default()
                .push_back(Waiter {
                    ticket,
                    cost,
                    wake: tx,
                });
            (ticket, rx)
        };
        // If this future is dropped (the client left), the waiter stays
        // queued with a closed channel; `release` skips it.
        let wait = self.queue_timeout.min(self.clock.until(deadline));
        let mut rx = rx;
        match tokio::time::timeout(wait, &mut rx).await {
            Ok(Ok(())) => Ok(BackendSlot {
                scheduler: self.clone(),
            }),
            _ => {
                let mut inner = self.lock();
                let still_queued =
                    inner
                        .waiters
                        .get_mut(&(class, Arc::from(tenant)))
                        .and_then(|q| {
                            q.iter()
                                .position(|w| w.ticket == ticket)
                                .and_then(|i| q.remove(i))
                        });
                if let Some(waiter) = still_queued {
                    inner.queued_tokens = inner.queued_tokens.saturating_sub(waiter.cost);
                    let _ = inner.fair[class].cancel(tenant);
                    return Err(overloaded(&self.name, "timed out waiting in the queue"));
                }
                drop(inner);
                // Woken in the instant the timer fired: the slot is ours.
                match rx.try_recv() {
                    Ok(()) => Ok(BackendSlot {
                        scheduler: self.clone(),
                    }),
                    Err(_) => Err(overloaded(&self.name, "timed out waiting in the queue")),
                }
            }
        }
    }

    /// Frees a slot and hands free slots to queued requests in fair order.
    fn release(&self) {
        let mut inner = self.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        while inner.in_flight < inner.limit.limit() {
            // The highest class with anything queued goes first.
            let Some((class, tenant)) =
                (0..CLASSES).find_map(|c| inner.fair[c].pick_next().map(|t| (c, t)))
            else {
                break;
            };
            let key = (class, tenant);
            let Some(waiter) = inner.waiters.get_mut(&key).and_then(VecDeque::pop_front) else {
                continue;
            };
            inner.queued_tokens = inner.queued_tokens.saturating_sub(waiter.cost);
            if waiter.wake.send(()).is_ok() {
                inner.in_flight += 1;
                inner.fair[class].charge(&key.1, waiter.cost);
            }
            // A closed channel: that client left while queued; try the next.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test]
    async fn admits_up_to_the_limit_then_queues_fairly() {
        let s = Arc::new(BackendScheduler::new("b", 1, 8, Duration::from_secs(5), None).unwrap());
        let first = s.acquire("heavy", 1, 10, far()).await.unwrap();
        // Heavy queues three, then light queues one. FIFO would serve light
        // fourth; VTC lifts light to the smallest backlogged counter (idle
        // time earns no credit) and then alternates, so light is served
        // within the first two.
        let mut order = Vec::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (i, tenant) in ["heavy", "heavy", "heavy", "light"].into_iter().enumerate() {
            let (task_s, tx) = (s.clone(), tx.clone());
            tokio::spawn(async move {
                let slot = task_s.acquire(tenant, 1, 10, far()).await.unwrap();
                tx.send(tenant).unwrap();
                drop(slot);
            });
            // Enqueue in a known order.
            for _ in 0..100 {
                if s.lock().fair[1].total_queued() as usize == i + 1 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(s.in_flight(), 1);
        drop(first);
        for _ in 0..4 {
            order.push(rx.recv().await.unwrap());
        }
        let light_at = order.iter().position(|t| *t == "light").unwrap();
        assert!(light_at <= 1, "{order:?}");
        assert_eq!(s.in_flight(), 0);
    }

    #[tokio::test]
    async fn queue_timeout_and_full_queue_are_overload_errors() {
        let s =
            Arc::new(BackendScheduler::new("b", 1, 1, Duration::from_millis(50), None).unwrap());
        let _held = s.acquire("t", 1, 1, far()).await.unwrap();
        let waiting = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire("t", 1, 1, far()).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let full = s.acquire("t", 1, 1, far()).await.unwrap_err();
        assert_eq!(full.code, ErrorCode::UpstreamOverloaded);
        assert!(full.message.contains("queue is full"));
        let timed_out = waiting.await.unwrap().unwrap_err();
        assert!(timed_out.message.contains("timed out"));
        assert_eq!(
            s.lock().fair[1].total_queued(),
            0,
            "the timed-out waiter left the queue"
        );
    }

    #[tokio::test]
    async fn high_priority_goes_first_and_low_priority_is_shed_when_full() {
        let s = Arc::new(BackendScheduler::new("b", 1, 8, Duration::from_secs(5), None).unwrap());
        let held = s.acquire("t", 1, 1, far()).await.unwrap();
        let shed = s.acquire("t", 2, 1, far()).await.unwrap_err();
        assert!(shed.message.contains("low-priority"), "{}", shed.message);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (class, name) in [(1, "normal"), (0, "high")] {
            let (s, tx) = (s.clone(), tx.clone());
            tokio::spawn(async move {
                let slot = s.acquire("t", class, 1, far()).await.unwrap();
                tx.send(name).unwrap();
                drop(slot);
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(held);
        assert_eq!(rx.recv().await.unwrap(), "high");
        assert_eq!(rx.recv().await.unwrap(), "normal");
        // Idle again: low priority is admitted.
        assert!(s.acquire("t", 2, 1, far()).await.is_ok());
    }

    #[test]
    fn response_heads_move_the_adaptive_limit() {
        // The AIMD arithmetic is palisade-limits' (`adaptive`); this checks the wiring.
        let adaptive = Adaptive {
            min_in_flight: 2,
            target_latency: Duration::from_millis(100),
        };
        let s = BackendScheduler::new("b", 20, 8, Duration::from_secs(5), Some(adaptive)).unwrap();
        assert_eq!(s.limit(), 20);
        s.observe(Some(503), Duration::from_millis(10));
        assert_eq!(s.limit(), 18, "a 503 cuts by 10%");
        s.observe(Some(200), Duration::from_secs(1));
        assert_eq!(s.limit(), 16, "a slow head counts as overload");
        let fixed = BackendScheduler::new("b", 20, 8, Duration::from_secs(5), None).unwrap();
        fixed.observe(None, Duration::from_secs(1));
        assert_eq!(
            fixed.limit(),
            20,
            "without adaptive settings the limit is fixed"
        );
    }

    #[tokio::test]
    async fn a_waiter_that_went_away_does_not_leak_the_slot() {
        let s = Arc::new(BackendScheduler::new("b", 1, 4, Duration::from_secs(5), None).unwrap());
        let held = s.acquire("t", 1, 1, far()).await.unwrap();
        let gone = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire("t", 1, 1, far()).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        gone.abort();
        let _ = gone.await;
        drop(held);
        assert_eq!(
            s.in_flight(),
            0,
            "the abandoned waiter did not take the slot"
        );
        let _again = s.acquire("t", 1, 1, far()).await.unwrap();
        assert_eq!(s.in_flight(), 1);
    }

    #[tokio::test]
    async fn queued_tokens_are_bounded_across_tenants_and_freed_on_dispatch() {
        let s = Arc::new(
            BackendScheduler::new("b", 1, 8, Duration::from_secs(5), None)
                .unwrap()
                .with_max_queued_tokens(Some(1_000)),
        );
        let held = s.acquire("a", 1, 10, far()).await.unwrap();
        let queue = |tenant: &'static str, cost: u64| {
            let s = s.clone();
            tokio::spawn(async move { s.acquire(tenant, 1, cost, far()).await.map(drop) })
        };
        let first = queue("a", 600);
        let second = queue("b", 300);
        for _ in 0..100 {
            if s.queued_tokens() == 900 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(s.queued_tokens(), 900);
        // Another tenant, a free per-tenant queue, but the token bound is hit.
        let refused = s.acquire("c", 1, 200, far()).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::UpstreamOverloaded);
        assert!(
            refused.message.contains("tokens already queued"),
            "{}",
            refused.message
        );
        // A small one still fits.
        let third = queue("c", 100);
        drop(held);
        for task in [first, second, third] {
            task.await.unwrap().unwrap();
        }
        assert_eq!(s.queued_tokens(), 0, "dispatch frees the queued tokens");
    }
}
