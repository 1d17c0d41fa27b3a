//! Resumable uploads on the JSON API: a stream of unknown length as one object, sent in
//! sequential chunks, each held in memory until the service has persisted it.
//!
//! The client library has resumable uploads, but it sends a `Host` header without the port of
//! a custom endpoint, and emulators (fake-gcs-server and others) build the session URL from
//! that header: every session on an emulator at a non-default port, which is what
//! `STORAGE_EMULATOR_HOST` names, points at port 80 and fails. This protocol is small and
//! documented (<https://cloud.google.com/storage/docs/performing-resumable-uploads>), so the
//! driver speaks it itself, the same way everywhere.
//!
//! * Start: `POST /upload/storage/v1/b/<bucket>/o?uploadType=resumable` with the object's
//!   metadata; the session URL comes back in `Location`.
//! * Each chunk: `PUT <session>` with `Content-Range: bytes a-b/*` (`/<total>` on the last);
//!   `308` with `Range: bytes=0-n` says what is persisted. Chunks other than the last are
//!   multiples of 256 KiB, as the service requires.
//! * The last chunk carries `x-goog-hash: crc32c=...` of the whole object: the service refuses
//!   an object whose bytes do not match, and the CRC32C it reports is checked again here.
//! * A failed request is retried (5 attempts, from 2 s, x2, as Argo's GCS driver): the session
//!   is asked what it persisted (`Content-Range: bytes */*`) and the upload goes on from there.
//!   A stream that ends with an error abandons the session, and nothing is stored.

use bytes::{Buf, Bytes};
use futures::TryStreamExt;
use reqwest::Method;

use super::error::{from_http, from_response};
use super::json::{JsonApi, parse_object};
use crate::storage::buffer::Buffer;
use crate::storage::retry::Backoff;
use crate::storage::{ByteStream, Error, ErrorKind, PutOptions, Result};

/// What the service said about a session.
enum Progress {
    /// Bytes `0..n` are persisted; send the rest.
    Persisted(u64),
    /// The object exists, with this CRC32C.
    Finished(Option<u32>),
}

/// One upload of `name`: the session and what has been sent.
pub struct Upload<'a> {
    api: &'a JsonApi,
    name: &'a str,
    chunk: usize,
    backoff: &'a Backoff,
    session: String,
}

