//! `argoexec emissary -- CMD ARGS...`: PID 1 of every user container (docs/contract.md#the-emissary).
//!
//! Runs the command in its own process group, forwards every signal to that group (from the
//! kernel and from the `ctr/<name>/signal` file), reaps every child it is given (as PID 1 it
//! inherits the user's orphans), tees the output when the result or the logs are wanted,
//! copies `main`'s outputs for the wait container, and writes the exit code file last: its
//! appearance tells wait that everything is in place.
//!
//! It runs inside an arbitrary user image, as any uid: it needs nothing from the filesystem but
//! `/var/run/argo`, and it leaves the container's umask alone for the user's process.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::{CommandError, Pod};
use crate::container::log_capture::{LogFiles, Tee};
use crate::container::output_capture::stage_outputs;
use crate::container::supervision::{
    SidecarStop, Signals, next_sidecar_signal, reap, take_signal_file,
};
use crate::pod::watch::DirWatch;
use crate::pod::{create_shared_dir, template_from_file_or_env, write_atomic};
use argoexec::contract::{self, MAX_INLINE_ARG_BYTES, env};
use argoexec::model::Template;

/// The exit code recorded when the emissary fails before its child reports one.
const EXECUTOR_FAILURE_CODE: i32 = 64;

pub async fn run(pod: &Pod, args: Vec<String>) -> Result<(), CommandError> {
    let name = std::env::var(env::CONTAINER_NAME)
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "main".to_string());
    let dir = pod.roots.container_dir(&name);
    create_shared_dir(&dir)
        .map_err(|e| CommandError::failed(format!("failed to create ctr directory: {e}")))?;

    let mut code = EXECUTOR_FAILURE_CODE;
    let outcome = supervise(pod, &name, &dir, args, &mut code).await;
    if let Err(CommandError::Exited(signalled)) = &outcome {
        // Stopped by a signal before the child ran: the file agrees with the process (Argo
        // leaves 64 there).
        code = *signalled;
    }
    let exit_file = pod.roots.exitcode_file(&name);
    if let Err(e) = write_atomic(&exit_file, code.to_string().as_bytes(), 0o644) {
        tracing::error!(path = %exit_file.display(), error = %e, "failed to write exit code");
    }
    match outcome {
        Err(e) => Err(e),
        Ok(()) if code == 0 => Ok(()),
        Ok(()) => Err(CommandError::Exited(code)),
    }
}

/// Everything between creating the control directory and writing the exit code. `code` gets
/// the child's exit code as soon as it is known, so the exit code file records it even when
/// staging the outputs fails afterwards.
async fn supervise(
    pod: &Pod,
    name: &str,
    dir: &Path,
    args: Vec<String>,
    code: &mut i32,
) -> Result<(), CommandError> {
    // Handlers first: from here on a signal is forwarded or answered, never fatal to us.
    let signals = Signals::install()?;
    let args = with_args_file(pod, args)?;
    let mut emissary = Emissary {
        pod,
        name,
        dir,
        signals,
        terminating: false,
    };
    let initless = flag(env::WAIT_FOR_READY);
    if initless && let Err(e) = emissary.wait_for_supervisor().await {
        return Err(pre_main_failure(e));
    }
    let template = template_from_file_or_env(&pod.roots)?.template;
    if initless
        && name == "main"
        && let Err(e) = stage_input_artifacts(pod, &template)
    {
        return Err(pre_main_failure(e));
    }
    // Orphans of the user's process become ours even when we are not PID 1 (a pod sharing its
    // process namespace), so their zombies are reaped here too. Best effort.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::debug!(error = %e, "cannot become a child subreaper");
    }
    for dependency in template.dependencies_of(name) {
        *code = emissary.wait_for_dependency(dependency).await?;
        if *code != 0 {
            return Err(CommandError::failed(format!(
                "dependency {dependency:?} exited with non-zero code: {code}"
            )));
        }
    }
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| CommandError::failed("no command given to the emissary"))?;
    let program = look_path(program)?;
    if flag(env::DEBUG_PAUSE_BEFORE) {
        emissary.debug_pause("before").await?;
    }
    *code = emissary.run_with_retries(&program, rest, &template).await?;
    if flag(env::DEBUG_PAUSE_AFTER) {
        emissary.debug_pause("after").await?;
    }
    if name == "main" {
        stage_outputs(pod, &template).await?;
    }
    Ok(())
}

