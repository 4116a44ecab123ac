//! The fleet as data: every replica announces a [`Replica`] record (what it enforces,
//! since when, its last heartbeat); a [`FleetView`] is the set of live records at one
//! instant, with the version skew; [`events`] turns two successive views into the
//! [`FleetEvent`]s an operator is told about the moment they happen (a replica joined,
//! started enforcing, fell behind the fleet's serial, caught up, left).
//!
//! Pure: no I/O, no clock. The caller (the gateway's fleet task, the CLI) reads records
//! from wherever they are kept (Redis) and passes `now` in, so every rule here is a table
//! test. It must not decide what a replica enforces: that is the bundle/policy code's.

#![forbid(unsafe_code)]

mod events;
mod view;

pub use events::{events, FleetEvent, LeftBecause};
pub use view::{FleetView, Replica};
