//! Storage: one [`Driver`] trait, one folder per backend, a wrapper for cross-cutting behaviour.
//!
//! A driver is an object store seen through a small set of operations: ranged streaming reads,
//! single puts, multipart uploads with caller-supplied part checksums, paged listing and delete.
//! Argo's semantics (key-as-directory, archives, relocation) live above it, in
//! [`crate::transfer`], so every backend gets them the same way. Retries and integrity checks
//! are one wrapper ([`retry::Retrying`], which runs [`verify::check_part`] on every stored part)
//! stacked on any driver by [`open`].
//!
//! Each backend folder has the same shape: `mod.rs` (the `Driver` impl), `config.rs` (location
//! and secrets to a client), `error.rs` (the backend's failures to a typed [`Error`]).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tracing::Instrument;

use crate::model::{ArtifactLocation, LocationKind};

#[cfg(feature = "azure")]
pub mod azure;
pub mod buffer;
mod config;
mod error;
pub mod file_range;
#[cfg(feature = "gcs")]
pub mod gcs;
#[cfg(feature = "git")]
pub mod git;
#[cfg(feature = "http")]
pub mod http;
pub mod input_only;
pub mod oss;
pub mod plugin;
pub mod retry;
pub mod s3;
pub mod secrets;
pub mod timeouts;
pub mod verify;

pub use config::StorageConfig;
#[cfg(any(feature = "http", feature = "gcs"))]
pub use error::classify_reqwest;
pub use error::{Error, ErrorKind, Result, cause_chain, go_error_text, is_tls_failure};
pub use secrets::Secrets;

/// Argo's text for deleting from a store that cannot (`common.ErrDeleteNotSupported`).
pub const DELETE_NOT_SUPPORTED: &str = "delete not supported for this artifact storage, please check the following issue for details: https://github.com/argoproj/argo-workflows/issues/3102";

/// Argo's text for listing a store that cannot.
pub const LIST_NOT_SUPPORTED: &str = "ListObjects is currently not supported for this artifact type, but it will be in a future version";

/// A stream of object bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// What a listing or a head request tells about one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// The entity tag without quotes, when the backend has one.
    pub etag: Option<String>,
    /// User metadata (`x-amz-meta-*` and equivalents), names lower-cased, without prefix.
    pub metadata: BTreeMap<String, String>,
    /// CRC32C of the whole object, when the backend or our metadata recorded one.
    pub crc32c: Option<u32>,
}

/// User-metadata name under which a whole-object CRC32C is stored with single-request writes.
pub const CRC32C_METADATA: &str = "argoexec-crc32c";

impl ObjectMeta {
    /// The whole-object CRC32C from our user metadata, if present.
    /// (Azure metadata names cannot hold `-`, so there it is spelled with `_`.)
    pub fn crc32c_from_metadata(&self) -> Option<u32> {
        self.metadata
            .get(CRC32C_METADATA)
            .or_else(|| self.metadata.get(&CRC32C_METADATA.replace('-', "_")))
            .and_then(|v| u32::from_str_radix(v, 16).ok())
    }
}

/// An open read: the object's total size and a stream of the requested bytes.
pub struct GetStream {
    pub meta: ObjectMeta,
    pub body: ByteStream,
}

impl GetStream {
    /// A read of no bytes (an empty range) of an object described by `meta`.
    pub fn empty(meta: ObjectMeta) -> Self {
        Self {
            meta,
            body: futures::stream::empty().boxed(),
        }
    }
}

impl Debug for GetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetStream")
            .field("meta", &self.meta)
            .finish()
    }
}

/// A range read into memory, and what its answer said about the whole object.
#[derive(Debug, Clone)]
pub struct RangeRead {
    pub meta: ObjectMeta,
    pub bytes: Bytes,
}

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    /// User metadata to store with the object.
    pub metadata: BTreeMap<String, String>,
}

/// One part of a multipart upload, with the checksum the pipeline computed for it.
#[derive(Debug, Clone)]
pub struct Part {
    /// 1-based, as S3 numbers parts.
    pub number: u32,
    pub body: PartBody,
    /// CRC32C (Castagnoli) of the body.
    pub crc32c: u32,
}

