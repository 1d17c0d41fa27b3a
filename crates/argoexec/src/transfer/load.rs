//! Loading an input artifact into place (docs/contract.md#inputs), streaming.
//!
//! Argo downloads to `<path>.tmp`, then unpacks into `<path>.tmpdir`: twice the disk. Here the
//! bytes are unpacked while they arrive, straight into `<path>.tmpdir` (or written to
//! `<path>.tmp` when they are not an archive), then renamed into place. A failed or killed load
//! leaves nothing at the artifact path, and a rerun clears the temporary names first.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tracing::Instrument;

use super::adaptive::Adaptive;
use super::budget::Budget;
use super::download::{self, BlockingReader, ChunkStream};
use super::local_file::{LocalFile, copy_into};
use super::progress::Progress;
use super::{Error, Result, TransferConfig};
use crate::archive::{self, Detection, SafePath};
use crate::contract::Roots;
use crate::keys::{self, validate_path};
use crate::model::ArchiveStrategy;
use crate::model::{Artifact, LocationKind, Template};
use crate::observe::{artifact_span, trace};
use crate::storage::{self, Driver, Secrets, StorageConfig};

/// Attempts in all at fetching an object whose bytes fail the whole-object check. The check
/// can only be made at the end, and an unpack cannot resume mid-archive, so the object is
/// fetched again from its start.
const WHOLE_OBJECT_ATTEMPTS: u32 = 3;

/// What happened to one input artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// Placed at `path`: `bytes` from `key`, after `retries` repeated storage requests.
    Placed {
        path: PathBuf,
        bytes: u64,
        key: String,
        retries: u64,
    },
    /// Optional and not there: skipped, as Argo does.
    Skipped,
    /// Another container's to load ([`Sources`]): a plugin's artifact in `init`, or another
    /// plugin's (or no plugin's) in a plugin's init container.
    NotOurs,
}

/// Which input artifacts a loader takes, decided on the relocated location as Argo does:
/// `init` loads every artifact but plugin ones; each plugin's init container
/// (`artifact-plugin-init --plugin-name N`) loads that plugin's only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sources {
    #[default]
    AllButPlugins,
    Plugin(String),
}

impl Sources {
    fn includes(&self, location: &crate::model::ArtifactLocation) -> bool {
        let plugin = location.plugin.as_ref().map(|p| p.name.as_str());
        match self {
            Self::AllButPlugins => plugin.is_none(),
            Self::Plugin(name) => plugin == Some(name.as_str()),
        }
    }
}

/// Loads input artifacts for one template; concurrent loads share one memory budget.
#[derive(Debug)]
pub struct Loader<'a> {
    roots: &'a Roots,
    secrets: &'a Secrets,
    config: &'a TransferConfig,
    template: &'a Template,
    budget: Budget,
    sources: Sources,
}

impl<'a> Loader<'a> {
    pub fn new(
        roots: &'a Roots,
        secrets: &'a Secrets,
        config: &'a TransferConfig,
        template: &'a Template,
    ) -> Self {
        Self {
            roots,
            secrets,
            config,
            template,
            budget: Budget::new(config.download_budget()),
            sources: Sources::default(),
        }
    }

    /// The same loader, taking only the input artifacts of `sources`.
    pub fn taking(self, sources: Sources) -> Self {
        Self { sources, ..self }
    }

    /// Where an input artifact goes: under `/mainctrfs` when its path is on a shared volume,
    /// else `/argo/inputs/artifacts/<name>` (mounted on main at the path through a subPath).
    pub fn destination(&self, art: &Artifact, path: &str) -> PathBuf {
        if self.template.is_on_shared_mount(path) {
            self.roots.main_ctr_fs(path)
        } else {
            self.roots.input_artifact(&art.name)
        }
    }

    /// Loads one input artifact; its log lines carry its name and key.
    pub async fn load(&self, art: &Artifact) -> Result<Loaded> {
        self.load_inner(art)
            .instrument(artifact_span(&art.name))
            .await
    }

