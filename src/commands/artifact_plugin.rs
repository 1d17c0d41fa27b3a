//! `artifact-plugin-init --plugin-name N -- CMD...` and `artifact-plugin-sidecar -- CMD...`:
//! the containers of an artifact driver plugin (Argo 4.0+). Both run the plugin's gRPC server,
//! the command after `--` (the controller appends the socket path as its last argument), as a
//! child in its own process group, and pass on the signals the container gets.
//!
//! * `init-artifact-<name>` (init container): starts the server, loads this plugin's input
//!   artifacts through it with the loader `init` uses, then stops it (SIGTERM, SIGKILL after
//!   the termination grace period).
//! * `artifact-plugin-<name>` (sidecar): serves `wait` until `wait` ends it through
//!   `ctr/<name>/signal`. The kubelet's SIGTERM is not passed on, as in Argo: the sidecar must
//!   outlive a pod deletion long enough for `wait` to finish its saves. The server's exit code
//!   goes to `ctr/<name>/exitcode`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

use super::{CommandError, Pod};
use crate::container::supervision::{Signals, reap, take_signal_file};
use crate::pod::watch::DirWatch;
use crate::pod::{
    create_dir_all_with_mode, create_shared_dir, required_env, template_from_env_or_file,
    write_atomic,
};
use argoexec::contract::env;
use argoexec::storage::plugin::socket_dir;
use argoexec::transfer::load::Sources;

/// The exit code recorded when the server could not be started.
const NOT_STARTED_CODE: i32 = 64;
/// How long a stopped server may take to go after SIGKILL before we stop waiting for it.
const AFTER_KILL: Duration = Duration::from_secs(10);

pub async fn init(pod: &Pod, plugin: &str, args: Vec<String>) -> Result<(), CommandError> {
    required_env(env::POD_NAME)?;
    let template = template_from_env_or_file(&pod.roots)?.template;
    let dir = socket_dir(&pod.roots, plugin);
    create_dir_all_with_mode(&dir, 0o755)
        .map_err(|e| CommandError::failed(format!("failed to create {}: {e}", dir.display())))?;
    let mut server = PluginServer::start(&args)?;
    let loading = super::init::load_inputs(pod, &template, Sources::Plugin(plugin.to_string()));
    tokio::pin!(loading);
    let loaded = tokio::select! {
        loaded = &mut loading => loaded,
        code = server.exited(false, None) => {
            return Err(CommandError::failed(format!(
                "artifact plugin {plugin} exited with code {code} before its input artifacts were loaded"
            )));
        }
    };
    let code = server.stop().await;
    tracing::info!(plugin, code = ?code, "artifact plugin server stopped");
    loaded
}

pub async fn sidecar(pod: &Pod, args: Vec<String>) -> Result<(), CommandError> {
    let name = required_env(env::CONTAINER_NAME)?;
    let dir = pod.roots.container_dir(&name);
    create_shared_dir(&dir)
        .map_err(|e| CommandError::failed(format!("failed to create ctr directory: {e}")))?;
    let exit_file = pod.roots.exitcode_file(&name);
    let (code, outcome) = match PluginServer::start(&args) {
        Ok(mut server) => (server.exited(true, Some(dir.join("signal"))).await, Ok(())),
        Err(e) => (NOT_STARTED_CODE, Err(e)),
    };
    if let Err(e) = write_atomic(&exit_file, code.to_string().as_bytes(), 0o644) {
        tracing::error!(path = %exit_file.display(), error = %e, "failed to write exit code");
    }
    tracing::info!(code, "artifact plugin sidecar command exited");
    outcome
}

/// The plugin's server process.
struct PluginServer {
    pid: Pid,
    signals: Signals,
}

impl PluginServer {
    fn start(args: &[String]) -> Result<Self, CommandError> {
        // Handlers first: from here on a signal is passed on, never fatal to us.
        let signals = Signals::install()?;
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| CommandError::failed("no plugin command given after --"))?;
        let child = std::process::Command::new(program)
            .args(rest)
            .process_group(0)
            .spawn()
            .map_err(|e| CommandError::failed(format!("failed to start command: {e}")))?;
        tracing::info!(program = %program, args = ?rest, pid = child.id(), "started the artifact plugin server");
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        // Reaped with waitpid(-1) in `exited`.
        drop(child);
        Ok(Self { pid, signals })
    }

    fn signal(&self, sig: Signal, why: &str) {
        tracing::info!(signal = %sig, why, "signalling the artifact plugin server");
        if let Err(e) = killpg(self.pid, sig)
            && e != Errno::ESRCH
        {
            tracing::warn!(signal = %sig, error = %e, "failed to signal the plugin server");
        }
    }

    /// Passes on the container's signals (SIGTERM only when `!ignore_term`) and those written
    /// to `signal_file`, until the server exits; returns its exit code (128 + the signal that
    /// killed it). Cancel-safe.
    async fn exited(&mut self, ignore_term: bool, signal_file: Option<PathBuf>) -> i32 {
        let dirs: Vec<&Path> = signal_file.iter().filter_map(|f| f.parent()).collect();
        let mut watch = (!dirs.is_empty()).then(|| DirWatch::new(&dirs));
        loop {
            if let Some(sig) = signal_file.as_deref().and_then(take_signal_file) {
                self.signal(sig, "signal file");
            }
            tokio::select! {
                _ = self.signals.child.recv() => if let Some(code) = reap(self.pid) {
                    return code;
                },
                sig = self.signals.forwarded.next() => {
                    if ignore_term && sig == Signal::SIGTERM {
                        tracing::info!("SIGTERM ignored: wait ends this sidecar through its signal file");
                    } else {
                        self.signal(sig, "received");
                    }
                }
                _ = changed(&mut watch) => {}
            }
        }
    }

    /// SIGTERM, SIGKILL after the grace period; the exit code (`None` if it never went).
    async fn stop(&mut self) -> Option<i32> {
        self.signal(Signal::SIGTERM, "input artifacts loaded");
        let grace = crate::pod::termination_grace_period();
        if let Ok(code) = tokio::time::timeout(grace, self.exited(false, None)).await {
            return Some(code);
        }
        self.signal(Signal::SIGKILL, "still running after the grace period");
        tokio::time::timeout(AFTER_KILL, self.exited(false, None))
            .await
            .ok()
    }
}

async fn changed(watch: &mut Option<DirWatch>) {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}