/// The bytes of a part: a buffer, or a range of a local file read while it is sent (drivers
/// that say [`Driver::streams_file_parts`]).
#[derive(Debug, Clone)]
pub enum PartBody {
    Memory(Bytes),
    File(file_range::FileRange),
}

impl Part {
    pub fn new(number: u32, data: Bytes) -> Self {
        let crc32c = crc32c::crc32c(&data);
        Self {
            number,
            body: PartBody::Memory(data),
            crc32c,
        }
    }

    /// A part sent from `range` of a file, whose CRC32C is `crc32c`.
    pub fn from_file(number: u32, range: file_range::FileRange, crc32c: u32) -> Self {
        Self {
            number,
            body: PartBody::File(range),
            crc32c,
        }
    }

    pub fn len(&self) -> u64 {
        match &self.body {
            PartBody::Memory(data) => data.len() as u64,
            PartBody::File(range) => range.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the server said about a stored part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReceipt {
    pub number: u32,
    pub etag: String,
    pub size: u64,
    /// CRC32C of the part as sent (from [`Driver::list_parts`]: as the server reports it, or 0).
    pub crc32c: u32,
    /// The CRC32C the server echoed back (or lists), which means it verified the part itself.
    pub server_crc32c: Option<u32>,
}

/// A multipart upload that was started and neither completed nor aborted: what an interrupted
/// earlier attempt left in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub upload_id: String,
    /// When the store says it was started, if it says.
    pub initiated: Option<std::time::SystemTime>,
}

/// The limits of a backend's multipart uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartLimits {
    pub min_part_size: u64,
    pub max_part_size: u64,
    pub max_parts: u32,
}

impl MultipartLimits {
    /// S3's limits: parts of 5 MiB to 5 GiB, 10,000 of them.
    pub const S3: Self = Self {
        min_part_size: 5 << 20,
        max_part_size: 5 << 30,
        max_parts: 10_000,
    };
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// Pass back to get the next page; `None` at the end.
    pub next: Option<String>,
}

/// An object store as the executor uses it. Operations a backend cannot do return
/// [`Error::NotSupported`]; the defaults below do exactly that.
#[async_trait]
pub trait Driver: Send + Sync + Debug {
    /// Short name of the backend (`s3`, `gcs`, ...), for messages and metrics.
    fn name(&self) -> &'static str;

    /// Where keys live, for messages (`s3://bucket`), never with credentials.
    fn describe(&self) -> String;

    /// Retries made so far by retry wrappers in this stack (0 for a bare backend).
    fn retry_count(&self) -> u64 {
        0
    }

    /// Requests the store throttled so far ([`ErrorKind::Throttled`]), as counted by retry
    /// wrappers in this stack: the signal adaptive concurrency backs off on.
    fn throttle_count(&self) -> u64 {
        0
    }

    /// Size and metadata of `key`; [`Error::NotFound`] if absent.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;

    /// Whether [`Driver::get`] can serve byte ranges of `key`, as learnt by the [`Driver::head`]
    /// before it. Object stores always can; an HTTP server says so in its answer.
    fn serves_ranges(&self, _key: &str) -> bool {
        true
    }

    /// Streams `key`, or the byte `range` of it.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetStream>;

    /// Reads a whole range into memory: the unit the download pipeline fetches and retries.
    async fn get_bytes(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        Ok(self.get_range(key, range).await?.bytes)
    }

    /// [`Driver::get_bytes`] with what the answer said about the object: its size, and its
    /// whole-object CRC32C when the backend reports one on a read (so a small object is read
    /// and checked in one request, without a head).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<RangeRead> {
        let want = (range.end - range.start) as usize;
        let mut stream = self.get(key, Some(range)).await?;
        let mut buf = buffer::Buffer::with_capacity(want)
            .map_err(|e| Error::io("allocating a download buffer", e))?;
        let mut got = 0;
        while let Some(chunk) = stream.body.try_next().await? {
            got += chunk.len();
            buf.fill(&chunk);
        }
        if got != want {
            return Err(Error::backend(
                self.name(),
                ErrorKind::Network,
                format!("read of {key} returned {got} bytes instead of {want}"),
            ));
        }
        Ok(RangeRead {
            meta: stream.meta,
            bytes: buf.freeze(),
        })
    }

