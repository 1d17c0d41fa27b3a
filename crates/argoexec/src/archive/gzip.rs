//! Parallel gzip (pigz-style): one valid gzip stream, compressed on every core.
//!
//! The input is cut into fixed-size blocks. Each block is deflated on a worker thread as a raw
//! deflate segment primed with the previous block's last 32 KiB (so the ratio stays close to a
//! single-threaded gzip) and ended with a sync flush, so segments concatenate into one deflate
//! stream. CRC-32s are combined in order. Output is deterministic for a given input, level and
//! block size, which is what lets an interrupted upload be resumed by regenerating the stream.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input bytes per block. Larger blocks lose less ratio at block edges; 256 KiB keeps the
/// per-block overhead (5 bytes of sync marker) and the memory (blocks in flight) small.
pub const DEFAULT_BLOCK_SIZE: usize = 256 * 1024;
const DICT_SIZE: usize = 32 * 1024;

/// gzip's default level, used when an archive strategy gives none (Go's `-1`).
pub const DEFAULT_LEVEL: u32 = 6;

/// Go's gzip header (10 bytes) and the CRC-32 and length trailer (8 bytes).
const HEADER_AND_TRAILER: u64 = 18;

/// The longest raw deflate segment a block of `len` input bytes can become at `level`, with
/// the sync-flush marker that ends it. zlib-rs (a zlib-ng port) compresses level 1 with
/// fixed-Huffman blocks only, literals of up to 9 bits: at most `len/8` more. Other levels
/// store a block (at most 16 K literals, 5 bytes of header) when compressing does not pay:
/// zlib's `len/4096 + len/16384`. The output buffer is sized to it, so a segment is one
/// allocation that never grows.
fn segment_bound(len: usize, level: u32) -> usize {
    const BLOCK_ENDS_AND_SYNC_MARKER: usize = 32;
    let overhead = match level {
        1 => (len >> 3) + (len >> 12),
        _ => (len >> 12) + (len >> 14) + (len >> 25),
    };
    len + overhead + BLOCK_ENDS_AND_SYNC_MARKER
}

/// The longest gzip stream `len` input bytes become through a [`ParallelGzWriter`] with
/// blocks of `block_size` at `level`: what an upload of a tar.gz plans its parts for.
pub fn max_len(len: u64, block_size: usize, level: u32) -> u64 {
    let block = block_size.max(DICT_SIZE);
    let full_blocks = len / block as u64;
    // The last block is always submitted, empty when the input ends on a block boundary.
    let last = (len % block as u64) as usize;
    HEADER_AND_TRAILER
        + full_blocks * segment_bound(block, level) as u64
        + segment_bound(last, level) as u64
}

/// Bytes a [`ParallelGzWriter`] with `threads` workers and the default block size holds at
/// most: the block being filled and the previous block's tail, and for every block in the
/// pipeline its input, its dictionary and its output. An upload pays this from the budget.
pub fn pipeline_bytes(threads: usize) -> u64 {
    let block = DEFAULT_BLOCK_SIZE;
    let in_pipeline = max_pending(threads) + 1;
    let per_block = block + DICT_SIZE + segment_bound(block, 1);
    (block + DICT_SIZE + in_pipeline * per_block) as u64
}

/// Blocks submitted and not yet written out, at most: two per worker keep every worker busy
/// while the oldest is written.
fn max_pending(threads: usize) -> usize {
    threads.max(1) * 2
}

/// Maps Argo's `compressionLevel` (absent or -1 = default, 0 = stored, 1..9) to a level.
pub fn level_from_argo(level: Option<i32>) -> u32 {
    match level {
        Some(l) if (0..=9).contains(&l) => l as u32,
        _ => DEFAULT_LEVEL,
    }
}

struct Job {
    input: Vec<u8>,
    dictionary: Vec<u8>,
    last: bool,
    /// An empty buffer to deflate into: a spent one when there is one.
    output: Vec<u8>,
    reply: SyncSender<io::Result<Segment>>,
}

struct Segment {
    deflated: Vec<u8>,
    crc: crc32fast::Hasher,
    /// The block's input, handed back to be filled again.
    input: Vec<u8>,
}

/// A gzip writer that compresses blocks on worker threads and writes them in order.
pub struct ParallelGzWriter<W: Write> {
    inner: Option<W>,
    level: u32,
    block_size: usize,
    block: Vec<u8>,
    dictionary: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    pending: VecDeque<Receiver<io::Result<Segment>>>,
    max_pending: usize,
    /// Spent input and output buffers, filled again rather than allocated: above glibc's
    /// mmap threshold each fresh one costs page faults and an munmap. Never more than the
    /// pipeline held at once, so [`pipeline_bytes`] still bounds them.
    spare_inputs: Vec<Vec<u8>>,
    spare_outputs: Vec<Vec<u8>>,
    crc: crc32fast::Hasher,
    total_in: u64,
}

