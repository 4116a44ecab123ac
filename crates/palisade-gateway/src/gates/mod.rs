//! The safety gates of the request path, after the rate gate: input
//! (user turns), context (retrieved documents and tool results) and output
//! (the completion, whole or streamed).
//!
//! Each gate turns detector scans into [`palisade_policy::Evidence`], asks the
//! request's policy snapshot for a decision, enforces it (block, redact,
//! spotlight) and writes one audit record with the policy version and reason
//! codes — also when it allows. A shadow candidate, when configured, is
//! decided on the same evidence and recorded beside, never enforced.
//!
//! The request keeps the snapshot it started with ([`GatePlan`]), so its
//! input and output are judged by one policy version even across a reload.

use std::sync::Arc;

pub(crate) mod audit;
pub(crate) mod decisions;
pub(crate) mod detectors;
pub(crate) mod input;
pub(crate) mod json_keys;
pub(crate) mod markers;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod policy;
pub(crate) mod pool;
pub(crate) mod scan_cache;
pub(crate) mod shadow_log;
pub(crate) mod tools;

pub(crate) use decisions::{audit, decide, record_decision};
pub(crate) use plan::{GatePlan, GateSubject, ResponseShape};

/// What the gates need that outlives a request: the detector, the policy
/// store, the audit sink and the tool service. Built once; a request takes
/// a [`GatePlan`] from it at the input gate.
#[derive(Debug)]
pub(crate) struct Gates {
    /// Scans text for injections, jailbreaks, secrets and PII: the build's
    /// detector, or the one the active bundle vouches for.
    pub(crate) detector: Arc<detectors::DetectorStore>,
    /// The active (and shadow) policy snapshots, reloaded in place.
    pub(crate) policy: Arc<policy::PolicyStore>,
    /// Where decisions are recorded.
    pub(crate) audit: audit::AuditSink,
    /// Capability tokens, held calls and tool-loop counters.
    pub(crate) tools: Arc<tools::ToolService>,
    /// The output gate's hold-back bound for streams.
    pub(crate) stream_hold_bytes: usize,
    /// `false` when `policy.disabled`: the gates are skipped entirely.
    pub(crate) enabled: bool,
    /// Canaries and data boundaries, keyed (see [`markers`]).
    pub(crate) markers: markers::Markers,
    /// Scans of texts seen before (unchanged conversation turns), per tenant;
    /// built with `detector` and living as long as it does.
    pub(crate) scans: scan_cache::ScanCache,
    /// Where scans of long texts (and second-stage scans) run, bounded.
    pub(crate) pool: pool::DetectionPool,
}