/// One container's emissary: where its control files are, and the signals it owns.
struct Emissary<'a> {
    pod: &'a Pod,
    name: &'a str,
    dir: &'a Path,
    signals: Signals,
    /// Set once a terminating signal (TERM, INT, KILL) was passed to the child: no retry then.
    terminating: bool,
}

impl Emissary<'_> {
    /// Runs the child, again after a failure as `containerSet.retryStrategy` allows
    /// (`retries` more attempts, `duration` apart).
    async fn run_with_retries(
        &mut self,
        program: &Path,
        args: &[String],
        template: &Template,
    ) -> Result<i32, CommandError> {
        let strategy = template
            .container_set
            .as_ref()
            .and_then(|cs| cs.retry_strategy.as_ref())
            .filter(|s| s.retries.is_some());
        let attempts = strategy.map_or(1, |s| s.retry_count().saturating_add(1));
        let pause = match strategy.map(|s| s.duration.as_str()) {
            None | Some("") => Duration::ZERO,
            Some(d) => contract::parse_go_duration(d).ok_or_else(|| {
                CommandError::failed(format!(
                    "failed to get retry strategy: invalid duration {d:?}"
                ))
            })?,
        };
        let capture = flag(env::INCLUDE_SCRIPT_OUTPUT) || template.archive_logs();
        let sidecar = template.sidecar_names().any(|s| s == self.name);
        let mut attempt = 1;
        loop {
            let code = self
                .run_child(program, args, capture, sidecar.then_some(template))
                .await?;
            tracing::info!(code, attempt, "sub-process exited");
            if code == 0 || attempt >= attempts || self.terminating {
                return Ok(code);
            }
            attempt += 1;
            tracing::info!(attempt, attempts, "retrying the container");
            let resume = Instant::now() + pause;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(resume) => break,
                    sig = self.signals.forwarded.next() => if is_terminating(sig) {
                        return Ok(128 + sig as i32);
                    },
                }
            }
        }
    }

    /// Spawns the child once and supervises it until it exits; returns its exit code
    /// (128 + signal number when a signal killed it).
    async fn run_child(
        &mut self,
        program: &Path,
        args: &[String],
        capture: bool,
        sidecar_of: Option<&Template>,
    ) -> Result<i32, CommandError> {
        let logs = if capture {
            Some(LogFiles::open(self.dir)?)
        } else {
            None
        };
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .process_group(0)
            .envs(crate::telemetry::trace::child_environment());
        if capture {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| CommandError::failed(format!("failed to start command: {e}")))?;
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let tee = match logs.map(|logs| Tee::start(&mut child, logs)).transpose() {
            Ok(tee) => tee,
            Err(e) => {
                // Never leave a child running unsupervised.
                let _ = killpg(pid, Signal::SIGKILL);
                return Err(e);
            }
        };
        // Reaped below with waitpid(-1), together with any orphan handed to us.
        drop(child);

        let mut file_signals = DirWatch::new(&[self.dir]);
        let mut sidecar = match sidecar_of {
            Some(template) => Some(SidecarStop::new(self.pod, template)?),
            None => None,
        };
        let signal_file = self.dir.join("signal");
        let status = loop {
            if let Some(sig) = take_signal_file(&signal_file) {
                self.forward(pid, sig, "signal file");
            }
            let signals = &mut self.signals;
            tokio::select! {
                _ = signals.child.recv() => if let Some(code) = reap(pid) {
                    break code;
                },
                sig = signals.forwarded.next() => self.forward(pid, sig, "received"),
                _ = file_signals.changed() => {}
                sig = next_sidecar_signal(&mut sidecar) => {
                    self.forward(pid, sig, "main containers finished");
                }
            }
        };
        if let Some(tee) = tee {
            tee.finish().await;
        }
        Ok(status)
    }

    fn forward(&mut self, pid: Pid, sig: Signal, why: &str) {
        tracing::info!(signal = %sig, why, "forwarding signal to the child process group");
        self.terminating |= is_terminating(sig);
        if let Err(e) = killpg(pid, sig)
            && e != Errno::ESRCH
        {
            tracing::warn!(signal = %sig, error = %e, "failed to signal the child process group");
        }
    }

    /// Waits for a containerSet dependency's exit code.
    async fn wait_for_dependency(&mut self, dependency: &str) -> Result<i32, CommandError> {
        tracing::info!(dependency, "waiting for dependency");
        let exit_file = self.pod.roots.exitcode_file(dependency);
        let dep_dir = self.pod.roots.container_dir(dependency);
        create_shared_dir(&dep_dir)
            .map_err(|e| CommandError::failed(format!("failed to create dependency dir: {e}")))?;
        self.wait_until(&dep_dir, None, || {
            fs::read_to_string(&exit_file)
                .ok()
                .and_then(|text| text.trim().parse::<i32>().ok())
        })
        .await
    }

    /// `ARGO_DEBUG_PAUSE_BEFORE/AFTER`: holds until someone creates `ctr/<name>/<marker>`.
    async fn debug_pause(&mut self, marker: &str) -> Result<(), CommandError> {
        let path = self.dir.join(marker);
        tracing::info!(path = %path.display(), "debug pause: waiting for the marker file");
        self.wait_until(self.dir, None, || path.exists().then_some(()))
            .await
    }

    /// Waits, with no child running, until `ready` returns a value. SIGTERM or SIGINT, by the
    /// kernel or through the signal file, ends the container with 128 + the signal number;
    /// SIGKILL through the signal file with 137.
    async fn wait_until<T>(
        &mut self,
        dir: &Path,
        poll: Option<Duration>,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Result<T, CommandError> {
        let signal_file = self.dir.join("signal");
        let mut watch = DirWatch::new(&[dir, self.dir]);
        loop {
            if let Some(value) = ready() {
                return Ok(value);
            }
            if let Some(sig) = take_signal_file(&signal_file).filter(|s| is_terminating(*s)) {
                return Err(CommandError::Exited(128 + sig as i32));
            }
            tokio::select! {
                _ = watch.changed() => {}
                () = sleep_or_never(poll) => {}
                sig = self.signals.forwarded.next() => if is_terminating(sig) {
                    return Err(CommandError::Exited(128 + sig as i32));
                },
            }
        }
    }
}

