//! Saving an output artifact (docs/contract.md#keys, #outputs), streaming.
//!
//! The source is the main container's file seen through a shared volume (`/mainctrfs/<path>`),
//! or the `.tgz` the emissary wrote for paths in main's own filesystem. Argo copies that tgz to
//! `/tmp/argo/outputs/artifacts`, and for `none`/`zip` extracts it there too. Here the tgz is
//! uploaded as it is, or re-encoded entry by entry straight into the upload: no copy, no
//! extraction, nothing on disk. Usually the emissary does not write that tgz at all but sends
//! the uncompressed tar stream over wait's output socket ([`Saver::save_streamed`]), encoded
//! here with the artifact's own settings as it arrives.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::runtime::Handle;
use tracing::Instrument;

use super::parts::ObjectSize;
use super::progress::Progress;
use super::upload::{PartWriter, UploadStats, Uploader};
use super::{Error, Result};
use crate::archive::{self, ArchiveError, SafePath, gzip};
use crate::contract::Roots;
use crate::keys::output::usable_archive;
use crate::keys::{self, output_location, validate_path};
use crate::model::ArchiveStrategy;
use crate::model::{Artifact, Template};
use crate::observe::{Direction, Transfer, artifact_span, trace};
use crate::storage::{self, Driver, PutOptions, Secrets, go_error_text};

/// One saved output: what to report, where it went, how it went.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The artifact as reported to the controller (key-only location when keyed by us).
    pub artifact: Artifact,
    pub key: String,
    pub destination: String,
    pub stats: UploadStats,
    /// Requests the storage retry layer sent again during this upload.
    pub retries: u64,
}

impl Saved {
    /// The figures of this upload, for its final log line and the metrics file.
    pub fn transfer(&self) -> Transfer {
        Transfer {
            direction: Direction::Output,
            artifact: self.artifact.name.clone(),
            key: self.key.clone(),
            location: self.destination.clone(),
            bytes: self.stats.bytes,
            elapsed: self.stats.elapsed,
            retries: self.retries,
            parts: Some(self.stats.parts),
            crc32c: Some(self.stats.crc32c),
            unchecked_parts: Some(self.stats.unchecked_parts),
        }
    }
}

/// Saves output artifacts of one template.
#[derive(Debug)]
pub struct Saver<'a> {
    pub roots: &'a Roots,
    pub secrets: &'a Secrets,
    pub uploader: &'a Uploader,
    pub template: &'a Template,
    /// The pod has the init-less layout (`ARGO_INITLESS_POD`, `ARGO_WAIT_FOR_READY`): an
    /// output under an input path then comes from the emissary's archive.
    pub initless_pod: bool,
}

/// What the emissary hands over for an output in main's own filesystem.
pub enum EmissaryOutput {
    /// The `<path>.tgz` it staged on the emptyDir.
    Staged(PathBuf),
    /// The uncompressed tar stream it sends over the output socket, read as it arrives.
    Streamed(Box<dyn Read + Send>),
}

impl EmissaryOutput {
    /// The output's tar entries, whichever way it came.
    fn open(self) -> io::Result<tar::Archive<Box<dyn Read + Send>>> {
        match self {
            Self::Staged(tgz) => open_tgz(&tgz),
            Self::Streamed(tar) => Ok(tar::Archive::new(tar)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Staged(tgz) => tgz.display().to_string(),
            Self::Streamed(_) => "the emissary's output stream".to_string(),
        }
    }
}

impl std::fmt::Debug for EmissaryOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Saver<'_> {
    /// Saves one output artifact; `None` when it is optional and absent.
    ///
    /// Absent means main did not produce the local path ([`Error::NotFound`]). A NotFound
    /// from the store (`NoSuchUpload` to a part or to the completion, a bucket rule that
    /// removed the upload) is a failed upload, reported as such even when optional.
    pub async fn save(&self, art: &Artifact) -> Result<Option<Saved>> {
        match self
            .save_inner(art, None)
            .instrument(artifact_span(&art.name))
            .await
        {
            Err(Error::NotFound(_)) if art.optional => Ok(None),
            other => other.map(Some),
        }
    }

    /// Saves an output of main's own filesystem from the tar stream its emissary sends (the
    /// artifact's archive settings applied here, as if the emissary had staged it).
    pub async fn save_streamed(&self, art: &Artifact, tar: Box<dyn Read + Send>) -> Result<Saved> {
        self.save_inner(art, Some(tar))
            .instrument(artifact_span(&art.name))
            .await
    }

