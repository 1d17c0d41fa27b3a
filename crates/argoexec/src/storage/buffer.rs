//! Transfer buffers that give their memory back to the OS when dropped.
//!
//! Parts and download chunks are several MiB each and are allocated and freed continuously.
//! glibc's malloc answers that pattern by raising its mmap threshold after the first large free
//! and keeping freed multi-MiB blocks in per-thread arenas: the 2 GiB download benchmark peaked
//! at 73 MB of RSS with a 24 MiB budget (mimalloc was worse: 112 MB). Buffers of 256 KiB and
//! more are therefore anonymous memory maps of their own, so the resident memory follows the
//! transfer budget exactly. Smaller ones stay on the heap.
//!
//! A fresh mapping costs a page fault and the kernel zeroing each of its pages: a fifth of a
//! download's CPU when every 2 MiB range had its own. A transfer in its steady state frees a
//! buffer and asks for one of the same size at once, so a freed mapping is kept as a spare
//! for the next buffer of its size, and a new mapping is made only when no spare fits, after
//! unmapping the spares (other sizes, no longer asked for). Mapped memory in use or spare
//! therefore never exceeds the most ever in use at once, which the budget bounds.

use std::io;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use memmap2::MmapMut;

/// Buffers at least this large get their own mapping.
const MAP_THRESHOLD: usize = 256 * 1024;

/// Freed mappings kept for the next buffer of their size (see the module's doc).
static SPARES: Mutex<Vec<MmapMut>> = Mutex::new(Vec::new());

/// Spares kept at most: a buffer is dropped before its budget share is freed, so the next
/// buffer, which waits for that share, finds it. One keeps the peak where it was.
const MAX_SPARES: usize = 1;

fn spares() -> std::sync::MutexGuard<'static, Vec<MmapMut>> {
    // A poisoned lock only means a panic elsewhere; the spares are still whole mappings.
    SPARES.lock().unwrap_or_else(|e| e.into_inner())
}

/// A mapping of `len` bytes: a spare of that size, else a new one (the spares, of other
/// sizes, are unmapped first).
fn map_of(len: usize) -> io::Result<MmapMut> {
    let other_sizes = {
        let mut spares = spares();
        if let Some(i) = spares.iter().position(|m| m.len() == len) {
            return Ok(spares.swap_remove(i));
        }
        std::mem::take(&mut *spares)
    };
    // Unmapped once the lock is released.
    drop(other_sizes);
    MmapMut::map_anon(len)
}

/// A mapping that becomes a spare when dropped, or is unmapped when the spares are full.
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
        let mut spares = spares();
        if spares.len() < MAX_SPARES {
            spares.push(map);
            return;
        }
        // Unmapped once the lock is released.
        drop(spares);
        drop(map);
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
            map: Map(Some(map_of(capacity)?)),
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
        assert_eq!(spares().len(), 1);
        let other = Buffer::with_capacity(cap * 2).expect("buffer");
        assert!(spares().is_empty(), "spares of other sizes are unmapped");
        drop(other);
        for _ in 0..MAX_SPARES + 2 {
            drop(Buffer::with_capacity(cap * 3).expect("buffer"));
        }
        assert!(spares().len() <= MAX_SPARES);
    }
}