async fn sleep_or_never(period: Option<Duration>) {
    match period {
        Some(p) => tokio::time::sleep(p).await,
        None => std::future::pending().await,
    }
}

fn flag(name: &str) -> bool {
    std::env::var(name).as_deref() == Ok("true")
}

fn is_terminating(sig: Signal) -> bool {
    matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGKILL)
}

/// `ARGO_CONTAINER_ARGS_FILE` (docs/contract.md#environment): a JSON string array appended to the
/// arguments; then any argument longer than 128 KiB is written to `/tmp/argo_arg_<i>.txt` and
/// passed as `@<file>` (`i` counts from the first argument after the program).
fn with_args_file(pod: &Pod, mut args: Vec<String>) -> Result<Vec<String>, CommandError> {
    let Some(file) = std::env::var(env::CONTAINER_ARGS_FILE)
        .ok()
        .filter(|f| !f.is_empty())
    else {
        return Ok(args);
    };
    let path = pod.roots.path(&file);
    let data = fs::read(&path).map_err(|e| {
        CommandError::failed(format!("failed to read container args file {file}: {e}"))
    })?;
    let extra: Vec<String> = serde_json::from_slice(&data)
        .map_err(|e| CommandError::failed(format!("failed to unmarshal container args: {e}")))?;
    tracing::info!(count = extra.len(), file, "loaded container args from file");
    args.extend(extra);
    for (i, arg) in args.iter_mut().enumerate().skip(1) {
        if arg.len() <= MAX_INLINE_ARG_BYTES {
            continue;
        }
        let index = i - 1;
        let offload = pod.roots.path(format!("/tmp/argo_arg_{index}.txt"));
        write_atomic(&offload, arg.as_bytes(), 0o644).map_err(|e| {
            CommandError::failed(format!("failed to write large arg {index} to file: {e}"))
        })?;
        tracing::info!(
            index,
            size = arg.len(),
            path = %offload.display(),
            "offloaded a large argument; the program must support @file"
        );
        *arg = format!("@{}", offload.display());
    }
    Ok(args)
}

