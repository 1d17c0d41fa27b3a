//! Writes a file or directory as a tar stream in Argo's layout (contract section 7).
//!
//! A single file is one entry named by its basename. A directory `dir` is an entry `dir`, then
//! `dir/<rel>` for everything below it in lexical walk order, directories without a trailing
//! slash, symlinks stored (not followed), data only for regular files. The stream is written
//! straight to any `Write`: nothing is staged on disk.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{EntryType, Header};

/// What was archived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarSummary {
    pub entries: u64,
    pub file_bytes: u64,
}

/// Writes `src` (followed if it is a symlink) as a tar stream into `out`.
pub fn write_tree<W: Write>(src: &Path, out: W) -> io::Result<(W, TarSummary)> {
    let meta = fs::metadata(src)?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".to_string());
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut summary = TarSummary::default();
    if meta.is_file() {
        append(&mut builder, src, &name, &meta, &mut summary)?;
    } else if meta.is_dir() {
        append(&mut builder, src, &name, &meta, &mut summary)?;
        walk(&mut builder, src, &name, &mut summary)?;
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file or directory", src.display()),
        ));
    }
    let out = builder.into_inner()?;
    Ok((out, summary))
}

fn walk<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    summary: &mut TarSummary,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        let meta = fs::symlink_metadata(&path)?;
        if meta.file_type().is_socket() {
            tracing::warn!(path = %path.display(), "skipping a socket: sockets cannot be archived");
            continue;
        }
        append(builder, &path, &name, &meta, summary)?;
        if meta.is_dir() {
            walk(builder, &path, &name, summary)?;
        }
    }
    Ok(())
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
    meta: &Metadata,
    summary: &mut TarSummary,
) -> io::Result<()> {
    let mut header = Header::new_gnu();
    header.set_mode(meta.permissions().mode() & 0o7777);
    header.set_uid(u64::from(meta.uid()));
    header.set_gid(u64::from(meta.gid()));
    header.set_mtime(meta.mtime().max(0) as u64);
    header.set_size(0);
    summary.entries += 1;
    let ft = meta.file_type();
    if ft.is_symlink() {
        header.set_entry_type(EntryType::Symlink);
        let target = fs::read_link(path)?;
        return builder.append_link(&mut header, name, target);
    }
    let kind = if ft.is_dir() {
        EntryType::Directory
    } else if ft.is_file() {
        EntryType::Regular
    } else if ft.is_fifo() {
        EntryType::Fifo
    } else if ft.is_char_device() {
        EntryType::Char
    } else {
        EntryType::Block
    };
    header.set_entry_type(kind);
    if kind != EntryType::Regular {
        return builder.append_data(&mut header, name, io::empty());
    }
    let size = meta.len();
    header.set_size(size);
    let file = File::open(path)?;
    let mut exact = ExactReader {
        inner: file.take(size),
        left: size,
        path,
    };
    builder.append_data(&mut header, name, &mut exact)?;
    summary.file_bytes += size;
    Ok(())
}

/// Reads exactly the size recorded in the header; a file that shrank while being archived is
/// an error rather than a corrupt archive.
struct ExactReader<'a, R> {
    inner: R,
    left: u64,
    path: &'a Path,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being archived", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