    async fn load_inner(&self, art: &Artifact) -> Result<Loaded> {
        let name = &art.name;
        if !art.location.has_location_or_key() {
            if art.optional {
                return Ok(Loaded::Skipped);
            }
            return Err(Error::Invalid(format!(
                "required artifact '{name}' not supplied"
            )));
        }
        let path = validate_path(name, &art.path)?;
        let location = art
            .relocated(self.template.archive_location.as_ref())
            .map_err(|e| Error::Invalid(format!("failed to load artifact '{name}': {e}")))?;
        if !self.sources.includes(&location) {
            return Ok(Loaded::NotOurs);
        }
        let key = location.key().unwrap_or_default();
        tracing::Span::current().record("key", key.as_str());
        let mut retries = 0;
        let dest = self.destination(art, &path);
        // Our own emptyDir may hold a result of an earlier, interrupted run: start clean. On a
        // user volume only our temporary names are ours to remove.
        let owned = !self.template.is_on_shared_mount(&path);
        clear_stale(&dest, owned)
            .map_err(|e| Error::io(format!("clearing {}", dest.display()), e))?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        let outcome = match location.kind() {
            Some(LocationKind::Raw) => {
                let data = location.raw.map(|r| r.data).unwrap_or_default();
                let size = data.len() as u64;
                let body: ChunkStream = download::chunks(
                    futures::stream::once(async move { Ok(bytes::Bytes::from(data)) }).boxed(),
                );
                let strategy = art.archive.as_ref().and_then(|a| a.declared());
                place_stream(body, &dest, self.placement(strategy, Some(size)))
                    .await
                    .map(|()| size)
            }
            Some(LocationKind::Git) => {
                clone_git(&location, self.secrets, &self.config.storage, &dest).await
            }
            Some(LocationKind::Plugin) => self.load_from_plugin(&location, art, &key, &dest).await,
            _ => {
                let driver = storage::open(&location, self.secrets, &self.config.storage)
                    .await
                    .map_err(|e| opening_failure(name, e))?;
                let strategy = art.archive.as_ref().and_then(|a| a.declared());
                let fetched = until_intact(&key, || async {
                    clear_stale(&dest, false)
                        .map_err(|e| Error::io(format!("clearing {}", dest.display()), e))?;
                    self.fetch(Arc::clone(&driver), &key, &dest, strategy).await
                })
                .await;
                retries = driver.retry_count();
                fetched
            }
        };
        let bytes = match outcome {
            Ok(b) => b,
            Err(e) if e.is_not_found() && art.optional => return Ok(Loaded::Skipped),
            Err(mut e) => {
                let _ = clear_stale(&dest, false);
                if let Error::NoSpace { dir, free, .. } = &mut e {
                    *free = free_bytes(dir);
                }
                return Err(loading_failure(name, e));
            }
        };
        // Argo makes a plugin's artifact without a mode writable for main: 0666.
        let mode = art
            .mode
            .map(|m| m as u32)
            .or_else(|| location.plugin.as_ref().map(|_| 0o666));
        if let Some(mode) = mode {
            chmod(&dest, mode, art.recurse_mode)
                .map_err(|e| Error::io(format!("chmod {}", dest.display()), e))?;
        }
        Ok(Loaded::Placed {
            path: dest,
            bytes,
            key,
            retries,
        })
    }

