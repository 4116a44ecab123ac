//! Model-extraction defence, the pure part: parameter hardening
//! ([`params`]), per-request features and sketches ([`sketch`],
//! [`features`]), per-key windows ([`window`]), the window detectors
//! ([`detect`], on the statistics in [`stats`]), the action ladder
//! ([`ladder`]), the [`tracker`] that ties them together for many keys, and
//! the cross-account [`hunt`] that clusters keys into campaigns.
//!
//! Rate limits slow a model thief down; these make one visible: extraction
//! traffic is systematically varied, near-duplicate, parameter-sweeping and
//! filter-probing in ways product use is not.
//!
//! Must not: do I/O, spawn threads, read the clock or draw randomness. Time
//! (`now_ms`) and permutation seeds come from the caller, so every decision
//! replays exactly (the gateway, the evaluation harness and the tests drive
//! the same code).

#![forbid(unsafe_code)]

pub mod detect;
pub mod features;
pub mod hunt;
pub mod ladder;
pub mod params;
pub mod sketch;
pub mod stats;
pub mod tracker;
pub mod window;

pub use detect::{DetectorConfig, DetectorKind, Point, Signal};
pub use features::{sampling_signature, GateOutcome, RequestFeatures, SamplingSignature};
pub use hunt::{
    hunt, Campaign, HuntConfig, HuntReport, HuntRow, Mark, Marks, PriorCampaign, ProfileSet,
};
pub use ladder::{Action, LadderConfig, Standing};
pub use params::{harden, Hardening, ParamPolicy, ProbeAction, ProbeFinding, ProbeReason};
pub use sketch::{sketch, TextSketch};
pub use tracker::{Assessment, Tracker, TrackerConfig};
