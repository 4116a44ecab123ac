//! Scaling-aware anomaly detection over gate outcomes: is one tenant (or
//! key) suddenly flagged, blocked or refused far more often *per request*
//! than it usually is, and is this replica's load surging without the
//! fleet scaling to meet it?
//!
//! Why rates and not counts: a benign 10x traffic spike multiplies every
//! count by ten and leaves every rate where it was, so a detector on counts
//! fires on every spike (or is tuned blind to them). Here each tenant and key
//! has an EWMA baseline of its flag+block and refusal rates per request; a
//! window is tested against it with a one-sided binomial z-test, so a burst
//! of injections from one tenant stands out however much benign traffic
//! surrounds it. Load is measured per replica (each replica sees its share),
//! so when the fleet scales with traffic the per-replica load returns to its
//! baseline; while a scale event is under way (posted, or the replica count
//! changed) capacity-driven signals — load surges and refusals — are held
//! down and their baselines frozen, then re-based. Content signals (flags and
//! blocks) are never held down: an attack during a spike still alerts.
//! Alerts are deduplicated per (kind, tenant) for a configurable period.
//!
//! Must not: read the clock (every call takes `now_ms` from the caller), do
//! I/O or start threads; memory is bounded by [`Params::max_scopes`].

mod detector;
mod params;
mod stats;

pub use detector::{Alert, AlertKind, Detector, Observation, Outcome, ScaleEvent, Status};
pub use params::{Params, ParamsError};
pub use stats::binomial_z;
