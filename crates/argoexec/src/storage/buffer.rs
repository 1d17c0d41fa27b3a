//! Transfer buffers that give their memory back to the OS when dropped.
//!
//! Parts and download chunks are several MiB each and are allocated and freed continuously.
//! glibc's malloc answers that pattern by raising its mmap threshold after the first large free
//! and keeping freed multi-MiB blocks in per-thread arenas: the 2 GiB download benchmark peaked
//! at 73 MB of RSS with a 24 MiB budget (mimalloc was worse: 112 MB). Buffers of 256 KiB and
//! more are therefore anonymous memory maps of their own, so the resident memory follows the
//! transfer budget exactly. Smaller ones stay on the heap.
//!
//! A fresh mapping costs a page fault and the kernel zeroing each of its pages, and its unmap a
//! TLB flush: a fifth of a download's CPU when every range had its own (`perf` of a tgz
//! download with 32 ranges of 1 MiB in flight: 16% in page faults, 3% in `munmap`). A freed
//! mapping is therefore kept as a spare for the next buffer of its size: up to 8 MiB of them
//! while any buffer is still in use (a download frees a burst of ranges, then asks for as
//! many), and one once none is. A new mapping is made only when no spare fits, after unmapping the
//! spares (other sizes, no longer asked for). Mapped memory in use or spare therefore never
//! exceeds the most ever in use at once, which the budget bounds.

use std::io;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use memmap2::MmapMut;

/// Buffers at least this large get their own mapping.
const MAP_THRESHOLD: usize = 256 * 1024;

/// The process's mappings: those kept for the next buffer of their size, and how many are in
/// use (see the module's doc).
struct Pool {
    spares: Vec<MmapMut>,
    in_use: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    spares: Vec::new(),
    in_use: 0,
});

/// Bytes of spares kept at most while buffers are in use (and always at least one): eight
/// download ranges of 1 MiB, one upload part. Each spare is resident where a fresh mapping
/// is only as resident as it is filled, so spares trade memory for page faults. Room for
/// every range in flight (34) cut a 4 GiB download's CPU through the cloud-like link by
/// 18-27% but raised its peak from 45-47 MiB to 55-62; 8 MiB cut a 1 GiB download's CPU on
/// loopback by 16% (tgz: 8%) for 2-5 MiB more (medians of six runs).
const MAX_SPARE_BYTES: usize = 8 << 20;

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // A poisoned lock only means a panic elsewhere; the spares are still whole mappings.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A mapping of `len` bytes, counted in use: a spare of that size, else a new one (the
/// spares, of other sizes, are unmapped first).
fn map_of(len: usize) -> io::Result<Map> {
    let other_sizes = {
        let mut pool = pool();
        if let Some(i) = pool.spares.iter().position(|m| m.len() == len) {
            let map = pool.spares.swap_remove(i);
            pool.in_use += 1;
            return Ok(Map(Some(map)));
        }
        std::mem::take(&mut pool.spares)
    };
    // Unmapped once the lock is released.
    drop(other_sizes);
    let map = MmapMut::map_anon(len)?;
    pool().in_use += 1;
    Ok(Map(Some(map)))
}

/// A mapping in use, which becomes a spare when dropped or is unmapped (see the module's doc).
pub struct Map(Option<MmapMut>);

impl Map {
    fn bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or_default()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        let Some(map) = self.0.take() else { return };
        let unmapped = {
            let mut pool = pool();
            pool.in_use -= 1;
            pool.spares.push(map);
            // The first spare always stays; the others while they fit the byte limit (sizes
            // may differ when uploads and downloads share the process).
            let limit = if pool.in_use == 0 { 0 } else { MAX_SPARE_BYTES };
            let mut bytes = 0;
            let kept = pool
                .spares
                .iter()
                .enumerate()
                .take_while(|(i, m)| {
                    bytes += m.len();
                    *i == 0 || bytes <= limit
                })
                .count();
            pool.spares.split_off(kept)
        };
        // Unmapped once the lock is released.
        drop(unmapped);
    }
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("len", &self.bytes().len())
            .finish()
    }
}

/// A fixed-capacity buffer being filled.
#[derive(Debug)]
pub enum Buffer {
    Heap(BytesMut),
    Mapped { map: Map, len: usize },
}

impl Default for Buffer {
    fn default() -> Self {
        Self::Heap(BytesMut::new())
    }
}