    /// A plugin's input, by its `Load` as Argo's plugin init containers do: the plugin writes
    /// `<dest>.tmp` (a file or a directory) itself. A directory is renamed into place; a file
    /// is placed as any download (unpacked when it is a tar.gz per the archive strategy),
    /// read from its open handle after its name is freed for the placement.
    async fn load_from_plugin(
        &self,
        location: &crate::model::ArtifactLocation,
        art: &Artifact,
        key: &str,
        dest: &Path,
    ) -> Result<u64> {
        let plugin = location
            .plugin
            .as_ref()
            .ok_or_else(|| Error::Invalid("no plugin location".into()))?;
        let driver = storage::plugin::PluginDriver::connect(plugin, self.secrets.roots())
            .await
            .map_err(|e| opening_failure(&art.name, e))?;
        let tmp = with_suffix(dest, ".tmp");
        driver.load(art, key, &tmp).await?;
        let meta =
            fs::metadata(&tmp).map_err(|e| Error::io(format!("reading {}", tmp.display()), e))?;
        if meta.is_dir() {
            fs::rename(&tmp, dest)
                .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
            return Ok(0);
        }
        let file = tokio::fs::File::open(&tmp)
            .await
            .map_err(|e| Error::io(format!("opening {}", tmp.display()), e))?;
        fs::remove_file(&tmp).map_err(|e| Error::io(format!("removing {}", tmp.display()), e))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10)
            .map_err(|e| storage::Error::io("reading the plugin's file", e))
            .boxed();
        let strategy = art.archive.as_ref().and_then(|a| a.declared());
        place_stream(
            download::chunks(body),
            dest,
            self.placement(strategy, Some(meta.len())),
        )
        .await?;
        Ok(meta.len())
    }

    /// How a stream of `size` bytes is placed under `strategy`, with this loader's settings.
    fn placement(&self, strategy: Option<ArchiveStrategy>, size: Option<u64>) -> Placement {
        Placement {
            strategy,
            max_unpacked: self.config.max_unpacked_bytes,
            size,
            direct: self.config.direct_writes,
        }
    }

    /// Fetches `key` into `dest`: the object itself, or every object below `key/` when the key
    /// names a "directory" (S3 NoSuchKey on a prefix).
    async fn fetch(
        &self,
        driver: Arc<dyn Driver>,
        key: &str,
        dest: &Path,
        strategy: Option<ArchiveStrategy>,
    ) -> Result<u64> {
        const GET_FILE: &str = "failed to get file";
        let meta = match driver.head(key).await.map_err(Error::from) {
            Ok(meta) => meta,
            // A store that cannot list (HTTP) has no directories: the key is simply absent.
            Err(e) if e.is_not_found() => {
                return match self.fetch_dir(&driver, key, dest).await {
                    Ok(Some(n)) => Ok(n),
                    Err(full @ Error::Io { .. }) => {
                        Err(full.no_space(&object(&driver, key), None, parent(dest)))
                    }
                    Ok(None) | Err(Error::Storage(storage::Error::NotSupported { .. })) => Err(e),
                    Err(other) => Err(other),
                };
            }
            Err(e) => return Err(e.in_s3_step(driver.name(), GET_FILE)),
        };
        if meta.size == 0 && driver.name() == "azure" {
            // Azure stores "directories" as empty marker blobs.
            if let Some(n) = self.fetch_dir(&driver, key, dest).await? {
                return Ok(n);
            }
        }
        let (progress, _reporting) = Progress::start(
            format!("download of {}/{key}", driver.describe()),
            Some(meta.size),
            self.config.progress_interval,
        );
        let placed = async {
            match self.route(&driver, key, &meta, strategy).await? {
                Route::InPlace(first) => {
                    let span = trace::unarchive_artifact();
                    span.in_scope(|| trace::record_archive("none"));
                    self.write_in_place(Arc::clone(&driver), key, &meta, dest, &progress, first)
                        .instrument(span)
                        .await
                }
                Route::InOrder(first) => {
                    let (cfg, budget) = (self.config, &self.budget);
                    let body = download::open_object_after(
                        first,
                        Arc::clone(&driver),
                        key,
                        &meta,
                        cfg,
                        budget,
                    )
                    .await?;
                    let progress = progress.clone();
                    let body = body
                        .inspect_ok(move |c| progress.add(c.bytes.len() as u64))
                        .boxed();
                    place_stream(body, dest, self.placement(strategy, Some(meta.size))).await
                }
            }
        }
        .await;
        placed.map_err(|e| {
            e.no_space(&object(&driver, key), Some(meta.size), parent(dest))
                .in_s3_step(driver.name(), GET_FILE)
        })?;
        Ok(meta.size)
    }

    /// How `key` is placed: in place when it is a plain file the store serves in ranges
    /// (declared `archive: none`, or with no archive declared, a first range that is not a
    /// tarball's), else as a stream in order (unpacked, or detected as it arrives). The first
    /// range read to decide is handed on, never read twice. An object of one range is read in
    /// order: one request either way.
    async fn route(
        &self,
        driver: &Arc<dyn Driver>,
        key: &str,
        meta: &storage::ObjectMeta,
        strategy: Option<ArchiveStrategy>,
    ) -> Result<Route> {
        if !driver.serves_ranges(key) {
            return Ok(Route::InOrder(None));
        }
        match strategy {
            Some(ArchiveStrategy::None) => Ok(Route::InPlace(None)),
            None if meta.size > self.config.download_chunk => {
                let first =
                    download::first_range(driver.as_ref(), key, meta, self.config, &self.budget)
                        .await?;
                Ok(match archive::unpack::detect_tgz(&first.bytes, false) {
                    Detection::Other => Route::InPlace(Some(first)),
                    Detection::TarGz | Detection::NeedMore => Route::InOrder(Some(first)),
                })
            }
            _ => Ok(Route::InOrder(None)),
        }
    }

    /// A plain file: the download engine writes its ranges into `<dest>.tmp` where they
    /// belong as they arrive ([`download::to_file`]), then it is renamed into place.
    async fn write_in_place(
        &self,
        driver: Arc<dyn Driver>,
        key: &str,
        meta: &storage::ObjectMeta,
        dest: &Path,
        progress: &Progress,
        first: Option<download::Chunk>,
    ) -> Result<()> {
        let tmp = with_suffix(dest, ".tmp");
        let file = create_local(tmp.clone(), meta.size, self.config.direct_writes).await?;
        let written = |n| progress.add(n);
        let target = download::InPlace { file, first };
        download::to_file(
            driver,
            key,
            meta,
            self.config,
            &self.budget,
            target,
            written,
        )
        .await?;
        fs::rename(&tmp, dest).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))
    }

    /// Downloads every object below `key/` to `dest/<rel>`; `None` when there is none.
    ///
    /// A listing is untrusted: a bucket shared with other writers can hold any key. A key
    /// whose `<rel>` is not a clean relative name ([`SafePath::exact`]: no `..` or `.`, no
    /// leading or doubled `/`) is skipped with a warning naming it: one stray key must
    /// neither be written anywhere nor fail a legitimate input, and every placed file is one
    /// key's alone (`a//b` would land on `a/b`'s file).
    async fn fetch_dir(
        &self,
        driver: &Arc<dyn Driver>,
        key: &str,
        dest: &Path,
    ) -> Result<Option<u64>> {
        let prefix = format!("{}/", keys::clean(key));
        let first = driver.list(&prefix, None).await.map_err(|e| {
            e.in_s3_step(
                driver.name(),
                format!("failed to test if {key} is a directory"),
            )
        })?;
        if first.objects.is_empty() {
            return Ok(None);
        }
        let tmp = with_suffix(dest, ".tmp");
        fs::create_dir_all(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        // Files in flight: adaptive (they are bound by round trips, so a link with latency
        // wants many), or fixed when configured.
        let files = Adaptive::for_files(self.config);
        // The probe's page is the listing's first: a directory costs one LIST less.
        let total: u64 = storage::list_after(Arc::clone(driver), prefix.clone(), first)
            .map_err(Error::from)
            .try_filter_map(|o| {
                let placed = listed_target(&prefix, &o.key, &tmp).map(|target| (o, target));
                futures::future::ready(Ok(placed))
            })
            .map_ok(|(o, target)| {
                let files = Arc::clone(&files);
                async move {
                    let size = o.size;
                    let fetch = self.fetch_file(Arc::clone(driver), o, target);
                    files.run(driver.as_ref(), size, fetch).await
                }
            })
            .try_buffer_unordered(files.ceiling())
            .try_fold(0u64, |acc, n| futures::future::ready(Ok(acc + n)))
            .await
            .map_err(|e| e.in_s3_step(driver.name(), "failed to get directory"))?;
        fs::rename(&tmp, dest).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
        Ok(Some(total))
    }

    /// One file of a directory, through the download engine: ranged when large, each range
    /// retried alone, checked (size, CRC32C where the store gives one), paid for from the
    /// loader's budget. A file whose bytes fail the check is fetched again, alone.
    async fn fetch_file(
        &self,
        driver: Arc<dyn Driver>,
        listed: storage::ObjectMeta,
        target: PathBuf,
    ) -> Result<u64> {
        // A file read in one ranged request (the usual small file) is written in one blocking
        // call: one thread hop per file instead of one per filesystem step.
        let one_read = download::is_one_read(driver.as_ref(), &listed, self.config);
        let ranged = driver.serves_ranges(&listed.key);
        let direct = self.config.direct_writes;
        until_intact(&listed.key, || async {
            if one_read {
                let body =
                    download::open_listed(Arc::clone(&driver), &listed, self.config, &self.budget)
                        .await?;
                write_whole(body.try_collect().await?, target.clone()).await
            } else if ranged {
                let meta = driver.head(&listed.key).await?;
                let file = create_local(target.clone(), meta.size, direct).await?;
                let (cfg, budget) = (self.config, &self.budget);
                let into = download::InPlace { file, first: None };
                download::to_file(
                    Arc::clone(&driver),
                    &listed.key,
                    &meta,
                    cfg,
                    budget,
                    into,
                    |_| {},
                )
                .await
            } else {
                let body =
                    download::open_listed(Arc::clone(&driver), &listed, self.config, &self.budget)
                        .await?;
                write_chunks(body, target.clone(), listed.size, direct).await
            }
        })
        .await?;
        Ok(listed.size)
    }
}

