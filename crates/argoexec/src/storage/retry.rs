//! Retries as a wrapper: any driver, every operation, typed classification only, with the
//! per-part integrity check inside the retried unit.
//!
//! Each call is retried alone (one part, one ranged read, one listing page), so one bad
//! request never re-sends a whole artifact. The policy is Argo's executor backoff
//! (`EXECUTOR_RETRY_BACKOFF_*`: 5 attempts, 1 s, x1.6, jitter 0.5), bounded by `ARGO_DEADLINE`.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use super::verify::check_part;
use super::{
    ByteStream, Driver, ErrorKind, GetStream, ListPage, MultipartLimits, ObjectMeta, Part,
    PartReceipt, PendingUpload, PutOptions, RangeRead, Result,
};
use crate::contract::parse_go_duration;

/// An exponential backoff with jitter and an optional deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Attempts in all, the first included (Kubernetes' `Steps`).
    pub steps: u32,
    pub initial: Duration,
    pub factor: f64,
    /// Each sleep is stretched by up to this fraction of itself, at random.
    pub jitter: f64,
    /// No sleep is longer than this.
    pub cap: Duration,
    /// No retry starts after this instant.
    pub deadline: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            steps: 5,
            initial: Duration::from_secs(1),
            factor: 1.6,
            jitter: 0.5,
            cap: Duration::from_secs(60),
            deadline: None,
        }
    }
}

impl Backoff {
    /// Argo's executor backoff overridden by `EXECUTOR_RETRY_BACKOFF_{STEPS,DURATION,FACTOR,JITTER}`
    /// read through `get` (the deadline is [`crate::storage::StorageConfig`]'s).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| get(name).filter(|v| !v.is_empty());
        let mut b = Self::default();
        if let Some(v) = var("EXECUTOR_RETRY_BACKOFF_STEPS").and_then(|v| v.parse().ok()) {
            b.steps = v;
        }
        if let Some(v) = var("EXECUTOR_RETRY_BACKOFF_DURATION").and_then(|v| parse_go_duration(&v))
        {
            b.initial = v;
        }
        if let Some(v) = var("EXECUTOR_RETRY_BACKOFF_FACTOR").and_then(|v| v.parse().ok()) {
            b.factor = v;
        }
        if let Some(v) = var("EXECUTOR_RETRY_BACKOFF_JITTER").and_then(|v| v.parse().ok()) {
            b.jitter = v;
        }
        b
    }

    /// This backoff, starting no retry after `deadline`: when it is already past, the first
    /// attempt still runs and no retry does (the zero time, Argo's "none", is `None` already).
    pub fn until(mut self, deadline: Option<SystemTime>) -> Self {
        self.deadline = deadline.map(|d| {
            let left = d.duration_since(SystemTime::now()).unwrap_or_default();
            Instant::now() + left
        });
        self
    }

    /// The sleep before attempt `attempt + 1` (attempt counts from 0), jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.initial.as_secs_f64() * self.factor.powi(attempt as i32);
        let jitter = if self.jitter > 0.0 {
            base * self.jitter * random_unit()
        } else {
            0.0
        };
        Duration::from_secs_f64(base + jitter).min(self.cap)
    }

    /// Runs `op` until it succeeds, fails permanently, runs out of attempts or of time.
    pub async fn run<T, F, Fut>(&self, what: &str, retries: &AtomicU64, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => {
                    attempt += 1;
                    let sleep = self.delay(attempt - 1);
                    let past_deadline = self.deadline.is_some_and(|d| Instant::now() + sleep >= d);
                    if attempt >= self.steps || past_deadline {
                        let why = if past_deadline {
                            "stopped by the step deadline"
                        } else {
                            "no attempts left"
                        };
                        return Err(e.gave_up(format!("gave up after {attempt} attempts: {why}")));
                    }
                    retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(operation = what, attempt, error = %e, ?sleep, "transient failure, retrying");
                    tokio::time::sleep(sleep).await;
                }
            }
        }
    }
}

/// A number in [0, 1) that differs from call to call; enough for jitter.
fn random_unit() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Retries every operation of the wrapped driver per a [`Backoff`], and checks every stored
/// part against the bytes sent ([`check_part`]): a corrupt part is sent again like any other
/// transient failure.
#[derive(Debug)]
pub struct Retrying {
    inner: Arc<dyn Driver>,
    backoff: Backoff,
    retries: AtomicU64,
    throttles: AtomicU64,
}

impl Retrying {
    pub fn new(inner: Arc<dyn Driver>, backoff: Backoff) -> Self {
        Self {
            inner,
            backoff,
            retries: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
        }
    }

    /// Counts a throttled attempt of a data request (a range, a part): what
    /// [`Driver::throttle_count`] reports to adaptive concurrency.
    fn counting_throttles<T>(&self, attempt: Result<T>) -> Result<T> {
        if let Err(e) = &attempt
            && e.kind() == Some(ErrorKind::Throttled)
        {
            self.throttles.fetch_add(1, Ordering::Relaxed);
        }
        attempt
    }

