//! Google Cloud Storage on the official `google-cloud-storage` crate.
//!
//! Reads go through the client library: ranged streaming reads, resumed by the library when a
//! stream breaks. Small writes too (one request, checked by the service against their
//! CRC32C). Large writes are resumable upload sessions spoken directly (`resumable.rs`: the
//! library's own sessions break on emulators), and metadata calls (head, list, delete) use the
//! same JSON API (`json.rs`): the library offers them only over gRPC.
//!
//! **Writes have no multipart upload.** A stream goes up as one resumable session, in
//! sequential chunks of [`GcsOptions::upload_chunk`] bytes, each kept in memory until the
//! service has persisted it, so a broken connection resumes from the last persisted byte. The
//! driver says its chunk size ([`Driver::put_stream_chunk`]): the transfer engine cuts its
//! parts to it and pays for them from its budget, and a part is sent as a chunk as it is,
//! never copied, so the chunks in memory are inside the engine's ceiling. The alternatives
//! were weighed and rejected:
//! * parallel chunks of one resumable session are impossible: the service takes them in order;
//! * the XML API's multipart upload is not in the client library and no emulator speaks it;
//! * composing parallel temporary objects (gsutil's "parallel composite uploads") leaves
//!   objects without an MD5, needs delete permission, and bills the early deletion of the
//!   temporary objects in Nearline/Coldline/Archive buckets.
//!
//! Object names are Go-`Clean`ed as in Argo (`a//b/` is stored as `a/b`); listing prefixes are
//! used as given.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_storage::client::Storage;
use google_cloud_storage::model_ext::ReadRange;
use google_cloud_storage::read_resume_policy::{LimitedAttemptCount, Recommended};

use super::timeouts::Timeouts;
use super::{
    ByteStream, Driver, Error, GetStream, ListPage, ObjectMeta, PutOptions, Result, Secrets,
    StorageConfig,
};
use crate::keys;
use crate::model::GcsArtifact;

mod config;
mod error;
mod json;
mod resumable;

pub use config::{Endpoint, GcsOptions};
use error::classify;

/// Attempts to resume a broken read stream.
const READ_ATTEMPTS: u32 = 5;

/// One bucket of Google Cloud Storage.
#[derive(Debug)]
pub struct GcsDriver {
    client: Storage,
    json: json::JsonApi,
    bucket: String,
    upload_chunk: usize,
    upload_backoff: super::retry::Backoff,
    list_page_size: Option<u32>,
}

impl GcsDriver {
    /// Connects to the location's bucket as `settings.gcs` says, with `settings`' timeouts.
    pub async fn new(
        loc: &GcsArtifact,
        secrets: &Secrets,
        settings: &StorageConfig,
    ) -> Result<Self> {
        let options = &settings.gcs;
        if loc.bucket.is_empty() {
            return Err(Error::config("the GCS location has no bucket"));
        }
        let credentials = config::credentials(loc, secrets, &options.endpoint)?;
        let upload_chunk = options.upload_chunk();
        let client = Storage::builder()
            .with_endpoint(options.endpoint.url())
            .with_credentials(credentials.clone())
            // Each call is retried alone by storage::retry; resumable uploads, which cannot be
            // replayed from the start, retry inside their session (resumable.rs).
            .with_retry_policy(NeverRetry)
            .with_read_resume_policy(LimitedAttemptCount::new(Recommended, READ_ATTEMPTS))
            // Large writes never take the library's resumable path (see resumable.rs).
            .with_resumable_upload_threshold(usize::MAX)
            .build()
            .await
            .map_err(|e| Error::config(format!("failed to create new GCS client: {e}")))?;
        let json = json::JsonApi::new(
            options.endpoint.url(),
            &loc.bucket,
            credentials,
            settings.timeouts.over(Timeouts::OBJECT_STORE),
        )?;
        Ok(Self {
            client,
            json,
            bucket: loc.bucket.clone(),
            upload_chunk,
            upload_backoff: options.upload_backoff.clone(),
            list_page_size: options.list_page_size,
        })
    }

