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
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::time::{Interval, MissedTickBehavior};

/// Poll period when inotify cannot be used (Argo's fallback period).
pub const POLL_FALLBACK: Duration = Duration::from_secs(2);
/// Re-check period while inotify works.
pub const INOTIFY_BACKSTOP: Duration = Duration::from_secs(10);

/// Wakes its owner when a file in one of the watched directories is created, written, or
/// renamed into place.
#[derive(Debug)]
pub struct DirWatch {
    inotify: Option<AsyncFd<InotifyFd>>,
    tick: Interval,
}

/// `AsyncFd` needs `AsRawFd`; nix's `Inotify` only offers `AsFd`.
#[derive(Debug)]
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

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
        let Some(fd) = &self.inotify else {
            self.tick.tick().await;
            return Wake::Tick;
        };
        tokio::select! {
            _ = self.tick.tick() => Wake::Tick,
            _ = drain_events(fd) => Wake::Event,
        }
    }
}

/// What ended a wait: an inotify event or the polling tick.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    Event,
    Tick,
}

fn watch_all<P: AsRef<Path>>(dirs: &[P]) -> io::Result<AsyncFd<InotifyFd>> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    let mask = AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO;
    for dir in dirs {
        inotify.add_watch(dir.as_ref(), mask)?;
    }
    // `new` is deprecated for wrappers that could hand out a different or closed descriptor;
    // `InotifyFd` owns its descriptor and always returns it, so the I/O-safety condition that
    // the unsafe replacement (`register`) asks the caller to promise holds here.
    #[allow(deprecated)]
    AsyncFd::new(InotifyFd(inotify))
}

/// Waits for at least one inotify event and consumes every queued one.
async fn drain_events(fd: &AsyncFd<InotifyFd>) {
    loop {
        let Ok(mut guard) = fd.readable().await else {
            // The reactor is gone (runtime shutdown): never resolve, the backstop still ticks.
            return std::future::pending().await;
        };
        match guard.try_io(|inner| inner.get_ref().0.read_events().map_err(io::Error::from)) {
            Ok(_) => return,
            Err(_would_block) => continue,
        }
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
