//! The download pipeline: concurrent ranged reads, delivered in order, into a blocking reader.
//!
//! ```text
//! Driver --get_bytes(range) x N in flight--> ordered stream --channel--> BlockingReader --> unpack / file
//! ```
//! Each range is fetched (and retried) as one unit by the driver stack. Every chunk is paid for
//! from a [`Budget`] before it is fetched and paid back once the reader has consumed it, so
//! memory is bounded whatever the object size or the number of concurrent downloads.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use super::Result;
use super::budget::{Budget, Permit};
use super::config::TransferConfig;
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
        if self._permit.is_none() {
            return self.bytes;
        }
        Bytes::from_owner(self)
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

/// Ranges of `chunk` bytes covering `0..size`.
pub fn ranges(size: u64, chunk: u64) -> Vec<Range<u64>> {
    let chunk = chunk.max(1);
    (0..size.div_ceil(chunk))
        .map(|i| i * chunk..((i + 1) * chunk).min(size))
        .collect()
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
    let described = format!("{}/{key}", driver.describe());
    let body = read_range(driver, key, meta.size, 0..meta.size, cfg, budget).await?;
    Ok(verified(body, meta.crc32c, described))
}

/// The bytes `range` of `key` (an object of `size` bytes, from a head), in order: one read
/// when the range is at most one chunk, else `cfg.concurrency` ranged reads in flight, each
/// paid for from `budget`. Not checked against the whole-object CRC (a part cannot be).
pub async fn read_range(
    driver: Arc<dyn Driver>,
    key: &str,
    size: u64,
    range: Range<u64>,
    cfg: &TransferConfig,
    budget: &Budget,
) -> Result<ChunkStream> {
    let len = range.end.saturating_sub(range.start);
    if len <= cfg.download_chunk || cfg.concurrency <= 1 || !driver.serves_ranges(key) {
        let whole = range.start == 0 && range.end >= size;
        let stream = driver.get(key, (!whole).then_some(range)).await?;
        return Ok(chunks(stream.body));
    }
    let key = key.to_string();
    let budget = budget.clone();
    let offset = range.start;
    let body = futures::stream::iter(ranges(len, cfg.download_chunk))
        .map(move |r| {
            let driver = Arc::clone(&driver);
            let key = key.clone();
            let budget = budget.clone();
            let r = r.start + offset..r.end + offset;
            async move {
                let permit = budget
                    .acquire(r.end - r.start)
                    .await
                    .map_err(|e| storage::Error::io("waiting for download memory", e))?;
                let bytes = driver.get_bytes(&key, r).await?;
                Ok(Chunk {
                    bytes,
                    _permit: Some(permit),
                })
            }
        })
        .buffered(cfg.concurrency)
        .boxed();
    Ok(body)
}

/// Checks the bytes against the object's recorded whole-object CRC32C, when it has one: a
/// mismatch is an error at the end of the stream, so nothing built from it is kept.
fn verified(stream: ChunkStream, expected: Option<u32>, object: String) -> ChunkStream {
    let Some(expected) = expected else {
        return stream;
    };
    futures::stream::unfold(Some((stream, 0u32)), move |state| {
        let object = object.clone();
        async move {
            let (mut stream, crc) = state?;
            match stream.next().await {
                Some(Ok(chunk)) => {
                    let crc = crc32c::crc32c_append(crc, &chunk.bytes);
                    Some((Ok(chunk), Some((stream, crc))))
                }
                Some(Err(e)) => Some((Err(e), None)),
                None if crc == expected => None,
                None => Some((
                    Err(storage::Error::backend(
                        "verify",
                        storage::ErrorKind::Integrity,
                        format!(
                            "{object} is corrupt: its bytes have CRC32C {crc:08x}, the object records {expected:08x}"
                        ),
                    )),
                    None,
                )),
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
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        Self {
            rx,
            current: Chunk::unbudgeted(Bytes::new()),
            failed: false,
        }
    }
}

impl Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
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
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.bytes.len());
        buf[..n].copy_from_slice(&self.current.bytes[..n]);
        self.current.bytes.advance(n);
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
        assert_eq!(ranges(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(ranges(8, 4), vec![0..4, 4..8]);
        assert!(ranges(0, 4).is_empty());
    }
}
