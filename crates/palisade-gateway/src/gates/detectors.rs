//! The detector a replica enforces with, swappable by a signed bundle.
//!
//! The build ships a *base* detector (the embedded first stage plus the
//! configured second stage). A bundle may name another first-stage artifact
//! (carried inside it, or named by digest only) and threshold overrides; the
//! bundle's detector is built, checked and warmed here *before* its policy
//! becomes active ([`crate::bundle::activate`]), so a replica never enforces
//! a bundle's policy with a detector the bundle did not vouch for. A bundle
//! that names neither runs the base detector: every bundle states the whole
//! enforcement, so going back to a bundle without overrides really goes back.
//!
//! A request takes the detector once ([`DetectorStore::current`]) and judges
//! all its texts with it. This module must not fetch, verify signatures or
//! decide requests: it only turns a verified manifest into a detector.

use std::sync::Arc;

use arc_swap::ArcSwap;
use palisade_bundle::{ArtifactRef, ThresholdOverrides};
use palisade_detect::{Detector, ScanInput, Thresholds};
use sha2::Digest as _;

/// Why a bundle's detector cannot be enforced here (the bundle is refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectorRefusal {
    /// The manifest names an artifact by digest, the bundle does not carry
    /// it, and it is not this build's embedded model.
    #[error(
        "the bundle names detector artifact {sha256} without carrying it, and this build's \
         embedded model is {embedded}"
    )]
    NotCarried {
        /// The digest the manifest names.
        sha256: String,
        /// The embedded model's digest.
        embedded: String,
    },
    /// The carried artifact does not load (a model of another format version).
    #[error("the bundle's detector artifact does not load: {0}")]
    Unloadable(String),
    /// The threshold overrides are out of range.
    #[error("the bundle's detector thresholds are invalid: {0}")]
    Thresholds(String),
}

/// The base detector and the one in force.
#[derive(Debug)]
pub(crate) struct DetectorStore {
    base: Arc<Detector>,
    /// Hex SHA-256 of the embedded first-stage artifact.
    embedded_sha256: String,
    active: ArcSwap<Detector>,
}

impl DetectorStore {
    /// Starts with `base` in force (the build's own detector, warmed).
    pub(crate) fn new(base: Detector) -> DetectorStore {
        let base = Arc::new(base);
        DetectorStore {
            embedded_sha256: hex::encode(sha2::Sha256::digest(Detector::embedded_artifact())),
            active: ArcSwap::new(base.clone()),
            base,
        }
    }

    /// The detector in force; a request takes it once.
    pub(crate) fn current(&self) -> Arc<Detector> {
        self.active.load_full()
    }

    /// Builds and warms the detector a verified bundle asks for. CPU-bound
    /// (a model parse and one scan): call from a blocking task.
    ///
    /// # Errors
    /// Why the bundle's detector cannot be enforced; nothing is swapped.
    pub(crate) fn prepare(
        &self,
        artifact: Option<&ArtifactRef>,
        carried: Option<&[u8]>,
        thresholds: Option<ThresholdOverrides>,
    ) -> Result<Arc<Detector>, DetectorRefusal> {
        let mut detector = match (artifact, carried) {
            (None, _) => None,
            // Carried: `palisade_bundle::verify` already checked its digest and size.
            (Some(_), Some(bytes)) => {
                let loaded = Detector::from_model_bytes(bytes)
                    .map_err(|e| DetectorRefusal::Unloadable(e.to_string()))?;
                // The second stage only ever raises a score (`cascade::combine`), so it
                // stays attached to a swapped first stage: it cannot open a gate.
                Some(match self.base.second_stage_arc() {
                    Some(stage) => loaded.with_second_stage(stage),
                    None => loaded,
                })
            }
            (Some(named), None) if named.sha256.eq_ignore_ascii_case(&self.embedded_sha256) => None,
            (Some(named), None) => {
                return Err(DetectorRefusal::NotCarried {
                    sha256: named.sha256.clone(),
                    embedded: self.embedded_sha256.clone(),
                })
            }
        };
        if let Some(t) = thresholds {
            let base = detector.take().unwrap_or_else(|| (*self.base).clone());
            detector = Some(
                base.with_thresholds(Thresholds {
                    flag: t.flag as f32,
                    block: t.block as f32,
                })
                .map_err(|e| DetectorRefusal::Thresholds(e.to_string()))?,
            );
        }
        let Some(detector) = detector else {
            return Ok(self.base.clone());
        };
        // Lazily built matchers are paid here, not on the first request it judges.
        let _ = detector.scan(&ScanInput::user("warm up"));
        Ok(Arc::new(detector))
    }

    /// Puts `detector` in force; requests that already took one keep theirs.
    pub(crate) fn install(&self, detector: Arc<Detector>) {
        let previous = self.active.swap(detector.clone());
        if previous.version() != detector.version()
            || previous.thresholds() != detector.thresholds()
        {
            tracing::warn!(
                detector_version = detector.version(),
                flag = detector.thresholds().flag,
                block = detector.thresholds().block,
                "detector swapped by the bundle"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> DetectorStore {
        DetectorStore::new(Detector::embedded().expect("embedded model"))
    }

    fn embedded_ref() -> ArtifactRef {
        let bytes = Detector::embedded_artifact();
        ArtifactRef {
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn no_detector_part_runs_the_base() {
        let store = store();
        let d = store.prepare(None, None, None).expect("base");
        assert!(Arc::ptr_eq(&d, &store.base));
    }

    #[test]
    fn the_embedded_model_named_by_digest_is_the_base() {
        let store = store();
        let d = store
            .prepare(Some(&embedded_ref()), None, None)
            .expect("base");
        assert!(Arc::ptr_eq(&d, &store.base));
    }

    #[test]
    fn an_unknown_artifact_named_by_digest_is_refused() {
        let store = store();
        let named = ArtifactRef {
            sha256: "ab".repeat(32),
            size: 10,
        };
        let err = store.prepare(Some(&named), None, None).unwrap_err();
        assert!(matches!(err, DetectorRefusal::NotCarried { .. }), "{err}");
    }

    #[test]
    fn a_carried_artifact_that_does_not_load_is_refused() {
        let store = store();
        let err = store
            .prepare(Some(&embedded_ref()), Some(b"not a model"), None)
            .unwrap_err();
        assert!(matches!(err, DetectorRefusal::Unloadable(_)), "{err}");
    }

    #[test]
    fn thresholds_override_the_calibrated_ones() {
        let store = store();
        let t = ThresholdOverrides {
            flag: 0.25,
            block: 0.75,
        };
        let d = store.prepare(None, None, Some(t)).expect("overrides");
        assert_eq!(d.thresholds().flag, 0.25);
        assert_eq!(d.thresholds().block, 0.75);
        assert_ne!(store.base.thresholds().flag, 0.25);
        store.install(d.clone());
        assert!(Arc::ptr_eq(&store.current(), &d));
        let bad = ThresholdOverrides {
            flag: 0.9,
            block: 0.1,
        };
        assert!(matches!(
            store.prepare(None, None, Some(bad)),
            Err(DetectorRefusal::Thresholds(_))
        ));
    }

    #[test]
    fn a_carried_artifact_is_loaded_with_its_own_version() {
        let store = store();
        let d = store
            .prepare(
                Some(&embedded_ref()),
                Some(Detector::embedded_artifact()),
                None,
            )
            .expect("carried");
        assert!(!Arc::ptr_eq(&d, &store.base));
        assert_eq!(d.version(), store.base.version());
    }
}
