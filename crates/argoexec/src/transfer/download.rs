//! The download pipeline: concurrent ranged reads, delivered in order, into a blocking reader.
//!
//! ```text
//! Driver --get_bytes(range) x N in flight--> ordered stream --channel--> BlockingReader --> unpack / file
//! ```
//! Each range is fetched (and retried) as one unit by the driver stack. Every chunk is paid for
//! from a [`Budget`] before it is fetched and paid back once the reader has consumed it, so
//! memory is bounded whatever the object size or the number of concurrent downloads. How many
//! ranges are in flight is [`Adaptive`]'s decision, within that budget. The same engine reads a
//! single artifact ([`open`]) and every file of a directory ([`open_listed`]); the range plan
//! is an iterator, so a TiB object costs no more to plan than a KiB one. A plain file is
//! written by [`to_file`] instead: the same ranges, each written where it belongs as it
//! arrives.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};
use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::Result;
use super::adaptive::Adaptive;
use super::budget::{Budget, Permit};
use super::config::TransferConfig;
use super::local_file::LocalFile;
use crate::storage::{self, ByteStream, Driver, ObjectMeta};

/// Downloaded bytes, holding their share of the budget until they are dropped. A consumer
/// must drop each chunk once it has used it: holding more chunks than the budget allows
/// stops the stream (that is the memory bound working).
#[derive(Debug)]
pub struct Chunk {
    pub bytes: Bytes,
    _permit: Option<Permit>,
}

impl Chunk {
    /// Bytes that need no budget (small objects, whose stream the backend bounds itself).
    pub fn unbudgeted(bytes: Bytes) -> Self {
        Self {
            bytes,
            _permit: None,
        }
    }

    /// The bytes, still holding their budget share until the last clone is dropped: for
    /// consumers that pass them on (an HTTP body frees them only once they are written).
    pub fn into_bytes(self) -> Bytes {
        match self._permit {
            Some(permit) => permit.attach(self.bytes),
            None => self.bytes,
        }
    }
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Chunks of one object, in order.
pub type ChunkStream = BoxStream<'static, storage::Result<Chunk>>;

/// A plain byte stream as chunks.
pub fn chunks(body: ByteStream) -> ChunkStream {
    body.map(|r| r.map(Chunk::unbudgeted)).boxed()
}

/// Ranges of `chunk` bytes covering `range`, planned as they are needed.
pub fn ranges(range: Range<u64>, chunk: u64) -> impl Iterator<Item = Range<u64>> + Send + 'static {
    let chunk = chunk.max(1);
    let len = range.end.saturating_sub(range.start);
    (0..len.div_ceil(chunk)).map(move |i| {
        let start = range.start + i * chunk;
        start..(start + chunk).min(range.end)
    })
}

/// Opens `key` for reading: its metadata and its bytes in order, `cfg.concurrency` ranges in
/// flight, each paid for from `budget`.
pub async fn open(
    driver: Arc<dyn Driver>,
    key: &str,
    cfg: &TransferConfig,
    budget: &Budget,
) -> Result<(ObjectMeta, ChunkStream)> {
    let meta = driver.head(key).await?;
    let body = open_object(driver, key, &meta, cfg, budget).await?;
    Ok((meta, body))
}

/// The whole object `key` whose head is `meta`, checked against its recorded CRC32C.
pub async fn open_object(
    driver: Arc<dyn Driver>,
    key: &str,
    meta: &ObjectMeta,
    cfg: &TransferConfig,
    budget: &Budget,
) -> Result<ChunkStream> {
    open_object_after(None, driver, key, meta, cfg, budget).await
}

/// The first range of `key` (whose head is `meta`) alone, paid for from `budget`: for an
/// input with no declared archive, what tells a plain file (written in place, [`to_file`])
/// from a tarball (unpacked in order, [`open_object_after`]) before the rest is requested.
pub async fn first_range(
    driver: &dyn Driver,
    key: &str,
    meta: &ObjectMeta,
    cfg: &TransferConfig,
    budget: &Budget,
) -> Result<Chunk> {
    let range = ranges(0..meta.size, cfg.download_chunk)
        .next()
        .unwrap_or(0..0);
    let permit = reserve(budget, range.end).await?;
    Ok(Chunk {
        bytes: driver.get_bytes(key, range).await?,
        _permit: Some(permit),
    })
}

