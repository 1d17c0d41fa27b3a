//! Unpacking tar streams safely, with Argo's rules and error texts (docs/contract.md#inputs).
//!
//! Entries must land strictly inside the destination (`illegal file path: <name>`); symlink
//! targets must point inside it (`illegal symlink target: <name> -> <target>`), checked on the
//! text as Argo does and again on what the link really reaches; nothing is created through a
//! symlinked parent that leads outside (`illegal file path after symlink resolution: <name>
//! resolves outside destination`), as every parent is walked component by component, nor
//! through a symlink at an entry's own name (it is replaced). Hard links, devices and fifos are
//! skipped, as Argo does. A byte limit
//! stops decompression bombs and entries that declare more than it; an entry cut short by the
//! end of the archive is an error, not a short file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::{ArchiveError, SafePath, UnsafeName};
use crate::keys;

/// What an unpack wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackSummary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub skipped: u64,
    pub bytes: u64,
}

/// Unpacks the tar stream `src` into the existing directory `dest`.
///
/// `max_bytes` bounds the file bytes written: an entry that declares more than what is left
/// is refused before a byte of it is written, and a gzip bomb stops there with an error.
pub fn untar<R: Read>(
    src: R,
    dest: &Path,
    max_bytes: Option<u64>,
) -> Result<UnpackSummary, ArchiveError> {
    untar_with_link_limit(src, dest, max_bytes, MAX_SYMLINKS)
}

/// Symbolic links one unpack may make: each is remembered (its path, entry name and link
/// text, a few hundred bytes) to be checked again at the end, so an archive with more is
/// refused rather than let grow that list without end (tens of MiB at this bound).
pub const MAX_SYMLINKS: usize = 100_000;

fn untar_with_link_limit<R: Read>(
    src: R,
    dest: &Path,
    max_bytes: Option<u64>,
    max_links: usize,
) -> Result<UnpackSummary, ArchiveError> {
    let root = keys::clean(&dest.to_string_lossy());
    let canon_dest = dest
        .canonicalize()
        .map_err(|e| ArchiveError::io(format!("open {}", dest.display()), e))?;
    let mut archive = tar::Archive::new(src);
    let mut summary = UnpackSummary::default();
    let mut links = LinkCheck {
        canon_dest: canon_dest.clone(),
        made: Vec::new(),
    };
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::io("read tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::io("read tar entry", e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        // Argo's check, on the name: cleaned, it must stay strictly inside. A leading `/` is
        // only a separator, as in Go's `filepath.Join(dest, name)`.
        let rel = match SafePath::cleaned(name.trim_start_matches('/')) {
            Ok(rel) => rel,
            // `./` in archives made with `tar -C dir .`: the destination itself.
            Err(UnsafeName::Empty) if kind == EntryType::Directory => continue,
            Err(_) => return Err(ArchiveError::IllegalPath { name }),
        };
        let (parent_rel, leaf) = rel.split_last();
        match kind {
            EntryType::Directory => {
                inside_dir(&canon_dest, rel.as_str(), &name)?;
                summary.dirs += 1;
            }
            EntryType::Regular | EntryType::Continuous => {
                let target = inside_dir(&canon_dest, parent_rel, &name)?.join(leaf);
                let declared = entry.size();
                let budget = max_bytes.map(|m| m.saturating_sub(summary.bytes));
                if let (Some(limit), Some(left)) = (max_bytes, budget)
                    && declared > left
                {
                    return Err(ArchiveError::TooLarge { limit });
                }
                replace_non_dir(&target, &name)?;
                let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| ArchiveError::io(format!("create {name}"), e))?;
                let n = copy_limited(&mut entry, &mut file, budget)
                    .map_err(|e| ArchiveError::io(format!("write {name}"), e))?;
                if n == u64::MAX {
                    return Err(ArchiveError::TooLarge {
                        limit: max_bytes.unwrap_or_default(),
                    });
                }
                if n < declared {
                    return Err(ArchiveError::io(
                        format!("write {name}"),
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the archive ends {n} bytes into an entry of {declared}"),
                        ),
                    ));
                }
                summary.bytes += n;
                // Modes come from the header, but the umask may have narrowed them.
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| ArchiveError::io(format!("chmod {name}"), e))?;
                if let Ok(mtime) = entry.header().mtime() {
                    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
                    let _ = file.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t));
                }
                summary.files += 1;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let parent = inside_dir(&canon_dest, parent_rel, &name)?;
                let illegal = || ArchiveError::IllegalSymlink {
                    name: name.clone(),
                    target: link.clone(),
                };
                // Argo's check on the link text, from where the link really is.
                let resolved = if link.starts_with('/') {
                    keys::clean(&link)
                } else {
                    keys::clean(&format!("{}/{link}", parent.to_string_lossy()))
                };
                let canon_root = keys::clean(&canon_dest.to_string_lossy());
                if !within(&resolved, &canon_root) && !within(&resolved, &root) {
                    return Err(illegal());
                }
                if links.made.len() >= max_links {
                    return Err(ArchiveError::TooManySymlinks { limit: max_links });
                }
                let target = parent.join(leaf);
                replace_non_dir(&target, &name)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| ArchiveError::io(format!("symlink {name}"), e))?;
                // The text can still leave through other links (`a -> .`, then `b -> a/..`):
                // what it reaches, when it reaches something, must be inside.
                if let Ok(real) = target.canonicalize()
                    && !real.starts_with(&canon_dest)
                {
                    let _ = fs::remove_file(&target);
                    return Err(illegal());
                }
                links.made.push((target, name, link));
                summary.symlinks += 1;
            }
            _ => summary.skipped += 1,
        }
    }
    if let Some((name, target)) = links.remove_escaping() {
        return Err(ArchiveError::IllegalSymlink { name, target });
    }
    Ok(summary)
}

