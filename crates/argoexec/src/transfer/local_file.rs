//! Downloaded files written to local disk front to back, past the page cache where the
//! filesystem allows it.
//!
//! Writing a multi-GiB artifact through the page cache costs the kernel a fresh page and a copy
//! for every 4 KiB: on the benchmark VM, 1.5-4 CPU-seconds per GiB, the largest single cost of a
//! download, paid on the cores the transfer needs. Those pages are also charged to the
//! container's memory cgroup, where a small pod's writes stall on dirty-page throttling. The
//! download engine's chunks are page-aligned mappings read at chunk-aligned offsets, so nearly
//! every byte can go with `O_DIRECT`: straight from the chunk to the device. What is not aligned
//! (a sniffed prefix, the tail of the object) goes through the page cache on a second descriptor
//! of the same file; the two never write the same page. A filesystem that refuses `O_DIRECT`,
//! at open or at the first write, gets plain writes.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, fallocate};

/// The alignment `O_DIRECT` asks of offsets, lengths and memory: a page, which covers the
/// logical block size of every common device (512 B or 4 KiB).
const ALIGN: u64 = 4096;

/// A new file, written at any offsets (positioned writes, safe from several threads at once).
#[derive(Debug)]
pub struct LocalFile {
    path: PathBuf,
    cached: File,
    direct: Option<File>,
    /// Set when the filesystem refused a direct write: plain writes from then on.
    direct_refused: AtomicBool,
    direct_bytes: AtomicU64,
}

impl LocalFile {
    /// Creates (or truncates) `path`. With `direct`, aligned blocks bypass the page cache; with
    /// a known `size`, the space is reserved first, so a full disk is found before any byte is
    /// fetched (the file's length still grows only as bytes are written).
    pub fn create(path: &Path, size: Option<u64>, direct: bool) -> io::Result<Self> {
        let cached = File::create(path)?;
        let direct = direct
            .then(|| {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(nix::libc::O_DIRECT)
                    .open(path)
                    .ok()
            })
            .flatten();
        if let Some(size) = size.filter(|&s| s > 0) {
            reserve(&cached, size)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            cached,
            direct,
            direct_refused: AtomicBool::new(false),
            direct_bytes: AtomicU64::new(0),
        })
    }

    /// Writes `buf` at `offset`: its page-aligned middle with `O_DIRECT` when the memory and
    /// the offset are aligned alike, the rest through the page cache. Writes of different
    /// calls must not overlap (a download's ranges never do).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let misalign = |x: u64| x % ALIGN;
        let direct = self
            .direct
            .as_ref()
            .filter(|_| !self.direct_refused.load(Ordering::Relaxed));
        let (head, middle) = match direct {
            Some(_) if misalign(buf.as_ptr() as u64) == misalign(offset) => {
                let head = ((ALIGN - misalign(offset)) % ALIGN).min(buf.len() as u64) as usize;
                let middle = (buf.len() - head) as u64 / ALIGN * ALIGN;
                (head, middle as usize)
            }
            _ => (buf.len(), 0),
        };
        let (head_bytes, rest) = buf.split_at(head);
        let (middle_bytes, tail) = rest.split_at(middle);
        self.cached.write_all_at(head_bytes, offset)?;
        let middle_at = offset + head as u64;
        match direct {
            Some(file) if middle > 0 => self.write_direct(file, middle_bytes, middle_at)?,
            _ => {}
        }
        self.cached.write_all_at(tail, middle_at + middle as u64)
    }

    /// Where the file is (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes that went past the page cache (for tests and logs).
    pub fn direct_bytes(&self) -> u64 {
        self.direct_bytes.load(Ordering::Relaxed)
    }

    fn write_direct(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        match file.write_all_at(buf, offset) {
            Ok(()) => {
                self.direct_bytes
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            // The device wants a larger alignment, or the filesystem takes the flag at open
            // but not at write: plain writes from here on. Nothing of this block was written
            // (an unaligned direct write is refused whole).
            Err(e) if e.raw_os_error() == Some(Errno::EINVAL as i32) => {
                if !self.direct_refused.swap(true, Ordering::Relaxed) {
                    tracing::debug!(error = %e, "O_DIRECT refused, writing through the page cache");
                }
                self.cached.write_all_at(buf, offset)
            }
            Err(e) => Err(e),
        }
    }
}

