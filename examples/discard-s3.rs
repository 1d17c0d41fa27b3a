//! A discarding S3 endpoint for the scale benchmark: `discard-s3 <parts.tsv>`, accepting the
//! keys in `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
//!
//! Keeps no bodies, so any size fits: each part (and each single PUT) is read to its end, its
//! CRC32C computed and checked against the one the client sent (header or aws-chunked
//! trailer; Content-MD5 too when sent), and only its size and CRC32C are kept. Completing an
//! upload checks the listed parts (each one stored, ETags and CRC32Cs as answered, every part
//! but the last at least 5 MiB) and, when the client sends one, the whole-object `FULL_OBJECT`
//! CRC32C, combined from the parts' CRC32Cs. Answers what our S3 client calls on an upload:
//! CreateMultipartUpload, UploadPart, ListParts, ListMultipartUploads, Complete/Abort,
//! PutObject, HeadObject, HeadBucket.
//!
//! Every part is appended to `parts.tsv` as `key, part number, bytes, start s, end s` (seconds
//! since the server started, from its request head to its last byte), for parts in flight
//! over time and the part sizes used. Prints `listening on 127.0.0.1:<port>` once ready, and
//! any failed check on stderr. Stop it with SIGTERM.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use base64::Engine;
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use md5::Digest;
use s3s::dto::{self, ETag, StreamingBlob};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

/// S3's smallest part, but for the last.
const MIN_PART: u64 = 5 << 20;

/// A part as received: what completing and listing need.
#[derive(Clone, Copy)]
struct Received {
    size: u64,
    crc32c: u32,
}

struct Upload {
    bucket: String,
    key: String,
    initiated: SystemTime,
    parts: BTreeMap<i32, Received>,
}

struct Discard {
    started: Instant,
    uploads: Mutex<HashMap<String, Upload>>,
    /// Size and CRC32C of completed objects, by bucket and key.
    objects: Mutex<HashMap<(String, String), Received>>,
    log: Mutex<std::fs::File>,
    next_upload: std::sync::atomic::AtomicU64,
}