    /// How many retries this wrapper made so far (for the transfer metrics).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Driver for Retrying {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn retry_count(&self) -> u64 {
        self.retries() + self.inner.retry_count()
    }

    fn throttle_count(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed) + self.inner.throttle_count()
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.backoff
            .run("head", &self.retries, || self.inner.head(key))
            .await
    }

    fn serves_ranges(&self, key: &str) -> bool {
        self.inner.serves_ranges(key)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetStream> {
        self.backoff
            .run("get", &self.retries, || self.inner.get(key, range.clone()))
            .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<RangeRead> {
        self.backoff
            .run("get range", &self.retries, || async {
                let read = self.inner.get_range(key, range.clone()).await;
                self.counting_throttles(read)
            })
            .await
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<()> {
        self.backoff
            .run("put", &self.retries, || {
                self.inner.put(key, data.clone(), opts)
            })
            .await
    }

    /// A stream can be consumed once, so a streaming write is attempted once.
    async fn put_stream(&self, key: &str, body: ByteStream, opts: &PutOptions) -> Result<()> {
        self.inner.put_stream(key, body, opts).await
    }

    async fn list(&self, prefix: &str, page: Option<String>) -> Result<ListPage> {
        self.backoff
            .run("list", &self.retries, || {
                self.inner.list(prefix, page.clone())
            })
            .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.backoff
            .run("delete", &self.retries, || self.inner.delete(key))
            .await
    }

    fn multipart_limits(&self) -> Option<MultipartLimits> {
        self.inner.multipart_limits()
    }

    fn put_stream_chunk(&self) -> Option<u64> {
        self.inner.put_stream_chunk()
    }

    fn streams_file_parts(&self) -> bool {
        self.inner.streams_file_parts()
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> Result<String> {
        self.backoff
            .run("create multipart upload", &self.retries, || {
                self.inner.create_multipart(key, opts)
            })
            .await
    }

    async fn put_part(&self, key: &str, upload_id: &str, part: &Part) -> Result<PartReceipt> {
        let described = self.inner.describe();
        self.backoff
            .run("upload part", &self.retries, || async {
                let sent = self.inner.put_part(key, upload_id, part).await;
                let receipt = self.counting_throttles(sent)?;
                check_part(&described, key, part, &receipt).await?;
                Ok(receipt)
            })
            .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartReceipt],
    ) -> Result<()> {
        self.backoff
            .run("complete multipart upload", &self.retries, || {
                self.inner.complete_multipart(key, upload_id, parts)
            })
            .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.backoff
            .run("abort multipart upload", &self.retries, || {
                self.inner.abort_multipart(key, upload_id)
            })
            .await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartReceipt>> {
        self.backoff
            .run("list parts", &self.retries, || {
                self.inner.list_parts(key, upload_id)
            })
            .await
    }

    async fn pending_uploads(&self, key: &str) -> Result<Vec<PendingUpload>> {
        self.backoff
            .run("list multipart uploads", &self.retries, || {
                self.inner.pending_uploads(key)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Error, ErrorKind};

    fn fast() -> Backoff {
        Backoff {
            steps: 4,
            initial: Duration::from_millis(1),
            factor: 2.0,
            jitter: 0.0,
            cap: Duration::from_millis(10),
            deadline: None,
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU64::new(0);
        let retries = AtomicU64::new(0);
        let out = fast()
            .run("op", &retries, || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::backend("s3", ErrorKind::Server, "503"))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(out.expect("third attempt succeeds"), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(retries.load(Ordering::SeqCst), 2);
    }

    /// Runs `backoff` on an operation that always fails with `kind`: its calls, the retries
    /// counted and the error returned.
    async fn always_failing(backoff: Backoff, kind: ErrorKind) -> (u64, u64, Error) {
        let calls = AtomicU64::new(0);
        let retries = AtomicU64::new(0);
        let e = backoff
            .run("op", &retries, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::backend("s3", kind, "failed"))
            })
            .await
            .expect_err("it always fails");
        (
            calls.load(Ordering::SeqCst),
            retries.load(Ordering::SeqCst),
            e,
        )
    }

    #[tokio::test]
    async fn permanent_errors_stop_at_once_and_attempts_are_bounded() {
        let (calls, retries, e) = always_failing(fast(), ErrorKind::Auth).await;
        assert_eq!((calls, retries), (1, 0), "auth is permanent");
        assert_eq!(e.to_string(), "failed");

        let (calls, retries, e) = always_failing(fast(), ErrorKind::Network).await;
        assert_eq!((calls, retries), (4, 3), "runs out");
        assert!(e.to_string().contains("gave up after 4 attempts"), "{e}");
    }

    #[tokio::test]
    async fn a_deadline_already_past_allows_the_first_attempt_and_no_retry() {
        let past = SystemTime::now() - Duration::from_secs(60);
        let (calls, retries, e) =
            always_failing(fast().until(Some(past)), ErrorKind::Network).await;
        assert_eq!((calls, retries), (1, 0), "no time left to retry");
        assert!(
            e.to_string().contains("stopped by the step deadline"),
            "{e}"
        );
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let b = fast();
        assert_eq!(b.delay(0), Duration::from_millis(1));
        assert_eq!(b.delay(2), Duration::from_millis(4));
        assert_eq!(b.delay(10), Duration::from_millis(10));
    }
}
