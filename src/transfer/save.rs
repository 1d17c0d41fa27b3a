//! Saving an output artifact (contract sections 6 and 7), streaming.
//!
//! The source is the main container's file seen through a shared volume (`/mainctrfs/<path>`),
//! or the `.tgz` the emissary wrote for paths in main's own filesystem. Argo copies that tgz to
//! `/tmp/argo/outputs/artifacts`, and for `none`/`zip` extracts it there too. Here the tgz is
//! uploaded as it is, or re-encoded entry by entry straight into the upload: no copy, no
//! extraction, nothing on disk.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use tokio::runtime::Handle;
use tracing::Instrument;

use super::progress::{self, Progress};
use super::upload::{PartWriter, UploadStats, Uploader};
use super::{Error, Result, validate_path};
use crate::archive::{self, gzip};
use crate::contract::{Roots, STORAGE_NOT_CONFIGURED};
use crate::keys;
use crate::model::ArchiveStrategy;
use crate::model::{Artifact, ArtifactLocation, Template};
use crate::storage::{self, Driver, PutOptions, Secrets};
use crate::telemetry::{Direction, Transfer, artifact_span};

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
}

/// The file name Argo gives an output stored under the archive key.
pub fn output_file_name(art: &Artifact, path: &str) -> String {
    match art.archive_strategy() {
        ArchiveStrategy::Tar { .. } => format!("{}.tgz", art.name),
        ArchiveStrategy::Zip => format!("{}.zip", art.name),
        ArchiveStrategy::None => keys::base(path),
    }
}

/// The artifact to report and the full location to upload to (contract section 6): an
/// artifact without a key gets `<archive key>/<file name>` under the archive location.
pub fn output_location(
    art: &Artifact,
    path: &str,
    archive: Option<&ArtifactLocation>,
) -> Result<(Artifact, ArtifactLocation)> {
    let mut reported = art.clone();
    if !art.location.has_location_or_key() {
        let archive = archive
            .filter(|a| a.kind().is_some())
            .ok_or_else(|| Error::Invalid(STORAGE_NOT_CONFIGURED.to_string()))?;
        let archive_key = archive.key().unwrap_or_default();
        let key = keys::join(&[&archive_key, &output_file_name(art, path)]);
        reported.location = archive.key_only(key);
    }
    let location = reported.relocated(archive).map_err(Error::Invalid)?;
    Ok((reported, location))
}