impl<'a> Upload<'a> {
    /// Starts a session for `name`, sending at most `chunk` bytes (a multiple of 256 KiB) per
    /// request and retrying failed requests per `backoff`.
    pub async fn start(
        api: &'a JsonApi,
        name: &'a str,
        chunk: usize,
        backoff: &'a Backoff,
        opts: &PutOptions,
    ) -> Result<Upload<'a>> {
        let mut resource = serde_json::json!({ "name": name });
        if let Some(ct) = &opts.content_type {
            resource["contentType"] = ct.clone().into();
        }
        if !opts.metadata.is_empty() {
            resource["metadata"] = serde_json::to_value(&opts.metadata).unwrap_or_default();
        }
        let url = api.upload_url(name);
        let retries = std::sync::atomic::AtomicU64::new(0);
        let session = backoff
            .run(name, &retries, || async {
                let response = api
                    .request(Method::POST, url.as_str())
                    .await?
                    .header("content-type", "application/json; charset=UTF-8")
                    .body(resource.to_string())
                    .send()
                    .await
                    .map_err(|e| from_http(e, name))?;
                let status = response.status().as_u16();
                if !(200..300).contains(&status) {
                    let body = response.bytes().await.unwrap_or_default();
                    return Err(refused(status, &body, name));
                }
                response
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        Error::backend(
                            "gcs",
                            ErrorKind::Server,
                            format!("{name}: no upload session URL"),
                        )
                    })
            })
            .await?;
        Ok(Self {
            api,
            name,
            chunk,
            backoff,
            session,
        })
    }

    /// Sends `body` in chunks and finishes the object; returns the bytes stored.
    pub async fn send(self, mut body: ByteStream) -> Result<u64> {
        let mut crc32c = 0u32;
        let mut offset = 0u64;
        // Bytes read from the stream but not yet in a chunk.
        let mut carry = Bytes::new();
        loop {
            // A mapping of its own, unmapped once the service has the chunk (see buffer.rs).
            let mut buf = Buffer::with_capacity(self.chunk)
                .map_err(|e| Error::io(format!("a {} byte upload chunk", self.chunk), e))?;
            let mut ended = false;
            while buf.remaining() > 0 {
                if carry.is_empty() {
                    match body.try_next().await? {
                        Some(b) => carry = b,
                        None => {
                            ended = true;
                            break;
                        }
                    }
                }
                let taken = buf.fill(&carry);
                carry.advance(taken);
            }
            // A full chunk is the last only if nothing follows it.
            if !ended && carry.is_empty() {
                match body.try_next().await? {
                    Some(b) => carry = b,
                    None => ended = true,
                }
            }
            let chunk = buf.freeze();
            crc32c = crc32c::crc32c_append(crc32c, &chunk);
            let total = ended.then(|| offset + chunk.len() as u64);
            match self.send_chunk(offset, chunk, total, crc32c).await? {
                Progress::Finished(stored) => {
                    return self.check_crc(stored, crc32c, total.unwrap_or(offset));
                }
                Progress::Persisted(n) => offset = n,
            }
        }
    }

    fn check_crc(&self, stored: Option<u32>, sent: u32, size: u64) -> Result<u64> {
        match stored {
            Some(s) if s != sent => Err(Error::backend(
                "gcs",
                ErrorKind::Integrity,
                format!(
                    "{} is corrupt: the service stored CRC32C {s:08x}, sent {sent:08x}",
                    self.name
                ),
            )),
            _ => Ok(size),
        }
    }

    /// Sends `chunk` (the bytes from `offset`) until the service has all of it, resuming
    /// after failures from what it reports persisted.
    async fn send_chunk(
        &self,
        offset: u64,
        chunk: Bytes,
        total: Option<u64>,
        crc32c: u32,
    ) -> Result<Progress> {
        let end = offset + chunk.len() as u64;
        let mut persisted = offset;
        let mut attempt = 0u32;
        loop {
            let rest = chunk.slice((persisted - offset) as usize..);
            let outcome = self.put(persisted, rest, total, crc32c).await;
            let outcome = match outcome {
                Err(e) if e.is_transient() && attempt + 1 < self.backoff.steps => {
                    attempt += 1;
                    let sleep = self.backoff.delay(attempt - 1);
                    tracing::warn!(key = self.name, attempt, error = %e, ?sleep, "upload chunk failed, resuming");
                    tokio::time::sleep(sleep).await;
                    self.query(total).await
                }
                other => other,
            };
            match outcome? {
                Progress::Persisted(n) if n >= end => return Ok(Progress::Persisted(n)),
                Progress::Persisted(n) if n >= persisted => persisted = n,
                Progress::Persisted(n) => {
                    return Err(Error::backend(
                        "gcs",
                        ErrorKind::Server,
                        format!(
                            "{}: the upload session lost bytes: {n} persisted, {persisted} before",
                            self.name
                        ),
                    ));
                }
                finished => return Ok(finished),
            }
        }
    }

    /// One `PUT` of `data` at `start`; the last chunk names the total and the object's CRC32C.
    async fn put(
        &self,
        start: u64,
        data: Bytes,
        total: Option<u64>,
        crc32c: u32,
    ) -> Result<Progress> {
        let len = data.len() as u64;
        let range = match (len, total) {
            (0, Some(t)) => format!("bytes */{t}"),
            (_, Some(t)) => format!("bytes {start}-{}/{t}", start + len - 1),
            (_, None) => format!("bytes {start}-{}/*", start + len - 1),
        };
        let mut request = self
            .api
            .request(Method::PUT, &self.session)
            .await?
            .header("content-range", range);
        if total.is_some() {
            let hash = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                crc32c.to_be_bytes(),
            );
            request = request.header("x-goog-hash", format!("crc32c={hash}"));
        }
        let response = request
            .body(data)
            .send()
            .await
            .map_err(|e| from_http(e, self.name))?;
        self.progress(response).await
    }

    /// Asks the session what it has persisted.
    async fn query(&self, total: Option<u64>) -> Result<Progress> {
        let range = match total {
            Some(t) => format!("bytes */{t}"),
            None => "bytes */*".to_string(),
        };
        let response = self
            .api
            .request(Method::PUT, &self.session)
            .await?
            .header("content-range", range)
            .header("content-length", "0")
            .send()
            .await
            .map_err(|e| from_http(e, self.name))?;
        self.progress(response).await
    }

    async fn progress(&self, response: reqwest::Response) -> Result<Progress> {
        let status = response.status().as_u16();
        if status == 308 {
            // `Range: bytes=0-<last persisted byte>`, absent when nothing is persisted yet.
            let persisted = response
                .headers()
                .get("range")
                .and_then(|r| r.to_str().ok())
                .and_then(|r| r.rsplit('-').next())
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(0, |last| last + 1);
            return Ok(Progress::Persisted(persisted));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| from_http(e, self.name))?;
        if (200..300).contains(&status) {
            let (_, crc32c) = parse_object(&body, self.name)?;
            return Ok(Progress::Finished(crc32c));
        }
        Err(refused(status, &body, self.name))
    }
}

/// A refused upload request. A 404 here is a missing bucket or an expired session, never a
/// missing key.
fn refused(status: u16, body: &[u8], name: &str) -> Error {
    if status == 404 || status == 410 {
        return Error::backend(
            "gcs",
            ErrorKind::Request,
            format!(
                "{name}: the bucket or the upload session does not exist (HTTP {status}): {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ),
        );
    }
    from_response(status, body, name)
}