/// [`open_object`] for an object whose [`first_range`] may already have been read: that
/// chunk, then the rest, the whole checked against the recorded CRC32C.
pub async fn open_object_after(
    first: Option<Chunk>,
    driver: Arc<dyn Driver>,
    key: &str,
    meta: &ObjectMeta,
    cfg: &TransferConfig,
    budget: &Budget,
) -> Result<ChunkStream> {
    let described = format!("{}/{key}", driver.describe());
    let start = first.as_ref().map_or(0, |c| c.bytes.len() as u64);
    let rest = read_range(driver, key, meta.size, start..meta.size, cfg, budget).await?;
    let body = futures::stream::iter(first.map(Ok)).chain(rest).boxed();
    Ok(verified(body, meta.crc32c, meta.size, described))
}

/// An object known from a listing (its key, size and, where the listing gives it, CRC32C),
/// read whole and checked: every file of a directory goes this way. A small object is one
/// ranged read, paid for from `budget` and retried alone, whose answer also carries its
/// CRC32C where the backend says it (no head per file); a larger one is read exactly as
/// [`open`] reads a single artifact.
pub async fn open_listed(
    driver: Arc<dyn Driver>,
    listed: &ObjectMeta,
    cfg: &TransferConfig,
    budget: &Budget,
) -> Result<ChunkStream> {
    let key = &listed.key;
    if !is_one_read(driver.as_ref(), listed, cfg) {
        let meta = driver.head(key).await?;
        return open_object(driver, key, &meta, cfg, budget).await;
    }
    let described = format!("{}/{key}", driver.describe());
    if listed.size == 0 {
        return Ok(futures::stream::empty().boxed());
    }
    let permit = reserve(budget, listed.size).await?;
    let read = driver.get_range(key, 0..listed.size).await?;
    if read.meta.size != listed.size {
        return Err(storage::Error::backend(
            "verify",
            storage::ErrorKind::Integrity,
            format!(
                "{described} changed while it was read: {} bytes, listed with {}",
                read.meta.size, listed.size
            ),
        )
        .into());
    }
    let chunk = Chunk {
        bytes: read.bytes,
        _permit: Some(permit),
    };
    let body = futures::stream::once(async move { Ok(chunk) }).boxed();
    let expected = listed.crc32c.or(read.meta.crc32c);
    Ok(verified(body, expected, listed.size, described))
}

/// Whether [`open_listed`] reads `listed` in one ranged request, so its stream is one chunk
/// of at most `cfg.download_chunk` bytes, paid for from the budget.
pub fn is_one_read(driver: &dyn Driver, listed: &ObjectMeta, cfg: &TransferConfig) -> bool {
    listed.size <= cfg.download_chunk && driver.serves_ranges(&listed.key)
}

/// The bytes `range` of `key` (an object of `size` bytes, from a head), in order: ranged
/// reads of `cfg.download_chunk` bytes, as many in flight as [`Adaptive`] allows, each paid
/// for from `budget` and retried alone by the driver stack (so a body cut short, even of a
/// small object, costs one range again, never the artifact). A server that cannot serve
/// ranges is read in one stream. Not checked against the whole-object CRC (a part cannot be).
pub async fn read_range(
    driver: Arc<dyn Driver>,
    key: &str,
    size: u64,
    range: Range<u64>,
    cfg: &TransferConfig,
    budget: &Budget,
) -> Result<ChunkStream> {
    if !driver.serves_ranges(key) {
        let whole = range.start == 0 && range.end >= size;
        let stream = driver.get(key, (!whole).then_some(range)).await?;
        return Ok(chunks(stream.body));
    }
    let key = key.to_string();
    let budget = budget.clone();
    let adaptive = Adaptive::for_config(cfg);
    let adaptive_ceiling = adaptive.ceiling();
    let body = futures::stream::iter(ranges(range, cfg.download_chunk))
        .map(move |r| {
            let driver = Arc::clone(&driver);
            let key = key.clone();
            let budget = budget.clone();
            let adaptive = Arc::clone(&adaptive);
            async move { fetch_range(&*driver, &key, r, &budget, &adaptive).await }
        })
        .buffered(adaptive_ceiling)
        .boxed();
    Ok(body)
}

/// One ranged read of `key`, paid for from `budget` before `adaptive` gives it a slot: a range
/// waiting for a slot then holds no slot, so the ranges ahead of it (in plan order) always
/// finish.
async fn fetch_range(
    driver: &dyn Driver,
    key: &str,
    range: Range<u64>,
    budget: &Budget,
    adaptive: &Adaptive,
) -> storage::Result<Chunk> {
    let len = range.end - range.start;
    let permit = reserve(budget, len).await?;
    let bytes = adaptive
        .run(driver, len, driver.get_bytes(key, range))
        .await?;
    Ok(Chunk {
        bytes,
        _permit: Some(permit),
    })
}

