//! The conformance suite every storage driver runs: one set of checks, the same for S3, GCS,
//! Azure and any later backend, against a real server on 127.0.0.1.
//!
//! A driver joins with a few lines: build it against its test server, describe what it can do
//! in a [`Capabilities`], and call [`run`] (plus [`check_unreachable`] with the same driver
//! pointed at a closed port). Operations a driver does not support must fail with
//! `storage::Error::NotSupported`: the suite calls each of them and checks that, so "not
//! supported" is a typed answer, never a panic or a silent success.
//!
//! Checks go through the stack `storage::open` builds (integrity checks, then retries) and
//! through the real transfer pipelines: [`Uploader`] (multipart or streaming writes with part
//! sizes lowered so small objects take the large-object paths) and the download pipeline
//! (concurrent ranged reads into a blocking reader, unpacked by the real untar).
//!
//! Read-only drivers (`write: false`): the test seeds [`seed_objects`] through its server
//! first; the suite then reads them and checks that every write is refused.
//!
//! A driver that can write but not list, delete or write in parts (plain HTTP PUT, say):
//!
//! ```ignore
//! let caps = Capabilities {
//!     multipart: false,
//!     streaming_put: true,
//!     list: false,
//!     delete: false,
//!     metadata: false,
//!     verifiable_receipts: false,
//!     resume_from_store: false,
//!     ..Capabilities::object_store("http", 1 << 20)
//! };
//! conformance::run(Arc::new(driver), caps).await;
//! conformance::check_unreachable(Arc::new(driver_on_a_closed_port)).await;
//! ```

use argoexec::transfer::budget::Budget;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use argoexec::archive;
use argoexec::storage::retry::{Backoff, Retrying};
use argoexec::storage::verify::check_part;
use argoexec::storage::{self, Driver, ErrorKind, Part, PutOptions};
use argoexec::transfer::download::{self, BlockingReader};
use argoexec::transfer::{TransferConfig, Uploader};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{make_tree, pseudo_random, snapshot};

/// What a driver can do. Everything it cannot do must answer `NotSupported`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// A short name for messages and key prefixes (`s3`, `gcs`, `azure`...).
    pub name: &'static str,
    /// Objects can be written (`put`, and `put_stream` or multipart). `false` for read-only
    /// drivers (git, raw, plain HTTP GET): the test seeds [`seed_objects`] out of band.
    pub write: bool,
    /// `create_multipart`, `put_part`, `complete`, `abort`, `list_parts`.
    pub multipart: bool,
    /// `put_stream` (backends without multipart write streams this way).
    pub streaming_put: bool,
    /// `get` of a byte range (and so the download pipeline's concurrent ranged reads). Without
    /// it, downloads are one plain `get`.
    pub ranged_get: bool,
    /// `list` by prefix, with paging.
    pub list: bool,
    pub delete: bool,
    /// User metadata is stored by `put` and returned by `head`.
    pub metadata: bool,
    /// The page size the driver was built with: the suite checks listings really page.
    pub list_page_size: Option<usize>,
    /// Part size for the upload pipeline: the smallest the backend accepts for a non-last part
    /// (S3: 5 MiB), so a few MiB take the multipart or chunked path.
    pub part_size: u64,
    /// Part receipts prove what was stored (an MD5 ETag or a CRC32C echo), so
    /// `storage::verify` catches a corrupt part.
    pub verifiable_receipts: bool,
    /// `delete(dir)` removes everything below `dir/` (Azure, as Argo's Azure driver does).
    pub recursive_delete: bool,
    /// `pending_uploads`: the store lists the unfinished multipart uploads of a key, so a
    /// retried step resumes them.
    pub resume_from_store: bool,
}

impl Capabilities {
    /// A full object store: everything supported.
    pub fn object_store(name: &'static str, part_size: u64) -> Self {
        Self {
            name,
            write: true,
            multipart: true,
            streaming_put: false,
            ranged_get: true,
            list: true,
            delete: true,
            metadata: true,
            list_page_size: None,
            part_size,
            verifiable_receipts: true,
            recursive_delete: false,
            resume_from_store: true,
        }
    }
}

/// The objects a read-only driver's test writes through its server before [`run`]: keys
/// relative to the driver's root, with their content.
pub fn seed_objects() -> Vec<(String, Bytes)> {
    vec![
        (
            "seed/small.txt".into(),
            Bytes::from_static(b"hello, conformance\n"),
        ),
        (
            "seed/data.bin".into(),
            Bytes::from(pseudo_random(300_000, 11)),
        ),
    ]
}

