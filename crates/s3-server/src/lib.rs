//! An S3 protocol server on loopback: s3s-fs (real SigV4 checks, real multipart, data on disk)
//! behind hyper. The tests start it in-process; the demo and the benchmarks run it as the
//! `s3-server` binary of this package.

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::{S3, S3Request, S3Response, S3Result};

pub const ACCESS_KEY: &str = "argoexec-test-access";
pub const SECRET_KEY: &str = "argoexec-test-secret";
/// A second identity whose keys are marker strings, for the scan that proves no secret is
/// ever printed (tests/secrets_scan.rs).
pub const MARKER_ACCESS_KEY: &str = "AKIAMARKERACCESS7Q2W";
pub const MARKER_SECRET_KEY: &str = "marker-s3-secret-9d4e1f";

/// s3s-fs with fixes towards S3's behaviour: a key that is a directory on its disk
/// (because longer keys live below it) is answered `NoSuchKey` instead of HTTP 500;
/// ListParts carries each part's ETag (the MD5 of its bytes), which s3s-fs leaves out; a
/// multipart upload completed with a `FULL_OBJECT` CRC32C has it checked against the object
/// and returned by HeadObject, as S3 (and recent MinIO) do; ListMultipartUploads, which s3s-fs
/// lacks, lists the unfinished uploads; and an upload that was completed or aborted is
/// `NoSuchUpload` (s3s-fs says `AccessDenied`, or completes it again).
struct S3Fs {
    fs: s3s_fs::FileSystem,
    root: std::path::PathBuf,
    /// Full-object CRC32C (base64) of objects completed with one, by bucket and key.
    full_object_crc: std::sync::Mutex<std::collections::HashMap<(String, String), String>>,
    /// Bucket lifecycle configurations (s3s-fs keeps none), by bucket.
    lifecycles: std::sync::Mutex<std::collections::HashMap<String, s3s::dto::LifecycleRules>>,
    checks: Checks,
}

/// What the server checks beyond s3s-fs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checks {
    /// Check each UploadPart's `x-amz-checksum-crc32c` against the bytes stored and echo it, as
    /// S3 does (`BadDigest` when they differ). Off for the tests, whose fault cases exercise
    /// the client's own MD5 check of servers that echo nothing (s3s-fs, older MinIO); on for
    /// the benchmarks (`s3-server --part-checksums`), so that a client spends the CPU it would
    /// spend against S3, not an MD5 of every part.
    pub part_crc32c: bool,
}

impl S3Fs {
    fn forget_crc(&self, bucket: &str, key: &str) {
        self.full_object_crc
            .lock()
            .expect("crcs")
            .remove(&(bucket.to_string(), key.to_string()));
    }

    fn is_dir(&self, bucket: &str, key: &str) -> bool {
        self.root.join(bucket).join(key).is_dir()
    }

    /// Where s3s-fs keeps an unfinished upload's object attributes: the file exists from
    /// CreateMultipartUpload until the upload is completed or aborted.
    fn upload_marker(&self, bucket: &str, key: &str, upload_id: &str) -> std::path::PathBuf {
        self.root.join(format!(
            "{}.upload-{upload_id}.metadata.json",
            object_stem(bucket, key)
        ))
    }

    /// Where s3s-fs keeps part `number` of the upload `upload_id`.
    fn part_file(&self, upload_id: &str, number: i32) -> std::path::PathBuf {
        self.root
            .join(format!(".upload_id-{upload_id}.part-{number}"))
    }

    /// `NoSuchUpload` unless `upload_id` is an unfinished upload of `key`, as S3 answers.
    fn ensure_open(&self, bucket: &str, key: &str, upload_id: &str) -> S3Result<()> {
        if self.upload_marker(bucket, key, upload_id).is_file() {
            Ok(())
        } else {
            Err(s3s::s3_error!(NoSuchUpload))
        }
    }