impl Saver<'_> {
    /// Saves one output artifact; `None` when it is optional and absent.
    pub async fn save(&self, art: &Artifact) -> Result<Option<Saved>> {
        match self
            .save_inner(art)
            .instrument(artifact_span(&art.name))
            .await
        {
            Err(e) if e.is_not_found() && art.optional => Ok(None),
            other => other.map(Some),
        }
    }

    async fn save_inner(&self, art: &Artifact) -> Result<Saved> {
        let path = validate_path(&art.name, &art.path)?;
        let (reported, location) =
            output_location(art, &path, self.template.archive_location.as_ref())?;
        let key = location.key().unwrap_or_default();
        tracing::Span::current().record("key", key.as_str());
        let driver = storage::open(&location, self.secrets).await?;
        let destination = format!("{}/{}", driver.describe(), key);
        let strategy = art.archive_strategy();
        let shared = self
            .template
            .is_output_on_shared_mount(&path, crate::contract::initless_pod());
        let source = if shared {
            self.roots.main_ctr_fs(&path)
        } else {
            self.roots.emissary_artifact(&path)
        };
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
            progress::interval_from_env(),
        );
        let uploader = self.uploader.tracked(progress);
        let saver = Saver {
            uploader: &uploader,
            ..*self
        };
        let stats = if shared {
            saver
                .save_from_tree(Arc::clone(&driver), &key, &source, &path, strategy)
                .await?
        } else {
            saver
                .save_from_emissary(Arc::clone(&driver), &key, &source, art, strategy)
                .await?
        };
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
        let meta = fs::metadata(src)
            .map_err(|_| Error::NotFound(format!("{path} no such file or directory")))?;
        let threads = self.uploader.config().gzip_threads;
        let src = src.to_path_buf();
        match strategy {
            ArchiveStrategy::None if meta.is_dir() => {
                self.uploader.upload_tree(driver, key, &src).await
            }
            ArchiveStrategy::None => self.uploader.upload_file(driver, key, &src).await,
            ArchiveStrategy::Zip => {
                self.uploader
                    .upload(driver, key, PutOptions::default(), None, move |w| {
                        archive::zip::write_zip(&src, w).map(drop)
                    })
                    .await
            }
            ArchiveStrategy::Tar { compression_level } => {
                let level = gzip::level_from_argo(compression_level);
                self.uploader
                    .upload(driver, key, PutOptions::default(), None, move |w| {
                        archive::write_tgz(&src, w, level, threads).map(drop)
                    })
                    .await
            }
        }
    }

    /// Case B: the emissary left `<path>.tgz`; upload it, or re-encode it on the fly.
    async fn save_from_emissary(
        &self,
        driver: Arc<dyn Driver>,
        key: &str,
        tgz: &Path,
        art: &Artifact,
        strategy: ArchiveStrategy,
    ) -> Result<UploadStats> {
        if !tgz.exists() {
            return Err(Error::NotFound(format!(
                "{} no such file or directory",
                art.path
            )));
        }
        match strategy {
            ArchiveStrategy::Tar { .. } => self.uploader.upload_file(driver, key, tgz).await,
            ArchiveStrategy::Zip => {
                let tgz = tgz.to_path_buf();
                let root_name = art.name.clone();
                self.uploader
                    .upload(driver, key, PutOptions::default(), None, move |w| {
                        tgz_to_zip(&tgz, &root_name, w)
                    })
                    .await
            }
            ArchiveStrategy::None => {
                let uploader = self.uploader.clone();
                let tgz = tgz.to_path_buf();
                let key = key.to_string();
                let handle = Handle::current();
                tokio::task::spawn_blocking(move || {
                    tgz_to_objects(&uploader, &handle, driver, &tgz, &key)
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
        let archive = self
            .template
            .archive_location
            .as_ref()
            .filter(|a| a.kind().is_some())
            .ok_or_else(|| Error::Invalid(STORAGE_NOT_CONFIGURED.to_string()))?;
        let key = keys::join(&[
            &archive.key().unwrap_or_default(),
            &format!("{container}.log"),
        ]);
        tracing::Span::current().record("key", key.as_str());
        let mut reported = art;
        reported.location = archive.key_only(key.clone());
        let location = reported.relocated(Some(archive)).map_err(Error::Invalid)?;
        let driver = storage::open(&location, self.secrets).await?;
        let destination = format!("{}/{}", driver.describe(), key);
        let stats = self
            .uploader
            .upload_file(Arc::clone(&driver), &key, &log)
            .await?;
        Ok(Some(Saved {
            artifact: reported,
            key,
            destination,
            stats,
            retries: driver.retry_count(),
        }))
    }
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

/// Opens an emissary tgz as a tar reader.
fn open_tgz(path: &Path) -> io::Result<tar::Archive<impl Read>> {
    let f = fs::File::open(path)?;
    Ok(tar::Archive::new(flate2::read::MultiGzDecoder::new(
        io::BufReader::with_capacity(256 << 10, f),
    )))
}

/// `archive: none` from an emissary tgz: the single file becomes `key`; a directory's files
/// become `key/<rel>`, several uploads in flight at once.
fn tgz_to_objects(
    uploader: &Uploader,
    handle: &Handle,
    driver: Arc<dyn Driver>,
    tgz: &Path,
    key: &str,
) -> Result<UploadStats> {
    let started = std::time::Instant::now();
    let mut archive =
        open_tgz(tgz).map_err(|e| Error::io(format!("opening {}", tgz.display()), e))?;
    let mut root: Option<String> = None;
    let mut pending = std::collections::VecDeque::new();
    let mut totals = UploadStats::default();
    let bad = |e: io::Error| Error::io(format!("reading {}", tgz.display()), e);
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
            Some(prefix) => match name.strip_prefix(prefix.as_str()) {
                Some(rel) if kind.is_file() => keys::join(&[key, rel]),
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
    Ok(())
}

/// `archive: zip` from an emissary tgz: its regular files re-encoded as a zip stream, a
/// directory's under `<root_name>/` (as Argo zips the extracted `<name>` directory).
fn tgz_to_zip(tgz: &Path, root_name: &str, out: &mut PartWriter) -> io::Result<()> {
    let mut archive = open_tgz(tgz)?;
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
    zw.finish().map_err(io::Error::other)?.flush()
}
