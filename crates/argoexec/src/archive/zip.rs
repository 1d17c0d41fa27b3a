//! Zip archives: written as a stream (data descriptors, no seeking), read from a local file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zip::write::SimpleFileOptions;

use super::unpack::copy_limited;
use super::{ArchiveError, SafePath};
use crate::keys;

/// Writes `src` as a zip stream: a directory becomes one Deflate entry per regular file named
/// `<basename>/<rel>` (directories are not stored, as Argo does); a single file becomes one
/// entry named by its basename.
pub fn write_zip<W: Write>(src: &Path, out: W) -> io::Result<W> {
    let mut zw = zip::ZipWriter::new_stream(out);
    let base = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = fs::metadata(src)?;
    if meta.is_file() {
        add_file(&mut zw, src, &base, &meta)?;
    } else if meta.is_dir() {
        add_dir(&mut zw, src, &base)?;
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file or directory", src.display()),
        ));
    }
    zw.finish()
        .map(|w| w.into_inner())
        .map_err(io::Error::other)
}

fn add_dir<W: Write>(
    zw: &mut zip::ZipWriter<zip::write::StreamWriter<W>>,
    dir: &Path,
    prefix: &str,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
        let meta = fs::symlink_metadata(e.path())?;
        if meta.is_dir() {
            add_dir(zw, &e.path(), &name)?;
        } else if meta.is_file() {
            add_file(zw, &e.path(), &name, &meta)?;
        }
    }
    Ok(())
}

fn add_file<W: Write>(
    zw: &mut zip::ZipWriter<zip::write::StreamWriter<W>>,
    path: &Path,
    name: &str,
    meta: &fs::Metadata,
) -> io::Result<()> {
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(meta.permissions().mode() & 0o777)
        .large_file(meta.len() >= u32::MAX as u64);
    zw.start_file(name, opts).map_err(io::Error::other)?;
    io::copy(&mut File::open(path)?, zw)?;
    Ok(())
}

/// Unzips the local file `archive` into the existing directory `dest`. Entries must stay
/// inside (`<path>: Illegal file path`); symlink entries become regular files, as in Argo.
/// `max_bytes` bounds the bytes written, as for tar (zip bombs).
pub fn unzip(archive: &Path, dest: &Path, max_bytes: Option<u64>) -> Result<u64, ArchiveError> {
    let f = File::open(archive).map_err(|e| ArchiveError::io("open zip", e))?;
    let mut z =
        zip::ZipArchive::new(f).map_err(|e| ArchiveError::io("read zip", io::Error::other(e)))?;
    let root = keys::clean(&dest.to_string_lossy());
    let mut files = 0;
    let mut written = 0u64;
    for i in 0..z.len() {
        let mut entry = z
            .by_index(i)
            .map_err(|e| ArchiveError::io("read zip entry", io::Error::other(e)))?;
        let name = entry
            .name()
            .map_err(|e| ArchiveError::io("read zip entry name", io::Error::other(e)))?
            .into_owned();
        // Argo's check: joined to the destination (a leading `/` is only a separator, as in
        // Go's `filepath.Join`), the cleaned name must stay strictly inside.
        let target = SafePath::cleaned(name.trim_start_matches('/'))
            .map_err(|_| ArchiveError::ZipIllegalPath {
                path: keys::clean(&format!("{root}/{name}")),
            })?
            .below(dest);
        let mode = entry.unix_mode().unwrap_or(0o644) & 0o777;
        if entry.is_dir() {
            fs::create_dir_all(&target)
                .map_err(|e| ArchiveError::io(format!("create {name}"), e))?;
            let _ = fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o700));
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| ArchiveError::io(format!("create {name}"), e))?;
        }
        let budget = max_bytes.map(|m| m.saturating_sub(written));
        let too_large = || ArchiveError::TooLarge {
            limit: max_bytes.unwrap_or_default(),
        };
        if budget.is_some_and(|left| entry.size() > left) {
            return Err(too_large());
        }
        let mut out =
            File::create(&target).map_err(|e| ArchiveError::io(format!("create {name}"), e))?;
        let n = copy_limited(&mut entry, &mut out, budget)
            .map_err(|e| ArchiveError::io(format!("write {name}"), e))?;
        if n == u64::MAX {
            return Err(too_large());
        }
        written += n;
        let _ = out.set_permissions(fs::Permissions::from_mode(mode));
        files += 1;
    }
    Ok(files)
}