fn b64_crc(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// A part's ETag: not an MD5 (we compute none), so the client's proof is the CRC32C echo.
fn etag_of(crc: u32) -> ETag {
    ETag::Strong(format!("crc32c-{crc:08x}"))
}

/// Reads `body` to its end and checks it against the CRC32C the client sent (in a header or,
/// with aws-chunked, in the trailer) and its Content-MD5; what arrived, and its MD5 (empty
/// unless a Content-MD5 was sent).
async fn receive<T>(
    req: &S3Request<T>,
    body: Option<StreamingBlob>,
    header_crc: Option<&str>,
    content_md5: Option<&str>,
) -> S3Result<(Received, Vec<u8>)> {
    let mut body = body.ok_or_else(|| s3_error!(IncompleteBody))?;
    let (mut size, mut crc, mut md5) = (0u64, 0u32, md5::Md5::new());
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| s3_error!(IncompleteBody, "{e}"))?;
        size += chunk.len() as u64;
        crc = crc32c::crc32c_append(crc, &chunk);
        if content_md5.is_some() {
            md5.update(&chunk);
        }
    }
    let md5 = if content_md5.is_some() {
        md5.finalize().to_vec()
    } else {
        Vec::new()
    };
    let trailer_crc = req.trailing_headers.as_ref().and_then(|t| {
        t.read(|h| {
            h.get("x-amz-checksum-crc32c")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .flatten()
    });
    if let Some(sent) = header_crc.map(str::to_string).or(trailer_crc)
        && sent != b64_crc(crc)
    {
        eprintln!("BadDigest: CRC32C sent {sent}, received {}", b64_crc(crc));
        return Err(s3_error!(BadDigest, "the CRC32C does not match"));
    }
    if let Some(sent) = content_md5
        && sent != base64::engine::general_purpose::STANDARD.encode(&md5)
    {
        eprintln!("BadDigest: Content-MD5 does not match");
        return Err(s3_error!(BadDigest, "the Content-MD5 does not match"));
    }
    Ok((Received { size, crc32c: crc }, md5))
}

impl Discard {
    fn record(&self, key: &str, part: i32, size: u64, start: Instant) {
        let at = |t: Instant| t.duration_since(self.started).as_secs_f64();
        let mut log = self.log.lock().expect("log");
        let _ = writeln!(
            log,
            "{key}\t{part}\t{size}\t{:.3}\t{:.3}",
            at(start),
            at(Instant::now())
        );
    }
}

#[async_trait::async_trait]
impl S3 for Discard {
    async fn head_bucket(
        &self,
        _req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        Ok(S3Response::new(Default::default()))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let n = self
            .next_upload
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let upload_id = format!("discard-{n}");
        let input = req.input;
        self.uploads.lock().expect("uploads").insert(
            upload_id.clone(),
            Upload {
                bucket: input.bucket.clone(),
                key: input.key.clone(),
                initiated: SystemTime::now(),
                parts: BTreeMap::new(),
            },
        );
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_type: input.checksum_type,
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        mut req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let start = Instant::now();
        if !self
            .uploads
            .lock()
            .expect("uploads")
            .contains_key(&req.input.upload_id)
        {
            return Err(s3_error!(NoSuchUpload));
        }
        let body = req.input.body.take();
        let input = &req.input;
        let (part, _) = receive(
            &req,
            body,
            input.checksum_crc32c.as_deref(),
            input.content_md5.as_deref(),
        )
        .await?;
        self.record(&input.key, input.part_number, part.size, start);
        let mut uploads = self.uploads.lock().expect("uploads");
        let upload = uploads
            .get_mut(&input.upload_id)
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        upload.parts.insert(input.part_number, part);
        Ok(S3Response::new(dto::UploadPartOutput {
            e_tag: Some(etag_of(part.crc32c)),
            checksum_crc32c: Some(b64_crc(part.crc32c)),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let uploads = self.uploads.lock().expect("uploads");
        let upload = uploads
            .get(&req.input.upload_id)
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        let parts = upload
            .parts
            .iter()
            .map(|(n, p)| dto::Part {
                part_number: Some(*n),
                size: Some(p.size as i64),
                e_tag: Some(etag_of(p.crc32c)),
                checksum_crc32c: Some(b64_crc(p.crc32c)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(dto::ListPartsOutput {
            bucket: Some(req.input.bucket),
            key: Some(req.input.key),
            upload_id: Some(req.input.upload_id),
            is_truncated: Some(false),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let prefix = req.input.prefix.clone().unwrap_or_default();
        let mut found: Vec<_> = self
            .uploads
            .lock()
            .expect("uploads")
            .iter()
            .filter(|(_, u)| u.bucket == req.input.bucket && u.key.starts_with(&prefix))
            .map(|(id, u)| (u.key.clone(), u.initiated, id.clone()))
            .collect();
        found.sort();
        let uploads = found
            .into_iter()
            .map(|(key, initiated, upload_id)| dto::MultipartUpload {
                key: Some(key),
                upload_id: Some(upload_id),
                initiated: Some(initiated.into()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(req.input.bucket),
            prefix: req.input.prefix,
            is_truncated: Some(false),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let input = req.input;
        let upload = self
            .uploads
            .lock()
            .expect("uploads")
            .remove(&input.upload_id)
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        let listed = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        let whole = check_completion(&upload, &listed).inspect_err(|e| eprintln!("{e}"))?;
        let full = input
            .checksum_type
            .as_ref()
            .is_some_and(|t| t.as_str() == dto::ChecksumType::FULL_OBJECT);
        if let Some(claimed) = input.checksum_crc32c.filter(|_| full)
            && claimed != b64_crc(whole.crc32c)
        {
            eprintln!(
                "BadDigest: full-object CRC32C {claimed}, parts make {}",
                b64_crc(whole.crc32c)
            );
            return Err(s3_error!(
                BadDigest,
                "the full-object CRC32C does not match"
            ));
        }
        self.objects
            .lock()
            .expect("objects")
            .insert((input.bucket.clone(), input.key.clone()), whole);
        Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(format!(
                "crc32c-{:08x}-{}",
                whole.crc32c,
                listed.len()
            ))),
            checksum_crc32c: full.then(|| b64_crc(whole.crc32c)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        self.uploads
            .lock()
            .expect("uploads")
            .remove(&req.input.upload_id)
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        eprintln!("aborted: {}", req.input.key);
        Ok(S3Response::new(Default::default()))
    }

    async fn put_object(
        &self,
        mut req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let start = Instant::now();
        let body = req.input.body.take();
        let input = &req.input;
        let (object, md5) = receive(
            &req,
            body,
            input.checksum_crc32c.as_deref(),
            input.content_md5.as_deref(),
        )
        .await?;
        self.record(&input.key, 0, object.size, start);
        self.objects
            .lock()
            .expect("objects")
            .insert((input.bucket.clone(), input.key.clone()), object);
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: Some(if md5.is_empty() {
                etag_of(object.crc32c)
            } else {
                ETag::Strong(hex::encode(&md5))
            }),
            checksum_crc32c: Some(b64_crc(object.crc32c)),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let object = self
            .objects
            .lock()
            .expect("objects")
            .get(&(req.input.bucket, req.input.key))
            .copied()
            .ok_or_else(|| s3_error!(NoSuchKey))?;
        Ok(S3Response::new(dto::HeadObjectOutput {
            content_length: Some(object.size as i64),
            checksum_crc32c: Some(b64_crc(object.crc32c)),
            checksum_type: Some(dto::ChecksumType::from_static(
                dto::ChecksumType::FULL_OBJECT,
            )),
            ..Default::default()
        }))
    }
}

/// The object the listed parts complete into (size and combined CRC32C), if they are parts
/// this upload received, in order, as answered, and every part but the last is at least
/// [`MIN_PART`].
fn check_completion(upload: &Upload, listed: &[dto::CompletedPart]) -> S3Result<Received> {
    let mut whole = Received { size: 0, crc32c: 0 };
    let mut previous = 0;
    for (i, part) in listed.iter().enumerate() {
        let n = part.part_number.unwrap_or_default();
        let received = upload
            .parts
            .get(&n)
            .ok_or_else(|| s3_error!(InvalidPart, "part {n} was not uploaded"))?;
        if n <= previous {
            return Err(s3_error!(InvalidPartOrder, "part {n} after {previous}"));
        }
        previous = n;
        if part
            .e_tag
            .as_ref()
            .is_some_and(|e| *e != etag_of(received.crc32c))
        {
            return Err(s3_error!(InvalidPart, "part {n}: not the ETag we answered"));
        }
        if part
            .checksum_crc32c
            .as_ref()
            .is_some_and(|c| *c != b64_crc(received.crc32c))
        {
            return Err(s3_error!(BadDigest, "part {n}: not the CRC32C we answered"));
        }
        if i + 1 < listed.len() && received.size < MIN_PART {
            return Err(s3_error!(
                EntityTooSmall,
                "part {n} is {} bytes",
                received.size
            ));
        }
        whole.crc32c =
            crc32c::crc32c_combine(whole.crc32c, received.crc32c, received.size as usize);
        whole.size += received.size;
    }
    Ok(whole)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let log_path = std::env::args()
        .nth(1)
        .ok_or_else(|| std::io::Error::other("usage: discard-s3 <parts.tsv>"))?;
    let discard = Discard {
        started: Instant::now(),
        uploads: Default::default(),
        objects: Default::default(),
        log: Mutex::new(std::fs::File::create(log_path)?),
        next_upload: Default::default(),
    };
    let mut builder = s3s::service::S3ServiceBuilder::new(discard);
    let env =
        |k: &str| std::env::var(k).map_err(|_| std::io::Error::other(format!("{k} is not set")));
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        env("AWS_ACCESS_KEY_ID")?,
        env("AWS_SECRET_ACCESS_KEY")?,
    ));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            let _ = ConnBuilder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}
