//! Streaming reads of artifacts, for servers: any [`Driver`], optional byte ranges, no
//! temporary files (Argo's server stages GCS and Git artifacts through disk).
//!
//! A [`Streamer`] owns one memory budget for every stream it opens: whole objects are read as
//! `concurrency` ranged reads in flight (checked against the object's recorded CRC32C when it
//! has one), and each chunk keeps its share of the budget until the consumer drops it, so a
//! slow client holds memory back instead of growing it.
//!
//! ```
//! # use std::ops::Range; use std::sync::Arc;
//! # use argoexec::storage::{self, Driver, GetStream, ListPage, ObjectMeta, PutOptions};
//! # use bytes::Bytes; use futures::StreamExt;
//! # /// One object in memory, for the example.
//! # #[derive(Debug)] struct OneObject(Bytes);
//! # #[async_trait::async_trait] impl Driver for OneObject {
//! #   fn name(&self) -> &'static str { "memory" }
//! #   fn describe(&self) -> String { "memory://".into() }
//! #   async fn head(&self, key: &str) -> storage::Result<ObjectMeta> {
//! #     Ok(ObjectMeta { key: key.into(), size: self.0.len() as u64, ..Default::default() }) }
//! #   async fn get(&self, key: &str, range: Option<Range<u64>>) -> storage::Result<GetStream> {
//! #     let r = range.unwrap_or(0..self.0.len() as u64);
//! #     let body = self.0.slice(r.start as usize..r.end as usize);
//! #     Ok(GetStream { meta: self.head(key).await?,
//! #                    body: futures::stream::once(async move { Ok(body) }).boxed() }) }
//! #   async fn put(&self, _: &str, _: Bytes, _: &PutOptions) -> storage::Result<()> { Ok(()) }
//! #   async fn list(&self, _: &str, _: Option<String>) -> storage::Result<ListPage> { Ok(ListPage::default()) }
//! #   async fn delete(&self, _: &str) -> storage::Result<()> { Ok(()) }
//! # }
//! use argoexec::stream::{ByteRange, Streamer};
//! use argoexec::transfer::TransferConfig;
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let driver: Arc<dyn Driver> = Arc::new(OneObject(Bytes::from_static(b"0123456789")));
//! let streamer = Streamer::new(TransferConfig::default());
//!
//! // `Range: bytes=2-5`, as an HTTP server receives it.
//! let range = ByteRange::from_http("bytes=2-5");
//! let mut stream = streamer.open(driver, "some/key", range).await?;
//! assert_eq!((stream.range.clone(), stream.meta.size), (2..6, 10));
//! let mut got = Vec::new();
//! while let Some(bytes) = stream.next().await {
//!     got.extend_from_slice(&bytes?);
//! }
//! assert_eq!(got, b"2345");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use crate::model::{Artifact, ArtifactLocation};
use crate::repository::{self, RepositoryError};
use crate::storage::{self, Driver, ObjectMeta, Secrets};
use crate::transfer::TransferConfig;
use crate::transfer::budget::Budget;
use crate::transfer::download::{self, ChunkStream};

/// One byte range, as HTTP spells them (`bytes=a-b`, `bytes=a-`, `bytes=-n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last`, both inclusive.
    Span { first: u64, last: u64 },
    /// `first-`: to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// A `Range` header with exactly one byte range; `None` for anything else (several ranges,
    /// another unit, a malformed or reversed range), which a server answers with the whole
    /// object, as RFC 9110 allows.
    pub fn from_http(header: &str) -> Option<Self> {
        let (unit, spec) = header.trim().split_once('=')?;
        if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
            return None;
        }
        let (first, last) = spec.trim().split_once('-')?;
        let number = |s: &str| {
            let s = s.trim();
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        match (first.trim().is_empty(), last.trim().is_empty()) {
            (true, false) => number(last).map(Self::Suffix),
            (false, true) => number(first).map(Self::From),
            (false, false) => {
                let (first, last) = (number(first)?, number(last)?);
                (first <= last).then_some(Self::Span { first, last })
            }
            (true, true) => None,
        }
    }

    /// The offsets of this range in an object of `size` bytes; `None` when it is not
    /// satisfiable (it starts at or past the end, or asks for the last 0 bytes).
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            Self::Span { first, last } if first < size => Some(first..last.min(size - 1) + 1),
            Self::From(first) if first < size => Some(first..size),
            Self::Suffix(n) if n > 0 && size > 0 => Some(size.saturating_sub(n)..size),
            _ => None,
        }
    }
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// The requested range lies outside the object (HTTP 416).
    #[error("range not satisfiable: {key} has {size} bytes")]
    Unsatisfiable { key: String, size: u64 },
    /// The artifact's location cannot be determined.
    #[error(transparent)]
    Location(#[from] RepositoryError),
}

impl StreamError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Storage(e) if e.is_not_found())
    }
}

/// An open read: what the object is, which bytes follow, and the bytes.
pub struct ArtifactStream {
    pub meta: ObjectMeta,
    /// The offsets streamed: `0..size` for a whole object.
    pub range: Range<u64>,
    /// Whether a range was asked for (and is satisfied): an HTTP server answers 206.
    pub partial: bool,
    body: ChunkStream,
}

