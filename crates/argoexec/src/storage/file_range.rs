//! A byte range of a local file, sent as a part without being buffered.
//!
//! A part of a file upload is read from the file while it is sent, a small block at a time,
//! and read again when the part is retried: memory per part in flight is a few blocks, not
//! the part, so large parts keep every part in flight within the budget.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use md5::{Digest, Md5};

/// Bytes read at a time from a file range.
pub const READ_BLOCK: usize = 64 * 1024;

/// `len` bytes of the file at `path` from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRange {
    pub path: Arc<Path>,
    pub offset: u64,
    pub len: u64,
}

impl FileRange {
    /// Feeds the range to `consume` one block at a time (positioned reads, on this thread). A
    /// file that no longer holds the whole range (it shrank) is an error.
    pub fn for_each_block(&self, mut consume: impl FnMut(&[u8])) -> io::Result<()> {
        let file = File::open(&self.path)?;
        let mut block = vec![0u8; READ_BLOCK.min(self.len as usize)];
        let end = self.offset + self.len;
        let mut at = self.offset;
        while at < end {
            let want = ((end - at) as usize).min(block.len());
            let n = file.read_at(&mut block[..want], at)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} shrank while it was being uploaded", self.path.display()),
                ));
            }
            consume(&block[..n]);
            at += n as u64;
        }
        Ok(())
    }

    /// CRC32C of the range.
    pub fn crc32c(&self) -> io::Result<u32> {
        let mut crc = 0;
        self.for_each_block(|b| crc = crc32c::crc32c_append(crc, b))?;
        Ok(crc)
    }

    /// MD5 of the range.
    pub fn md5(&self) -> io::Result<[u8; 16]> {
        let mut md5 = Md5::new();
        self.for_each_block(|b| md5.update(b))?;
        Ok(md5.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_hashes_as_its_bytes_and_a_shrunk_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path: Arc<Path> = dir.path().join("f").into();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let range = FileRange {
            path: Arc::clone(&path),
            offset: 70_000,
            len: 100_000,
        };
        let bytes = &data[70_000..170_000];
        assert_eq!(range.crc32c().expect("crc"), crc32c::crc32c(bytes));
        assert_eq!(
            range.md5().expect("md5"),
            <[u8; 16]>::from(Md5::digest(bytes))
        );
        std::fs::write(&path, &data[..100_000]).expect("shrink");
        let e = range.crc32c().expect_err("shrank");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
