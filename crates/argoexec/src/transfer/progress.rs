//! Progress of long transfers: a log line every few seconds with bytes, rate and ETA.
//!
//! Lines go through `tracing`, so they follow `--log-format` (text or JSON) like every other
//! line. A transfer shorter than one interval logs nothing extra.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument;

/// Shared counter of one artifact's transfer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Progress {
    done: Arc<AtomicU64>,
}

/// Stops the progress lines when dropped.
#[derive(Debug)]
pub struct ProgressGuard {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Progress {
    /// Starts logging the progress of `what` (e.g. `upload of artifact 'x' to s3://b/k`) every
    /// `interval`, against `total` bytes when known. Must be called inside the runtime.
    pub fn start(
        what: String,
        total: Option<u64>,
        interval: Option<Duration>,
    ) -> (Self, Option<ProgressGuard>) {
        let progress = Self {
            done: Arc::new(AtomicU64::new(0)),
        };
        let Some(interval) = interval else {
            return (progress, None);
        };
        let done = Arc::clone(&progress.done);
        let task = tokio::spawn(
            async move {
            let started = Instant::now();
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                ticks.tick().await;
                let bytes = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                let rate = bytes as f64 / secs;
                let mib_per_s = rate / f64::from(1 << 20);
                match total {
                    Some(total) if total > 0 => {
                        let percent = (bytes as f64 * 100.0 / total as f64).min(100.0);
                        let eta_seconds =
                            (total.saturating_sub(bytes) as f64 / rate.max(1.0)).round();
                        tracing::info!(transfer = %what, bytes, total, percent = format!("{percent:.1}"), mib_per_s = format!("{mib_per_s:.1}"), eta_seconds, "transfer progress");
                    }
                    _ => {
                        tracing::info!(transfer = %what, bytes, mib_per_s = format!("{mib_per_s:.1}"), "transfer progress")
                    }
                }
            }
        }
            .in_current_span(),
        );
        (progress, Some(ProgressGuard { task }))
    }

    /// Counts `n` more bytes moved.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// `1.5 MiB (1572864 bytes)`: a size for people, exact for tools.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({n} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well_and_stay_exact() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(human_bytes(12 << 20), "12.0 MiB (12582912 bytes)");
    }

    #[tokio::test(start_paused = true)]
    async fn counts_and_stops_with_its_guard() {
        let (p, guard) = Progress::start("t".into(), Some(100), Some(Duration::from_secs(1)));
        p.add(40);
        p.clone().add(2);
        assert_eq!(p.bytes(), 42);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let guard = guard.expect("a reporter runs");
        drop(guard);
        let (_p, none) = Progress::start("t".into(), None, None);
        assert!(none.is_none());
    }
}
