//! Which bundle may follow which: the serial only rises, and a serial names
//! exactly one bundle (same serial, same digest). And which bundle is still
//! fresh: at or above the operator's serial floor, signed recently enough.
//!
//! Pure decision over what the replica runs and what it was offered; the
//! gateway keeps the running value.

use crate::{BundleError, VerifiedBundle};

/// What a replica runs: the serial and digest of its active bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The active serial.
    pub serial: u64,
    /// The active bundle's digest ([`VerifiedBundle::digest`]).
    pub digest: String,
}

/// What activating an offered bundle would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Succession {
    /// A newer serial (or the first bundle): activate it.
    Upgrade,
    /// The bundle already running: nothing to do.
    Unchanged,
}

/// Decides whether `offered` may replace `running`.
///
/// # Errors
/// [`BundleError::OlderSerial`] for a lower serial (a replayed bundle),
/// [`BundleError::SerialReuse`] for the running serial with another digest.
pub fn check_successor(
    running: Option<&Running>,
    offered: &VerifiedBundle,
) -> Result<Succession, BundleError> {
    let Some(running) = running else {
        return Ok(Succession::Upgrade);
    };
    let serial = offered.manifest().serial;
    match serial.cmp(&running.serial) {
        std::cmp::Ordering::Greater => Ok(Succession::Upgrade),
        std::cmp::Ordering::Less => Err(BundleError::OlderSerial {
            serial,
            running: running.serial,
        }),
        std::cmp::Ordering::Equal if offered.digest() == running.digest => {
            Ok(Succession::Unchanged)
        }
        std::cmp::Ordering::Equal => Err(BundleError::SerialReuse { serial }),
    }
}

/// The operator's freshness rules (`bundle.min_serial`, `bundle.max_age_s`):
/// what a replica with no running or cached bundle still refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    /// Lowest serial accepted (0: any).
    pub min_serial: u64,
    /// Oldest signature accepted, seconds before now (`None`: any age).
    pub max_age_s: Option<u64>,
}

/// A signature dated this far in the future is still accepted (clock skew
/// between the signer and the replica).
pub const FUTURE_SKEW_S: u64 = 300;

/// Decides whether `offered` is fresh enough under `rules` at `now` (unix
/// seconds). Independent of what runs: a bundle that passes here must also
/// pass [`check_successor`].
///
/// # Errors
/// [`BundleError::BelowMinSerial`] under the floor; [`BundleError::Stale`]
/// signed more than `max_age_s` ago, or more than [`FUTURE_SKEW_S`] ahead.
pub fn check_fresh(
    offered: &VerifiedBundle,
    rules: Freshness,
    now: u64,
) -> Result<(), BundleError> {
    let manifest = offered.manifest();
    if manifest.serial < rules.min_serial {
        return Err(BundleError::BelowMinSerial {
            serial: manifest.serial,
            min_serial: rules.min_serial,
        });
    }
    if let Some(max_age_s) = rules.max_age_s {
        let stale = |why| BundleError::Stale {
            created_at: manifest.created_at,
            max_age_s,
            why,
        };
        if manifest.created_at.saturating_add(max_age_s) < now {
            return Err(stale("too old"));
        }
        if manifest.created_at > now.saturating_add(FUTURE_SKEW_S) {
            return Err(stale("dated in the future"));
        }
    }
    Ok(())
}