    /// Uploads `body` as `name` in a resumable session. An object the service finished with
    /// other bytes than sent (a CRC32C mismatch) is deleted again: a failed upload leaves
    /// nothing under the key.
    async fn resumable(&self, name: &str, body: ByteStream, opts: &PutOptions) -> Result<()> {
        let upload = resumable::Upload::start(
            &self.json,
            name,
            self.upload_chunk,
            &self.upload_backoff,
            opts,
        )
        .await?;
        match upload.send(body).await {
            Err(e) if e.kind() == Some(super::ErrorKind::Integrity) => {
                if let Err(cleanup) = self.json.delete(name).await {
                    tracing::warn!(key = name, error = %cleanup, "could not delete a corrupt upload");
                }
                Err(e)
            }
            other => other.map(drop),
        }
    }

    /// The bucket as the client library names it.
    fn bucket_path(&self) -> String {
        format!("projects/_/buckets/{}", self.bucket)
    }
}

/// Argo cleans GCS keys (`filepath.Clean`).
fn object_name(key: &str) -> String {
    keys::clean(key)
}

#[async_trait]
impl Driver for GcsDriver {
    fn name(&self) -> &'static str {
        "gcs"
    }

    fn describe(&self) -> String {
        format!("gs://{}", self.bucket)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.json.head(&object_name(key)).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetStream> {
        let name = object_name(key);
        if range.as_ref().is_some_and(|r| r.is_empty()) {
            return Ok(GetStream::empty(self.head(key).await?));
        }
        let mut request = self.client.read_object(self.bucket_path(), &name);
        if let Some(r) = &range {
            request = request.set_read_range(ReadRange::segment(r.start, r.end - r.start));
        }
        let response = request.send().await.map_err(|e| classify(e, &name))?;
        let object = response.object();
        let mut size = object.size.max(0) as u64;
        if size == 0 && range.is_some() {
            // A non-empty range of an empty object is refused, so this server did not say the
            // object's size (emulators omit x-goog-stored-content-length): ask for it.
            size = self.head(key).await?.size;
        }
        let meta = ObjectMeta {
            key: name.clone(),
            size,
            etag: Some(object.etag).filter(|e| !e.is_empty()),
            metadata: object
                .metadata
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            crc32c: None,
        };
        let body = futures::stream::unfold(Some(response), move |response| {
            let name = name.clone();
            async move {
                let mut response = response?;
                match response.next().await {
                    Some(Ok(b)) => Some((Ok(b), Some(response))),
                    Some(Err(e)) => Some((Err(classify(e, &name)), None)),
                    None => None,
                }
            }
        })
        .boxed();
        Ok(GetStream { meta, body })
    }

    /// Objects under one chunk go up in a single request (checked against their CRC32C by the
    /// service before it stores them); larger ones as a resumable upload.
    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<()> {
        let name = object_name(key);
        if data.len() >= self.upload_chunk {
            let body = futures::stream::once(async move { Ok(data) }).boxed();
            self.resumable(&name, body, opts).await?;
            return Ok(());
        }
        let crc32c = crc32c::crc32c(&data);
        let mut request = self
            .client
            .write_object(self.bucket_path(), &name, data)
            .with_known_crc32c(crc32c)
            .set_metadata(opts.metadata.clone());
        if let Some(ct) = &opts.content_type {
            request = request.set_content_type(ct.clone());
        }
        request
            .send_buffered()
            .await
            .map_err(|e| classify(e, &name))?;
        Ok(())
    }

    /// Streams under one chunk go up in a single request, larger ones as a resumable upload
    /// session (`resumable.rs`). A stream that ends with an error stores nothing.
    async fn put_stream(&self, key: &str, mut body: ByteStream, opts: &PutOptions) -> Result<()> {
        let mut ahead = Vec::new();
        let mut buffered = 0usize;
        while buffered < self.upload_chunk {
            match body.try_next().await? {
                Some(b) => {
                    buffered += b.len();
                    ahead.push(b);
                }
                None => {
                    let data: Bytes = if ahead.len() == 1 {
                        ahead.pop().unwrap_or_default()
                    } else {
                        ahead.concat().into()
                    };
                    return self.put(key, data, opts).await;
                }
            }
        }
        let name = object_name(key);
        let body = futures::stream::iter(ahead.into_iter().map(Ok))
            .chain(body)
            .boxed();
        self.resumable(&name, body, opts).await?;
        Ok(())
    }

    fn put_stream_chunk(&self) -> Option<u64> {
        Some(self.upload_chunk as u64)
    }

    async fn list(&self, prefix: &str, page: Option<String>) -> Result<ListPage> {
        self.json
            .list(prefix, page.as_deref(), self.list_page_size)
            .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.json.delete(&object_name(key)).await
    }
}