    /// Writes `data` as the whole object `key`.
    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<()>;

    /// Writes a stream of unknown length as `key` (backends without multipart uploads).
    async fn put_stream(&self, _key: &str, _body: ByteStream, _opts: &PutOptions) -> Result<()> {
        Err(Error::not_supported(
            self.name(),
            format!(
                "streaming writes are not supported by the {} driver",
                self.name()
            ),
        ))
    }

    /// The bytes [`Driver::put_stream`] sends per request and holds until the store has them
    /// (a resumable session's chunk), for a backend that has such a unit. The transfer engine
    /// then cuts the stream into parts of exactly this size, paid from its memory budget, and
    /// the backend sends each part as one chunk without copying it.
    fn put_stream_chunk(&self) -> Option<u64> {
        None
    }

    /// One page of the objects whose keys start with `prefix`.
    async fn list(&self, prefix: &str, page: Option<String>) -> Result<ListPage>;

    /// Deletes `key`; deleting an absent key succeeds.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Multipart limits, or `None` when the backend writes through [`Driver::put_stream`].
    fn multipart_limits(&self) -> Option<MultipartLimits> {
        None
    }

    /// Starts a multipart upload and returns its id.
    async fn create_multipart(&self, _key: &str, _opts: &PutOptions) -> Result<String> {
        Err(self.no_multipart())
    }

    /// Whether [`Driver::put_part`] takes [`PartBody::File`] parts, reading them as it sends.
    fn streams_file_parts(&self) -> bool {
        false
    }

    /// Stores one part.
    async fn put_part(&self, _key: &str, _upload_id: &str, _part: &Part) -> Result<PartReceipt> {
        Err(self.no_multipart())
    }

    /// Joins the parts, in order, into the object.
    async fn complete_multipart(
        &self,
        _key: &str,
        _upload_id: &str,
        _parts: &[PartReceipt],
    ) -> Result<()> {
        Err(self.no_multipart())
    }

    /// Abandons an upload and frees its parts.
    async fn abort_multipart(&self, _key: &str, _upload_id: &str) -> Result<()> {
        Err(self.no_multipart())
    }

    /// The parts stored so far (for resuming an upload).
    async fn list_parts(&self, _key: &str, _upload_id: &str) -> Result<Vec<PartReceipt>> {
        Err(self.no_multipart())
    }

    /// The unfinished multipart uploads of exactly `key`, newest first, so a retried step (a
    /// new pod that shares nothing with the old one but the store) can resume one. Drivers
    /// bound the listing (a few pages); those that cannot list uploads say
    /// [`Error::NotSupported`], and every upload then starts afresh.
    async fn pending_uploads(&self, _key: &str) -> Result<Vec<PendingUpload>> {
        Err(Error::not_supported(
            self.name(),
            format!(
                "resuming uploads from the store is not supported by the {} driver",
                self.name()
            ),
        ))
    }

    #[doc(hidden)]
    fn no_multipart(&self) -> Error {
        Error::not_supported(
            self.name(),
            format!(
                "multipart uploads are not supported by the {} driver",
                self.name()
            ),
        )
    }
}

/// Every object below `prefix`, page by page, as one stream. The next page is asked for
/// while the consumer works through the current one (a page a few hundred KiB at most is
/// held ahead), so a directory's downloads do not stop at every page boundary for a listing
/// round trip. Dropping the stream stops the listing after the page in progress.
pub fn list_all(driver: Arc<dyn Driver>, prefix: String) -> BoxStream<'static, Result<ObjectMeta>> {
    listing(driver, prefix, None)
}

/// [`list_all`] for a caller that already holds the listing's first page (one that listed
/// to learn whether the prefix holds anything): its objects come first, then the pages after
/// it, so that page is not asked for twice.
pub fn list_after(
    driver: Arc<dyn Driver>,
    prefix: String,
    first: ListPage,
) -> BoxStream<'static, Result<ObjectMeta>> {
    listing(driver, prefix, Some(first))
}

