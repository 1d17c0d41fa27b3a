//! The upload pipeline: a producer writes bytes, parts go up concurrently, memory stays bounded.
//!
//! ```text
//! producer (blocking thread) --write--> PartWriter --parts--> consumer (async) --> Driver
//!        tar / gzip / file copy          cuts parts, CRC32C     single PUT, or multipart:
//!                                        waits on the Budget    N parts in flight, abort on error
//! ```
//! Every part buffer is paid for from one [`Budget`] shared by all uploads of the process, so
//! memory is bounded by the budget whatever the number or size of the objects. A file larger
//! than one part skips the writer: its parts are ranges of the file, read while they are sent
//! (drivers that [stream file parts](Driver::streams_file_parts)), so a part in flight costs a
//! few small blocks whatever its size. An object is only completed when the producer marks its
//! last part: a producer that fails mid-way leaves nothing under the key.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::adaptive::Adaptive;
use super::budget::{Budget, Permit};
use super::config::TransferConfig;
use super::parts::{ObjectSize, PartPlan};
use super::progress::Progress;
use super::resume::Resumable;
use super::{Error, Result};
use crate::archive::gzip;
use crate::storage::buffer::Buffer;
use crate::storage::file_range::{FileRange, READ_BLOCK};
use crate::storage::verify::{self, Evidence};
use crate::storage::{self, Driver, MultipartLimits, Part, PartBody, PartReceipt, PutOptions};

/// One message from a writer to its consumer.
struct PartMsg {
    part: Part,
    /// Set on the final part: the producer finished cleanly.
    last: bool,
    /// The part's share of the budget, paid back once the part is stored.
    permit: Permit,
}

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadStats {
    pub bytes: u64,
    /// 0 for a single PUT.
    pub parts: u32,
    /// CRC32C of the whole object, combined from the parts.
    pub crc32c: u32,
    pub elapsed: Duration,
    /// Parts an interrupted earlier attempt had stored, verified and not sent again.
    pub resumed_parts: u32,
    /// Parts the store's answer could not prove intact (no CRC32C echo, no MD5 ETag).
    pub unchecked_parts: u32,
}

/// The sink a producer writes an object into; cuts it into parts per the [`PartPlan`].
pub struct PartWriter {
    plan: PartPlan,
    number: u32,
    buf: Buffer,
    permit: Option<Permit>,
    remaining: Option<u64>,
    tx: Option<mpsc::Sender<PartMsg>>,
    budget: Budget,
    handle: Handle,
    crc32c: u32,
    total: u64,
    progress: Option<Progress>,
}

impl std::fmt::Debug for PartWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartWriter")
            .field("part", &self.number)
            .field("total", &self.total)
            .finish()
    }
}

impl PartWriter {
    /// Size of the part being filled: the plan's, or less when the known size left is smaller.
    fn target(&self) -> u64 {
        let planned = self.plan.part_size(self.number);
        match self.remaining {
            Some(r) if r > 0 => planned.min(r),
            _ => planned,
        }
    }

    fn ensure_buffer(&mut self) -> io::Result<()> {
        if self.permit.is_none() {
            let size = self.target();
            self.permit = Some(self.budget.acquire_blocking(&self.handle, size)?);
            self.buf = Buffer::with_capacity(size as usize)?;
        }
        Ok(())
    }