impl Buffer {
    pub fn with_capacity(capacity: usize) -> io::Result<Self> {
        if capacity < MAP_THRESHOLD {
            return Ok(Self::Heap(BytesMut::with_capacity(capacity)));
        }
        Ok(Self::Mapped {
            map: map_of(capacity)?,
            len: 0,
        })
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Heap(b) => b.len(),
            Self::Mapped { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room left before the capacity is reached.
    pub fn remaining(&self) -> usize {
        match self {
            Self::Heap(b) => b.capacity() - b.len(),
            Self::Mapped { map, len } => map.bytes().len() - *len,
        }
    }

    /// Appends as much of `data` as fits; returns how much did.
    pub fn fill(&mut self, data: &[u8]) -> usize {
        let n = self.remaining().min(data.len());
        match self {
            Self::Heap(b) => b.extend_from_slice(&data[..n]),
            Self::Mapped { map, len } => {
                map.bytes_mut()[*len..*len + n].copy_from_slice(&data[..n]);
                *len += n;
            }
        }
        n
    }

    /// The filled bytes, sharing (not copying) the buffer.
    pub fn freeze(self) -> Bytes {
        match self {
            Self::Heap(b) => b.freeze(),
            Self::Mapped { map, len } => Bytes::from_owner(Filled { map, len }),
        }
    }
}

/// A mapping and how much of it holds data.
struct Filled {
    map: Map,
    len: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.map.bytes()[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spares are the process's: tests that map buffers take turns.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn alone() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn small_and_mapped_buffers_fill_to_capacity_and_freeze() {
        let _alone = alone();
        for cap in [10, MAP_THRESHOLD, MAP_THRESHOLD * 3] {
            let mut b = Buffer::with_capacity(cap).expect("buffer");
            let data = vec![7u8; cap + 5];
            assert_eq!(b.fill(&data[..3]), 3);
            assert_eq!(b.fill(&data), cap - 3);
            assert_eq!(b.remaining(), 0);
            let frozen = b.freeze();
            assert_eq!(frozen.len(), cap);
            assert!(frozen.iter().all(|&x| x == 7));
        }
    }

    fn mapped_at(b: &Buffer) -> *const u8 {
        match b {
            Buffer::Mapped { map, .. } => map.bytes().as_ptr(),
            Buffer::Heap(_) => panic!("a heap buffer"),
        }
    }

    #[test]
    fn a_freed_mapping_serves_the_next_buffer_of_its_size_and_only_its_filled_bytes_show() {
        let _alone = alone();
        let cap = MAP_THRESHOLD * 2;
        let mut first = Buffer::with_capacity(cap).expect("buffer");
        first.fill(&vec![9u8; cap]);
        let at = mapped_at(&first);
        drop(first.freeze());
        let mut again = Buffer::with_capacity(cap).expect("buffer");
        assert_eq!(mapped_at(&again), at, "the spare is reused");
        again.fill(b"abc");
        assert_eq!(&again.freeze()[..], b"abc", "nothing of the last use shows");
        // A buffer of another size finds no spare: the spares go, and a new mapping is made.
        drop(Buffer::with_capacity(cap).expect("buffer"));
        assert_eq!(spares(), 1);
        let other = Buffer::with_capacity(cap * 2).expect("buffer");
        assert_eq!(spares(), 0, "spares of other sizes are unmapped");
        drop(other);
    }

    fn spares() -> usize {
        pool().spares.len()
    }

    #[test]
    fn a_burst_of_freed_buffers_serves_the_next_burst_and_one_is_kept_once_none_is_in_use() {
        let _alone = alone();
        let cap = MAP_THRESHOLD * 4;
        assert!(5 * cap <= MAX_SPARE_BYTES);
        let held = Buffer::with_capacity(cap).expect("buffer");
        let burst: Vec<Buffer> = (0..5)
            .map(|_| Buffer::with_capacity(cap).expect("buffer"))
            .collect();
        let mut freed: Vec<*const u8> = burst.iter().map(mapped_at).collect();
        drop(burst);
        assert_eq!(spares(), 5, "kept while a buffer is in use");
        let again: Vec<Buffer> = (0..5)
            .map(|_| Buffer::with_capacity(cap).expect("buffer"))
            .collect();
        let mut reused: Vec<*const u8> = again.iter().map(mapped_at).collect();
        freed.sort();
        reused.sort();
        assert_eq!(
            reused, freed,
            "the burst is served by the spares, none mapped anew"
        );
        drop(again);
        drop(held);
        assert_eq!(spares(), 1, "once none is in use, one spare is kept");
        // Spares are bounded in bytes while buffers are in use.
        let held = Buffer::with_capacity(cap).expect("buffer");
        let many = MAX_SPARE_BYTES / cap + 3;
        drop(
            (0..many)
                .map(|_| Buffer::with_capacity(cap).expect("buffer"))
                .collect::<Vec<_>>(),
        );
        assert_eq!(spares() * cap, MAX_SPARE_BYTES);
        // Also when sizes differ (uploads and downloads in one process): the limit is in bytes.
        let large: Vec<Buffer> = (0..MAX_SPARE_BYTES / (cap * 2))
            .map(|_| Buffer::with_capacity(cap * 2).expect("buffer"))
            .collect();
        let small = Buffer::with_capacity(cap).expect("buffer");
        drop(large);
        drop(small);
        let spare_bytes: usize = pool().spares.iter().map(|m| m.len()).sum();
        assert_eq!(spare_bytes, MAX_SPARE_BYTES, "spares of mixed sizes");
        drop(held);
    }
}
