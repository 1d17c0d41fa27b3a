//! Waiting for files that other containers write to the shared `/var/run/argo` volume
//! (exit codes, signal files, debug-pause markers), promptly and cheaply.
//!
//! inotify on the directories wakes the waiter within microseconds of a write by any container
//! of the pod (an emptyDir is one node-local directory, so every writer's change is seen). When
//! inotify is unavailable (the per-user instance limit is reached), a 2 s poll takes over, as in
//! Argo. Even with inotify a slow backstop re-checks every 10 s, so a lost event can delay but
//! never hang a waiter. The caller always re-checks its condition after [`DirWatch::changed`]:
//! the watch only says "something may have changed".

use std::io;
use std::path::Path;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use inotify::{EventStream, Inotify, WatchMask};
use tokio::time::{Interval, MissedTickBehavior};

/// Poll period when inotify cannot be used (Argo's fallback period).
pub const POLL_FALLBACK: Duration = Duration::from_secs(2);
/// Re-check period while inotify works.
pub const INOTIFY_BACKSTOP: Duration = Duration::from_secs(10);

/// Wakes its owner when a file in one of the watched directories is created, written, or
/// renamed into place.
#[derive(Debug)]
pub struct DirWatch {
    inotify: Option<Events>,
    tick: Interval,
}

/// The inotify crate's stream: it owns the descriptor it registers with the runtime, so no
/// descriptor handling (and no `unsafe`) is left to us.
type Events = EventStream<[u8; EVENT_BUFFER]>;

/// Bytes read from inotify at once: room for many events (each is 16 bytes plus its name).
const EVENT_BUFFER: usize = 4096;

impl DirWatch {
    /// Watches `dirs` (which must exist). Falls back to polling, with one warning, when inotify
    /// cannot be set up.
    pub fn new<P: AsRef<Path>>(dirs: &[P]) -> Self {
        let inotify = match watch_all(dirs) {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "inotify unavailable, polling every {}s instead; consider raising fs.inotify.max_user_instances / max_user_watches",
                    POLL_FALLBACK.as_secs()
                );
                None
            }
        };
        let period = if inotify.is_some() {
            INOTIFY_BACKSTOP
        } else {
            POLL_FALLBACK
        };
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { inotify, tick }
    }

    /// Resolves when a watched directory may have changed.
    pub async fn changed(&mut self) {
        let wake = self.next_wake().await;
        tracing::trace!(?wake, "watched directory may have changed");
    }

    async fn next_wake(&mut self) -> Wake {
        let Some(events) = &mut self.inotify else {
            self.tick.tick().await;
            return Wake::Tick;
        };
        tokio::select! {
            _ = self.tick.tick() => Wake::Tick,
            _ = drain_events(events) => Wake::Event,
        }
    }
}

/// What ended a wait: an inotify event or the polling tick.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    Event,
    Tick,
}

fn watch_all<P: AsRef<Path>>(dirs: &[P]) -> io::Result<Events> {
    let inotify = Inotify::init()?;
    let mask = WatchMask::CREATE | WatchMask::MODIFY | WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO;
    for dir in dirs {
        inotify.watches().add(dir.as_ref(), mask)?;
    }
    inotify.into_event_stream([0; EVENT_BUFFER])
}

/// Waits for at least one inotify event and consumes every one already queued.
async fn drain_events(events: &mut Events) {
    match events.next().await {
        Some(Ok(_)) => while let Some(Some(Ok(_))) = events.next().now_or_never() {},
        // A failed read (the reactor is gone at runtime shutdown): never resolve, the backstop
        // still ticks.
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_on_a_rename_into_a_watched_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut watch = DirWatch::new(&[dir.path()]);
        assert!(watch.inotify.is_some(), "inotify works on this machine");
        let tmp = dir.path().join("exitcode.tmp");
        std::fs::write(&tmp, "0").expect("write");
        std::fs::rename(&tmp, dir.path().join("exitcode")).expect("rename");
        assert_eq!(watch.next_wake().await, Wake::Event);
    }
}
