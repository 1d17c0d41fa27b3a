//! Google Cloud Storage on the official `google-cloud-storage` crate.
//!
//! Bytes move through the client library: ranged streaming reads (resumed by the library when
//! a stream breaks) and uploads with CRC32C checked end to end. Metadata calls (head, list,
//! delete) go to the same JSON API directly ([`json`]), because the library only offers them
//! over gRPC.
//!
//! **Writes have no multipart upload.** A stream goes up as one resumable upload session: the
//! library sends it in sequential chunks of [`GcsOptions::upload_chunk`] bytes, each kept in
//! memory until the service has persisted it, so a broken connection resumes from the last
//! persisted byte instead of starting over. The alternatives were weighed and rejected:
//! * parallel chunks of one resumable session are impossible: the service takes them in order;
//! * the XML API's multipart upload is not in the client library and no emulator speaks it;
//! * composing parallel temporary objects (gsutil's "parallel composite uploads") leaves
//!   objects without an MD5, needs delete permission, and bills the early deletion of the
//!   temporary objects in Nearline/Coldline/Archive buckets.
//!
//! Object names are Go-`Clean`ed as in Argo (`a//b/` is stored as `a/b`); listing prefixes are
//! used as given.

use std::collections::VecDeque;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::{NeverRetry, RetryPolicyExt};
use google_cloud_storage::client::Storage;
use google_cloud_storage::model_ext::ReadRange;
use google_cloud_storage::read_resume_policy::{LimitedAttemptCount, Recommended};
use google_cloud_storage::retry_policy::RetryableErrors;
use google_cloud_storage::streaming_source::{SizeHint, StreamingSource};

use super::{
    ByteStream, Driver, Error, GetStream, ListPage, ObjectMeta, PutOptions, Result, Secrets,
};
use crate::keys;
use crate::model::GcsArtifact;

mod config;
mod error;
mod json;

pub use config::{Endpoint, GcsOptions};
use error::classify;

/// Attempts of one resumable upload session (Argo's GCS backoff: 5 steps from 2 s, x2).
const UPLOAD_ATTEMPTS: u32 = 5;

/// One bucket of Google Cloud Storage.
#[derive(Debug)]
pub struct GcsDriver {
    client: Storage,
    json: json::JsonApi,
    bucket: String,
    upload_chunk: usize,
    list_page_size: Option<u32>,
}

impl GcsDriver {
    /// Connects to the location's bucket with options from the environment
    /// (`STORAGE_EMULATOR_HOST`, `ARGOEXEC_GCS_UPLOAD_CHUNK_MIB`).
    pub async fn new(loc: &GcsArtifact, secrets: &Secrets) -> Result<Self> {
        Self::with_options(loc, secrets, GcsOptions::from_env()).await
    }

    pub async fn with_options(
        loc: &GcsArtifact,
        secrets: &Secrets,
        options: GcsOptions,
    ) -> Result<Self> {
        if loc.bucket.is_empty() {
            return Err(Error::config("the GCS location has no bucket"));
        }
        let credentials = config::credentials(loc, secrets, &options.endpoint)?;
        let upload_chunk = options.upload_chunk();
        let client = Storage::builder()
            .with_endpoint(options.endpoint.url())
            .with_credentials(credentials.clone())
            // Each call is retried alone by storage::retry; resumable uploads, which cannot be
            // replayed from the start, get the library's own in-session retries (put_stream).
            .with_retry_policy(NeverRetry)
            .with_read_resume_policy(LimitedAttemptCount::new(Recommended, UPLOAD_ATTEMPTS))
            .with_resumable_upload_threshold(upload_chunk)
            .with_resumable_upload_buffer_size(upload_chunk)
            .build()
            .await
            .map_err(|e| Error::config(format!("failed to create new GCS client: {e}")))?;
        let json = json::JsonApi::new(options.endpoint.url(), &loc.bucket, credentials)?;
        Ok(Self {
            client,
            json,
            bucket: loc.bucket.clone(),
            upload_chunk,
            list_page_size: options.list_page_size,
        })
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

/// A write of a stream: the bytes read ahead to tell small from large, then the rest.
struct Upload {
    ahead: VecDeque<Bytes>,
    /// `get_mut` reaches the stream without locking; the mutex only makes the source `Sync`,
    /// as the client library requires.
    rest: std::sync::Mutex<ByteStream>,
}

impl StreamingSource for Upload {
    type Error = Error;

    async fn next(&mut self) -> Option<Result<Bytes>> {
        if let Some(b) = self.ahead.pop_front() {
            return Some(Ok(b));
        }
        match self.rest.get_mut() {
            Ok(rest) => rest.next().await,
            Err(_) => Some(Err(Error::backend(
                "gcs",
                super::ErrorKind::Request,
                "the upload source was poisoned",
            ))),
        }
    }

    async fn size_hint(&self) -> Result<SizeHint> {
        Ok(SizeHint::new())
    }
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
            let meta = self.head(key).await?;
            return Ok(GetStream {
                meta,
                body: futures::stream::empty().boxed(),
            });
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

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<()> {
        let name = object_name(key);
        let crc32c = crc32c::crc32c(&data);
        let mut request = self
            .client
            .write_object(self.bucket_path(), &name, data)
            // The service checks the bytes against this before it stores them.
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

    /// Small streams (under one chunk) go up in a single request; larger ones as a resumable
    /// upload session. A stream that ends with an error abandons the session: nothing is
    /// stored.
    async fn put_stream(&self, key: &str, mut body: ByteStream, opts: &PutOptions) -> Result<()> {
        let name = object_name(key);
        let mut ahead = VecDeque::new();
        let mut buffered = 0usize;
        let mut ended = false;
        while buffered < self.upload_chunk {
            match body.try_next().await? {
                Some(b) => {
                    buffered += b.len();
                    ahead.push_back(b);
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            let data: Bytes = if ahead.len() == 1 {
                ahead.pop_front().unwrap_or_default()
            } else {
                ahead.into_iter().flatten().collect::<Vec<u8>>().into()
            };
            return self.put(key, data, opts).await;
        }
        let source = Upload {
            ahead,
            rest: std::sync::Mutex::new(body),
        };
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_delay(std::time::Duration::from_secs(2))
            .with_maximum_delay(std::time::Duration::from_secs(600))
            .with_scaling(2.0)
            .build()
            .map_err(|e| Error::config(format!("GCS upload backoff: {e}")))?;
        let mut request = self
            .client
            .write_object(self.bucket_path(), &name, source)
            .set_metadata(opts.metadata.clone())
            .with_retry_policy(RetryableErrors.with_attempt_limit(UPLOAD_ATTEMPTS))
            .with_backoff_policy(backoff);
        if let Some(ct) = &opts.content_type {
            request = request.set_content_type(ct.clone());
        }
        request
            .send_buffered()
            .await
            .map_err(|e| classify(e, &name))?;
        Ok(())
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
