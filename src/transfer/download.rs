//! The download pipeline: concurrent ranged reads, delivered in order, into a blocking reader.
//!
//! ```text
//! Driver --get_bytes(range) x N in flight--> ordered stream --channel--> BlockingReader --> unpack / file
//! ```
//! Each range is fetched (and retried) as one unit by the driver stack. At most `concurrency`
//! ranges are held in memory while they wait their turn, plus one in the channel.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use super::Result;
use super::config::TransferConfig;
use crate::storage::{self, Driver, ObjectMeta};

/// Ranges of `chunk` bytes covering `0..size`.
pub fn ranges(size: u64, chunk: u64) -> Vec<Range<u64>> {
    let chunk = chunk.max(1);
    (0..size.div_ceil(chunk))
        .map(|i| i * chunk..((i + 1) * chunk).min(size))
        .collect()
}

/// Opens `key` for reading: its metadata and its bytes in order.
pub async fn open(
    driver: Arc<dyn Driver>,
    key: &str,
    cfg: &TransferConfig,
) -> Result<(ObjectMeta, BoxStream<'static, storage::Result<Bytes>>)> {
    let meta = driver.head(key).await?;
    if meta.size <= cfg.download_chunk || cfg.concurrency <= 1 || !driver.serves_ranges(key) {
        let stream = driver.get(key, None).await?;
        return Ok((meta, stream.body));
    }
    let key = key.to_string();
    let body = futures::stream::iter(ranges(meta.size, cfg.download_chunk))
        .map(move |r| {
            let driver = Arc::clone(&driver);
            let key = key.clone();
            async move { driver.get_bytes(&key, r).await }
        })
        .buffered(cfg.concurrency)
        .boxed();
    Ok((meta, body))
}

/// A `Read` over a byte stream, for the blocking unpackers. The stream is pumped by a task on
/// the runtime; a stream error surfaces as an `io::Error` carrying the storage error.
pub struct BlockingReader {
    rx: mpsc::Receiver<storage::Result<Bytes>>,
    current: Bytes,
    failed: bool,
}

impl std::fmt::Debug for BlockingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingReader").finish_non_exhaustive()
    }
}

impl BlockingReader {
    /// Must be called inside the runtime; read from a blocking thread.
    pub fn new(mut stream: BoxStream<'static, storage::Result<Bytes>>) -> Self {
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
            current: Bytes::new(),
            failed: false,
        }
    }
}

impl Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
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
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
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