/// Every link an unpack made, checked again once it ends (and on every early return, by
/// `Drop`): a later entry can change what an earlier link reaches (a parent replaced by a
/// link, a dangling target created), so no link may be left reaching outside.
struct LinkCheck {
    canon_dest: PathBuf,
    /// (where, entry name, link text)
    made: Vec<(PathBuf, String, String)>,
}

impl LinkCheck {
    /// Removes every link that now reaches outside; returns the first one's name and text.
    fn remove_escaping(&mut self) -> Option<(String, String)> {
        let mut first = None;
        for (target, name, link) in self.made.drain(..) {
            if let Ok(real) = target.canonicalize()
                && !real.starts_with(&self.canon_dest)
            {
                let _ = fs::remove_file(&target);
                first.get_or_insert((name, link));
            }
        }
        first
    }
}

impl Drop for LinkCheck {
    fn drop(&mut self) {
        let _ = self.remove_escaping();
    }
}

/// Whether the clean path `p` is `root` or below it.
fn within(p: &str, root: &str) -> bool {
    p == root || p.starts_with(&format!("{root}/"))
}

/// The directory `rel` (clean, relative) below `canon_dest`, created as needed, never outside
/// it: an existing component that is a symlink must lead to a directory inside, else the entry
/// `name` is refused (`illegal file path after symlink resolution`, Argo's text). Walking the
/// components one by one means nothing is created through a link that leaves.
fn inside_dir(canon_dest: &Path, rel: &str, name: &str) -> Result<PathBuf, ArchiveError> {
    let mut dir = canon_dest.to_path_buf();
    for component in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let next = dir.join(component);
        match fs::symlink_metadata(&next) {
            Ok(m) if m.is_dir() => dir = next,
            Ok(m) if m.file_type().is_symlink() => {
                let real = next
                    .canonicalize()
                    .map_err(|e| ArchiveError::io(format!("resolve the parent of {name}"), e))?;
                if !real.starts_with(canon_dest) || !real.is_dir() {
                    return Err(ArchiveError::IllegalAfterSymlink {
                        name: name.to_string(),
                    });
                }
                dir = real;
            }
            Ok(_) => {
                return Err(ArchiveError::io(
                    format!("create directory for {name}"),
                    io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{component} is a file"),
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&next)
                    .map_err(|e| ArchiveError::io(format!("create directory for {name}"), e))?;
                dir = next;
            }
            Err(e) => return Err(ArchiveError::io(format!("inspect {name}"), e)),
        }
    }
    Ok(dir)
}