    async fn save_inner(
        &self,
        art: &Artifact,
        streamed: Option<Box<dyn Read + Send>>,
    ) -> Result<Saved> {
        let path = validate_path(&art.name, &art.path)?;
        let strategy = art.archive_strategy();
        let shared = self
            .template
            .is_output_on_shared_mount(&path, self.initless_pod);
        let source = if shared {
            self.roots.main_ctr_fs(&path)
        } else {
            self.roots.emissary_artifact(&path)
        };
        // As Argo, the source is found before its destination is worked out.
        if streamed.is_none() {
            source_metadata(&source, &path, shared, strategy)?;
        }
        let (reported, location) =
            output_location(art, &path, self.template.archive_location.as_ref())?;
        let key = location.key().unwrap_or_default();
        tracing::Span::current().record("key", key.as_str());
        let driver =
            storage::open(&location, self.secrets, &self.uploader.config().storage).await?;
        let destination = format!("{}/{}", driver.describe(), key);
        // Bytes are counted as uploaded: a total is known when they are the source's own bytes.
        let total = match strategy {
            ArchiveStrategy::None if shared => {
                // A walk of a big tree takes a while: off the runtime.
                let source = source.clone();
                tokio::task::spawn_blocking(move || tree_size(&source))
                    .await
                    .ok()
                    .flatten()
            }
            ArchiveStrategy::Tar { .. } if !shared => fs::metadata(&source).ok().map(|m| m.len()),
            _ => None,
        };
        let (progress, _reporting) = Progress::start(
            format!("upload of artifact '{}' to {destination}", art.name),
            total,
            self.uploader.config().progress_interval,
        );
        let uploader = self.uploader.tracked(progress);
        let saver = Saver {
            uploader: &uploader,
            ..*self
        };
        // Argo's S3 driver names the upload step: a directory (`none`) goes file by file.
        let put = match strategy {
            ArchiveStrategy::None if shared && source.is_dir() => "failed to put directory",
            _ => "failed to put file",
        };
        let stats = if shared {
            saver
                .save_from_tree(Arc::clone(&driver), &key, &source, &path, strategy)
                .await
        } else {
            let output = streamed.map_or(EmissaryOutput::Staged(source), EmissaryOutput::Streamed);
            saver
                .save_from_emissary(Arc::clone(&driver), &key, output, art, strategy)
                .await
        }
        .map_err(|e| e.in_s3_save_step(driver.name(), put))?;
        if stats.bytes == 0 {
            tracing::warn!(artifact = %art.name, key, "the artifact is empty");
        }
        Ok(Saved {
            artifact: reported,
            key,
            destination,
            stats,
            retries: driver.retry_count(),
        })
    }

    /// Case A: the path is readable here; archive it while uploading.
    async fn save_from_tree(
        &self,
        driver: Arc<dyn Driver>,
        key: &str,
        src: &Path,
        path: &str,
        strategy: ArchiveStrategy,
    ) -> Result<UploadStats> {
        let meta = source_metadata(src, path, true, strategy)?;
        let src = src.to_path_buf();
        match strategy {
            ArchiveStrategy::None if meta.is_dir() => {
                self.uploader.upload_tree(driver, key, &src).await
            }
            ArchiveStrategy::None => self.uploader.upload_file(driver, key, &src).await,
            ArchiveStrategy::Zip => {
                let span = trace::archive_artifact();
                self.uploader
                    .upload(driver, key, PutOptions::default(), None, move |w| {
                        span.in_scope(|| archive::zip::write_zip(&src, w).map(drop))
                    })
                    .await
            }
            ArchiveStrategy::Tar { compression_level } => {
                let level = gzip::level_from_argo(compression_level);
                upload_tgz(self.uploader, driver, key, src, level).await
            }
        }
    }

    /// Case B: the emissary left `<path>.tgz` (upload it, or re-encode it on the fly), or sends
    /// the tar stream (encode it as it arrives).
    async fn save_from_emissary(
        &self,
        driver: Arc<dyn Driver>,
        key: &str,
        output: EmissaryOutput,
        art: &Artifact,
        strategy: ArchiveStrategy,
    ) -> Result<UploadStats> {
        if let EmissaryOutput::Staged(tgz) = &output {
            source_metadata(tgz, &art.path, false, strategy)?;
        }
        match (strategy, output) {
            (ArchiveStrategy::Tar { .. }, EmissaryOutput::Staged(tgz)) => {
                self.uploader.upload_file(driver, key, &tgz).await
            }
            (ArchiveStrategy::Tar { compression_level }, EmissaryOutput::Streamed(mut tar)) => {
                let level = gzip::level_from_argo(compression_level);
                let threads = self.uploader.config().gzip_threads;
                let span = trace::archive_artifact();
                self.uploader
                    .upload(driver, key, PutOptions::default(), None, move |w| {
                        span.in_scope(|| {
                            // The gzip pipeline's blocks are buffers too: paid for while it runs.
                            let _blocks = w.reserve(gzip::pipeline_bytes(threads))?;
                            let mut gz = gzip::ParallelGzWriter::new(w, level, threads)?;
                            io::copy(&mut tar, &mut gz)?;
                            gz.finish().map(drop)
                        })
                    })
                    .await
            }
            (ArchiveStrategy::Zip, output) => {
                let root_name = art.name.clone();
                let span = trace::archive_artifact();
                self.uploader
                    .upload(driver, key, PutOptions::default(), None, move |w| {
                        span.in_scope(|| tar_to_zip(output, &root_name, w))
                    })
                    .await
            }
            (ArchiveStrategy::None, output) => {
                let uploader = self.uploader.clone();
                let key = key.to_string();
                let handle = Handle::current();
                tokio::task::spawn_blocking(move || {
                    tar_to_objects(&uploader, &handle, driver, output, &key)
                })
                .await
                .map_err(|e| {
                    Error::io(
                        "unpacking the emissary archive",
                        io::Error::other(e.to_string()),
                    )
                })?
            }
        }
    }