/// `bytes` of download memory from `budget`, waited for until they are free.
async fn reserve(budget: &Budget, bytes: u64) -> storage::Result<Permit> {
    budget
        .acquire(bytes)
        .await
        .map_err(|e| storage::Error::io("waiting for download memory", e))
}

/// Where [`to_file`] writes: the file, and the object's [`first_range`] when it was already
/// read.
#[derive(Debug)]
pub struct InPlace {
    pub file: Arc<LocalFile>,
    pub first: Option<Chunk>,
}

/// Reads the whole object `key` (whose head is `meta`) into `target.file` with positioned
/// writes: each range is written where it belongs as soon as it arrives, in any order, and its
/// budget share is paid back once it is on disk. A slow range then holds only its own share,
/// where ordered delivery makes every range behind it wait and fills the budget with finished
/// ranges instead of requests (on the benchmark link: 340 MiB/s of 400 with 16 ranges in
/// flight, ordered). Checked against the object's CRC32C, combined from the ranges' own;
/// `written` is told each range's size once it is written.
pub async fn to_file(
    driver: Arc<dyn Driver>,
    key: &str,
    meta: &ObjectMeta,
    cfg: &TransferConfig,
    budget: &Budget,
    target: InPlace,
    written: impl Fn(u64),
) -> Result<()> {
    let InPlace { file, first } = target;
    let mut whole = InOrderCrc::default();
    let mut plan = ranges(0..meta.size, cfg.download_chunk).enumerate();
    if let Some(first) = first {
        let (index, range) = plan.next().unwrap_or((0, 0..0));
        let len = range.end - range.start;
        whole.add(index, write_range(&file, first, range.start).await?, len);
        written(len);
    }
    let adaptive = Adaptive::for_config(cfg);
    let mut arrivals = futures::stream::iter(plan)
        .map(|(index, range)| {
            let (driver, adaptive, file) = (&driver, &adaptive, &file);
            async move {
                let (offset, len) = (range.start, range.end - range.start);
                let chunk = fetch_range(&**driver, key, range, budget, adaptive).await?;
                let crc = write_range(file, chunk, offset).await?;
                Ok::<_, super::Error>((index, crc, len))
            }
        })
        .buffer_unordered(adaptive.ceiling());
    while let Some((index, crc, len)) = arrivals.try_next().await? {
        written(len);
        whole.add(index, crc, len);
    }
    match meta.crc32c {
        Some(expected) if whole.crc != expected => {
            let object = format!("{}/{key}", driver.describe());
            Err(corrupt(&object, whole.crc, expected).into())
        }
        _ => Ok(()),
    }
}

/// Writes one range's `chunk` at `offset` of `file` on a blocking thread; its CRC32C.
async fn write_range(file: &Arc<LocalFile>, chunk: Chunk, offset: u64) -> Result<u32> {
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || {
        let crc = crc32c::crc32c(&chunk.bytes);
        // The chunk, and its budget share, go once it is written.
        let done = file.write_at(&chunk.bytes, offset).map(|()| crc);
        done.map_err(|e| super::Error::io(format!("writing {}", file.path().display()), e))
    })
    .await
    .map_err(|e| super::Error::io("writing a download", io::Error::other(e)))?
}

/// The CRC32C of a whole object from its ranges' CRCs, which arrive in any order: a range
/// ahead of the next one in order waits here (at most the ranges in flight).
#[derive(Debug, Default)]
struct InOrderCrc {
    crc: u32,
    next: usize,
    waiting: BTreeMap<usize, (u32, u64)>,
}

impl InOrderCrc {
    fn add(&mut self, index: usize, crc: u32, len: u64) {
        self.waiting.insert(index, (crc, len));
        while let Some((crc, len)) = self.waiting.remove(&self.next) {
            self.crc = crc32c::crc32c_combine(self.crc, crc, len as usize);
            self.next += 1;
        }
    }
}

/// The typed, transient error of an object whose bytes do not match its recorded CRC32C.
fn corrupt(object: &str, crc: u32, expected: u32) -> storage::Error {
    storage::Error::backend(
        "verify",
        storage::ErrorKind::Integrity,
        format!(
            "{object} is corrupt: its bytes have CRC32C {crc:08x}, the object records {expected:08x}"
        ),
    )
}

