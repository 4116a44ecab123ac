//! The last verified bundle on local disk, so a replica restarted while
//! the bundle store is down enforces it again.
//!
//! Written atomically (temporary file, fsync, rename, fsync of the
//! directory): a crash leaves the old bundle or the new one, never half of
//! one. Read back with the same size bound as any source, and verified
//! again before use: the cache is as hostile as the store (anyone who can
//! write the directory can put an old or forged bundle there).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::source::{read_bounded, SourceError};

/// The cached bundle's file name inside `bundle.cache_dir`.
const FILE: &str = "last-verified.bundle";

/// The on-disk copy of the last verified bundle.
#[derive(Debug, Clone)]
pub struct BundleCache {
    dir: PathBuf,
    max_bytes: usize,
}

impl BundleCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: &Path, max_bytes: usize) -> BundleCache {
        BundleCache {
            dir: dir.to_owned(),
            max_bytes,
        }
    }

    /// The cached bundle's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The cached bytes, unverified.
    pub fn load(&self) -> Result<Vec<u8>, SourceError> {
        read_bounded(&self.path(), self.max_bytes)
    }

    /// Replaces the cached bundle with `bytes`, atomically and durably.
    pub fn store(&self, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, self.path())?;
        // The rename itself is durable only once the directory is synced.
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_replaces_the_bundle_whole_and_reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BundleCache::new(&dir.path().join("nested"), 8);
        assert!(cache.load().is_err(), "nothing cached yet");
        cache.store(b"first").unwrap();
        cache.store(b"second!").unwrap();
        assert_eq!(cache.load().unwrap(), b"second!");
        assert!(
            !dir.path()
                .join("nested")
                .join(format!("{FILE}.tmp"))
                .exists(),
            "no temporary file is left behind"
        );
        std::fs::write(cache.path(), b"123456789").unwrap();
        assert!(matches!(
            cache.load(),
            Err(SourceError::TooLarge { max: 8 })
        ));
    }
}