impl<W: Write> std::fmt::Debug for ParallelGzWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelGzWriter")
            .field("level", &self.level)
            .field("threads", &self.workers.len())
            .field("total_in", &self.total_in)
            .finish()
    }
}

/// Worker threads to use: every core, at most 16.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16)
}

impl<W: Write> ParallelGzWriter<W> {
    /// A writer at `level` (0-9) with `threads` workers and the default block size.
    pub fn new(inner: W, level: u32, threads: usize) -> io::Result<Self> {
        Self::with_block_size(inner, level, threads, DEFAULT_BLOCK_SIZE)
    }

    pub fn with_block_size(
        mut inner: W,
        level: u32,
        threads: usize,
        block_size: usize,
    ) -> io::Result<Self> {
        let threads = threads.max(1);
        // Go's gzip header: no name, no mtime, OS "unknown".
        let xfl = match level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff])?;
        let (tx, rx) = sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|i| {
                let rx = Arc::clone(&rx);
                std::thread::Builder::new()
                    .name(format!("gzip-{i}"))
                    .spawn(move || worker(rx, level))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            inner: Some(inner),
            level,
            block_size: block_size.max(DICT_SIZE),
            block: Vec::with_capacity(block_size),
            dictionary: Vec::new(),
            jobs: Some(tx),
            workers,
            pending: VecDeque::new(),
            max_pending: max_pending(threads),
            spare_inputs: Vec::new(),
            spare_outputs: Vec::new(),
            crc: crc32fast::Hasher::new(),
            total_in: 0,
        })
    }

    /// Uncompressed bytes written so far.
    pub fn total_in(&self) -> u64 {
        self.total_in
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let next = self
            .spare_inputs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.block_size));
        let input = std::mem::replace(&mut self.block, next);
        let dictionary = std::mem::take(&mut self.dictionary);
        let output = self.spare_outputs.pop().unwrap_or_default();
        if !last {
            self.dictionary = input[input.len().saturating_sub(DICT_SIZE)..].to_vec();
        }
        let (reply, rx) = sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or_else(closed)?;
        jobs.send(Job {
            input,
            dictionary,
            last,
            output,
            reply,
        })
        .map_err(|_| closed())?;
        self.pending.push_back(rx);
        while self.pending.len() > self.max_pending {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let Segment {
            mut deflated,
            crc,
            mut input,
        } = rx.recv().map_err(|_| closed())??;
        self.crc.combine(&crc);
        self.inner
            .as_mut()
            .ok_or_else(closed)?
            .write_all(&deflated)?;
        deflated.clear();
        input.clear();
        self.spare_outputs.push(deflated);
        self.spare_inputs.push(input);
        Ok(())
    }

    /// Compresses what is left, writes the gzip trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
        let mut inner = self.inner.take().ok_or_else(closed)?;
        inner.write_all(&crc.to_le_bytes())?;
        inner.write_all(&(self.total_in as u32).to_le_bytes())?;
        inner.flush()?;
        Ok(inner)
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.block_size - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        self.total_in += n as u64;
        if self.block.len() == self.block_size {
            self.submit(false)?;
        }
        Ok(n)
    }

    /// Flushing mid-stream is a no-op: blocks are cut by size so the output stays deterministic.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGzWriter<W> {
    fn drop(&mut self) {
        self.jobs.take();
        self.pending.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn closed() -> io::Error {
    io::Error::other("gzip worker pool stopped")
}

/// Takes jobs until the writer is gone. Each block gets a fresh compressor: zlib-rs's
/// `reset` does not give a fresh one's output at every level (1, 2, 7 and 8 differ, zlib-rs
/// 0.6.8), and a segment that depended on the blocks its worker compressed before would make the
/// stream depend on which worker took which block, which resuming an upload cannot allow.
fn worker(jobs: Arc<Mutex<Receiver<Job>>>, level: u32) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let result = deflate_segment(level, &job.input, &job.dictionary, job.last, job.output).map(
            |(deflated, crc)| Segment {
                deflated,
                crc,
                input: job.input,
            },
        );
        let _ = job.reply.send(result);
    }
}