/// Runs `fetch` until the bytes of `key` pass the whole-object check, [`WHOLE_OBJECT_ATTEMPTS`]
/// times at most: the check can only be made at the end, so a corrupt object is fetched again
/// from its start.
async fn until_intact<T, Fetched>(key: &str, mut fetch: impl FnMut() -> Fetched) -> Result<T>
where
    Fetched: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match fetch().await {
            Err(e) if e.is_corrupt_download() && attempt < WHOLE_OBJECT_ATTEMPTS => {
                tracing::warn!(%key, attempt, error = %e, "corrupt download, fetching the object again");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Where a listed `key` goes below `dir`: `None` for a directory marker (`<prefix>.../`),
/// skipped silently as Argo does, and for a key that cannot be placed, skipped with a warning.
fn listed_target(prefix: &str, key: &str, dir: &Path) -> Option<PathBuf> {
    if key.ends_with('/') {
        return None;
    }
    let Some(rel) = key.strip_prefix(prefix) else {
        tracing::warn!(%key, prefix, "listed key skipped: it is not below the listed prefix");
        return None;
    };
    match SafePath::exact(rel) {
        Ok(rel) => Some(rel.below(dir)),
        Err(why) => {
            tracing::warn!(%key, reason = %why, "listed key skipped: it cannot be placed below the destination");
            None
        }
    }
}

/// Argo builds the driver (secrets, options) before loading: a failure there is said as it is,
/// and any other (the store answering, the connection) as the driver's load failing.
fn opening_failure(artifact: &str, e: storage::Error) -> Error {
    match e {
        storage::Error::Config { .. } | storage::Error::NotSupported { .. } => e.into(),
        other => loading_failure(artifact, other.into()),
    }
}

/// `artifact <name> failed to load: <err>` for what Argo's driver `Load` returns; the
/// unpacking (illegal paths...) and the artifact's own definition fail in their own words.
fn loading_failure(artifact: &str, e: Error) -> Error {
    match e {
        Error::Archive(_) | Error::Invalid(_) | Error::Load { .. } => e,
        other => Error::Load {
            artifact: artifact.to_string(),
            source: Box::new(other),
        },
    }
}

/// `<store>/<key>`, for messages.
fn object(driver: &Arc<dyn Driver>, key: &str) -> String {
    format!("{}/{}", driver.describe(), key.trim_start_matches('/'))
}

/// The directory an artifact is placed in.
fn parent(dest: &Path) -> &Path {
    dest.parent().unwrap_or(dest)
}

/// Bytes an unprivileged writer may still use on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available().saturating_mul(st.fragment_size()))
}

/// A git input: cloned into `<dest>.tmp`, then renamed into place (a directory with its `.git`).
async fn clone_git(
    location: &crate::model::ArtifactLocation,
    secrets: &Secrets,
    storage_config: &StorageConfig,
    dest: &Path,
) -> Result<u64> {
    let git = location
        .git
        .as_ref()
        .ok_or_else(|| Error::Invalid("no git location".into()))?;
    #[cfg(feature = "git")]
    {
        let tmp = with_suffix(dest, ".tmp");
        let bytes = storage::git::clone_into(git, secrets, storage_config, &tmp).await?;
        fs::rename(&tmp, dest).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
        Ok(bytes)
    }
    #[cfg(not(feature = "git"))]
    {
        let _ = (git, secrets, storage_config, dest);
        Err(storage::Error::not_supported(
            "git",
            "this argoexec was built without git artifacts (cargo feature `git`)",
        )
        .into())
    }
}

/// Writes downloaded chunks to a new file (replacing an earlier attempt's), creating its
/// parent directories, each chunk in one write ([`LocalFile`]); each chunk's budget is paid
/// back once it is written.
async fn write_chunks(body: ChunkStream, path: PathBuf, size: u64, direct: bool) -> Result<()> {
    let reader = BlockingReader::new(body);
    tokio::task::spawn_blocking(move || {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        write_file(reader, &path, Some(size), direct)
    })
    .await
    .map_err(|e| Error::io("writing a downloaded file", io::Error::other(e)))?
}

/// Writes the chunks of a small object to a new file (replacing an earlier attempt's),
/// creating its parent directories, all in one blocking task; their budget is paid back once
/// they are written.
async fn write_whole(chunks: Vec<download::Chunk>, path: PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        let mut f = fs::File::create(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        for chunk in &chunks {
            io::Write::write_all(&mut f, &chunk.bytes)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::io("writing a downloaded file", io::Error::other(e)))?
}

/// Creates the file a download is written into ([`LocalFile`], `size` reserved), and its
/// parent directories, on a blocking thread.
async fn create_local(path: PathBuf, size: u64, direct: bool) -> Result<Arc<LocalFile>> {
    tokio::task::spawn_blocking(move || {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        LocalFile::create(&path, Some(size), direct)
            .map(Arc::new)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))
    })
    .await
    .map_err(|e| Error::io("creating a downloaded file", io::Error::other(e)))?
}

