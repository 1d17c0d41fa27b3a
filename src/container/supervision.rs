//! Process supervision: the signals a container's PID 1 catches and forwards to its child's
//! process group, the children it reaps, the signal file `wait` writes, and the stop of a user
//! sidecar once main is done.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll, StreamExt};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::commands::{CommandError, Pod};
use crate::pod::create_shared_dir;
use crate::pod::watch::DirWatch;
use argoexec::model::Template;

/// Reaps every child that has exited; returns `child`'s exit code if it was among them.
pub(crate) fn reap(child: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, status)) if pid == child => code = Some(status),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => code = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(other) => tracing::debug!(status = ?other, "reaped an orphaned process"),
        }
    }
}

/// A signal number written to `ctr/<name>/signal` (by wait, or anyone): consumed once parsed.
pub(crate) fn take_signal_file(path: &Path) -> Option<Signal> {
    let text = fs::read_to_string(path).ok()?;
    let number: i32 = text.trim().parse().ok().filter(|n| *n > 0)?;
    let _ = fs::remove_file(path);
    match Signal::try_from(number) {
        Ok(sig) => Some(sig),
        Err(e) => {
            tracing::warn!(number, error = %e, "ignoring an unsupported signal from the signal file");
            None
        }
    }
}

/// The signals the emissary handles: every catchable one to forward, and SIGCHLD to reap.
pub(crate) struct Signals {
    pub(crate) forwarded: Forwarded,
    pub(crate) child: tokio::signal::unix::Signal,
}

/// Every signal the emissary passes on to its child, merged into one stream.
pub(crate) struct Forwarded(SelectAll<BoxStream<'static, Signal>>);

impl Signals {
    /// Everything but what cannot be caught (KILL, STOP), faults that only our own code raises
    /// (SEGV, BUS, FPE, ILL, TRAP, SYS), SIGCHLD (ours), SIGURG (Go's and Argo's choice too)
    /// and SIGPIPE (raised by a write of ours, never meant for the child).
    pub(crate) fn install() -> Result<Self, CommandError> {
        use Signal::*;
        let mut forwarded = SelectAll::new();
        for sig in Signal::iterator() {
            if matches!(
                sig,
                SIGKILL
                    | SIGSTOP
                    | SIGSEGV
                    | SIGBUS
                    | SIGFPE
                    | SIGILL
                    | SIGTRAP
                    | SIGSYS
                    | SIGCHLD
                    | SIGURG
                    | SIGPIPE
            ) {
                continue;
            }
            let stream = signal(SignalKind::from_raw(sig as i32)).map_err(|e| {
                CommandError::failed(format!("failed to install a handler for {sig}: {e}"))
            })?;
            forwarded.push(
                futures::stream::unfold(stream, move |mut s| async move {
                    s.recv().await.map(|()| (sig, s))
                })
                .boxed(),
            );
        }
        let child = signal(SignalKind::child()).map_err(|e| {
            CommandError::failed(format!("failed to install a handler for SIGCHLD: {e}"))
        })?;
        Ok(Self {
            forwarded: Forwarded(forwarded),
            child,
        })
    }
}

impl Forwarded {
    /// The next signal to forward (never ends: the handlers live as long as the process).
    pub(crate) async fn next(&mut self) -> Signal {
        match self.0.next().await {
            Some(sig) => sig,
            None => std::future::pending().await,
        }
    }
}

/// A user sidecar stops itself once every main container has finished: SIGTERM to its child,
/// then SIGKILL after the termination grace period.
pub(crate) struct SidecarStop {
    main_exit_files: Vec<PathBuf>,
    watch: DirWatch,
    grace: Duration,
    kill_at: Option<Instant>,
    done: bool,
}

impl SidecarStop {
    pub(crate) fn new(pod: &Pod, template: &Template) -> Result<Self, CommandError> {
        let names = template.main_container_names();
        let mut dirs = Vec::new();
        for name in &names {
            let dir = pod.roots.container_dir(name);
            create_shared_dir(&dir).map_err(|e| {
                CommandError::failed(format!("failed to create {}: {e}", dir.display()))
            })?;
            dirs.push(dir);
        }
        Ok(Self {
            main_exit_files: names.iter().map(|n| pod.roots.exitcode_file(n)).collect(),
            watch: DirWatch::new(&dirs),
            grace: crate::pod::termination_grace_period(),
            kill_at: None,
            done: false,
        })
    }

    /// The next signal to send; cancel-safe (state lives in `self`).
    async fn next_signal(&mut self) -> Signal {
        if self.done {
            return std::future::pending().await;
        }
        if let Some(at) = self.kill_at {
            tokio::time::sleep_until(at).await;
            self.done = true;
            return Signal::SIGKILL;
        }
        while !self.main_exit_files.iter().all(|f| f.exists()) {
            self.watch.changed().await;
        }
        tracing::info!("main container(s) exited, terminating this sidecar");
        self.kill_at = Some(Instant::now() + self.grace);
        Signal::SIGTERM
    }
}

/// The next signal a sidecar sends its own child; never, for a container that is not one.
pub(crate) async fn next_sidecar_signal(sidecar: &mut Option<SidecarStop>) -> Signal {
    match sidecar {
        Some(stop) => stop.next_signal().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signal_file_is_consumed_only_once_it_holds_a_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("signal");
        fs::write(&file, "").expect("write");
        assert_eq!(take_signal_file(&file), None);
        assert!(
            file.exists(),
            "a half-written file is left for the next event"
        );
        fs::write(&file, "15").expect("write");
        assert_eq!(take_signal_file(&file), Some(Signal::SIGTERM));
        assert!(!file.exists());
    }
}