/// The driver as `storage::open` wraps it: retries with per-part checks (short sleeps).
pub fn stack(driver: Arc<dyn Driver>) -> Arc<dyn Driver> {
    let backoff = Backoff {
        steps: 3,
        initial: Duration::from_millis(10),
        factor: 2.0,
        jitter: 0.0,
        cap: Duration::from_millis(100),
        deadline: None,
    };
    Arc::new(Retrying::new(driver, backoff))
}

/// Runs every check that applies to `caps` against `driver` (a bare backend; the suite stacks
/// it). Panics, naming the driver and the check, on the first failure.
pub async fn run(driver: Arc<dyn Driver>, caps: Capabilities) {
    let d = stack(driver);
    let c = &caps;
    check_missing_keys(&d, c).await;
    if c.write {
        check_small_objects(&d, c).await;
        check_empty_object(&d, c).await;
        check_streamed_upload(&d, c).await;
        check_file_upload(&d, c).await;
        check_tgz_round_trip(&d, c).await;
        check_failed_source_stores_nothing(&d, c).await;
        check_directory_round_trip(&d, c).await;
    } else {
        check_seeded_reads(&d, c).await;
        check_writes_refused(&d, c).await;
    }
    if c.multipart {
        check_multipart_api(&d, c).await;
    }
    if c.streaming_put {
        check_streaming_put(&d, c).await;
    }
    if c.list {
        check_listing(&d, c).await;
    }
    if c.delete {
        check_delete(&d, c).await;
    }
    check_unsupported_is_typed(&d, c).await;
}

/// A driver of the same backend pointed at a closed loopback port: its failures are network
/// errors (transient, retried), never "not found".
pub async fn check_unreachable(driver: Arc<dyn Driver>) {
    let d = stack(driver);
    let name = d.name();
    let e = d.head("any/key").await.expect_err("a closed port");
    assert!(
        !e.is_not_found(),
        "{name}: unreachable looked like NotFound: {e}"
    );
    assert_eq!(
        e.kind(),
        Some(ErrorKind::Network),
        "{name}: unreachable is a network error: {e}"
    );
    assert!(
        e.to_string().contains("gave up after 3 attempts"),
        "{name}: retried: {e}"
    );
}

fn key(c: &Capabilities, rel: &str) -> String {
    format!("conformance-{}/{rel}", c.name)
}

/// A config whose part and chunk sizes make a few MiB take the large-object paths.
fn small_parts(c: &Capabilities) -> TransferConfig {
    TransferConfig {
        part_size: c.part_size,
        // One part or read at a time reads whole objects with one plain `get`.
        concurrency: if c.ranged_get { 3 } else { 1 },
        adaptive_ceiling: None,
        file_concurrency: 4,
        gzip_threads: 2,
        download_chunk: 256 * 1024,
        max_parts_override: None,
        max_unpacked_bytes: None,
        ..TransferConfig::default()
    }
}

/// Reads `key` through the download pipeline (ranged reads in flight, in order).
async fn download_all(d: &Arc<dyn Driver>, c: &Capabilities, k: &str) -> Vec<u8> {
    let cfg = small_parts(c);
    let budget = Budget::new(cfg.download_budget());
    let (_, body) = download::open(Arc::clone(d), k, &cfg, &budget)
        .await
        .unwrap_or_else(|e| panic!("{}: open {k}: {e}", c.name));
    let mut reader = BlockingReader::new(body);
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).map(|_| out)
    })
    .await
    .expect("reader task")
    .unwrap_or_else(|e| panic!("{}: download {k}: {e}", c.name))
}

async fn collect(d: &Arc<dyn Driver>, k: &str, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let stream = d
        .get(k, range)
        .await
        .unwrap_or_else(|e| panic!("{}: get {k}: {e}", d.name()));
    let chunks: Vec<Bytes> = stream
        .body
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{}: read {k}: {e}", d.name()));
    chunks.concat()
}

