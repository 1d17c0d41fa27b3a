//! Writes a file or directory as a tar stream in Argo's layout (docs/contract.md#outputs).
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
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut summary = TarSummary::default();
    for_each_entry(src, &mut |path, name, meta| {
        append(&mut builder, path, name, meta, &mut summary)
    })?;
    let out = builder.into_inner()?;
    Ok((out, summary))
}

/// The exact length of the stream [`write_tree`] writes for `src` as it is now: each entry's
/// header, a GNU long-name (and long-link) entry before it when its name (or symlink target)
/// does not fit the header, a regular file's data padded to 512 bytes, and the two zero
/// blocks that end the archive. Lets an upload plan its parts before the stream starts.
pub fn tar_size(src: &Path) -> io::Result<u64> {
    let mut size = END_OF_ARCHIVE;
    for_each_entry(src, &mut |path, name, meta| {
        size += entry_size(path, name, meta)?;
        Ok(())
    })?;
    Ok(size)
}

const BLOCK: u64 = 512;
/// Two zero blocks, as `tar::Builder::finish` writes.
const END_OF_ARCHIVE: u64 = 2 * BLOCK;

/// Bytes one entry takes in the stream, as `tar::Builder` lays it out.
fn entry_size(path: &Path, name: &str, meta: &Metadata) -> io::Result<u64> {
    if meta.file_type().is_socket() {
        return Ok(0);
    }
    let mut header = Header::new_gnu();
    let mut size = BLOCK + long_name_size(header.set_path(name), name.len())?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(path)?;
        let target_len = target.as_os_str().len();
        size += long_name_size(header.set_link_name(&target), target_len)?;
    } else if ft.is_file() {
        size += meta.len().div_ceil(BLOCK) * BLOCK;
    }
    Ok(size)
}

/// The GNU long-name entry the builder writes when a name of `len` bytes does not fit the
/// header (`set` failed): a header and the name with its NUL, padded. A shorter name that
/// still failed is an error for the builder too.
fn long_name_size(set: io::Result<()>, len: usize) -> io::Result<u64> {
    const HEADER_FIELD: usize = 100;
    match set {
        Ok(()) => Ok(0),
        Err(_) if len >= HEADER_FIELD => Ok(BLOCK + (len as u64 + 1).div_ceil(BLOCK) * BLOCK),
        Err(e) => Err(e),
    }
}

/// Calls `visit` with (path, name in the archive, metadata) for every entry below `src` and
/// `src` itself, in the order they are written: the root, then a directory's entries sorted by
/// name, depth first. Sockets are visited too; they cannot be archived and take no room.
fn for_each_entry(
    src: &Path,
    visit: &mut dyn FnMut(&Path, &str, &Metadata) -> io::Result<()>,
) -> io::Result<()> {
    let meta = fs::metadata(src)?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".to_string());
    if !meta.is_file() && !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file or directory", src.display()),
        ));
    }
    visit(src, &name, &meta)?;
    if meta.is_dir() {
        walk(src, &name, visit)?;
    }
    Ok(())
}

fn walk(
    dir: &Path,
    prefix: &str,
    visit: &mut dyn FnMut(&Path, &str, &Metadata) -> io::Result<()>,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        let meta = fs::symlink_metadata(&path)?;
        visit(&path, &name, &meta)?;
        if meta.is_dir() {
            walk(&path, &name, visit)?;
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
    if meta.file_type().is_socket() {
        tracing::warn!(path = %path.display(), "skipping a socket: sockets cannot be archived");
        return Ok(());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_len(src: &Path) -> u64 {
        write_tree(src, Vec::new()).expect("tar").0.len() as u64
    }

    #[test]
    fn the_computed_size_is_the_stream_length_of_awkward_trees() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let root = scratch.path().join("root");
        let long = "n".repeat(99);
        let longer = "l".repeat(230);
        let deep = root.join(&long).join(&longer);
        fs::create_dir_all(&deep).expect("dirs");
        fs::create_dir_all(root.join("empty")).expect("empty dir");
        for (name, len) in [("zero", 0), ("one", 1), ("block", 512), ("over", 513)] {
            fs::write(root.join(name), vec![7u8; len]).expect("file");
        }
        // Names of 99, 100 and several hundred bytes: in the header, just not, far beyond.
        fs::write(root.join("x".repeat(95)), b"fits").expect("file");
        fs::write(deep.join("f".repeat(200)), vec![1u8; 1000]).expect("deep file");
        std::os::unix::fs::symlink("one", root.join("short-link")).expect("symlink");
        std::os::unix::fs::symlink("t".repeat(150), root.join("long-target")).expect("symlink");
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
        let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).expect("socket");
        assert_eq!(tar_size(&root).expect("size"), stream_len(&root));

        let single = root.join("over");
        assert_eq!(tar_size(&single).expect("size"), stream_len(&single));
        assert_eq!(tar_size(&single).expect("size"), 512 + 1024 + 1024);
    }
}
