//! Archive strategies: tar + parallel gzip, zip, and the safe unpack rules.
//!
//! Everything streams: writers take any `Write` (the upload pipeline's part buffers), readers
//! any `Read` (the download pipeline's ordered chunks).

pub mod gzip;
pub mod safe_path;
pub mod tarball;
pub mod unpack;
pub mod zip;

pub use gzip::ParallelGzWriter;
pub use safe_path::{SafePath, UnsafeName};
pub use tarball::{TarSummary, tar_size, write_tree};
pub use unpack::{Detection, UnpackSummary, place, sniff, untar};

/// Why an archive could not be read or written. Texts follow Argo's where it has one.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("illegal file path: {name}")]
    IllegalPath { name: String },
    #[error("illegal symlink target: {name} -> {target}")]
    IllegalSymlink { name: String, target: String },
    #[error("illegal file path after symlink resolution: {name} resolves outside destination")]
    IllegalAfterSymlink { name: String },
    #[error("{path}: Illegal file path")]
    ZipIllegalPath { path: String },
    #[error(
        "the archive unpacks to more than the limit of {limit} bytes (ARGOEXEC_MAX_UNPACKED_BYTES)"
    )]
    TooLarge { limit: u64 },
    #[error("the archive has more than {limit} symbolic links, the most one unpack checks")]
    TooManySymlinks { limit: usize },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Writes `src` as tar + gzip at `level` into `out`, compressing on `threads` threads.
pub fn write_tgz<W: std::io::Write>(
    src: &std::path::Path,
    out: W,
    level: u32,
    threads: usize,
) -> std::io::Result<(W, TarSummary)> {
    let gz = ParallelGzWriter::new(out, level, threads)?;
    let (gz, summary) = write_tree(src, gz)?;
    Ok((gz.finish()?, summary))
}

/// The most bytes [`write_tgz`] writes for `src` as it is now at `level`: its tar stream's
/// exact size through the gzip pipeline's worst case.
pub fn tgz_bound(src: &std::path::Path, level: u32) -> std::io::Result<u64> {
    Ok(gzip::max_len(
        tar_size(src)?,
        gzip::DEFAULT_BLOCK_SIZE,
        level,
    ))
}