async fn check_missing_keys(d: &Arc<dyn Driver>, c: &Capabilities) {
    let k = key(c, "missing/nothing-here.bin");
    let n = c.name;
    let e = d.head(&k).await.expect_err("head of a missing key");
    assert!(
        e.is_not_found(),
        "{n}: head of a missing key is NotFound: {e:?}"
    );
    assert!(!e.is_transient(), "{n}: NotFound is not retried: {e:?}");
    let e = d.get(&k, None).await.expect_err("get of a missing key");
    assert!(
        e.is_not_found(),
        "{n}: get of a missing key is NotFound: {e:?}"
    );
    if c.ranged_get {
        let e = d
            .get_bytes(&k, 0..10)
            .await
            .expect_err("ranged get of a missing key");
        assert!(
            e.is_not_found(),
            "{n}: ranged get of a missing key is NotFound: {e:?}"
        );
    }
}

/// Put, head, full and ranged reads of a small object.
async fn check_small_objects(d: &Arc<dyn Driver>, c: &Capabilities) {
    let n = c.name;
    let k = key(c, "small/object.bin");
    let data = Bytes::from(pseudo_random(100_000, 1));
    let mut opts = PutOptions::default();
    opts.metadata.insert("purpose".into(), "conformance".into());
    d.put(&k, data.clone(), &opts)
        .await
        .unwrap_or_else(|e| panic!("{n}: put: {e}"));
    let meta = d
        .head(&k)
        .await
        .unwrap_or_else(|e| panic!("{n}: head: {e}"));
    assert_eq!(meta.size, data.len() as u64, "{n}: head size");
    if c.metadata {
        assert_eq!(
            meta.metadata.get("purpose").map(String::as_str),
            Some("conformance"),
            "{n}: metadata round trip: {:?}",
            meta.metadata
        );
    }
    assert_eq!(collect(d, &k, None).await, data, "{n}: full get");
    if c.ranged_get {
        check_ranged_reads(d, c, &k, &data).await;
    } else {
        assert_not_supported(c, "a ranged get", d.get(&k, Some(1000..5000)).await);
    }
    // Overwrite replaces.
    d.put(&k, Bytes::from_static(b"v2"), &PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{n}: overwrite: {e}"));
    assert_eq!(collect(d, &k, None).await, b"v2", "{n}: overwrite");
}

/// Ranged reads: streamed, to the end, empty, whole-size reporting, and `get_bytes`.
async fn check_ranged_reads(d: &Arc<dyn Driver>, c: &Capabilities, k: &str, data: &[u8]) {
    let n = c.name;
    assert_eq!(
        collect(d, k, Some(1000..5000)).await,
        data[1000..5000],
        "{n}: ranged get"
    );
    assert_eq!(
        collect(d, k, Some(99_990..100_000)).await,
        data[99_990..],
        "{n}: ranged get to the end"
    );
    let stream = d.get(k, Some(50..150)).await.expect("ranged get");
    assert_eq!(
        stream.meta.size,
        data.len() as u64,
        "{n}: a ranged get reports the whole size"
    );
    assert!(
        collect(d, k, Some(7..7)).await.is_empty(),
        "{n}: empty range"
    );
    let bytes = d
        .get_bytes(k, 12_345..23_456)
        .await
        .unwrap_or_else(|e| panic!("{n}: get_bytes: {e}"));
    assert_eq!(bytes, data[12_345..23_456], "{n}: get_bytes");
}

async fn check_empty_object(d: &Arc<dyn Driver>, c: &Capabilities) {
    let n = c.name;
    let k = key(c, "small/empty");
    d.put(&k, Bytes::new(), &PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{n}: put empty: {e}"));
    assert_eq!(
        d.head(&k).await.expect("head empty").size,
        0,
        "{n}: empty size"
    );
    assert!(collect(d, &k, None).await.is_empty(), "{n}: empty body");
    assert!(
        download_all(d, c, &k).await.is_empty(),
        "{n}: empty download"
    );
}

/// A stream of unknown length, a few parts long, through the upload pipeline; read back
/// through the download pipeline.
async fn check_streamed_upload(d: &Arc<dyn Driver>, c: &Capabilities) {
    let n = c.name;
    let k = key(c, "large/streamed.bin");
    let len = (c.part_size * 7 / 2) as usize;
    let data = pseudo_random(len, 2);
    let uploader = Uploader::new(small_parts(c));
    let source = data.clone();
    let stats = uploader
        .upload(Arc::clone(d), &k, PutOptions::default(), None, move |w| {
            // Odd-sized writes, as an archiver makes them.
            for chunk in source.chunks(77_777) {
                w.write_all(chunk)?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{n}: streamed upload: {e}"));
    assert_eq!(stats.bytes, len as u64, "{n}: bytes uploaded");
    assert_eq!(stats.crc32c, crc32c::crc32c(&data), "{n}: upload CRC32C");
    if c.multipart {
        assert_eq!(stats.parts, 4, "{n}: 3.5 parts go up as 4 parts");
    } else {
        assert_eq!(stats.parts, 0, "{n}: a streaming write has no parts");
    }
    assert_eq!(
        d.head(&k).await.expect("head").size,
        len as u64,
        "{n}: size"
    );
    assert!(
        download_all(d, c, &k).await == data,
        "{n}: streamed upload round trip"
    );
}

/// A local file (known size) through `upload_file`, read back through the download pipeline.
async fn check_file_upload(d: &Arc<dyn Driver>, c: &Capabilities) {
    let n = c.name;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("file.bin");
    let data = pseudo_random((c.part_size * 2 + 12_345) as usize, 3);
    std::fs::write(&path, &data).expect("write");
    let k = key(c, "large/file.bin");
    let stats = Uploader::new(small_parts(c))
        .upload_file(Arc::clone(d), &k, &path)
        .await
        .unwrap_or_else(|e| panic!("{n}: upload_file: {e}"));
    assert_eq!(stats.bytes, data.len() as u64, "{n}: file bytes");
    if c.multipart {
        assert_eq!(stats.parts, 3, "{n}: 2 parts and a bit are 3 parts");
    }
    assert!(download_all(d, c, &k).await == data, "{n}: file round trip");
}

/// A directory as tar.gz, written by the real archiver into the upload pipeline and unpacked
/// by the real untar from the download pipeline.
async fn check_tgz_round_trip(d: &Arc<dyn Driver>, c: &Capabilities) {
    let n = c.name;
    let src_dir = tempfile::tempdir().expect("tmp");
    let src = src_dir.path().join("out");
    make_tree(&src);
    std::fs::write(
        src.join("big.bin"),
        pseudo_random((c.part_size * 2) as usize, 4),
    )
    .expect("big");
    let k = key(c, "archives/out.tgz");
    let producer_src = src.clone();
    Uploader::new(small_parts(c))
        .upload(Arc::clone(d), &k, PutOptions::default(), None, move |w| {
            archive::write_tgz(&producer_src, w, 1, 2).map(drop)
        })
        .await
        .unwrap_or_else(|e| panic!("{n}: tgz upload: {e}"));
    let cfg = small_parts(c);
    let budget = Budget::new(cfg.download_budget());
    let (_, body) = download::open(Arc::clone(d), &k, &cfg, &budget)
        .await
        .unwrap_or_else(|e| panic!("{n}: open tgz: {e}"));
    let reader = BlockingReader::new(body);
    let dest_dir = tempfile::tempdir().expect("tmp");
    let dest = dest_dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        archive::untar(flate2::read::MultiGzDecoder::new(reader), &dest, None)
    })
    .await
    .expect("untar task")
    .unwrap_or_else(|e| panic!("{n}: untar: {e}"));
    assert_eq!(
        snapshot(&dest_dir.path().join("out")),
        snapshot(&src),
        "{n}: tgz round trip"
    );
}

/// A producer that fails mid-way (after several parts) leaves nothing under the key.
async fn check_failed_source_stores_nothing(d: &Arc<dyn Driver>, c: &Capabilities) {
    let n = c.name;
    let k = key(c, "large/broken.bin");
    let part = c.part_size as usize;
    let result = Uploader::new(small_parts(c))
        .upload(Arc::clone(d), &k, PutOptions::default(), None, move |w| {
            w.write_all(&pseudo_random(part * 5 / 2, 5))?;
            Err(std::io::Error::other("the source broke"))
        })
        .await;
    let e = result.expect_err("a failed source fails the upload");
    assert!(
        e.to_string().contains("the source broke"),
        "{n}: the cause is kept: {e}"
    );
    let e = d.head(&k).await.expect_err("nothing stored");
    assert!(e.is_not_found(), "{n}: a failed upload stores nothing: {e}");
}

/// `archive: none` directories: every regular file as `<prefix>/<rel>`, listed and read back;
/// the prefix itself is no object (so key-as-directory loads find it by listing).
async fn check_directory_round_trip(d: &Arc<dyn Driver>, c: &Capabilities) {
    let n = c.name;
    let src_dir = tempfile::tempdir().expect("tmp");
    let src = src_dir.path().join("tree");
    make_tree(&src);
    let prefix = key(c, "tree");
    let stats = Uploader::new(small_parts(c))
        .upload_tree(Arc::clone(d), &prefix, &src)
        .await
        .unwrap_or_else(|e| panic!("{n}: upload_tree: {e}"));
    let files = argoexec::transfer::upload::regular_files(&src).expect("files");
    assert_eq!(
        stats.bytes,
        files
            .iter()
            .map(|(_, p)| p.metadata().expect("meta").len())
            .sum::<u64>()
    );
    let e = d.head(&prefix).await.expect_err("the prefix is no object");
    assert!(e.is_not_found(), "{n}: {e}");
    if !c.list {
        return;
    }
    let listed: Vec<String> = storage::list_all(Arc::clone(d), format!("{prefix}/"))
        .map_ok(|o| o.key)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{n}: list tree: {e}"));
    let want: Vec<String> = files
        .iter()
        .map(|(rel, _)| format!("{prefix}/{rel}"))
        .collect();
    assert_eq!(listed, want, "{n}: the tree's keys, sorted");
    for (rel, path) in &files {
        let got = download_all(d, c, &format!("{prefix}/{rel}")).await;
        assert!(
            got == std::fs::read(path).expect("read"),
            "{n}: {rel} round trip"
        );
    }
}

async fn check_seeded_reads(d: &Arc<dyn Driver>, c: &Capabilities) {
    for (k, data) in seed_objects() {
        let meta = d
            .head(&k)
            .await
            .unwrap_or_else(|e| panic!("{}: head seeded {k}: {e}", c.name));
        assert_eq!(
            meta.size,
            data.len() as u64,
            "{}: seeded size of {k}",
            c.name
        );
        assert_eq!(collect(d, &k, None).await, data, "{}: seeded {k}", c.name);
        assert!(
            download_all(d, c, &k).await == data,
            "{}: download of seeded {k}",
            c.name
        );
    }
}

fn assert_not_supported<T: std::fmt::Debug>(c: &Capabilities, what: &str, r: storage::Result<T>) {
    match r {
        Err(storage::Error::NotSupported { .. }) => {}
        other => panic!("{}: {what} must be NotSupported, got {other:?}", c.name),
    }
}

async fn check_writes_refused(d: &Arc<dyn Driver>, c: &Capabilities) {
    let k = key(c, "refused");
    let r = d
        .put(&k, Bytes::from_static(b"x"), &PutOptions::default())
        .await;
    assert_not_supported(c, "put on a read-only driver", r);
}

/// Multipart calls directly: parts out of order, listed, completed in order; receipts that
/// prove the stored bytes; abort.
async fn check_multipart_api(d: &Arc<dyn Driver>, c: &Capabilities) {
    let n = c.name;
    let k = key(c, "multipart/direct.bin");
    let size = c.part_size as usize;
    let one = Part::new(1, Bytes::from(pseudo_random(size, 6)));
    let two = Part::new(2, Bytes::from(pseudo_random(1234, 7)));
    let id = d
        .create_multipart(&k, &PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{n}: create: {e}"));
    let r2 = d
        .put_part(&k, &id, &two)
        .await
        .unwrap_or_else(|e| panic!("{n}: part 2: {e}"));
    let r1 = d
        .put_part(&k, &id, &one)
        .await
        .unwrap_or_else(|e| panic!("{n}: part 1: {e}"));
    assert_eq!((r1.number, r1.size), (1, size as u64), "{n}: receipt 1");
    if c.verifiable_receipts {
        check_part(n, &k, &one, &r1)
            .await
            .unwrap_or_else(|e| panic!("{n}: receipt 1 proves part 1: {e}"));
        // The same receipt must not vouch for other bytes.
        let forged = Part::new(1, Bytes::from(pseudo_random(size, 8)));
        let e = check_part(n, &k, &forged, &r1)
            .await
            .expect_err("a receipt proves its own bytes only");
        assert_eq!(e.kind(), Some(ErrorKind::Integrity), "{n}: {e}");
    }
    let listed = d
        .list_parts(&k, &id)
        .await
        .unwrap_or_else(|e| panic!("{n}: list parts: {e}"));
    let numbers: Vec<u32> = listed.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2], "{n}: listed parts, in order");
    assert_eq!(listed[1].size, 1234, "{n}: listed size");
    if c.resume_from_store {
        let pending = d
            .pending_uploads(&k)
            .await
            .unwrap_or_else(|e| panic!("{n}: pending uploads: {e}"));
        let ids: Vec<&str> = pending.iter().map(|p| p.upload_id.as_str()).collect();
        assert_eq!(ids, [id.as_str()], "{n}: the open upload of the key");
    }
    let e = d.head(&k).await.expect_err("not visible before complete");
    assert!(e.is_not_found(), "{n}: an open upload is invisible: {e}");
    d.complete_multipart(&k, &id, &[r1, r2])
        .await
        .unwrap_or_else(|e| panic!("{n}: complete: {e}"));
    let got = collect(d, &k, None).await;
    assert!(
        got == [pseudo_random(size, 6), pseudo_random(1234, 7)].concat(),
        "{n}: parts joined in order"
    );

    let k = key(c, "multipart/aborted.bin");
    let id = d
        .create_multipart(&k, &PutOptions::default())
        .await
        .expect("create");
    d.put_part(&k, &id, &one).await.expect("part");
    if c.resume_from_store {
        let shorter = key(c, "multipart/aborted");
        let pending = d.pending_uploads(&shorter).await.expect("pending uploads");
        assert!(pending.is_empty(), "{n}: exactly the key, not a prefix");
    }
    d.abort_multipart(&k, &id)
        .await
        .unwrap_or_else(|e| panic!("{n}: abort: {e}"));
    if c.resume_from_store {
        let pending = d.pending_uploads(&k).await.expect("pending uploads");
        assert!(pending.is_empty(), "{n}: an aborted upload is not pending");
    }
    let e = d.head(&k).await.expect_err("aborted");
    assert!(
        e.is_not_found(),
        "{n}: an aborted upload stores nothing: {e}"
    );
}

async fn check_streaming_put(d: &Arc<dyn Driver>, c: &Capabilities) {
    let n = c.name;
    let k = key(c, "stream/direct.bin");
    let data = Bytes::from(pseudo_random((c.part_size * 3) as usize + 99, 9));
    let chunks: Vec<storage::Result<Bytes>> = data
        .chunks(100_000)
        .map(|ch| Ok(Bytes::copy_from_slice(ch)))
        .collect();
    d.put_stream(
        &k,
        futures::stream::iter(chunks).boxed(),
        &PutOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{n}: put_stream: {e}"));
    assert_eq!(
        collect(d, &k, None).await,
        data,
        "{n}: put_stream round trip"
    );

    let k = key(c, "stream/broken.bin");
    let broken = futures::stream::iter([
        Ok(Bytes::from(pseudo_random((c.part_size * 2) as usize, 10))),
        Err(storage::Error::backend(
            "test",
            ErrorKind::Request,
            "the source broke",
        )),
    ])
    .boxed();
    let e = d
        .put_stream(&k, broken, &PutOptions::default())
        .await
        .expect_err("a broken stream fails");
    assert!(!e.is_not_found(), "{n}: {e}");
    let e = d.head(&k).await.expect_err("nothing stored");
    assert!(e.is_not_found(), "{n}: a broken stream stores nothing: {e}");
}

/// Prefix listing: exactly the keys below the prefix, sorted, with sizes, across pages.
async fn check_listing(d: &Arc<dyn Driver>, c: &Capabilities) {
    let n = c.name;
    let prefix = key(c, "list/");
    let mut want = Vec::new();
    for i in 0..5 {
        let k = format!("{prefix}item-{i}");
        d.put(&k, Bytes::from(vec![b'x'; i * 10]), &PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{n}: put {k}: {e}"));
        want.push((k, (i * 10) as u64));
    }
    // Neighbours that share the prefix's text but are not below it.
    for k in [key(c, "list-sibling"), key(c, "listx/y")] {
        d.put(&k, Bytes::from_static(b"n"), &PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{n}: put {k}: {e}"));
    }
    let first = d
        .list(&prefix, None)
        .await
        .unwrap_or_else(|e| panic!("{n}: list: {e}"));
    if let Some(size) = c.list_page_size {
        assert!(
            first.objects.len() <= size,
            "{n}: a page holds at most {size}"
        );
        assert!(first.next.is_some(), "{n}: more pages follow");
    }
    let all: Vec<(String, u64)> = storage::list_all(Arc::clone(d), prefix.clone())
        .map_ok(|o| (o.key, o.size))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{n}: list_all: {e}"));
    assert_eq!(all, want, "{n}: listing below {prefix}");
    // Continued from a first page already held: the same objects, none twice.
    let continued: Vec<(String, u64)> = storage::list_after(Arc::clone(d), prefix.clone(), first)
        .map_ok(|o| (o.key, o.size))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{n}: list_after: {e}"));
    assert_eq!(
        continued, want,
        "{n}: listing below {prefix} after its first page"
    );
    let none = d
        .list(&key(c, "nothing-below/"), None)
        .await
        .unwrap_or_else(|e| panic!("{n}: empty listing: {e}"));
    assert!(
        none.objects.is_empty() && none.next.is_none(),
        "{n}: empty listing"
    );
}

async fn check_delete(d: &Arc<dyn Driver>, c: &Capabilities) {
    let n = c.name;
    let k = key(c, "delete/file.txt");
    d.put(&k, Bytes::from_static(b"bye"), &PutOptions::default())
        .await
        .expect("put");
    d.delete(&k)
        .await
        .unwrap_or_else(|e| panic!("{n}: delete: {e}"));
    let e = d.head(&k).await.expect_err("deleted");
    assert!(e.is_not_found(), "{n}: deleted: {e}");
    d.delete(&k)
        .await
        .unwrap_or_else(|e| panic!("{n}: deleting an absent key succeeds: {e}"));

    // A prefix, as artifact GC removes an `archive: none` directory: list, then delete each.
    let dir = key(c, "delete/dir");
    for rel in ["a", "b/c", "b/d/e"] {
        d.put(
            &format!("{dir}/{rel}"),
            Bytes::from_static(b"x"),
            &PutOptions::default(),
        )
        .await
        .expect("put");
    }
    let survivor = key(c, "delete/dir-survivor");
    d.put(
        &survivor,
        Bytes::from_static(b"keep"),
        &PutOptions::default(),
    )
    .await
    .expect("put");
    if c.recursive_delete {
        d.delete(&dir)
            .await
            .unwrap_or_else(|e| panic!("{n}: delete dir: {e}"));
    } else {
        let keys: Vec<String> = storage::list_all(Arc::clone(d), format!("{dir}/"))
            .map_ok(|o| o.key)
            .try_collect()
            .await
            .expect("list");
        assert_eq!(keys.len(), 3, "{n}: {keys:?}");
        for k in keys {
            d.delete(&k)
                .await
                .unwrap_or_else(|e| panic!("{n}: delete {k}: {e}"));
        }
    }
    let left = d.list(&format!("{dir}/"), None).await.expect("list");
    assert!(
        left.objects.is_empty(),
        "{n}: the prefix is empty: {:?}",
        left.objects
    );
    assert_eq!(
        collect(d, &survivor, None).await,
        b"keep",
        "{n}: a sibling survives"
    );
}

/// Every operation the capabilities exclude answers `NotSupported`.
async fn check_unsupported_is_typed(d: &Arc<dyn Driver>, c: &Capabilities) {
    let k = key(c, "unsupported");
    if !c.multipart {
        assert!(
            d.multipart_limits().is_none(),
            "{}: no multipart limits",
            c.name
        );
        assert_not_supported(
            c,
            "create_multipart",
            d.create_multipart(&k, &PutOptions::default()).await,
        );
        let part = Part::new(1, Bytes::from_static(b"x"));
        assert_not_supported(c, "put_part", d.put_part(&k, "id", &part).await);
        assert_not_supported(
            c,
            "complete_multipart",
            d.complete_multipart(&k, "id", &[]).await,
        );
        assert_not_supported(c, "abort_multipart", d.abort_multipart(&k, "id").await);
        assert_not_supported(c, "list_parts", d.list_parts(&k, "id").await);
    }
    if !c.resume_from_store {
        assert_not_supported(c, "pending_uploads", d.pending_uploads(&k).await);
    }
    if !c.streaming_put {
        let body = futures::stream::iter([Ok(Bytes::from_static(b"x"))]).boxed();
        assert_not_supported(
            c,
            "put_stream",
            d.put_stream(&k, body, &PutOptions::default()).await,
        );
    }
    if !c.list {
        assert_not_supported(c, "list", d.list(&k, None).await);
    }
    if !c.delete {
        assert_not_supported(c, "delete", d.delete(&k).await);
    }
}
