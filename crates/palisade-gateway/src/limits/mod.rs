//! Admission and cost control wiring: the rate gate, token budgets reserved
//! and reconciled, monthly spend and its alerts, per-key budgets, the per-backend circuit
//! breaker and downstream queue, and ledger rows.
//!
//! The decisions themselves (GCRA, budgets, breaker state machine, adaptive
//! concurrency, month rollover, alert thresholds) live in the pure
//! `palisade-limits` crate and take time from [`crate::clock`]; this module
//! holds the locks, stores and background tasks around them. It must not
//! read the clock itself or grow limit logic of its own.

pub(crate) mod accounting;
pub(crate) mod admission;
pub(crate) mod breaker;
pub(crate) mod budgets;
pub(crate) mod key_budgets;
pub(crate) mod reservation;
pub(crate) mod scheduler;
pub(crate) mod spend;
pub(crate) mod usage;