/// How [`Loader::route`] places an object, with the first range when it was read to decide.
enum Route {
    /// Ranges written where they belong as they arrive: a plain file.
    InPlace(Option<download::Chunk>),
    /// One stream in order, unpacked or detected as it arrives.
    InOrder(Option<download::Chunk>),
}

/// What [`place_stream`] needs besides the bytes.
#[derive(Debug, Clone)]
struct Placement {
    strategy: Option<ArchiveStrategy>,
    /// [`TransferConfig::max_unpacked_bytes`].
    max_unpacked: Option<u64>,
    /// The stream's length when known: a file's space is reserved before it is written.
    size: Option<u64>,
    /// [`TransferConfig::direct_writes`].
    direct: bool,
}

/// Puts a stream at `dest` per the archive strategy: unpacked while it arrives when it is a
/// tar.gz (always for `tar`, by content when the artifact gives no `archive`), else written as
/// a file.
async fn place_stream(body: ChunkStream, dest: &Path, placement: Placement) -> Result<()> {
    let reader = BlockingReader::new(body);
    let dest = dest.to_path_buf();
    let span = trace::unarchive_artifact();
    tokio::task::spawn_blocking(move || span.in_scope(|| place_blocking(reader, &dest, &placement)))
        .await
        .map_err(|e| Error::io("unpacking", io::Error::other(e.to_string())))?
}