fn listing(
    driver: Arc<dyn Driver>,
    prefix: String,
    first: Option<ListPage>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let (pages, received) = tokio::sync::mpsc::channel::<Result<Vec<ObjectMeta>>>(1);
    tokio::spawn(
        async move {
            let mut listed = first;
            let mut token = None;
            loop {
                let page = match listed.take() {
                    Some(page) => Ok(page),
                    None => driver.list(&prefix, token.take()).await,
                };
                let (objects, next) = match page {
                    Ok(page) => (Ok(page.objects), page.next),
                    Err(e) => (Err(e), None),
                };
                let last = next.is_none();
                if pages.send(objects).await.is_err() || last {
                    break;
                }
                token = next;
            }
        }
        .in_current_span(),
    );
    futures::stream::unfold(received, |mut received| async move {
        let page = received.recv().await?;
        Some((page, received))
    })
    .map_ok(|objects| futures::stream::iter(objects.into_iter().map(Ok)))
    .try_flatten()
    .boxed()
}

/// The error for a location kind whose driver this build left out.
#[allow(dead_code)]
fn built_without(kind: LocationKind, feature: &str) -> Error {
    Error::not_supported(
        "storage",
        format!("this argoexec was built without {kind} artifacts (cargo feature `{feature}`)"),
    )
}

/// Opens the driver for a location: the backend tuned by `config`, wrapped with retries and
/// per-part checks ([`StorageConfig::retry_policy`]).
pub async fn open(
    location: &ArtifactLocation,
    secrets: &Secrets,
    config: &StorageConfig,
) -> Result<Arc<dyn Driver>> {
    let kind = location
        .kind()
        .ok_or_else(|| Error::config(crate::contract::STORAGE_NOT_CONFIGURED))?;
    let missing = || Error::config(format!("no {kind} location"));
    let backend: Arc<dyn Driver> = match kind {
        LocationKind::S3 => Arc::new(
            s3::S3Driver::new(location.s3.as_ref().ok_or_else(missing)?, secrets, config).await?,
        ),
        LocationKind::Oss => Arc::new(
            oss::OssDriver::new(location.oss.as_ref().ok_or_else(missing)?, secrets, config)
                .await?,
        ),
        #[cfg(feature = "http")]
        LocationKind::Http => Arc::new(http::HttpDriver::http(
            location.http.as_ref().ok_or_else(missing)?,
            secrets,
            config,
        )?),
        #[cfg(feature = "http")]
        LocationKind::Artifactory => Arc::new(http::HttpDriver::artifactory(
            location.artifactory.as_ref().ok_or_else(missing)?,
            secrets,
            config,
        )?),
        #[cfg(not(feature = "http"))]
        LocationKind::Http | LocationKind::Artifactory => return Err(built_without(kind, "http")),
        LocationKind::Raw => Arc::new(input_only::InputOnly::RAW),
        LocationKind::Git => Arc::new(input_only::InputOnly::GIT),
        LocationKind::Hdfs => {
            let path = location.key().unwrap_or_default();
            return Err(Error::not_supported(
                "hdfs",
                format!("HDFS artifacts (path {path:?}) are not supported yet by argoexec-rs"),
            ));
        }
        LocationKind::Plugin => Arc::new(
            plugin::PluginDriver::connect(
                location.plugin.as_ref().ok_or_else(missing)?,
                secrets.roots(),
            )
            .await?,
        ),
        #[cfg(feature = "gcs")]
        LocationKind::Gcs => Arc::new(
            gcs::GcsDriver::new(location.gcs.as_ref().ok_or_else(missing)?, secrets, config)
                .await?,
        ),
        #[cfg(feature = "azure")]
        LocationKind::Azure => Arc::new(azure::AzureDriver::new(
            location.azure.as_ref().ok_or_else(missing)?,
            secrets,
            config,
        )?),
        #[cfg(not(feature = "gcs"))]
        LocationKind::Gcs => return Err(built_without(kind, "gcs")),
        #[cfg(not(feature = "azure"))]
        LocationKind::Azure => return Err(built_without(kind, "azure")),
    };
    Ok(Arc::new(retry::Retrying::new(
        backend,
        config.retry_policy(),
    )))
}
