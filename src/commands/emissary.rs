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

use std::fs::{self, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll, StreamExt};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::output_stream;
use super::pod::{
    create_dir_all_with_mode, create_shared_dir, template_from_file_or_env, write_atomic,
};
use super::watch::DirWatch;
use super::{CommandError, Pod};
use argoexec::archive::{self, gzip};
use argoexec::contract::{self, MAX_INLINE_ARG_BYTES, env};
use argoexec::model::{ArchiveStrategy, Template};

/// The exit code recorded when the emissary fails before its child reports one.
const EXECUTOR_FAILURE_CODE: i32 = 64;
/// After the child exits, at most this much of what is still buffered in its output pipes is
/// copied: everything the child wrote fits (a pipe holds at most 1 MiB), while a background
/// grandchild that keeps writing cannot hold the container open.
const DRAIN_LIMIT: usize = 4 << 20;

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

/// Reaps every child that has exited; returns `child`'s exit code if it was among them.
pub(super) fn reap(child: Pid) -> Option<i32> {
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
pub(super) fn take_signal_file(path: &Path) -> Option<Signal> {
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
pub(super) struct Signals {
    pub(super) forwarded: Forwarded,
    pub(super) child: tokio::signal::unix::Signal,
}

/// Every signal the emissary passes on to its child, merged into one stream.
pub(super) struct Forwarded(SelectAll<BoxStream<'static, Signal>>);

impl Signals {
    /// Everything but what cannot be caught (KILL, STOP), faults that only our own code raises
    /// (SEGV, BUS, FPE, ILL, TRAP, SYS), SIGCHLD (ours), SIGURG (Go's and Argo's choice too)
    /// and SIGPIPE (raised by a write of ours, never meant for the child).
    pub(super) fn install() -> Result<Self, CommandError> {
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
    pub(super) async fn next(&mut self) -> Signal {
        match self.0.next().await {
            Some(sig) => sig,
            None => std::future::pending().await,
        }
    }
}

/// A user sidecar stops itself once every main container has finished: SIGTERM to its child,
/// then SIGKILL after the termination grace period.
struct SidecarStop {
    main_exit_files: Vec<PathBuf>,
    watch: DirWatch,
    grace: Duration,
    kill_at: Option<Instant>,
    done: bool,
}

impl SidecarStop {
    fn new(pod: &Pod, template: &Template) -> Result<Self, CommandError> {
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
            grace: contract::termination_grace_period(),
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

async fn next_sidecar_signal(sidecar: &mut Option<SidecarStop>) -> Signal {
    match sidecar {
        Some(stop) => stop.next_signal().await,
        None => std::future::pending().await,
    }
}

/// Copies the child's stdout to ours and to `ctr/<name>/stdout` and `combined`, its stderr to
/// ours and to `combined` (files mode 0666, appended).
struct Tee {
    copies: Vec<tokio::task::JoinHandle<()>>,
    child_exited: CancellationToken,
}

/// `ctr/<name>/stdout` and `combined`, opened before the child starts.
struct LogFiles {
    stdout: Arc<fs::File>,
    combined: Arc<fs::File>,
}

impl LogFiles {
    fn open(dir: &Path) -> Result<Self, CommandError> {
        Ok(Self {
            stdout: Arc::new(open_log(&dir.join("stdout"))?),
            combined: Arc::new(open_log(&dir.join("combined"))?),
        })
    }
}

impl Tee {
    fn start(child: &mut std::process::Child, logs: LogFiles) -> Result<Self, CommandError> {
        let LogFiles {
            stdout: stdout_log,
            combined,
        } = logs;
        let child_exited = CancellationToken::new();
        let mut copies = Vec::new();
        if let Some(out) = child.stdout.take() {
            let out = tokio::process::ChildStdout::from_std(out).map_err(io_failed)?;
            copies.push(tokio::spawn(copy_output(
                out,
                tokio::io::stdout(),
                vec![stdout_log, Arc::clone(&combined)],
                child_exited.clone(),
            )));
        }
        if let Some(err) = child.stderr.take() {
            let err = tokio::process::ChildStderr::from_std(err).map_err(io_failed)?;
            copies.push(tokio::spawn(copy_output(
                err,
                tokio::io::stderr(),
                vec![combined],
                child_exited.clone(),
            )));
        }
        Ok(Self {
            copies,
            child_exited,
        })
    }

    /// Called once the child has exited: copies what is still buffered, then stops.
    async fn finish(self) {
        self.child_exited.cancel();
        for copy in self.copies {
            let _ = copy.await;
        }
    }
}

fn io_failed(e: std::io::Error) -> CommandError {
    CommandError::failed(e)
}

fn open_log(path: &Path) -> Result<fs::File, CommandError> {
    let fail =
        |e: std::io::Error| CommandError::failed(format!("failed to open {}: {e}", path.display()));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o666)
        .open(path)
        .map_err(fail)?;
    file.set_permissions(fs::Permissions::from_mode(0o666))
        .map_err(fail)?;
    Ok(file)
}

/// Copies one child stream until it ends, or until the child has exited and what it left in
/// the pipe is copied (a background grandchild may keep the pipe open forever).
async fn copy_output<R, W>(
    mut src: R,
    mut dst: W,
    logs: Vec<Arc<fs::File>>,
    child_exited: CancellationToken,
) where
    R: AsyncRead + AsFd + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    let mut emit = async |data: &[u8]| {
        let _ = dst.write_all(data).await;
        let _ = dst.flush().await;
        append_to_logs(&logs, data).await;
    };
    loop {
        tokio::select! {
            biased;
            read = src.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => emit(&buf[..n]).await,
            },
            _ = child_exited.cancelled() => break,
        }
    }
    // The pipe is non-blocking: read what is there now, without waiting for more.
    let mut drained = 0;
    while drained < DRAIN_LIMIT {
        match nix::unistd::read(src.as_fd(), &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                emit(&buf[..n]).await;
                drained += n;
            }
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// Appends `data` to each log file on a blocking thread: a slow disk must not hold up the
/// runtime, which forwards signals and copies the other stream meanwhile.
async fn append_to_logs(logs: &[Arc<fs::File>], data: &[u8]) {
    let (logs, data) = (logs.to_vec(), data.to_vec());
    let _ = tokio::task::spawn_blocking(move || {
        for log in &logs {
            let _ = std::io::Write::write_all(&mut &**log, &data);
        }
    })
    .await;
}

/// [`stage_outputs_blocking`] on a blocking thread: archiving a big output takes seconds of
/// tar and gzip that must not hold up the runtime.
async fn stage_outputs(pod: &Pod, template: &Template) -> Result<(), CommandError> {
    let (pod, template) = (pod.clone(), template.clone());
    tokio::task::spawn_blocking(move || stage_outputs_blocking(&pod, &template))
        .await
        .map_err(|e| CommandError::failed(format!("staging the outputs failed: {e}")))?
}

/// Copies `main`'s output parameter files and hands its output artifact paths to the wait
/// container: streamed over wait's output socket, or archived on the emptyDir when that is not
/// possible (paths on shared volumes are read by wait directly and skipped here).
fn stage_outputs_blocking(pod: &Pod, template: &Template) -> Result<(), CommandError> {
    for param in &template.outputs.parameters {
        let Some(path) = param
            .value_from
            .as_ref()
            .map(|v| v.path.as_str())
            .filter(|p| !p.is_empty())
        else {
            continue;
        };
        if template.is_on_shared_mount(path) || !Path::new(path).exists() {
            continue;
        }
        let dest = pod.roots.emissary_parameter(path);
        copy_file(Path::new(path), &dest)?;
    }
    for art in &template.outputs.artifacts {
        let path = art.path.as_str();
        if !output_stream::in_main_filesystem(template, art) || !Path::new(path).exists() {
            continue;
        }
        match output_stream::send_output(&pod.roots, &art.name, Path::new(path)) {
            Ok(()) => {
                tracing::info!(artifact = %art.name, path, "streamed the output to wait");
                continue;
            }
            Err(e @ output_stream::StreamError::NotOffered(_)) => {
                tracing::info!(artifact = %art.name, reason = %e, "staging the output");
            }
            Err(e) => {
                tracing::warn!(artifact = %art.name, reason = %e, "staging the output instead of streaming it");
            }
        }
        // Our wait re-encodes `none` and `zip` from this archive, so those only need speed.
        let level = match art.archive_strategy() {
            ArchiveStrategy::Tar { compression_level } => gzip::level_from_argo(compression_level),
            ArchiveStrategy::None | ArchiveStrategy::Zip => 1,
        };
        let dest = pod.roots.emissary_artifact(path);
        archive_to(Path::new(path), &dest, level, pod.transfer.gzip_threads).map_err(|e| {
            CommandError::failed(format!(
                "failed to archive output artifact '{}' at {path}: {e}",
                art.name
            ))
        })?;
    }
    Ok(())
}

/// Copies one file byte for byte, readable by the wait container whatever the source's mode.
fn copy_file(src: &Path, dest: &Path) -> Result<(), CommandError> {
    let fail = |e: std::io::Error| {
        CommandError::failed(format!(
            "failed to copy {} to {}: {e}",
            src.display(),
            dest.display()
        ))
    };
    if let Some(parent) = dest.parent() {
        create_dir_all_with_mode(parent, 0o755).map_err(fail)?;
    }
    fs::copy(src, dest).map_err(fail)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o644)).map_err(fail)
}

/// Writes `src` as a tgz to `dest` through a temporary name, removed again when that fails
/// (a full emptyDir must keep room for the exit code).
fn archive_to(src: &Path, dest: &Path, level: u32, threads: usize) -> std::io::Result<()> {
    if let Some(parent) = dest.parent() {
        create_dir_all_with_mode(parent, 0o755)?;
    }
    let tmp: PathBuf = dest.with_extension("tgz.tmp");
    let written = write_tgz_file(src, &tmp, level, threads).and_then(|()| fs::rename(&tmp, dest));
    if written.is_err()
        && let Err(e) = fs::remove_file(&tmp)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %tmp.display(), error = %e, "cannot remove the partial archive");
    }
    written
}

fn write_tgz_file(src: &Path, tmp: &Path, level: u32, threads: usize) -> std::io::Result<()> {
    let file = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(tmp)?);
    let (out, _) = archive::write_tgz(src, file, level, threads)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.set_permissions(fs::Permissions::from_mode(0o644))?;
    file.sync_all()
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

    /// Archiving main's outputs runs off the runtime: on a one-thread runtime a ticker keeps
    /// ticking while a 16 MiB output is compressed.
    #[tokio::test(flavor = "current_thread")]
    async fn staging_outputs_leaves_the_runtime_free() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let root = tempfile::tempdir().expect("tempdir");
        let out = tempfile::tempdir().expect("tempdir");
        // Incompressible bytes (xorshift), so gzip works through all of them.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let data: Vec<u8> = (0..16 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        fs::write(out.path().join("data.bin"), &data).expect("write");
        let roots = argoexec::contract::Roots::at(root.path());
        let pod = Pod {
            secrets: argoexec::storage::Secrets::new(roots.clone()),
            roots,
            transfer: argoexec::transfer::config::TransferConfig {
                gzip_threads: 1,
                ..Default::default()
            },
        };
        let path = out.path().to_string_lossy().into_owned();
        let template: Template = serde_json::from_value(serde_json::json!(
            {"outputs": {"artifacts": [{"name": "out", "path": path}]}}
        ))
        .expect("template");

        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = Arc::clone(&ticks);
            async move {
                let mut every = tokio::time::interval(Duration::from_millis(5));
                loop {
                    every.tick().await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        tokio::task::yield_now().await;
        let before = ticks.load(Ordering::Relaxed);
        stage_outputs(&pod, &template).await.expect("staged");
        let during = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();
        assert!(pod.roots.emissary_artifact(&path).is_file());
        assert!(
            during >= 2,
            "the runtime was held while the outputs were archived: {during} ticks"
        );
    }

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