    fn send(&mut self, last: bool) -> io::Result<()> {
        if self.number > self.plan.max_parts() {
            return Err(io::Error::other(format!(
                "the object needs more than {} parts",
                self.plan.max_parts()
            )));
        }
        let data = std::mem::take(&mut self.buf).freeze();
        let len = data.len();
        let part = Part::new(self.number, data);
        self.crc32c = crc32c::crc32c_combine(self.crc32c, part.crc32c, len);
        if let Some(r) = self.remaining.as_mut() {
            *r = r.saturating_sub(len as u64);
        }
        let permit = match self.permit.take() {
            Some(p) => p,
            None => self.budget.acquire_blocking(&self.handle, 1)?,
        };
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("writer closed"))?;
        post(&self.handle, tx, PartMsg { part, last, permit })?;
        self.number += 1;
        Ok(())
    }

    /// Pays for memory the producer holds besides the parts (the gzip pipeline's blocks),
    /// until the returned permit is dropped.
    pub fn reserve(&self, bytes: u64) -> io::Result<Permit> {
        self.budget.acquire_blocking(&self.handle, bytes)
    }

    /// Sends what is buffered as the final part: the object may now be completed. A full part
    /// is only sent once more data proves it is not the last, so the last part is never empty
    /// (unless the object is).
    pub fn close(mut self) -> io::Result<u64> {
        self.send(true)?;
        self.tx.take();
        Ok(self.total)
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.permit.is_some() && self.buf.remaining() == 0 {
            self.send(false)?;
        }
        self.ensure_buffer()?;
        let n = self.buf.fill(data);
        self.total += n as u64;
        if let Some(p) = &self.progress {
            p.add(n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hands a part to the consumer, from a producer's blocking thread.
fn post(handle: &Handle, tx: &mpsc::Sender<PartMsg>, msg: PartMsg) -> io::Result<()> {
    handle
        .block_on(tx.send(msg))
        .map_err(|_| io::Error::other(UploadStopped))
}

/// What a producer's write fails with when the upload it feeds has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the upload stopped")]
struct UploadStopped;

fn is_upload_stopped(e: &io::Error) -> bool {
    let mut cause = e
        .get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(err) = cause {
        if err.is::<UploadStopped>() {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Starts uploads against one shared budget.
#[derive(Debug, Clone)]
pub struct Uploader {
    cfg: TransferConfig,
    budget: Budget,
    progress: Option<Progress>,
}

impl Uploader {
    pub fn new(cfg: TransferConfig) -> Self {
        let budget = Budget::new(cfg.upload_budget());
        Self {
            cfg,
            budget,
            progress: None,
        }
    }

    /// The same uploader, counting the bytes it moves into `progress`.
    pub fn tracked(&self, progress: Progress) -> Self {
        Self {
            progress: Some(progress),
            ..self.clone()
        }
    }

    pub fn config(&self) -> &TransferConfig {
        &self.cfg
    }

    /// The budget every buffer of these uploads is paid from.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    fn plan(&self, driver: &dyn Driver, size: ObjectSize) -> PartPlan {
        // A streaming backend's parts are its chunks, so it sends each without copying it.
        let base = driver.put_stream_chunk().unwrap_or(self.cfg.part_size);
        let mut limits = driver.multipart_limits().unwrap_or(MultipartLimits {
            min_part_size: base,
            max_part_size: base,
            max_parts: u32::MAX,
        });
        if let Some(n) = self.cfg.max_parts_override {
            limits.max_parts = limits.max_parts.min(n);
        }
        PartPlan::new(base, limits, size)
    }

    /// Opens an upload of `key`: write into the returned writer from a blocking thread, call
    /// [`PartWriter::close`], then await the handle for the result.
    pub fn start(
        &self,
        driver: Arc<dyn Driver>,
        key: String,
        opts: PutOptions,
        size: impl Into<ObjectSize>,
    ) -> (PartWriter, JoinHandle<Result<UploadStats>>) {
        let size = size.into();
        let plan = self.plan(driver.as_ref(), size);
        let (tx, rx) = mpsc::channel(1);
        let writer = PartWriter {
            plan,
            number: 1,
            buf: Buffer::default(),
            permit: None,
            remaining: size.exact(),
            tx: Some(tx),
            budget: self.budget.clone(),
            handle: Handle::current(),
            crc32c: 0,
            total: 0,
            progress: self.progress.clone(),
        };
        (writer, self.spawn_consumer(driver, key, opts, rx))
    }

    /// Starts storing the parts `rx` brings as `key`.
    fn spawn_consumer(
        &self,
        driver: Arc<dyn Driver>,
        key: String,
        opts: PutOptions,
        rx: mpsc::Receiver<PartMsg>,
    ) -> JoinHandle<Result<UploadStats>> {
        let concurrency = Adaptive::for_config(&self.cfg);
        // The consumer logs retries and resumes: in the caller's span, so they name the artifact.
        tokio::spawn(
            async move { consume(driver, key, opts, rx, concurrency).await }.in_current_span(),
        )
    }

    /// Refuses up front a plan whose buffered parts could not be paid for: a part larger than
    /// the budget's share for parts (all of it but one gzip pipeline, which a producer holds
    /// while it fills parts) would take memory past the ceiling, or wait for it forever.
    fn check_fits(&self, driver: &dyn Driver, plan: &PartPlan, key: &str) -> Result<()> {
        let part = plan.part_size(1);
        let for_parts = self
            .budget
            .total()
            .saturating_sub(gzip::pipeline_bytes(self.cfg.gzip_threads));
        if part <= for_parts {
            return Ok(());
        }
        let budget =
            "the upload memory budget (ARGOEXEC_PART_SIZE_MIB x (ARGOEXEC_CONCURRENCY + 1))";
        let cause = match driver.put_stream_chunk() {
            Some(_) => format!(
                "uploading {key}: the {} driver sends chunks of {part} bytes, more than \
                 {budget}; lower its chunk size or raise ARGOEXEC_PART_SIZE_MIB",
                driver.name()
            ),
            None => format!(
                "uploading {key} needs parts of {part} bytes, more than {budget}; raise \
                 ARGOEXEC_PART_SIZE_MIB"
            ),
        };
        Err(Error::io(
            cause,
            io::Error::other(super::budget::BudgetError::TooLarge {
                wanted: part,
                budget: for_parts,
            }),
        ))
    }

    /// Uploads what `produce` writes, as the object `key`.
    pub async fn upload<P>(
        &self,
        driver: Arc<dyn Driver>,
        key: &str,
        opts: PutOptions,
        size: impl Into<ObjectSize>,
        produce: P,
    ) -> Result<UploadStats>
    where
        P: FnOnce(&mut PartWriter) -> io::Result<()> + Send + 'static,
    {
        let size = size.into();
        self.check_fits(driver.as_ref(), &self.plan(driver.as_ref(), size), key)?;
        let (mut writer, consumer) = self.start(driver, key.to_string(), opts, size);
        let producer = tokio::task::spawn_blocking(move || {
            produce(&mut writer)?;
            writer.close().map(drop)
        });
        finish(producer, consumer).await
    }

    /// Uploads a file larger than one part as ranges of the file, each read while it is sent
    /// (and again if it is retried): memory per part in flight is a few blocks, so the
    /// configured number of parts stays in flight whatever the part size.
    async fn upload_file_parts(
        &self,
        driver: Arc<dyn Driver>,
        key: &str,
        path: &Path,
        size: u64,
        plan: PartPlan,
    ) -> Result<UploadStats> {
        let (tx, rx) = mpsc::channel(1);
        let consumer = self.spawn_consumer(driver, key.to_string(), PutOptions::default(), rx);
        let path: Arc<Path> = path.into();
        let budget = self.budget.clone();
        let progress = self.progress.clone();
        let handle = Handle::current();
        let producer = tokio::task::spawn_blocking(move || {
            let mut offset = 0;
            for number in 1..=plan.max_parts() {
                // The block this part's CRC is read with now, and the blocks it is sent with.
                let permit = budget.acquire_blocking(&handle, 2 * READ_BLOCK as u64)?;
                let range = FileRange {
                    path: Arc::clone(&path),
                    offset,
                    len: plan.part_size(number).min(size - offset),
                };
                offset += range.len;
                let crc32c = range.crc32c()?;
                if let Some(p) = &progress {
                    p.add(range.len);
                }
                let part = Part::from_file(number, range, crc32c);
                let last = offset == size;
                post(&handle, &tx, PartMsg { part, last, permit })?;
                if last {
                    return Ok(());
                }
            }
            Err(io::Error::other(format!(
                "the object needs more than {} parts",
                plan.max_parts()
            )))
        });
        finish(producer, consumer).await
    }
    /// Uploads one local file as `key`.
    pub async fn upload_file(
        &self,
        driver: Arc<dyn Driver>,
        key: &str,
        path: &Path,
    ) -> Result<UploadStats> {
        let size = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("{} no such file or directory", path.display()), e))?
            .len();
        let plan = self.plan(driver.as_ref(), ObjectSize::Exact(size));
        if driver.streams_file_parts() && size > plan.part_size(1) {
            return self.upload_file_parts(driver, key, path, size, plan).await;
        }
        let path = path.to_path_buf();
        self.upload(driver, key, PutOptions::default(), Some(size), move |w| {
            let mut f = std::fs::File::open(&path)?;
            io::copy(&mut f, w)?;
            Ok(())
        })
        .await
    }

    /// Uploads every regular file below `dir` as `<prefix>/<rel>`, several at once
    /// (`archive: none` directories). Symlinks and empty directories are not stored, as in Argo.
    pub async fn upload_tree(
        &self,
        driver: Arc<dyn Driver>,
        prefix: &str,
        dir: &Path,
    ) -> Result<UploadStats> {
        let started = Instant::now();
        let root = dir.to_path_buf();
        let files = tokio::task::spawn_blocking(move || regular_files(&root))
            .await
            .map_err(|e| Error::io("listing files", io::Error::other(e.to_string())))?
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        // Files in flight: adaptive (small files are bound by round trips), or fixed when
        // configured.
        let in_flight = Adaptive::for_files(&self.cfg);
        let stats: Vec<UploadStats> = futures::stream::iter(files)
            .map(|(rel, path)| {
                let driver = Arc::clone(&driver);
                let in_flight = Arc::clone(&in_flight);
                let key = crate::keys::join(&[prefix, &rel]);
                async move {
                    let upload = self.upload_file(Arc::clone(&driver), &key, &path);
                    in_flight
                        .run_measured(driver.as_ref(), upload, |s| s.bytes)
                        .await
                }
            })
            .buffer_unordered(in_flight.ceiling())
            .try_collect()
            .await?;
        Ok(UploadStats {
            bytes: stats.iter().map(|s| s.bytes).sum(),
            parts: stats.iter().map(|s| s.parts).sum(),
            resumed_parts: stats.iter().map(|s| s.resumed_parts).sum(),
            unchecked_parts: stats.iter().map(|s| s.unchecked_parts).sum(),
            elapsed: started.elapsed(),
            ..Default::default()
        })
    }
}

/// Waits for both sides of an upload; the consumer's result, or the error that explains it.
async fn finish(
    producer: JoinHandle<io::Result<()>>,
    consumer: JoinHandle<Result<UploadStats>>,
) -> Result<UploadStats> {
    let (produced, consumed) = tokio::join!(producer, consumer);
    let produced = produced.map_err(|e| Error::Io {
        context: "the archive writer panicked".into(),
        source: io::Error::other(e.to_string()),
    })?;
    let consumed = consumed.map_err(|e| Error::Io {
        context: "the upload task panicked".into(),
        source: io::Error::other(e.to_string()),
    })?;
    match (produced, consumed) {
        // The producer stopped because the upload failed: the upload's error is the cause.
        (Err(e), Err(cause)) if is_upload_stopped(&e) => Err(cause),
        // The producer's error explains a consumer that saw no last part.
        (Err(e), _) => Err(Error::Io {
            context: "reading the source failed".into(),
            source: e,
        }),
        (Ok(()), consumed) => consumed,
    }
}

/// Every regular file below `root` as (slash-separated relative path, path), sorted.
///
/// The list is held whole to sort it: two paths per file, a few hundred bytes, so about
/// 20 MiB for 100,000 files (the object bodies themselves stream).
pub fn regular_files(root: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((rel, dir)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push((child_rel, entry.path()));
            } else if ft.is_file() {
                out.push((child_rel, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Receives the parts of one object and stores them: one PUT when the whole object fits in
/// its first part, else a multipart upload with `concurrency` parts in flight, resuming the
/// store's unfinished upload of the key when an earlier attempt was interrupted.
async fn consume(
    driver: Arc<dyn Driver>,
    key: String,
    opts: PutOptions,
    mut rx: mpsc::Receiver<PartMsg>,
    concurrency: Arc<Adaptive>,
) -> Result<UploadStats> {
    let started = Instant::now();
    let Some(first) = rx.recv().await else {
        return Err(incomplete(&key));
    };
    if driver.multipart_limits().is_none() {
        return stream_put(driver, key, opts, first, rx, started).await;
    }
    if let (true, PartBody::Memory(data)) = (first.last, &first.part.body) {
        let bytes = data.len() as u64;
        let crc32c = first.part.crc32c;
        let mut opts = opts;
        opts.metadata
            .insert(storage::CRC32C_METADATA.into(), format!("{crc32c:08x}"));
        driver.put(&key, data.clone(), &opts).await?;
        return Ok(UploadStats {
            bytes,
            crc32c,
            elapsed: started.elapsed(),
            ..Default::default()
        });
    }
    let mut session = Session::open(&driver, &key, &opts).await?;
    let outcome = session
        .upload_parts(&driver, &key, first, rx, concurrency)
        .await;
    let completed = match outcome {
        Ok(receipts) => match driver
            .complete_multipart(&key, &session.upload_id, &receipts)
            .await
        {
            Ok(()) => Ok(receipts),
            Err(gone) if gone.is_not_found() => confirm_completed(driver.as_ref(), &key, &receipts)
                .await
                .then_some(receipts)
                .ok_or(Error::from(gone)),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e),
    };
    match completed {
        Ok(receipts) => Ok(UploadStats {
            bytes: receipts.iter().map(|r| r.size).sum(),
            parts: receipts.len() as u32,
            crc32c: whole_crc32c(&receipts),
            elapsed: started.elapsed(),
            resumed_parts: session.reused,
            unchecked_parts: session.unchecked,
        }),
        Err(e) => {
            if let Err(abort) = driver.abort_multipart(&key, &session.upload_id).await {
                tracing::warn!(key, error = %abort, "could not abort the multipart upload");
            }
            Err(e)
        }
    }
}

/// CRC32C of the object the parts make, in order.
fn whole_crc32c(receipts: &[PartReceipt]) -> u32 {
    receipts.iter().fold(0, |acc, r| {
        crc32c::crc32c_combine(acc, r.crc32c, r.size as usize)
    })
}

/// Whether the object under `key` is the one `receipts` complete into, when completing said
/// the upload is gone: an earlier attempt of the same call completed it and its answer was
/// lost (a connection reset after the server acted). Proven by the size and the whole-object
/// CRC32C the store keeps, or else S3's multipart ETag computed from the parts' MD5s; when
/// neither can be compared the upload is not taken as done.
async fn confirm_completed(driver: &dyn Driver, key: &str, receipts: &[PartReceipt]) -> bool {
    let Ok(stored) = driver.head(key).await else {
        return false;
    };
    let size: u64 = receipts.iter().map(|r| r.size).sum();
    let proven = stored.size == size
        && match stored.crc32c {
            Some(crc) => crc == whole_crc32c(receipts),
            None => stored
                .etag
                .is_some_and(|etag| Some(etag) == verify::multipart_etag(receipts)),
        };
    if proven {
        tracing::info!(
            key,
            "the multipart upload was already completed (its answer was lost): the stored object has our size and checksum"
        );
    }
    proven
}

/// One multipart upload: its id, and what the store already holds of it.
struct Session {
    upload_id: String,
    resumable: Option<Resumable>,
    /// Parts the store already held and that were not sent again.
    reused: u32,
    /// Parts whose receipt could not prove them intact.
    unchecked: u32,
}

impl Session {
    /// Resumes the store's unfinished upload of `key` if there is one, else starts a new one.
    async fn open(driver: &Arc<dyn Driver>, key: &str, opts: &PutOptions) -> Result<Self> {
        let resumable = Resumable::find(driver.as_ref(), key).await;
        let upload_id = match &resumable {
            Some(found) => {
                tracing::info!(
                    key,
                    upload_id = found.upload_id(),
                    stored_parts = found.stored(),
                    "resuming an interrupted multipart upload"
                );
                found.upload_id().to_string()
            }
            None => driver.create_multipart(key, opts).await?,
        };
        Ok(Self {
            upload_id,
            resumable,
            reused: 0,
            unchecked: 0,
        })
    }

    /// Stores every part, `concurrency` at once; a part the store provably holds already is
    /// not sent again. Fails unless the producer marked its last part.
    async fn upload_parts(
        &mut self,
        driver: &Arc<dyn Driver>,
        key: &str,
        first: PartMsg,
        rx: mpsc::Receiver<PartMsg>,
        concurrency: Arc<Adaptive>,
    ) -> Result<Vec<PartReceipt>> {
        let rest =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let upload_id = self.upload_id.clone();
        let resumable = self.resumable.take();
        let saw_last = std::sync::atomic::AtomicBool::new(false);
        let concurrency = &*concurrency;
        let in_flight = futures::stream::iter([first])
            .chain(rest)
            .map(|msg| {
                if msg.last {
                    saw_last.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                let resumable = resumable.as_ref();
                let driver = Arc::clone(driver);
                let upload_id = upload_id.clone();
                async move {
                    if let Some(stored) = match resumable {
                        Some(r) => r.reuse(&msg.part).await,
                        None => None,
                    } {
                        return Ok((stored, false));
                    }
                    let put = driver.put_part(key, &upload_id, &msg.part);
                    let size = msg.part.len();
                    let sent = concurrency.run(&*driver, size, put).await?;
                    drop(msg);
                    Ok::<_, Error>((sent, true))
                }
            })
            .buffer_unordered(concurrency.ceiling());
        let mut in_flight = std::pin::pin!(in_flight);
        let mut receipts = Vec::new();
        while let Some(done) = in_flight.next().await {
            let (receipt, uploaded) = done?;
            if !uploaded {
                self.reused += 1;
            } else if Evidence::of(&receipt) == Evidence::None {
                self.unchecked += 1;
            }
            receipts.push(receipt);
        }
        if !saw_last.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(incomplete(key));
        }
        receipts.sort_by_key(|r| r.number);
        Ok(receipts)
    }
}

/// Backends without multipart take the parts as one streaming body. A producer failure turns
/// into a stream error, so the backend aborts instead of storing a truncated object.
async fn stream_put(
    driver: Arc<dyn Driver>,
    key: String,
    opts: PutOptions,
    first: PartMsg,
    rx: mpsc::Receiver<PartMsg>,
    started: Instant,
) -> Result<UploadStats> {
    let stats = Arc::new(std::sync::Mutex::new((0u64, 0u32, false)));
    let tally = Arc::clone(&stats);
    let missing_key = key.clone();
    let rest =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let body = futures::stream::iter([first])
        .chain(rest)
        .map(move |m| {
            let permit = m.permit;
            let PartBody::Memory(data) = m.part.body else {
                return Err(storage::Error::not_supported(
                    "upload",
                    "file parts are only sent to drivers that stream them",
                ));
            };
            if let Ok(mut t) = tally.lock() {
                t.0 += data.len() as u64;
                t.1 = crc32c::crc32c_combine(t.1, m.part.crc32c, data.len());
                t.2 |= m.last;
            }
            // The backend may hold the part until the store has it: its share stays paid.
            Ok::<Bytes, storage::Error>(permit.attach(data))
        })
        .chain(futures::stream::once({
            let stats = Arc::clone(&stats);
            async move {
                let complete = stats.lock().map(|t| t.2).unwrap_or(false);
                if complete {
                    Ok(Bytes::new())
                } else {
                    Err(incomplete_storage(&missing_key))
                }
            }
        }))
        .try_filter(|b| futures::future::ready(!b.is_empty()))
        .boxed();
    driver.put_stream(&key, body, &opts).await?;
    let (bytes, crc32c, _) = *stats
        .lock()
        .map_err(|_| Error::io("upload stats", io::Error::other("poisoned")))?;
    Ok(UploadStats {
        bytes,
        crc32c,
        elapsed: started.elapsed(),
        ..Default::default()
    })
}

fn incomplete_storage(key: &str) -> storage::Error {
    storage::Error::backend(
        "upload",
        storage::ErrorKind::Request,
        format!("the source of {key} ended with an error; nothing was stored"),
    )
}

fn incomplete(key: &str) -> Error {
    Error::Storage(incomplete_storage(key))
}
