//! Errors of the limits crate.
//!
//! A *denial* (over the rate, out of tokens) is not an error: it is a normal decision and
//! comes back as a value. These errors mean the caller asked something that can never be
//! answered: an invalid configuration, a request that could never fit, a reservation that
//! does not exist.

/// Why a limiter could not be built or could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A configuration value is out of range: a zero rate, period or burst, a zero weight,
    /// thresholds out of order, or values whose product overflows 64-bit nanoseconds.
    /// Likely cause: a typo in the policy file that validation upstream did not catch.
    #[error("invalid limit configuration: {0}")]
    InvalidConfig(&'static str),
    /// A single request costs more than the limiter can ever admit at once (for example a
    /// weighted GCRA cost above the burst). Waiting will not help, so the gateway should
    /// answer at once rather than tell the client to retry.
    #[error("cost {cost} exceeds the capacity {capacity} that can ever be admitted at once")]
    CostExceedsCapacity {
        /// What the request asked for.
        cost: u64,
        /// The most the limiter can admit at one instant.
        capacity: u64,
    },
    /// A reservation id was reused with a different key or amount. Likely cause: two
    /// requests sharing one request id, or a retry that changed its estimate.
    #[error("reservation {0:?} already exists with a different key or amount")]
    ReservationConflict(String),
    /// No open or recently settled reservation has this id. Likely cause: the reservation
    /// expired and was charged by the sweeper, or the id was never reserved on this store.
    #[error("unknown reservation {0:?}")]
    UnknownReservation(String),
    /// A concurrency permit was released for a key that holds none. Likely cause: a release
    /// on a different limiter than the acquire, or a limiter rebuilt while requests were in
    /// flight (a config reload).
    #[error("release of key {0:?} which holds no permit")]
    NotAcquired(String),
    /// The tenant's queue in the fair queue is at its bound; the request should be shed.
    #[error("queue for tenant {0:?} is full")]
    QueueFull(String),
    /// The fair queue has no queued request for this tenant.
    #[error("tenant {0:?} has nothing queued")]
    NothingQueued(String),
}
