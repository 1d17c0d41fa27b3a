//! The spans of Argo's executor trace that the transfer engine opens: `unarchiveArtifact`
//! (placing a download) and `archiveArtifact` (writing a tar.gz or zip). The binary opens the
//! rest of the trace around them and decides whether it is exported.
//!
//! They are plain `tracing` spans with [`TARGET`]; without a listener for it, each is disabled
//! at its callsite (`Span::none()`, nothing recorded).

use tracing::Span;
use tracing::field::Empty;

/// The target of every span of the exported trace, and the only one the exporter listens to.
pub const TARGET: &str = "argoexec::trace";

/// `unarchiveArtifact`: placing the download; `archive` (`tar`, `zip` or `none`, Argo's
/// words) is recorded once the strategy is known ([`record_archive`]). Here it runs while the
/// bytes arrive, so it overlaps the download instead of following it.
pub fn unarchive_artifact() -> Span {
    tracing::info_span!(target: TARGET, "unarchiveArtifact", archive = Empty)
}

/// Records the unpacking decision on the current `unarchiveArtifact` span.
pub fn record_archive(word: &'static str) {
    Span::current().record("archive", word);
}

/// `archiveArtifact`: writing the tar.gz or zip. It streams into the upload, so it overlaps
/// the upload instead of preceding it; an `archive: none` output has no such stage.
pub fn archive_artifact() -> Span {
    tracing::info_span!(target: TARGET, "archiveArtifact")
}