fn place_blocking(mut reader: BlockingReader, dest: &Path, placement: &Placement) -> Result<()> {
    place_from(&mut reader, dest, placement).map_err(|e| corrupt_or(&mut reader, e))
}

/// What to say about a failed placement: when the rest of the download fails the whole-object
/// check, the object arrived corrupt, and that (a transient `Integrity` error, answered by
/// fetching it again) is the cause, whatever the damaged bytes made the unpacker say first (a
/// tar header checksum, a deflate error...). Reads what is left of the download to know.
fn corrupt_or(reader: &mut BlockingReader, e: Error) -> Error {
    if e.is_corrupt_download() {
        return e;
    }
    match io::copy(reader, &mut io::sink()) {
        Err(drained) => match Error::from_pipeline("reading", drained) {
            corrupt if corrupt.is_corrupt_download() => corrupt,
            _ => e,
        },
        Ok(_) => e,
    }
}

fn place_from(reader: &mut BlockingReader, dest: &Path, placement: &Placement) -> Result<()> {
    let Placement {
        strategy,
        max_unpacked,
        size,
        direct,
    } = placement.clone();
    let tmp = with_suffix(dest, ".tmp");
    let tmpdir = with_suffix(dest, ".tmpdir");
    let io_err = |what: &str, p: &Path| {
        let what = format!("{what} {}", p.display());
        move |e: io::Error| Error::from_pipeline(what, e)
    };
    let untar = |src: &mut dyn io::Read| -> Result<()> {
        fs::create_dir_all(&tmpdir).map_err(io_err("creating", &tmpdir))?;
        let mut gz =
            flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(256 << 10, src));
        archive::untar(&mut gz, &tmpdir, max_unpacked).map_err(Error::from_archive)?;
        // The tar ends before its stream does: read the rest, so the gzip CRC and our
        // whole-object CRC are checked before anything is put in place.
        io::copy(&mut gz, &mut io::sink()).map_err(io_err("reading the end of", dest))?;
        archive::place(&tmpdir, dest).map_err(io_err("placing", dest))
    };
    match strategy {
        Some(ArchiveStrategy::Tar { .. }) => {
            trace::record_archive("tar");
            untar(reader)
        }
        Some(ArchiveStrategy::None) => {
            trace::record_archive("none");
            copy_to(reader, &tmp, dest, size, direct)
        }
        Some(ArchiveStrategy::Zip) => {
            trace::record_archive("zip");
            // A zip's directory is at its end: it needs a seekable local copy, read back at
            // once (so kept in the page cache).
            write_file(reader, &tmp, size, false)?;
            fs::create_dir_all(&tmpdir).map_err(io_err("creating", &tmpdir))?;
            let result =
                archive::zip::unzip(&tmp, &tmpdir, max_unpacked).map_err(Error::from_archive);
            let _ = fs::remove_file(&tmp);
            result?;
            archive::place(&tmpdir, dest).map_err(io_err("placing", dest))
        }
        None => {
            let (decision, mut replay) = archive::sniff(reader).map_err(io_err("reading", dest))?;
            if decision == Detection::TarGz {
                trace::record_archive("tar");
                untar(&mut replay)
            } else {
                trace::record_archive("none");
                copy_to(replay, &tmp, dest, size, direct)
            }
        }
    }
}

