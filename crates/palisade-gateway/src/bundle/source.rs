//! Where bundles come from: a local file, an HTTP(S) URL or Redis
//! ([`super::redis_source`]), behind one trait, [`BundleSource`].
//!
//! A source only fetches bytes, bounded in size and time; it never decides
//! whether they are trusted (that is [`super::activate`]'s, after
//! verification). Every store is treated as hostile: a body over the bound
//! is cut off and refused, not buffered.

use std::future::Future;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use http::header;

/// A boxed, sendable future (the trait must be usable as `dyn`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one fetch found.
#[derive(Debug)]
pub enum Fetched {
    /// The same bundle as last time (HTTP 304, an unchanged file).
    NotModified,
    /// A bundle's bytes, to be verified.
    Bundle(Vec<u8>),
}

/// Why a fetch failed (the running bundle stays).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The store could not be reached or read.
    #[error("bundle store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something other than a bundle.
    #[error("bundle store answered {0}")]
    BadAnswer(String),
    /// More bytes than `bundle.max_bytes`.
    #[error("bundle over {max} bytes refused")]
    TooLarge {
        /// The bound.
        max: usize,
    },
}

/// Reads at most `max` bytes of `path`; more is refused, not truncated.
pub(crate) fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>, SourceError> {
    let file = std::fs::File::open(path)
        .map_err(|e| SourceError::Unavailable(format!("{}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SourceError::Unavailable(format!("{}: {e}", path.display())))?;
    if bytes.len() > max {
        return Err(SourceError::TooLarge { max });
    }
    Ok(bytes)
}

/// A place bundles are fetched from.
pub trait BundleSource: Send + std::fmt::Debug {
    /// Fetches the current bundle (or learns it did not change).
    fn fetch(&mut self) -> BoxFuture<'_, Result<Fetched, SourceError>>;
    /// What to name in logs (`file:/etc/…`, the URL).
    fn describe(&self) -> String;
    /// Forgets what the last fetch saw (ETag, digest, file stamp), so the
    /// next fetch reads the bundle whole. Called when what it read was
    /// refused: a store tampered with for a moment must not leave its
    /// marker as "seen", pinning the replica on the old bundle until the
    /// next serial.
    fn forget_seen(&mut self);
}

/// Builds the source named by `bundle.source`.
pub fn from_config(config: &palisade_config::BundleConfig) -> Box<dyn BundleSource> {
    let timeout = Duration::from_millis(config.fetch_timeout_ms);
    if config.source.starts_with("redis://") {
        return Box::new(super::redis_source::RedisSource::new(
            &config.source,
            &config.redis_prefix,
            timeout,
            config.max_bytes,
        ));
    }
    match config.source.strip_prefix("file:") {
        Some(path) => Box::new(FileSource {
            path: PathBuf::from(path),
            max_bytes: config.max_bytes,
            seen: None,
        }),
        None => Box::new(HttpSource::new(&config.source, timeout, config.max_bytes)),
    }
}

/// A bundle file on local disk (a mounted config map, a shared volume).
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    max_bytes: usize,
    /// Modification time and length of the last read, to skip unchanged files.
    seen: Option<(SystemTime, u64)>,
}

impl BundleSource for FileSource {
    fn fetch(&mut self) -> BoxFuture<'_, Result<Fetched, SourceError>> {
        Box::pin(async move {
            let path = self.path.clone();
            let max = self.max_bytes;
            let seen = self.seen;
            let read = tokio::task::spawn_blocking(move || {
                let meta = std::fs::metadata(&path)
                    .map_err(|e| SourceError::Unavailable(format!("{}: {e}", path.display())))?;
                let stamp = (
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                );
                if seen == Some(stamp) {
                    return Ok((stamp, None));
                }
                let bytes = read_bounded(&path, max)?;
                Ok((stamp, Some(bytes)))
            })
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
            let (stamp, bytes) = read?;
            self.seen = Some(stamp);
            Ok(bytes.map_or(Fetched::NotModified, Fetched::Bundle))
        })
    }

    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn forget_seen(&mut self) {
        self.seen = None;
    }
}

/// A bundle served over HTTP(S), fetched with `If-None-Match` so an
/// unchanged bundle costs a 304 and no body.
#[derive(Debug)]
pub struct HttpSource {
    url: String,
    client: reqwest::Client,
    max_bytes: usize,
    etag: Option<String>,
}

impl HttpSource {
    /// A source for `url`, each fetch bounded by `timeout` and `max_bytes`.
    pub fn new(url: &str, timeout: Duration, max_bytes: usize) -> HttpSource {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        HttpSource {
            url: url.to_owned(),
            client,
            max_bytes,
            etag: None,
        }
    }

    async fn get(&mut self) -> Result<Fetched, SourceError> {
        let mut request = self.client.get(&self.url);
        if let Some(etag) = &self.etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| SourceError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            return Err(SourceError::BadAnswer(format!(
                "status {}",
                status.as_u16()
            )));
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(SourceError::TooLarge {
                max: self.max_bytes,
            });
        }
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 256)
            .map(str::to_owned);
        // Bounded whatever the headers claimed (chunked bodies have none).
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| SourceError::Unavailable(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(SourceError::TooLarge {
                    max: self.max_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        self.etag = etag;
        Ok(Fetched::Bundle(body))
    }
}

impl BundleSource for HttpSource {
    fn fetch(&mut self) -> BoxFuture<'_, Result<Fetched, SourceError>> {
        Box::pin(self.get())
    }

    fn describe(&self) -> String {
        self.url.clone()
    }

    fn forget_seen(&mut self) {
        self.etag = None;
    }
}
