//! Resumable uploads on the JSON API: a stream of unknown length as one object, sent in
//! sequential chunks, each held in memory until the service has persisted it. A chunk is the
//! stream's own buffers, sliced, never copied: the transfer engine sends parts of exactly one
//! chunk (`Driver::put_stream_chunk`), each still holding the budget share it was paid with.
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

use bytes::Bytes;
use futures::TryStreamExt;
use reqwest::Method;

use super::error::{from_http, from_response};
use super::json::{JsonApi, parse_object};
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
            let mut chunk = Rope::default();
            let mut ended = false;
            while chunk.len < self.chunk {
                if carry.is_empty() {
                    match body.try_next().await? {
                        Some(b) => carry = b,
                        None => {
                            ended = true;
                            break;
                        }
                    }
                }
                chunk.push(carry.split_to((self.chunk - chunk.len).min(carry.len())));
            }
            // A full chunk is the last only if nothing follows it.
            while !ended && carry.is_empty() {
                match body.try_next().await? {
                    Some(b) => carry = b,
                    None => ended = true,
                }
            }
            crc32c = chunk.crc32c_append(crc32c);
            let total = ended.then(|| offset + chunk.len as u64);
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
        chunk: Rope,
        total: Option<u64>,
        crc32c: u32,
    ) -> Result<Progress> {
        let end = offset + chunk.len as u64;
        let mut persisted = offset;
        let mut attempt = 0u32;
        loop {
            let rest = chunk.from((persisted - offset) as usize);
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
        data: Rope,
        total: Option<u64>,
        crc32c: u32,
    ) -> Result<Progress> {
        let len = data.len as u64;
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
            .header("content-length", len)
            .body(data.into_body())
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

/// The bytes of one chunk: slices of the stream's buffers, in order.
#[derive(Debug, Default)]
struct Rope {
    pieces: Vec<Bytes>,
    len: usize,
}

impl Rope {
    fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.pieces.push(piece);
        }
    }

    fn crc32c_append(&self, crc32c: u32) -> u32 {
        self.pieces
            .iter()
            .fold(crc32c, |crc, p| crc32c::crc32c_append(crc, p))
    }

    /// The bytes from `offset` on (what a resumed request sends), sharing the buffers.
    fn from(&self, mut offset: usize) -> Rope {
        let mut rest = Rope::default();
        for piece in &self.pieces {
            if offset >= piece.len() {
                offset -= piece.len();
                continue;
            }
            rest.push(piece.slice(offset..));
            offset = 0;
        }
        rest
    }

    fn into_body(self) -> reqwest::Body {
        match <[Bytes; 1]>::try_from(self.pieces) {
            Ok([one]) => one.into(),
            Err(pieces) => reqwest::Body::wrap_stream(futures::stream::iter(
                pieces.into_iter().map(Ok::<_, std::io::Error>),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rope_resumes_from_any_offset_without_copying() {
        let a = Bytes::from_static(b"abc");
        let b = Bytes::from_static(b"defg");
        let mut rope = Rope::default();
        rope.push(a.clone());
        rope.push(Bytes::new());
        rope.push(b);
        assert_eq!((rope.len, rope.pieces.len()), (7, 2));
        assert_eq!(rope.crc32c_append(0), crc32c::crc32c(b"abcdefg"));
        for (offset, want) in [
            (0, &b"abcdefg"[..]),
            (2, b"cdefg"),
            (3, b"defg"),
            (6, b"g"),
            (7, b""),
        ] {
            let rest = rope.from(offset);
            assert_eq!(rest.pieces.concat(), want, "from {offset}");
            assert_eq!(rest.len, want.len());
        }
        assert_eq!(
            rope.from(1).pieces[0].as_ptr(),
            a[1..].as_ptr(),
            "shared, not copied"
        );
    }
}