/// Removes a file or symlink at `target` so a duplicate entry replaces it instead of writing
/// through it. Directories stay.
fn replace_non_dir(target: &Path, name: &str) -> Result<(), ArchiveError> {
    match fs::symlink_metadata(target) {
        Ok(m) if !m.is_dir() => {
            fs::remove_file(target).map_err(|e| ArchiveError::io(format!("replace {name}"), e))
        }
        _ => Ok(()),
    }
}

/// Copies at most `budget` bytes; returns `u64::MAX` when the source had more.
pub(super) fn copy_limited<R: Read, W: Write>(
    src: &mut R,
    dst: &mut W,
    budget: Option<u64>,
) -> io::Result<u64> {
    let Some(budget) = budget else {
        return io::copy(src, dst);
    };
    let n = io::copy(&mut src.take(budget), dst)?;
    if n == budget {
        let mut probe = [0u8; 1];
        if src.read(&mut probe)? > 0 {
            return Ok(u64::MAX);
        }
    }
    Ok(n)
}

/// Moves an unpacked tree into place: a single top-level entry becomes `dest` itself, else
/// the whole `tmpdir` does (Argo's rule: a tgz of one file yields a file).
pub fn place(tmpdir: &Path, dest: &Path) -> io::Result<()> {
    let mut entries = fs::read_dir(tmpdir)?;
    let first = entries.next().transpose()?;
    let only = match (first, entries.next().transpose()?) {
        (Some(e), None) => Some(e.path()),
        _ => None,
    };
    match only {
        Some(single) => {
            fs::rename(&single, dest)?;
            fs::remove_dir(tmpdir)
        }
        None => fs::rename(tmpdir, dest),
    }
}

/// Whether a stream that starts with `prefix` is gzip-compressed tar, Argo's auto-detection:
/// gunzip succeeds and the first tar header is valid. `eof` says `prefix` is the whole stream.
pub fn detect_tgz(prefix: &[u8], eof: bool) -> Detection {
    if prefix.len() < 2 {
        return if eof {
            Detection::Other
        } else {
            Detection::NeedMore
        };
    }
    if prefix[..2] != [0x1f, 0x8b] {
        return Detection::Other;
    }
    let mut block = [0u8; 512];
    let mut got = 0;
    let mut dec = flate2::read::GzDecoder::new(prefix);
    while got < block.len() {
        match dec.read(&mut block[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !eof => {
                return Detection::NeedMore;
            }
            Err(_) => return Detection::Other,
        }
    }
    if got < block.len() {
        return if eof {
            Detection::Other
        } else {
            Detection::NeedMore
        };
    }
    if is_tar_header(&block) {
        Detection::TarGz
    } else {
        Detection::Other
    }
}

/// The outcome of [`detect_tgz`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    TarGz,
    Other,
    NeedMore,
}

/// A 512-byte block is a tar header when it is not all zero and its checksum matches (the
/// unsigned or the historic signed sum, as Go's reader accepts).
fn is_tar_header(block: &[u8; 512]) -> bool {
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let text = text.trim_start_matches(' ');
    let Ok(want) = i64::from_str_radix(text, 8) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    want == unsigned || want == signed
}

/// A reader that gives back the bytes [`sniff`] looked at, then the rest.
pub type Replay<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Reads the first bytes of `src` until [`detect_tgz`] decides, then gives back the decision
/// and a reader that replays those bytes before the rest.
pub fn sniff<R: Read>(mut src: R) -> io::Result<(Detection, Replay<R>)> {
    const STEP: usize = 64 * 1024;
    const MAX: usize = 4 << 20;
    let mut prefix = Vec::new();
    let mut eof = false;
    let decision = loop {
        match detect_tgz(&prefix, eof) {
            Detection::NeedMore if prefix.len() < MAX => {}
            Detection::NeedMore => break Detection::Other,
            d => break d,
        }
        let start = prefix.len();
        prefix.resize(start + STEP, 0);
        let n = src.read(&mut prefix[start..])?;
        prefix.truncate(start + n);
        eof = n == 0;
    };
    Ok((decision, io::Cursor::new(prefix).chain(src)))
}