/// Deflates `input` at `level` into `out` (empty, maybe with capacity): the segment and the
/// input's CRC-32.
fn deflate_segment(
    level: u32,
    input: &[u8],
    dictionary: &[u8],
    last: bool,
    mut out: Vec<u8>,
) -> io::Result<(Vec<u8>, crc32fast::Hasher)> {
    let mut c = Compress::new(Compression::new(level), false);
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    out.reserve(segment_bound(input.len(), level));
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(input.len() / 4 + 4096);
        }
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == input.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is consumed and output had room left.
            Status::Ok | Status::BufError if !last && done_input && out.len() < out.capacity() => {
                break;
            }
            _ => {}
        }
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(input);
    Ok((out, crc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 7 == 0 {
                    (x >> 24) as u8
                } else {
                    b"argo"[i % 4]
                }
            })
            .collect()
    }

    #[test]
    fn round_trips_through_a_standard_decoder_at_every_level() {
        let data = sample(1_000_000);
        for level in [0, 1, 6, 9] {
            let mut w =
                ParallelGzWriter::with_block_size(Vec::new(), level, 3, 64 * 1024).expect("writer");
            for chunk in data.chunks(10_007) {
                w.write_all(chunk).expect("write");
            }
            let gz = w.finish().expect("finish");
            assert_eq!(gunzip(&gz), data, "level {level}");
        }
    }

    #[test]
    fn empty_and_block_aligned_inputs_are_valid() {
        for len in [0, 64 * 1024, 128 * 1024] {
            let data = sample(len);
            let mut w =
                ParallelGzWriter::with_block_size(Vec::new(), 6, 2, 64 * 1024).expect("writer");
            w.write_all(&data).expect("write");
            assert_eq!(gunzip(&w.finish().expect("finish")), data, "len {len}");
        }
    }

    #[test]
    fn output_is_deterministic_whatever_the_thread_count() {
        let data = sample(700_000);
        let run = |threads| {
            let mut w = ParallelGzWriter::with_block_size(Vec::new(), 6, threads, 64 * 1024)
                .expect("writer");
            w.write_all(&data).expect("write");
            w.finish().expect("finish")
        };
        assert_eq!(run(1), run(4));
    }

    /// Resume regenerates a stream and must get the same bytes: each segment is what a fresh
    /// compressor makes of its block and the previous block's tail, whatever buffers it was
    /// written into before.
    #[test]
    fn every_segment_is_what_a_fresh_compressor_makes_of_its_block() {
        let block = 64 * 1024;
        // Compressible, then incompressible, then compressible again, ending mid-block.
        let data = [sample(300_000), noise(200_000), sample(150_000)].concat();
        for level in 0..=9 {
            let mut w =
                ParallelGzWriter::with_block_size(Vec::new(), level, 1, block).expect("writer");
            w.write_all(&data).expect("write");
            let gz = w.finish().expect("finish");
            let mut fresh = Vec::new();
            let mut dictionary: &[u8] = &[];
            let blocks: Vec<&[u8]> = data.chunks(block).collect();
            for (i, input) in blocks.iter().enumerate() {
                let last = i + 1 == blocks.len();
                let (segment, _) =
                    deflate_segment(level, input, dictionary, last, Vec::new()).expect("segment");
                fresh.extend_from_slice(&segment);
                dictionary = &input[input.len().saturating_sub(DICT_SIZE)..];
            }
            assert!(
                gz[10..gz.len() - 8] == fresh[..],
                "level {level}: the deflate stream differs"
            );
        }
    }

    #[test]
    fn incompressible_input_stays_within_the_bound_at_every_level() {
        let block = 64 * 1024;
        for len in [0, 1, 5000, block, 3 * block + 17, 10 * block] {
            // Random bytes, and random bytes whose fixed-Huffman codes are all 9 bits long.
            let nine_bits: Vec<u8> = noise(len).iter().map(|b| 144 + b % 112).collect();
            for (data, level) in [noise(len), nine_bits]
                .iter()
                .flat_map(|d| (0..=9).map(move |level| (d, level)))
            {
                let mut w =
                    ParallelGzWriter::with_block_size(Vec::new(), level, 2, block).expect("writer");
                w.write_all(data).expect("write");
                let gz = w.finish().expect("finish");
                let bound = max_len(len as u64, block, level);
                assert!(
                    gz.len() as u64 <= bound,
                    "level {level}, {len} bytes: {} > {bound}",
                    gz.len()
                );
                let slack = if level == 1 { len / 7 } else { len / 1000 };
                assert!(bound <= (len + slack) as u64 + 1024, "{bound}");
            }
        }
    }

    /// Bytes no compressor can shrink.
    pub(super) fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn level_mapping_follows_argo() {
        assert_eq!(level_from_argo(None), 6);
        assert_eq!(level_from_argo(Some(-1)), 6);
        assert_eq!(level_from_argo(Some(0)), 0);
        assert_eq!(level_from_argo(Some(9)), 9);
    }
}