/// Checks the bytes against the object's recorded whole-object CRC32C, when it has one. The
/// check is made when the last of the object's `size` bytes arrives, and a mismatch is sent
/// instead of that last chunk: a consumer never sees the whole of a corrupt object, so a gzip
/// stream cannot finish (and complain about its own checksum) before this typed, transient
/// [`storage::ErrorKind::Integrity`] error arrives.
fn verified(stream: ChunkStream, expected: Option<u32>, size: u64, object: String) -> ChunkStream {
    let Some(expected) = expected else {
        return stream;
    };
    let mismatch = move |crc: u32| corrupt(&object, crc, expected);
    futures::stream::unfold(Some((stream, 0u32, 0u64)), move |state| {
        let mismatch = mismatch.clone();
        async move {
            let (mut stream, crc, got) = state?;
            match stream.next().await {
                Some(Ok(chunk)) => {
                    let crc = crc32c::crc32c_append(crc, &chunk.bytes);
                    let got = got + chunk.bytes.len() as u64;
                    if got >= size && crc != expected {
                        return Some((Err(mismatch(crc)), None));
                    }
                    Some((Ok(chunk), Some((stream, crc, got))))
                }
                Some(Err(e)) => Some((Err(e), None)),
                None if crc == expected => None,
                None => Some((Err(mismatch(crc)), None)),
            }
        }
    })
    .boxed()
}

/// A `Read` over a byte stream, for the blocking unpackers. The stream is pumped by a task on
/// the runtime; a stream error surfaces as an `io::Error` carrying the storage error.
pub struct BlockingReader {
    rx: mpsc::Receiver<storage::Result<Chunk>>,
    current: Chunk,
    failed: bool,
}

impl std::fmt::Debug for BlockingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingReader").finish_non_exhaustive()
    }
}

impl BlockingReader {
    /// Must be called inside the runtime; read from a blocking thread.
    pub fn new(mut stream: ChunkStream) -> Self {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(
            async move {
                while let Some(item) = stream.next().await {
                    let stop = item.is_err();
                    if tx.send(item).await.is_err() || stop {
                        break;
                    }
                }
            }
            // Retries of ranged reads happen here: keep the caller's artifact span.
            .in_current_span(),
        );
        Self {
            rx,
            current: Chunk::unbudgeted(Bytes::new()),
            failed: false,
        }
    }
}

impl BufRead for BlockingReader {
    /// The rest of the current chunk, whole: a consumer that writes what it is given (a file,
    /// [`super::local_file::copy_into`]) writes each downloaded chunk in one call.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.current.bytes.is_empty() {
            if self.failed {
                return Err(io::Error::other("the download failed"));
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    self.failed = true;
                    return Err(io::Error::other(e));
                }
                None => return Ok(&[]),
            }
        }
        Ok(&self.current.bytes)
    }

    fn consume(&mut self, n: usize) {
        self.current.bytes.advance(n);
    }
}

impl Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The storage error inside an `io::Error` made by [`BlockingReader`], if that is what it is.
pub fn storage_cause(e: &io::Error) -> Option<&storage::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<storage::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_object_exactly() {
        let plan = |r: Range<u64>, chunk| ranges(r, chunk).collect::<Vec<_>>();
        assert_eq!(plan(0..10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(plan(0..8, 4), vec![0..4, 4..8]);
        assert_eq!(plan(3..10, 4), vec![3..7, 7..10]);
        assert!(plan(0..0, 4).is_empty());
        // A 5 TiB plan is made as it is read: the millionth range without a million before it.
        let tib = 5u64 << 40;
        assert_eq!(
            ranges(0..tib, 4 << 20).nth(1_000_000),
            Some(1_000_000 * (4 << 20)..1_000_001 * (4 << 20))
        );
    }

    #[test]
    fn range_crcs_in_any_order_combine_to_the_whole_objects() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let plan: Vec<_> = ranges(0..data.len() as u64, 3_000).collect();
        let mut whole = InOrderCrc::default();
        for i in [2, 0, 3, 1] {
            let r = plan[i].clone();
            whole.add(
                i,
                crc32c::crc32c(&data[r.start as usize..r.end as usize]),
                r.end - r.start,
            );
        }
        assert_eq!(whole.crc, crc32c::crc32c(&data));
        assert!(whole.waiting.is_empty());
    }

    async fn through_the_check(expected: u32) -> Vec<storage::Result<Bytes>> {
        let parts = ["ab", "cd"].map(|p| Ok(Bytes::from_static(p.as_bytes())));
        let stream = chunks(futures::stream::iter(parts).boxed());
        verified(stream, Some(expected), 4, "s3://b/k".into())
            .map(|r| r.map(|c| c.bytes))
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_corrupt_object_never_delivers_its_last_chunk() {
        let good = crc32c::crc32c(b"abcd");
        let out = through_the_check(good).await;
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(Result::is_ok));

        let out = through_the_check(good ^ 1).await;
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().expect("first chunk"), "ab");
        let e = out[1]
            .as_ref()
            .expect_err("the check fails instead of the last chunk");
        assert_eq!(e.kind(), Some(storage::ErrorKind::Integrity));
    }
}