    /// The unfinished uploads in `bucket` whose keys start with `prefix`, as (key, upload id,
    /// initiated), ordered by key, then oldest first (S3's order).
    fn open_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> std::io::Result<Vec<(String, String, std::time::SystemTime)>> {
        use base64::Engine;
        let stem = object_stem(bucket, "");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((key, upload_id)) = name
                .strip_prefix(&stem)
                .and_then(|rest| rest.strip_suffix(".metadata.json"))
                .and_then(|rest| rest.rsplit_once(".upload-"))
            else {
                continue;
            };
            let Some(key) = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(key)
                .ok()
                .and_then(|k| String::from_utf8(k).ok())
                .filter(|k| k.starts_with(prefix))
            else {
                continue;
            };
            out.push((key, upload_id.to_string(), entry.metadata()?.modified()?));
        }
        out.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
        Ok(out)
    }
}

/// The start of the names s3s-fs gives the files about `key` in `bucket`.
fn object_stem(bucket: &str, key: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(".bucket-{}.object-{}", b64(bucket), b64(key))
}

/// Every file below `bucket_root` whose key starts with `prefix`, sorted by key: (key, size,
/// modification time). The walk starts at the directory the prefix names up to its last `/`
/// (the whole bucket when that part is not plain names).
fn objects_below(
    bucket_root: &Path,
    prefix: &str,
) -> std::io::Result<Vec<(String, u64, std::time::SystemTime)>> {
    use std::path::Component;
    let dir_part = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
    let plain = Path::new(dir_part)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let start = if plain {
        bucket_root.join(dir_part)
    } else {
        bucket_root.to_path_buf()
    };
    let mut found = Vec::new();
    let mut dirs = vec![start];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                dirs.push(path);
                continue;
            }
            let Some(key) = path
                .strip_prefix(bucket_root)
                .ok()
                .and_then(|rel| rel.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if key.starts_with(prefix) {
                let meta = entry.metadata()?;
                found.push((key, meta.len(), meta.modified()?));
            }
        }
    }
    found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// The first byte of a `Content-Range` answer (`bytes <first>-<last>/<size>`).
fn range_start(content_range: &str) -> Option<u64> {
    content_range
        .strip_prefix("bytes ")?
        .split_once('-')?
        .0
        .parse()
        .ok()
}

/// Bytes a GET, or a checksum of a stored part, reads from its file at a time.
const GET_BLOCK: u64 = 1 << 20;

/// CRC32C of the file at `path`, base64 as S3 spells it, read on a blocking thread.
async fn stored_crc32c(path: std::path::PathBuf) -> S3Result<String> {
    let crc = tokio::task::spawn_blocking(move || file_crc32c(&path))
        .await
        .map_err(|e| s3s::s3_error!(InternalError, "{e}"))?
        .map_err(|e| s3s::s3_error!(InternalError, "{e}"))?;
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        crc.to_be_bytes(),
    ))
}

/// CRC32C of the file at `path`.
fn file_crc32c(path: &Path) -> std::io::Result<u32> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut block = vec![0; GET_BLOCK as usize];
    let mut crc = 0;
    loop {
        match file.read(&mut block)? {
            0 => return Ok(crc),
            n => crc = crc32c::crc32c_append(crc, &block[..n]),
        }
    }
}