    /// Uploads a main container's log (`/var/run/argo/ctr/<name>/combined`) as
    /// `<archive key>/<name>.log`, reported as `<name>-logs`. `None` when there is no log.
    pub async fn save_log(&self, container: &str) -> Result<Option<Saved>> {
        let name = format!("{container}-logs");
        self.save_log_inner(container, name.clone())
            .instrument(artifact_span(&name))
            .await
    }

    async fn save_log_inner(&self, container: &str, name: String) -> Result<Option<Saved>> {
        let log = self.roots.container_dir(container).join("combined");
        if !log.exists() {
            tracing::warn!(container, "no combined log to archive");
            return Ok(None);
        }
        let art = Artifact {
            name,
            ..Default::default()
        };
        let archive = usable_archive(self.template.archive_location.as_ref())?;
        let key = keys::join(&[
            &archive.key().unwrap_or_default(),
            &format!("{container}.log"),
        ]);
        tracing::Span::current().record("key", key.as_str());
        let mut reported = art;
        reported.location = archive.key_only(key.clone());
        let location = reported.relocated(Some(archive)).map_err(Error::Invalid)?;
        let driver =
            storage::open(&location, self.secrets, &self.uploader.config().storage).await?;
        let destination = format!("{}/{}", driver.describe(), key);
        let stats = self
            .uploader
            .upload_file(Arc::clone(&driver), &key, &log)
            .await
            .map_err(|e| e.in_s3_save_step(driver.name(), "failed to put file"))?;
        Ok(Some(Saved {
            artifact: reported,
            key,
            destination,
            stats,
            retries: driver.retry_count(),
        }))
    }
}

/// The source of an output at `path` (`source` here), or Argo's words for its absence: for a
/// shared path it checks the path itself (`none`) or stats it to archive it; for main's own
/// filesystem its wait opens the emissary's tgz. Only a source that does not exist is
/// [`Error::NotFound`] (what makes an optional output absent): any other failure to read it is
/// an error even for an optional output.
fn source_metadata(
    source: &Path,
    path: &str,
    shared: bool,
    strategy: ArchiveStrategy,
) -> Result<fs::Metadata> {
    fs::metadata(source).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
            Error::NotFound(match (shared, strategy) {
                (true, ArchiveStrategy::None) => format!("{path} no such file or directory"),
                (true, _) => format!("stat {}: {}", source.display(), go_error_text(&e)),
                (false, _) => format!("open {}: {}", source.display(), go_error_text(&e)),
            })
        }
        _ => Error::io(format!("reading {}", source.display()), e),
    })
}

/// Bytes of the regular files below `path` (or of the file itself).
fn tree_size(path: &Path) -> Option<u64> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return Some(meta.len());
    }
    let files = super::upload::regular_files(path).ok()?;
    Some(
        files
            .iter()
            .filter_map(|(_, p)| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum(),
    )
}

/// Uploads `src` as a tar.gz at `level`, its parts planned for the tgz's bound computed from
/// the tree (a walk: off the runtime). A tree that cannot be walked fails in the writer, in
/// its own words; until then its size is unknown.
pub async fn upload_tgz(
    uploader: &Uploader,
    driver: Arc<dyn Driver>,
    key: &str,
    src: std::path::PathBuf,
    level: u32,
) -> Result<UploadStats> {
    let threads = uploader.config().gzip_threads;
    let walked = src.clone();
    let bound = tokio::task::spawn_blocking(move || archive::tgz_bound(&walked, level))
        .await
        .ok()
        .and_then(Result::ok);
    let size = bound.map_or(ObjectSize::Unknown, ObjectSize::AtMost);
    let span = trace::archive_artifact();
    uploader
        .upload(driver, key, PutOptions::default(), size, move |w| {
            span.in_scope(|| {
                // The gzip pipeline's blocks are buffers too: paid for while it runs.
                let _blocks = w.reserve(gzip::pipeline_bytes(threads))?;
                archive::write_tgz(&src, w, level, threads).map(drop)
            })
        })
        .await
}