/// Resolves the program as Go's `exec.LookPath` does: a name with a slash is used as it is,
/// other names are searched on `PATH`; either must be an executable file.
fn look_path(name: &str) -> Result<PathBuf, CommandError> {
    let not_found = |cause: &str| {
        CommandError::failed(format!(
            "failed to find name in PATH: exec: {name:?}: {cause}"
        ))
    };
    if name.contains('/') {
        return executable(Path::new(name))
            .map(|()| PathBuf::from(name))
            .map_err(|e| not_found(&e.to_string()));
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                PathBuf::from(".").join(name)
            } else {
                dir.join(name)
            }
        })
        .find(|candidate| executable(candidate).is_ok())
        .ok_or_else(|| not_found("executable file not found in $PATH"))
}

fn executable(path: &Path) -> std::io::Result<()> {
    let meta = fs::metadata(path)?;
    if meta.is_dir() {
        return Err(std::io::Error::from(std::io::ErrorKind::IsADirectory));
    }
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).map_err(std::io::Error::from)
}

/// How the init-less layout's user container ends when the supervisor's pre-main work failed
/// or cannot be relied on: exit code 65, so the controller blames pre-main, not the user's
/// command (Argo's `ExitCodeSupervisorPreMainFailure`).
fn pre_main_failure(message: String) -> CommandError {
    tracing::error!(error = %message, "supervisor failed before main container started");
    CommandError::Exited(super::supervisor::PRE_MAIN_FAILURE_CODE)
}

impl Emissary<'_> {
    /// Init-less layout: holds until the supervisor's status marker says `READY` (an error
    /// for `FAILED`, or for a marker that never appears or stops being refreshed).
    async fn wait_for_supervisor(&mut self) -> Result<(), String> {
        let marker = self.pod.roots.status_marker();
        let timeout = super::supervisor::heartbeat_timeout();
        let started = std::time::SystemTime::now();
        tracing::info!(path = %marker.display(), "waiting for supervisor status marker");
        let dir = self.pod.roots.var_run_argo();
        let outcome = self
            .wait_until(&dir, Some(super::supervisor::STATUS_POLL), || {
                super::supervisor::evaluate_status(&marker, timeout, started)
            })
            .await
            .map_err(|e| format!("stopped while waiting for the supervisor: {e}"))?;
        if outcome.is_ok() {
            tracing::info!("supervisor is ready");
        }
        outcome
    }
}

/// Init-less layout, `main` only: links each input artifact the supervisor placed in
/// `/argo/inputs/artifacts/<name>` to its path (the legacy layout mounts them instead).
/// Replacing what is at a path is refused when that would clear a user volume.
fn stage_input_artifacts(pod: &Pod, template: &Template) -> Result<(), String> {
    let original = std::env::current_dir().map_err(|e| {
        format!("failed to read working directory before staging input artifacts: {e}")
    })?;
    // Linking may replace the working directory itself: step off it meanwhile.
    std::env::set_current_dir(pod.roots.var_run_argo()).map_err(|e| {
        format!("failed to leave working directory before staging input artifacts: {e}")
    })?;
    link_input_artifacts(pod, template)?;
    std::env::set_current_dir(&original).map_err(|e| {
        format!(
            "failed to re-enter working directory {:?} after staging input artifacts (an input artifact staged at the workingDir path must be a directory): {e}",
            original.display()
        )
    })
}