/// Reserves `size` bytes for `file` without changing its length. Filesystems that cannot
/// reserve are left to allocate as bytes arrive.
fn reserve(file: &File, size: u64) -> io::Result<()> {
    let len = i64::try_from(size).unwrap_or(i64::MAX);
    match fallocate(file, FallocateFlags::FALLOC_FL_KEEP_SIZE, 0, len) {
        Ok(()) | Err(Errno::EOPNOTSUPP | Errno::ENOSYS | Errno::EINVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Copies all of `src` into `file` from its start, one buffered block per write (no
/// intermediate buffer, so a download's whole chunk is one write). Returns the bytes copied.
pub fn copy_into(mut src: impl BufRead, file: &LocalFile) -> io::Result<u64> {
    let mut copied = 0;
    loop {
        let block = src.fill_buf()?;
        if block.is_empty() {
            return Ok(copied);
        }
        let len = block.len();
        file.write_at(block, copied)?;
        src.consume(len);
        copied += len as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An anonymous mapping: page-aligned memory, as the download engine's chunks are.
    fn aligned(len: usize, seed: u8) -> memmap2::MmapMut {
        let mut map = memmap2::MmapMut::map_anon(len).expect("mapping");
        for (i, b) in map.iter_mut().enumerate() {
            *b = seed.wrapping_add((i % 251) as u8);
        }
        map
    }

    #[test]
    fn every_split_of_aligned_and_unaligned_writes_lands_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let block = aligned(3 * ALIGN as usize + 100, 7);
        let prefix: Vec<u8> = (0..777u32).map(|i| i as u8).collect();
        // A sniffed prefix from ordinary memory, then the rest of an aligned chunk from where
        // the prefix ended (the shape of an auto-detected download), then whole chunks, then
        // a chunk that starts misaligned relative to the file.
        let file = LocalFile::create(&path, Some(20_000), true).expect("create");
        let mut expected = Vec::new();
        for piece in [
            &prefix[..],
            &block[prefix.len()..],
            &block[..],
            &block[5..],
            &block[..ALIGN as usize],
        ] {
            file.write_at(piece, expected.len() as u64).expect("write");
            expected.extend_from_slice(piece);
        }
        drop(file);
        assert_eq!(std::fs::read(&path).expect("read back"), expected);
    }

    #[test]
    fn aligned_chunks_bypass_the_page_cache_where_the_filesystem_allows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let chunk = aligned(4 * ALIGN as usize, 1);
        let file = LocalFile::create(&path, None, true).expect("create");
        let direct = file.direct.is_some();
        // Out of order, as a download's ranges arrive: the tail first.
        file.write_at(&chunk[..10], chunk.len() as u64)
            .expect("write the tail");
        file.write_at(&chunk, 0).expect("write");
        // Where O_DIRECT opens (ext4, xfs, tmpfs since Linux 6.6), the whole chunk goes
        // direct; where it does not, everything is still written.
        assert_eq!(
            file.direct_bytes(),
            if direct { chunk.len() as u64 } else { 0 }
        );
        drop(file);
        let written = std::fs::read(&path).expect("read back");
        assert_eq!(written.len(), chunk.len() + 10);
        assert_eq!(&written[..chunk.len()], &chunk[..]);

        let plain = LocalFile::create(&path, None, false).expect("create");
        plain.write_at(&chunk, 0).expect("write");
        assert_eq!(plain.direct_bytes(), 0);
    }

    #[test]
    fn copy_into_writes_each_block_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data = aligned(2 * ALIGN as usize, 3);
        let file = LocalFile::create(&path, Some(data.len() as u64), true).expect("create");
        let copied = copy_into(&data[..], &file).expect("copy");
        assert_eq!(copied, data.len() as u64);
        drop(file);
        assert_eq!(std::fs::read(&path).expect("read back"), &data[..]);
    }
}