/// Copies `src` to `tmp`, then renames it to `dest`.
fn copy_to(
    src: impl io::BufRead,
    tmp: &Path,
    dest: &Path,
    size: Option<u64>,
    direct: bool,
) -> Result<()> {
    write_file(src, tmp, size, direct)?;
    fs::rename(tmp, dest).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))
}

/// Writes `src` to a new file at `path` ([`LocalFile`]: `size` reserved first when known,
/// aligned blocks past the page cache when `direct`).
fn write_file(src: impl io::BufRead, path: &Path, size: Option<u64>, direct: bool) -> Result<()> {
    let f = LocalFile::create(path, size, direct)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    copy_into(src, &f)
        .map_err(|e| Error::from_pipeline(format!("writing {}", path.display()), e))?;
    Ok(())
}

/// `path` with `suffix` appended to its last component.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes what an interrupted earlier attempt may have left: the `.tmp` and `.tmpdir`
/// siblings, and `dest` itself when `including_dest`.
fn clear_stale(dest: &Path, including_dest: bool) -> io::Result<()> {
    let mut stale = vec![with_suffix(dest, ".tmp"), with_suffix(dest, ".tmpdir")];
    if including_dest {
        stale.push(dest.to_path_buf());
    }
    for p in stale {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&p)?,
            Ok(_) => fs::remove_file(&p)?,
            Err(_) => {}
        }
    }
    Ok(())
}

/// Argo's chmod: `mode` on the artifact path, and below it with `recurseMode`.
fn chmod(path: &Path, mode: u32, recurse: bool) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    if recurse && fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_symlink() {
                continue;
            }
            chmod(&entry.path(), mode, true)?;
        }
    }
    Ok(())
}