impl std::fmt::Debug for ArtifactStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStream")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .field("partial", &self.partial)
            .finish_non_exhaustive()
    }
}

impl Stream for ArtifactStream {
    type Item = storage::Result<Bytes>;

    /// Each item keeps its share of the budget until it is dropped.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.body
            .as_mut()
            .poll_next(cx)
            .map(|item| item.map(|r| r.map(download::Chunk::into_bytes)))
    }
}

/// Opens streams under one shared memory budget.
#[derive(Debug, Clone)]
pub struct Streamer {
    config: TransferConfig,
    budget: Budget,
}

impl Streamer {
    /// A streamer whose streams hold at most `config.download_budget()` bytes together
    /// (`download_chunk` x (the concurrency ceiling + 2); 34 MiB by default).
    pub fn new(config: TransferConfig) -> Self {
        let budget = Budget::new(config.download_budget());
        Self { config, budget }
    }

    /// A streamer drawing on this one's budget but never holding more than `bytes` of it (at
    /// least one chunk). A server makes one per client: the chunks of a client that stops
    /// reading stay held, and the share bounds them, so a few stalled clients leave the rest
    /// of the budget to the others.
    pub fn share(&self, bytes: u64) -> Self {
        Self {
            config: self.config.clone(),
            budget: self.budget.share(bytes.max(self.config.download_chunk)),
        }
    }

    /// Streams `key` from `driver`, or the bytes `range` of it.
    pub async fn open(
        &self,
        driver: Arc<dyn Driver>,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ArtifactStream, StreamError> {
        let meta = driver.head(key).await?;
        self.open_known(driver, key, meta, range).await
    }

    /// [`Streamer::open`] for an object whose head the caller already has (a server that
    /// answers conditional requests reads it first).
    pub async fn open_known(
        &self,
        driver: Arc<dyn Driver>,
        key: &str,
        meta: ObjectMeta,
        range: Option<ByteRange>,
    ) -> Result<ArtifactStream, StreamError> {
        let Some(range) = range else {
            let body = download::open_object(driver, key, &meta, &self.config, &self.budget)
                .await
                .map_err(into_storage)?;
            return Ok(ArtifactStream {
                range: 0..meta.size,
                partial: false,
                meta,
                body,
            });
        };
        let offsets = range
            .resolve(meta.size)
            .ok_or_else(|| StreamError::Unsatisfiable {
                key: key.to_string(),
                size: meta.size,
            })?;
        let body = download::read_range(
            driver,
            key,
            meta.size,
            offsets.clone(),
            &self.config,
            &self.budget,
        )
        .await
        .map_err(into_storage)?;
        Ok(ArtifactStream {
            meta,
            range: offsets,
            partial: true,
            body,
        })
    }

    /// Streams an artifact as a server finds it in a node's outputs: relocated against the
    /// archive location when it is key-only, its storage opened with `secrets` and the
    /// streamer's [`TransferConfig::storage`].
    pub async fn open_artifact(
        &self,
        artifact: &Artifact,
        archive: Option<&ArtifactLocation>,
        secrets: &Secrets,
        range: Option<ByteRange>,
    ) -> Result<ArtifactStream, StreamError> {
        let location = repository::artifact_location(artifact, archive)?;
        let driver = storage::open(&location, secrets, &self.config.storage).await?;
        let key = location.key().unwrap_or_default();
        self.open(driver, &key, range).await
    }
}

/// The download pipeline's errors are storage errors or local I/O; both are storage errors to
/// a stream's consumer.
fn into_storage(e: crate::transfer::Error) -> storage::Error {
    match e {
        crate::transfer::Error::Storage(s) => s,
        other => storage::Error::io(
            "opening the stream",
            std::io::Error::other(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_parse_and_everything_else_is_ignored() {
        use ByteRange::*;
        for (header, want) in [
            ("bytes=0-9", Some(Span { first: 0, last: 9 })),
            ("bytes=5-", Some(From(5))),
            ("bytes=-3", Some(Suffix(3))),
            (" Bytes = 1-1 ", Some(Span { first: 1, last: 1 })),
            ("bytes=0-1,4-5", None),
            ("items=0-1", None),
            ("bytes=9-2", None),
            ("bytes=-", None),
            ("bytes=a-b", None),
            ("bytes=+1-2", None),
            ("bytes", None),
        ] {
            assert_eq!(ByteRange::from_http(header), want, "{header:?}");
        }
    }

    #[test]
    fn ranges_resolve_against_the_size() {
        use ByteRange::*;
        assert_eq!(Span { first: 2, last: 5 }.resolve(10), Some(2..6));
        assert_eq!(Span { first: 8, last: 50 }.resolve(10), Some(8..10));
        assert_eq!(
            Span {
                first: 10,
                last: 12
            }
            .resolve(10),
            None
        );
        assert_eq!(From(9).resolve(10), Some(9..10));
        assert_eq!(From(10).resolve(10), None);
        assert_eq!(Suffix(3).resolve(10), Some(7..10));
        assert_eq!(Suffix(30).resolve(10), Some(0..10));
        assert_eq!(Suffix(0).resolve(10), None);
        assert_eq!(From(0).resolve(0), None);
        assert_eq!(Suffix(1).resolve(0), None);
    }
}