/// Opens an emissary tgz as a tar reader.
fn open_tgz(path: &Path) -> io::Result<tar::Archive<Box<dyn Read + Send>>> {
    let f = fs::File::open(path)?;
    Ok(tar::Archive::new(Box::new(
        flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(256 << 10, f)),
    )))
}

/// Reads the source past the tar's end marker to its real end: a stream's end frame (wait
/// never closes the emissary's connection with bytes unread, which would reset it before the
/// reply is read), a staged file's gzip trailer (checked).
fn read_to_end_checked(archive: tar::Archive<Box<dyn Read + Send>>) -> io::Result<()> {
    io::copy(&mut archive.into_inner(), &mut io::sink()).map(drop)
}

/// `archive: none` from the emissary's output: the single file becomes `key`; a directory's
/// files become `key/<rel>`, several uploads in flight at once.
fn tar_to_objects(
    uploader: &Uploader,
    handle: &Handle,
    driver: Arc<dyn Driver>,
    output: EmissaryOutput,
    key: &str,
) -> Result<UploadStats> {
    let started = std::time::Instant::now();
    let source = output.describe();
    let mut archive = output
        .open()
        .map_err(|e| Error::io(format!("opening {source}"), e))?;
    let mut root: Option<String> = None;
    let mut pending = std::collections::VecDeque::new();
    let mut totals = UploadStats::default();
    let bad = |e: io::Error| Error::io(format!("reading {source}"), e);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        let object_key = match &root {
            None if kind.is_dir() => {
                root = Some(format!("{name}/"));
                continue;
            }
            None => key.to_string(),
            // The names come from main's side (its emissary, or a file in the emptyDir main
            // can write): one that climbs out would put an object anywhere in the bucket with
            // wait's credentials, which main does not have.
            Some(prefix) => match name.strip_prefix(prefix.as_str()) {
                Some(rel) if kind.is_file() => {
                    let rel = SafePath::cleaned(rel)
                        .map_err(|_| ArchiveError::IllegalPath { name: name.clone() })?;
                    keys::join(&[key, rel.as_str()])
                }
                _ => continue,
            },
        };
        let size = entry.size();
        let (mut writer, done) = uploader.start(
            Arc::clone(&driver),
            object_key,
            PutOptions::default(),
            Some(size),
        );
        io::copy(&mut entry, &mut writer).map_err(bad)?;
        writer.close().map_err(bad)?;
        pending.push_back(done);
        while pending.len() > uploader.config().file_concurrency {
            add(&mut totals, handle, pending.pop_front())?;
        }
        if root.is_none() {
            break;
        }
    }
    while let Some(done) = pending.pop_front() {
        add(&mut totals, handle, Some(done))?;
    }
    read_to_end_checked(archive).map_err(bad)?;
    totals.elapsed = started.elapsed();
    Ok(totals)
}

/// Waits for one upload and adds it to `totals` (whose CRC is that of the single object when
/// there is only one).
fn add(
    totals: &mut UploadStats,
    handle: &Handle,
    done: Option<tokio::task::JoinHandle<Result<UploadStats>>>,
) -> Result<()> {
    let Some(done) = done else { return Ok(()) };
    let stats = handle
        .block_on(done)
        .map_err(|e| Error::io("upload task", io::Error::other(e.to_string())))??;
    totals.crc32c = if totals.bytes == 0 && totals.parts == 0 {
        stats.crc32c
    } else {
        0
    };
    totals.bytes += stats.bytes;
    totals.parts += stats.parts;
    totals.resumed_parts += stats.resumed_parts;
    totals.unchecked_parts += stats.unchecked_parts;
    Ok(())
}

/// `archive: zip` from the emissary's output: its regular files re-encoded as a zip stream, a
/// directory's under `<root_name>/` (as Argo zips the extracted `<name>` directory).
fn tar_to_zip(output: EmissaryOutput, root_name: &str, out: &mut PartWriter) -> io::Result<()> {
    let mut archive = output.open()?;
    let mut zw = zip::ZipWriter::new_stream(out);
    let mut root: Option<String> = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        let zip_name = match &root {
            None if kind.is_dir() => {
                root = Some(format!("{name}/"));
                continue;
            }
            None => name,
            Some(prefix) => match name.strip_prefix(prefix.as_str()) {
                Some(rel) if kind.is_file() => format!("{root_name}/{rel}"),
                _ => continue,
            },
        };
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode)
            .large_file(entry.size() >= u64::from(u32::MAX));
        zw.start_file(zip_name, opts).map_err(io::Error::other)?;
        io::copy(&mut entry, &mut zw)?;
    }
    read_to_end_checked(archive)?;
    zw.finish().map_err(io::Error::other)?.flush()
}