/// The bytes `start..start + len` of the file at `path`, read in blocks of [`GET_BLOCK`] by one
/// blocking task, two blocks ahead of the connection. s3s-fs streams a GET in 4 KiB reads, each
/// a hop to tokio's blocking pool: about 6 CPU-seconds a GiB, which made this server, not the
/// client, the bottleneck of every download benchmark.
fn file_blocks(
    path: std::path::PathBuf,
    start: u64,
    len: u64,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let end = start.saturating_add(len);
        let mut offset = start;
        while offset < end {
            let n = (end - offset).min(GET_BLOCK);
            let mut block = vec![0; usize::try_from(n).unwrap_or(0)];
            let read = file
                .read_exact_at(&mut block, offset)
                .map(|()| bytes::Bytes::from(block));
            let failed = read.is_err();
            // A send fails once the connection is gone: stop reading.
            if tx.blocking_send(read).is_err() || failed {
                return;
            }
            offset += n;
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Delegates S3 operations to s3s-fs unchanged (written in `async_trait`'s expanded form,
/// because the attribute does not see inside macro invocations).
macro_rules! delegate {
    ($($op:ident: $input:ident => $output:ident),* $(,)?) => {$(
        fn $op<'life0, 'async_trait>(
            &'life0 self,
            req: S3Request<s3s::dto::$input>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = S3Result<S3Response<s3s::dto::$output>>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move { self.fs.$op(req).await })
        }
    )*};
}

#[async_trait::async_trait]
impl S3 for S3Fs {
    async fn head_object(
        &self,
        req: S3Request<s3s::dto::HeadObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::HeadObjectOutput>> {
        if self.is_dir(&req.input.bucket, &req.input.key) {
            return Err(s3s::s3_error!(NoSuchKey));
        }
        let id = (req.input.bucket.clone(), req.input.key.clone());
        let mut resp = self.fs.head_object(req).await?;
        if let Some(crc) = self.full_object_crc.lock().expect("crcs").get(&id) {
            resp.output.checksum_crc32c = Some(crc.clone());
            resp.output.checksum_type = Some(s3s::dto::ChecksumType::from_static(
                s3s::dto::ChecksumType::FULL_OBJECT,
            ));
        }
        Ok(resp)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<s3s::dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<s3s::dto::CompleteMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let full = req
            .input
            .checksum_type
            .as_ref()
            .is_some_and(|t| t.as_str() == s3s::dto::ChecksumType::FULL_OBJECT);
        let claimed = req.input.checksum_crc32c.clone().filter(|_| full);
        self.ensure_open(&bucket, &key, &req.input.upload_id)?;
        self.forget_crc(&bucket, &key);
        let resp = self.fs.complete_multipart_upload(req).await?;
        if let Some(claimed) = claimed {
            let actual = stored_crc32c(self.root.join(&bucket).join(&key)).await?;
            if actual != claimed {
                let _ = std::fs::remove_file(self.root.join(&bucket).join(&key));
                return Err(s3s::s3_error!(
                    BadDigest,
                    "the full-object CRC32C does not match"
                ));
            }
            self.full_object_crc
                .lock()
                .expect("crcs")
                .insert((bucket, key), claimed);
        }
        Ok(resp)
    }

    async fn put_object(
        &self,
        req: S3Request<s3s::dto::PutObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::PutObjectOutput>> {
        self.forget_crc(&req.input.bucket, &req.input.key);
        self.fs.put_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<s3s::dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::DeleteObjectOutput>> {
        self.forget_crc(&req.input.bucket, &req.input.key);
        self.fs.delete_object(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<s3s::dto::GetObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::GetObjectOutput>> {
        if self.is_dir(&req.input.bucket, &req.input.key) {
            return Err(s3s::s3_error!(NoSuchKey));
        }
        let path = self.root.join(&req.input.bucket).join(&req.input.key);
        let mut resp = self.fs.get_object(req).await?;
        let out = &mut resp.output;
        let start = out
            .content_range
            .as_deref()
            .and_then(range_start)
            .unwrap_or(0);
        let len = out
            .content_length
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        out.body = Some(s3s::dto::StreamingBlob::wrap(file_blocks(path, start, len)));
        Ok(resp)
    }

    /// A listing without a delimiter walks only the directory the prefix names, in one
    /// blocking task. s3s-fs walks the whole bucket for every page with an async call per
    /// entry (about 0.4 s a page at 10,000 objects), which made every client's directory
    /// download in the benchmarks list-bound; S3 answers a page from an index. Same output.
    async fn list_objects_v2(
        &self,
        req: S3Request<s3s::dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<s3s::dto::ListObjectsV2Output>> {
        if req.input.delimiter.is_some() {
            return self.fs.list_objects_v2(req).await;
        }
        let input = req.input;
        let bucket_root = self.root.join(&input.bucket);
        if !bucket_root.is_dir() {
            return Err(s3s::s3_error!(NoSuchBucket));
        }
        let prefix = input
            .prefix
            .as_deref()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let walked = {
            let prefix = prefix.clone();
            tokio::task::spawn_blocking(move || objects_below(&bucket_root, &prefix))
                .await
                .map_err(|e| s3s::s3_error!(InternalError, "{e}"))?
                .map_err(|e| s3s::s3_error!(InternalError, "{e}"))?
        };
        let resume = match (
            input.continuation_token.as_deref(),
            input.start_after.as_deref(),
        ) {
            (Some(ct), Some(sa)) => Some(ct.max(sa)),
            (ct, sa) => ct.or(sa),
        };
        let max_keys = input.max_keys.unwrap_or(1000).max(0);
        let page_len = usize::try_from(max_keys).unwrap_or(1000);
        let mut page: Vec<s3s::dto::Object> = walked
            .into_iter()
            .filter(|(key, ..)| resume.is_none_or(|r| key.as_str() > r))
            .take(page_len + 1)
            .map(|(key, size, modified)| s3s::dto::Object {
                key: Some(key),
                size: Some(i64::try_from(size).unwrap_or(i64::MAX)),
                last_modified: Some(modified.into()),
                ..Default::default()
            })
            .collect();
        let is_truncated = page_len > 0 && page.len() > page_len;
        page.truncate(page_len);
        let next_continuation_token = is_truncated
            .then(|| page.last().and_then(|o| o.key.clone()))
            .flatten();
        Ok(S3Response::new(s3s::dto::ListObjectsV2Output {
            key_count: Some(i32::try_from(page.len()).unwrap_or(i32::MAX)),
            max_keys: Some(max_keys),
            is_truncated: Some(is_truncated),
            contents: (!page.is_empty()).then_some(page),
            continuation_token: input.continuation_token,
            next_continuation_token,
            encoding_type: input.encoding_type,
            name: Some(input.bucket),
            prefix: input.prefix,
            start_after: input.start_after,
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<s3s::dto::ListPartsInput>,
    ) -> S3Result<S3Response<s3s::dto::ListPartsOutput>> {
        let upload_id = req.input.upload_id.clone();
        self.ensure_open(&req.input.bucket, &req.input.key, &upload_id)?;
        let mut resp = self.fs.list_parts(req).await?;
        for part in resp.output.parts.iter_mut().flatten() {
            let Some(n) = part.part_number else { continue };
            let file = self.part_file(&upload_id, n);
            if let Ok(bytes) = std::fs::read(file) {
                let md5 = <md5::Md5 as md5::Digest>::digest(&bytes);
                part.e_tag = Some(s3s::dto::ETag::Strong(hex::encode(md5)));
            }
        }
        Ok(resp)
    }

    async fn upload_part(
        &self,
        req: S3Request<s3s::dto::UploadPartInput>,
    ) -> S3Result<S3Response<s3s::dto::UploadPartOutput>> {
        self.ensure_open(&req.input.bucket, &req.input.key, &req.input.upload_id)?;
        let claimed = req
            .input
            .checksum_crc32c
            .clone()
            .filter(|_| self.checks.part_crc32c);
        let part = self.part_file(&req.input.upload_id, req.input.part_number);
        let mut resp = self.fs.upload_part(req).await?;
        if let Some(claimed) = claimed {
            let stored = stored_crc32c(part.clone()).await?;
            if stored != claimed {
                let _ = std::fs::remove_file(&part);
                return Err(s3s::s3_error!(
                    BadDigest,
                    "The CRC32C you specified did not match the calculated checksum."
                ));
            }
            resp.output.checksum_crc32c = Some(stored);
        }
        Ok(resp)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<s3s::dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<s3s::dto::AbortMultipartUploadOutput>> {
        self.ensure_open(&req.input.bucket, &req.input.key, &req.input.upload_id)?;
        self.fs.abort_multipart_upload(req).await
    }

    /// Every unfinished upload under the prefix in one page (the tests hold a few).
    async fn list_multipart_uploads(
        &self,
        req: S3Request<s3s::dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<s3s::dto::ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let uploads = self
            .open_uploads(&input.bucket, &prefix)
            .map_err(|e| s3s::s3_error!(InternalError, "{e}"))?
            .into_iter()
            .map(|(key, upload_id, initiated)| s3s::dto::MultipartUpload {
                key: Some(key),
                upload_id: Some(upload_id),
                initiated: Some(initiated.into()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(s3s::dto::ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            is_truncated: Some(false),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }

    /// Kept in memory, and only with a Content-MD5 header, as OSS requires.
    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<s3s::dto::PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<s3s::dto::PutBucketLifecycleConfigurationOutput>> {
        if req.headers.get("content-md5").is_none() {
            return Err(s3s::s3_error!(InvalidRequest, "Content-MD5 is required"));
        }
        let rules = req
            .input
            .lifecycle_configuration
            .map(|c| c.rules)
            .unwrap_or_default();
        self.lifecycles
            .lock()
            .expect("lifecycles")
            .insert(req.input.bucket, rules);
        Ok(S3Response::new(Default::default()))
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<s3s::dto::GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<s3s::dto::GetBucketLifecycleConfigurationOutput>> {
        let rules = self
            .lifecycles
            .lock()
            .expect("lifecycles")
            .get(&req.input.bucket)
            .cloned()
            .ok_or_else(|| s3s::s3_error!(NoSuchLifecycleConfiguration))?;
        Ok(S3Response::new(
            s3s::dto::GetBucketLifecycleConfigurationOutput {
                rules: Some(rules),
                ..Default::default()
            },
        ))
    }

    delegate! {
        delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
        list_objects: ListObjectsInput => ListObjectsOutput,
        list_buckets: ListBucketsInput => ListBucketsOutput,
        create_bucket: CreateBucketInput => CreateBucketOutput,
        head_bucket: HeadBucketInput => HeadBucketOutput,
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
        copy_object: CopyObjectInput => CopyObjectOutput,
        create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    }
}

/// Serves S3 for the data in `root` on `listener` until the task is dropped.
pub async fn serve(root: &Path, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_with_auth(root, listener, test_keys()).await
}

/// The test identities: [`ACCESS_KEY`] and [`MARKER_ACCESS_KEY`].
fn test_keys() -> s3s::auth::SimpleAuth {
    let mut auth = s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY);
    auth.register(MARKER_ACCESS_KEY.into(), MARKER_SECRET_KEY.into());
    auth
}

/// As [`serve`], accepting the keys `auth` knows instead of the test keys.
pub async fn serve_with_auth(
    root: &Path,
    listener: tokio::net::TcpListener,
    auth: impl s3s::auth::S3Auth,
) -> std::io::Result<()> {
    serve_checking(root, listener, auth, Checks::default()).await
}

/// As [`serve_with_auth`], with `checks` beyond s3s-fs's own.
pub async fn serve_checking(
    root: &Path,
    listener: tokio::net::TcpListener,
    auth: impl s3s::auth::S3Auth,
    checks: Checks,
) -> std::io::Result<()> {
    let fs = s3s_fs::FileSystem::new(root)
        .map_err(|e| std::io::Error::other(format!("s3s-fs: {e:?}")))?;
    let fs = S3Fs {
        fs,
        root: root.to_path_buf(),
        full_object_crc: Default::default(),
        lifecycles: Default::default(),
        checks,
    };
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(auth);
    let service = builder.build();
    loop {
        let (socket, _) = listener.accept().await?;
        // As S3 and every production HTTP server do: without it, a GET whose headers and body
        // leave in two writes waits for the client's delayed ACK (40 ms) on every small object.
        socket.set_nodelay(true)?;
        let service = service.clone();
        tokio::spawn(async move {
            let _ = ConnBuilder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// Binds 127.0.0.1 on `port` (0 = any) and serves in the background.
pub async fn spawn(
    root: &Path,
    port: u16,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    spawn_checking(root, port, Checks::default()).await
}

/// As [`spawn`], with `checks` beyond s3s-fs's own.
pub async fn spawn_checking(
    root: &Path,
    port: u16,
    checks: Checks,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let root = root.to_path_buf();
    let task = tokio::spawn(async move {
        if let Err(e) = serve_checking(&root, listener, test_keys(), checks).await {
            eprintln!("s3 test server stopped: {e}");
        }
    });
    Ok((addr, task))
}
