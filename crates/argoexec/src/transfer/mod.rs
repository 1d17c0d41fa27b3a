//! The pipelines that join archives and storage, and Argo's artifact rules on top of them.
//!
//! * [`upload`] and [`download`] move bytes: parts in parallel, bounded memory, no temp files.
//! * [`load`] is an input artifact's journey (docs/contract.md#inputs): relocate, fetch, detect,
//!   unpack in place, chmod.
//! * [`save`] is an output artifact's journey (docs/contract.md#keys, #outputs): key, source, archive, upload.

pub mod adaptive;
pub mod budget;
pub mod config;
pub mod download;
pub mod load;
pub mod local_file;
pub mod parts;
pub mod progress;
pub mod resume;
pub mod save;
pub mod upload;

pub use config::TransferConfig;
pub use upload::{UploadStats, Uploader};

use crate::archive::ArchiveError;
use crate::keys::InvalidArtifact;
use crate::storage;

/// Why moving an artifact failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A local source or destination is missing (`optional` artifacts are skipped on this).
    #[error("{0}")]
    NotFound(String),
    /// The artifact's own definition is wrong (no path, `..`, not supplied...).
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The storage step of loading an input failed (Argo: `artifact <name> failed to load:
    /// <err>`); the artifact's own definition and its unpacking fail without this prefix.
    #[error("artifact {artifact} failed to load: {source}")]
    Load {
        artifact: String,
        #[source]
        source: Box<Error>,
    },
    /// The destination's filesystem filled up (or its quota did) while placing an object.
    #[error(
        "not enough space at {} for {object} ({} stored, {} free once the partial copy is removed): {source}",
        dir.display(),
        size.map_or_else(|| "size unknown".to_string(), progress::human_bytes),
        free.map_or_else(|| "unknown".to_string(), progress::human_bytes)
    )]
    NoSpace {
        /// Where the object is: `<store>/<key>`.
        object: String,
        size: Option<u64>,
        dir: std::path::PathBuf,
        free: Option<u64>,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The same error as [`Error::NoSpace`] when a local write ran out of room, naming
    /// `object` (`<store>/<key>`, `size` bytes stored) and the directory `dir` it went to.
    /// Decided by the I/O error kind (`ENOSPC`, `EDQUOT`), never by text.
    pub fn no_space(self, object: &str, size: Option<u64>, dir: &std::path::Path) -> Self {
        let full = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        };
        match self {
            Self::Io { source, .. } | Self::Archive(ArchiveError::Io { source, .. })
                if full(&source) =>
            {
                Self::NoSpace {
                    object: object.to_string(),
                    size,
                    dir: dir.to_path_buf(),
                    free: None,
                    source,
                }
            }
            other => other,
        }
    }

    /// A storage failure named as Argo's S3 driver names the step (see
    /// [`storage::Error::in_s3_step`]); other failures unchanged.
    pub fn in_s3_step(self, driver: &str, step: impl std::fmt::Display) -> Self {
        match self {
            Self::Storage(e) => Self::Storage(e.in_s3_step(driver, step)),
            other => other,
        }
    }

    /// [`storage::Error::in_s3_save_step`] for the storage failures of a save.
    pub fn in_s3_save_step(self, driver: &str, step: impl std::fmt::Display) -> Self {
        match self {
            Self::Storage(e) => Self::Storage(e.in_s3_save_step(driver, step)),
            other => other,
        }
    }

    /// Argo's text for this failure, word for word, for the termination log; the error's
    /// `Display` adds our context (endpoint, attempts, causes) for the log lines.
    pub fn termination_message(&self) -> String {
        match self {
            Self::Storage(e) => e.termination_message(),
            Self::Load { artifact, source } => format!(
                "artifact {artifact} failed to load: {}",
                source.termination_message()
            ),
            other => other.to_string(),
        }
    }

    /// Whether the bytes of a download failed the whole-object check: fetching the object
    /// again can succeed.
    pub fn is_corrupt_download(&self) -> bool {
        matches!(self, Self::Storage(e) if e.kind() == Some(storage::ErrorKind::Integrity))
    }

    /// Whether the artifact is simply not there (what `optional: true` forgives).
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::NotFound(_) => true,
            Self::Storage(e) => e.is_not_found(),
            Self::Load { source, .. } => source.is_not_found(),
            _ => false,
        }
    }

    /// An I/O error from a blocking pipeline, with a storage failure inside it brought back out
    /// as the typed storage error.
    pub fn from_pipeline(context: impl Into<String>, e: std::io::Error) -> Self {
        if download::storage_cause(&e).is_none() {
            return Self::io(context, e);
        }
        match e
            .into_inner()
            .map(|inner| inner.downcast::<storage::Error>())
        {
            Some(Ok(storage)) => Self::Storage(*storage),
            Some(Err(other)) => Self::io(context, std::io::Error::other(other)),
            None => Self::io(context, std::io::Error::other("unknown pipeline failure")),
        }
    }

    /// Same as [`Error::from_pipeline`] for archive errors wrapping pipeline I/O.
    pub fn from_archive(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Io { context, source } => Self::from_pipeline(context, source),
            other => Self::Archive(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<InvalidArtifact> for Error {
    fn from(e: InvalidArtifact) -> Self {
        Self::Invalid(e.0)
    }
}
