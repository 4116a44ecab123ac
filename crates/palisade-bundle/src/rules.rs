//! Which bundle may follow which: the serial only rises, and a serial names
//! exactly one bundle (same serial, same digest).
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