fn link_input_artifacts(pod: &Pod, template: &Template) -> Result<(), String> {
    for art in &template.inputs.artifacts {
        let src = pod.roots.input_artifact(&art.name);
        match fs::symlink_metadata(&src) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(
                    name = art.name,
                    path = art.path,
                    "no input-artifacts entry (optional or overlap) — skipping symlink"
                );
                continue;
            }
            Err(e) => {
                return Err(format!(
                    "failed to stat input artifact {:?} at {}: {e}",
                    art.name,
                    src.display()
                ));
            }
        }
        if art.path.is_empty() {
            continue;
        }
        // The user's path, as the user's process sees it (like output paths).
        let dst = PathBuf::from(&art.path);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(|e| {
                format!(
                    "failed to create parent directory for artifact {:?} at {}: {e}",
                    art.name, art.path
                )
            })?;
        }
        if fs::symlink_metadata(&dst).is_ok() {
            refuse_clearing_volumes(template, art, &dst)?;
            let cleared = if dst.is_dir() && !dst.is_symlink() {
                fs::remove_dir_all(&dst)
            } else {
                fs::remove_file(&dst)
            };
            cleared.map_err(|e| {
                format!(
                    "failed to clear existing path for artifact {:?} at {}: {e}",
                    art.name, art.path
                )
            })?;
        }
        std::os::unix::fs::symlink(&src, &dst).map_err(|e| {
            format!(
                "failed to symlink input artifact {:?} ({} -> {}): {e}",
                art.name,
                art.path,
                src.display()
            )
        })?;
        tracing::debug!(name = art.name, src = %src.display(), dst = art.path, "linked input artifact");
    }
    Ok(())
}

/// What is at `dst` may be cleared only if neither it nor anything under it is a user volume.
fn refuse_clearing_volumes(
    template: &Template,
    art: &argoexec::model::Artifact,
    dst: &Path,
) -> Result<(), String> {
    let parent = dst.parent().unwrap_or(dst);
    let real_parent = fs::canonicalize(parent).map_err(|e| {
        format!(
            "failed to resolve parent of artifact path {:?} at {}: {e}",
            art.name, art.path
        )
    })?;
    let resolved = real_parent.join(dst.file_name().unwrap_or_default());
    let resolved_text = resolved.to_string_lossy().into_owned();
    for mount in template.volume_mounts() {
        let declared = PathBuf::from(&mount.mount_path);
        let mount_path = fs::canonicalize(&declared).unwrap_or(declared);
        let inside = resolved.starts_with(&mount_path);
        let contains = mount_path.starts_with(&resolved);
        if inside || contains {
            let relation = if inside {
                "inside volume mount"
            } else {
                "which contains volume mount"
            };
            return Err(format!(
                "refusing to stage input artifact {:?} at {}: it resolves to {resolved_text} {relation} {:?} ({}), and clearing it would destroy the mounted volume; change the artifact path or volume mount so they do not overlap",
                art.name, art.path, mount.name, mount.mount_path
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_path_finds_programs_on_path_and_reports_misses_as_go_does() {
        assert!(look_path("sh").expect("sh is on PATH").is_absolute());
        let err = look_path("no-such-program-anywhere").expect_err("missing");
        assert_eq!(
            err.to_string(),
            "failed to find name in PATH: exec: \"no-such-program-anywhere\": executable file not found in $PATH"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("not-executable");
        fs::write(&plain, "x").expect("write");
        assert!(look_path(plain.to_str().expect("utf-8")).is_err());
    }

    #[test]
    fn retry_counts_accept_ints_and_strings() {
        use argoexec::model::ContainerSetRetryStrategy;
        let with = |v: serde_json::Value| ContainerSetRetryStrategy {
            retries: Some(v),
            ..Default::default()
        };
        assert_eq!(with(serde_json::json!(2)).retry_count(), 2);
        assert_eq!(with(serde_json::json!("3")).retry_count(), 3);
        assert_eq!(with(serde_json::json!("x")).retry_count(), 0);
    }
}