/// Reads a whole tar stream from a file at `path` (used by tests and tools).
pub fn untar_file(path: &Path, dest: &Path) -> Result<UnpackSummary, ArchiveError> {
    let f =
        File::open(path).map_err(|e| ArchiveError::io(format!("open {}", path.display()), e))?;
    untar(
        flate2::read::MultiGzDecoder::new(io::BufReader::new(f)),
        dest,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            // Write names raw so hostile names survive the builder's own checks.
            let raw = name.as_bytes();
            h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn unpack(t: &[u8]) -> (tempfile::TempDir, Result<UnpackSummary, ArchiveError>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("out");
        fs::create_dir(&dest).expect("mkdir");
        let r = untar(t, &dest, None);
        (dir, r)
    }

    #[test]
    fn an_archive_with_more_links_than_the_bound_is_refused() {
        let t = tar_with(&[
            ("a", EntryType::Symlink, b"", Some("x")),
            ("b", EntryType::Symlink, b"", Some("y")),
            ("c", EntryType::Symlink, b"", Some("z")),
        ]);
        let dir = tempfile::tempdir().expect("tempdir");
        let e = untar_with_link_limit(&t[..], dir.path(), None, 2).expect_err("three links");
        assert!(
            matches!(e, ArchiveError::TooManySymlinks { limit: 2 }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "the archive has more than 2 symbolic links, the most one unpack checks"
        );
        // At the bound it unpacks.
        let dir = tempfile::tempdir().expect("tempdir");
        let done = untar_with_link_limit(&t[..], dir.path(), None, 3).expect("three links");
        assert_eq!(done.symlinks, 3);
    }

    #[test]
    fn escaping_names_are_refused_with_argos_text() {
        for name in ["../evil", "a/../../evil", "/etc/../../evil"] {
            let t = tar_with(&[(name, EntryType::Regular, b"x", None)]);
            let (_d, r) = unpack(&t);
            let e = r.expect_err(name);
            assert_eq!(e.to_string(), format!("illegal file path: {name}"));
        }
    }

    #[test]
    fn absolute_names_land_inside_like_go_filepath_join() {
        let t = tar_with(&[("/abs/file", EntryType::Regular, b"x", None)]);
        let (d, r) = unpack(&t);
        r.expect("inside");
        assert!(d.path().join("out/abs/file").is_file());
    }

    #[test]
    fn symlinks_out_of_the_destination_are_refused() {
        for target in ["/etc/passwd", "../../x", "a/../../.."] {
            let t = tar_with(&[("link", EntryType::Symlink, b"", Some(target))]);
            let (_d, r) = unpack(&t);
            let e = r.expect_err(target);
            assert_eq!(
                e.to_string(),
                format!("illegal symlink target: link -> {target}")
            );
        }
    }

    #[test]
    fn a_duplicate_entry_replaces_a_symlink_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("victim");
        fs::write(&outside, b"safe").expect("write");
        let dest = dir.path().join("out");
        fs::create_dir(&dest).expect("mkdir");
        // A symlink inside that points inside, then a file of the same name.
        let t = tar_with(&[
            ("x", EntryType::Regular, b"first", None),
            ("link", EntryType::Symlink, b"", Some("x")),
            ("link", EntryType::Regular, b"second", None),
        ]);
        untar(&t[..], &dest, None).expect("unpack");
        assert_eq!(fs::read(dest.join("x")).expect("x"), b"first");
        assert_eq!(fs::read(dest.join("link")).expect("link"), b"second");
        assert_eq!(fs::read(&outside).expect("victim"), b"safe");
    }

    #[test]
    fn links_that_leave_through_other_links_are_refused_and_nothing_is_written_outside() {
        // `a` is the destination itself, so `a/b -> ..` is really `b -> ..`: outside.
        let t = tar_with(&[
            ("a", EntryType::Symlink, b"", Some(".")),
            ("a/b", EntryType::Symlink, b"", Some("..")),
        ]);
        let (_d, r) = unpack(&t);
        assert_eq!(
            r.expect_err("escape").to_string(),
            "illegal symlink target: a/b -> .."
        );
        // The text `a/..` looks inside, but `a` is the destination: it reaches its parent.
        let t = tar_with(&[
            ("a", EntryType::Symlink, b"", Some(".")),
            ("c", EntryType::Symlink, b"", Some("a/..")),
        ]);
        let (d, r) = unpack(&t);
        assert_eq!(
            r.expect_err("escape").to_string(),
            "illegal symlink target: c -> a/.."
        );
        assert!(!d.path().join("out/c").exists(), "the link is removed");
        // Dangling when made (`b` does not exist yet), leaving once `b -> .` follows: found
        // by the property test; every link is checked again when the unpack ends.
        let t = tar_with(&[
            ("a", EntryType::Symlink, b"", Some("b/..")),
            ("b", EntryType::Symlink, b"", Some(".")),
        ]);
        let (d, r) = unpack(&t);
        assert_eq!(
            r.expect_err("escape").to_string(),
            "illegal symlink target: a -> b/.."
        );
        assert!(
            d.path().join("out/a").symlink_metadata().is_err(),
            "the link is removed"
        );
    }

    #[test]
    fn nothing_is_created_through_a_parent_that_leads_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("out");
        fs::create_dir(&dest).expect("mkdir");
        // A link already in place that leads outside (as a reused destination could hold).
        std::os::unix::fs::symlink(dir.path(), dest.join("up")).expect("link");
        for (name, kind) in [
            ("up/evil", EntryType::Regular),
            ("up/newdir", EntryType::Directory),
        ] {
            let t = tar_with(&[(name, kind, b"x", None)]);
            let e = untar(&t[..], &dest, None).expect_err(name);
            assert_eq!(
                e.to_string(),
                format!(
                    "illegal file path after symlink resolution: {name} resolves outside destination"
                )
            );
        }
        assert!(!dir.path().join("evil").exists());
        assert!(!dir.path().join("newdir").exists());
    }

    #[test]
    fn an_entry_cut_short_by_the_end_of_the_archive_is_an_error() {
        let t = tar_with(&[("f", EntryType::Regular, &[7u8; 5000], None)]);
        let (_d, r) = unpack(&t[..512 + 1000]);
        let e = r.expect_err("truncated");
        assert!(e.to_string().contains("the archive ends"), "{e}");
    }

    #[test]
    fn an_entry_declaring_more_than_the_limit_is_refused_before_it_is_written() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(1 << 40);
        h.as_old_mut().name[..4].copy_from_slice(b"huge");
        h.set_cksum();
        // The header alone: a terabyte declared, nothing behind it.
        let t = h.as_bytes().to_vec();
        let dir = tempfile::tempdir().expect("tempdir");
        let e = untar(&t[..], dir.path(), Some(1 << 20)).expect_err("declared size");
        assert!(matches!(e, ArchiveError::TooLarge { limit } if limit == 1 << 20));
        assert!(!dir.path().join("huge").exists(), "refused before writing");
    }

    #[test]
    fn hard_links_and_fifos_are_skipped() {
        let t = tar_with(&[
            ("f", EntryType::Regular, b"data", None),
            ("hard", EntryType::Link, b"", Some("f")),
            ("fifo", EntryType::Fifo, b"", None),
        ]);
        let (d, r) = unpack(&t);
        let s = r.expect("unpack");
        assert_eq!((s.files, s.skipped), (1, 2));
        assert!(!d.path().join("out/hard").exists());
    }

    #[test]
    fn the_byte_limit_stops_a_bomb() {
        let big = vec![0u8; 10_000];
        let t = tar_with(&[("f", EntryType::Regular, &big, None)]);
        let dir = tempfile::tempdir().expect("tempdir");
        let e = untar(&t[..], dir.path(), Some(4096)).expect_err("limit");
        assert!(matches!(e, ArchiveError::TooLarge { limit: 4096 }));
    }

    #[test]
    fn detection_needs_gzip_and_a_valid_tar_header() {
        let t = tar_with(&[("f", EntryType::Regular, b"data", None)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&t).expect("gz");
        let tgz = gz.finish().expect("gz");
        assert_eq!(detect_tgz(&tgz, true), Detection::TarGz);
        assert_eq!(detect_tgz(&tgz[..5], false), Detection::NeedMore);
        assert_eq!(
            detect_tgz(&t, true),
            Detection::Other,
            "plain tar is not extracted"
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[b'x'; 600]).expect("gz");
        assert_eq!(
            detect_tgz(&gz.finish().expect("gz"), true),
            Detection::Other,
            "bare .gz"
        );
        assert_eq!(detect_tgz(b"hello", true), Detection::Other);
    }
}
