//! `argoexec wait`: wait for the main container(s), then save the outputs and report them
//! through the WorkflowTaskResult (docs/contract.md#reporting).
//!
//! Order, as Argo's: create the empty task result; wait for every main container's exit code
//! file (enforcing `ARGO_DEADLINE` and reporting progress meanwhile); capture the script result,
//! the output parameters, the output artifacts and the logs; report the outputs; label the
//! result complete. Each step's failure is recorded and the later steps still run; the first
//! failure is the container's message and makes it exit 64.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};
use tokio::time::Instant;
use tracing::Instrument;

use super::{CommandError, Pod, write_termination_log};
use crate::pod::output_stream::OutputServer;
use crate::pod::watch::DirWatch;
use crate::pod::{create_shared_dir, required_env, template_from_file, write_atomic};
use crate::report::{ApiOptions, TaskResultIdentity, TaskResults};
use crate::telemetry::{Direction, Transfer, metrics, trace};
use argoexec::contract::{self, Roots, env, parse_go_duration};
use argoexec::model::{NodeResult, Outputs, Template};
use argoexec::storage::go_error_text;
use argoexec::transfer::Uploader;
use argoexec::transfer::save::{Saved, Saver};

/// Script results keep only their last 256 KiB, as Argo does.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;
/// The message a step that ran out of time leaves in the termination log.
pub const DEADLINE_MESSAGE: &str = "Step exceeded its deadline";
/// How long wait keeps waiting for an exit code after sending SIGKILL, before it says so.
const AFTER_KILL: Duration = Duration::from_secs(10);

pub async fn run(pod: &Pod, api: &ApiOptions) -> Result<(), CommandError> {
    required_env(env::POD_NAME)?;
    let template = template_from_file(&pod.roots)?.template;
    post_main(pod, api, &template, None).await
}

/// Everything after main started, shared with the init-less `supervisor` (Argo's `PostMain`).
/// `pre_main_failure` is the supervisor's failure before main: then main never ran its
/// command, so only its logs are saved; the failure stays the container's message.
pub(super) async fn post_main(
    pod: &Pod,
    api: &ApiOptions,
    template: &Template,
    pre_main_failure: Option<String>,
) -> Result<(), CommandError> {
    let deadline = deadline()?;
    // From here on SIGTERM only ends the wait for main: outputs are still saved and reported.
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| CommandError::failed(format!("cannot handle SIGTERM: {e}")))?;
    let results = Arc::new(
        TaskResults::connect(api, TaskResultIdentity::from_env())
            .await
            .map_err(CommandError::failed)?,
    );
    let mut errors = Errors::default();
    let outputs_expected = pre_main_failure.is_none();
    if let Some(failure) = pre_main_failure {
        errors.add(failure);
    }
    if let Err(e) = results.initialize().await {
        errors.add(e);
    }

    let progress = ProgressMonitor::from_env(pod).map(|m| m.start(Arc::clone(&results)));
    let names = template.main_container_names();
    // One engine, one memory budget, for the streamed outputs and all the others.
    let uploader = Uploader::new(pod.transfer.clone());
    let saver = Saver {
        roots: &pod.roots,
        secrets: &pod.secrets,
        uploader: &uploader,
        template,
        initless_pod: crate::pod::initless_pod_from_env(),
    };
    let main_done =
        wait_for_main(pod, &names, deadline, &mut sigterm).instrument(trace::wait_workload());
    // main's emissary streams its outputs before it writes its exit code.
    let server = outputs_expected
        .then(|| OutputServer::offer(&pod.roots, template))
        .flatten();
    let (waited, streamed) = match server {
        Some(server) => server.serve_until(&saver, main_done).await,
        None => (main_done.await, HashMap::new()),
    };
    if let Err(e) = waited {
        errors.add(format!(
            "failed to wait for main container to complete: {e}"
        ));
    }
    let last_progress = match progress {
        Some(running) => running.stop().await,
        None => String::new(),
    };

    // SIGTERM while saving (the pod is being deleted) does not stop the uploads: they finish,
    // as Argo's do. Only a SIGKILL after the grace period interrupts them, and that leaves
    // each multipart upload unfinished in the store for a retry to resume (transfer::resume).
    let finishing = tokio::spawn(async move {
        while sigterm.recv().await.is_some() {
            tracing::warn!("SIGTERM while saving and reporting the outputs: finishing first");
        }
    });
    let outputs = collect_outputs(&saver, streamed, outputs_expected, &mut errors).await;
    let report = NodeResult {
        outputs: Some(outputs),
        progress: last_progress,
        ..Default::default()
    };
    if let Err(e) = results.report(&report).await {
        errors.add(e);
    }
    end_plugin_sidecars(pod).await;
    if let Err(e) = results.finalize().await {
        errors.add(e);
    }
    finishing.abort();
    errors.into_result()
}

/// `ARGO_DEADLINE`, which must parse (the zero time means none).
fn deadline() -> Result<Option<SystemTime>, CommandError> {
    let value = std::env::var(env::DEADLINE).unwrap_or_default();
    contract::parse_deadline(&value).map_err(|e| {
        CommandError::failed(format!(
            "{} {value:?} is not an RFC 3339 time: {e}",
            env::DEADLINE
        ))
    })
}

/// Every failure of the run, in order; the first one is the container's message.
#[derive(Debug, Default)]
struct Errors(Vec<CommandError>);

impl Errors {
    fn add(&mut self, e: impl std::fmt::Display) {
        let message = e.to_string();
        tracing::error!(error = %message, "executor error");
        self.0.push(CommandError::failed(message));
    }

    /// A failure whose message is Argo's text and whose log line says more (`detail`).
    fn add_detailed(&mut self, message: String, detail: String) {
        tracing::error!(error = %message, %detail, "executor error");
        self.0.push(CommandError::with_detail(message, detail));
    }

    fn into_result(self) -> Result<(), CommandError> {
        match self.0.into_iter().next() {
            None => Ok(()),
            Some(first) => Err(first),
        }
    }
}

/// Blocks until every main container has written its exit code, or SIGTERM arrives. Past the
/// deadline it stops them through their signal files: SIGTERM, SIGKILL after the grace period.
async fn wait_for_main(
    pod: &Pod,
    names: &[String],
    deadline: Option<SystemTime>,
    sigterm: &mut SignalStream,
) -> Result<(), String> {
    let mut dirs = Vec::with_capacity(names.len());
    for name in names {
        let dir = pod.roots.container_dir(name);
        create_shared_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        dirs.push(dir);
    }
    let mut watch = DirWatch::new(&dirs);
    let mut killer = Killer::new(pod, names);
    let mut deadline_at =
        deadline.map(|d| Instant::now() + d.duration_since(SystemTime::now()).unwrap_or_default());
    tracing::info!(containers = ?names, deadline = ?deadline, "waiting for the main container(s)");
    loop {
        if killer.unfinished().is_empty() {
            tracing::info!(containers = ?names, "main container(s) finished");
            return Ok(());
        }
        tokio::select! {
            _ = watch.changed() => {}
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: no longer waiting for the main container(s)");
                return Ok(());
            }
            _ = sleep_until(deadline_at) => {
                deadline_at = None;
                tracing::info!("{DEADLINE_MESSAGE}");
                write_termination_log(&pod.roots, DEADLINE_MESSAGE);
                killer.escalate();
            }
            _ = sleep_until(killer.next_at) => killer.escalate(),
        }
    }
}

/// Ends the artifact-plugin sidecars (`ARGO_ARTIFACT_PLUGIN_NAMES`) once the outputs are
/// saved, as Argo's wait (and GC) does before it finalizes: SIGTERM through each one's signal
/// file, SIGKILL after the grace period, then at most 10 s more for their exit codes.
pub(super) async fn end_plugin_sidecars(pod: &Pod) {
    let names = crate::pod::plugin_names_from_env(env::ARTIFACT_PLUGIN_NAMES);
    if names.is_empty() {
        return;
    }
    tracing::info!(sidecars = ?names, "ending the artifact plugin sidecars");
    let dirs: Vec<PathBuf> = names.iter().map(|n| pod.roots.container_dir(n)).collect();
    for dir in &dirs {
        if let Err(e) = create_shared_dir(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create a sidecar's ctr directory");
        }
    }
    let mut watch = DirWatch::new(&dirs);
    let mut killer = Killer::new(pod, &names);
    killer.escalate();
    while !killer.unfinished().is_empty() && killer.next_at.is_some() {
        tokio::select! {
            _ = watch.changed() => {}
            _ = sleep_until(killer.next_at) => killer.escalate(),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Stops main containers through the emissary's signal-file protocol (docs/contract.md#the-emissary).
struct Killer {
    containers: Vec<(PathBuf, PathBuf)>,
    grace: Duration,
    stage: u8,
    next_at: Option<Instant>,
}

impl Killer {
    fn new(pod: &Pod, names: &[String]) -> Self {
        Self {
            containers: names
                .iter()
                .map(|n| {
                    let dir = pod.roots.container_dir(n);
                    (dir.join("exitcode"), dir.join("signal"))
                })
                .collect(),
            grace: crate::pod::termination_grace_period(),
            stage: 0,
            next_at: None,
        }
    }

    /// The signal files of the containers without an exit code yet.
    fn unfinished(&self) -> Vec<&Path> {
        self.containers
            .iter()
            .filter(|(exit, _)| !exit.exists())
            .map(|(_, signal)| signal.as_path())
            .collect()
    }

    /// SIGTERM, then (after the grace period) SIGKILL, then a warning 10 s later.
    fn escalate(&mut self) {
        let (signal, wait) = match self.stage {
            0 => (Signal::SIGTERM, Some(self.grace)),
            1 => (Signal::SIGKILL, Some(AFTER_KILL)),
            _ => {
                tracing::warn!(
                    "the main container(s) did not exit {}s after SIGKILL",
                    AFTER_KILL.as_secs()
                );
                self.next_at = None;
                return;
            }
        };
        self.stage += 1;
        self.next_at = wait.map(|w| Instant::now() + w);
        for file in self.unfinished() {
            tracing::info!(signal = %signal, file = %file.display(), "signalling a main container");
            if let Err(e) = write_atomic(file, (signal as i32).to_string().as_bytes(), 0o666) {
                tracing::warn!(file = %file.display(), error = %e, "cannot write the signal file");
            }
        }
    }
}

/// Self-reported progress (`ARGO_PROGRESS_FILE`): the file's last line, read every
/// `ARGO_PROGRESS_FILE_TICK_DURATION`, reported when changed every
/// `ARGO_PROGRESS_PATCH_TICK_DURATION`. Off unless both durations are positive.
#[derive(Debug)]
struct ProgressMonitor {
    file: PathBuf,
    file_tick: Duration,
    patch_tick: Duration,
}

/// The progress last read from the file, and the last one the API accepted.
#[derive(Debug, Default)]
struct ProgressState {
    read: String,
    reported: String,
}

struct RunningMonitor {
    monitor: ProgressMonitor,
    state: Arc<Mutex<ProgressState>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressMonitor {
    fn from_env(pod: &Pod) -> Option<Self> {
        let duration = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| parse_go_duration(&v))
                .filter(|d| !d.is_zero())
        };
        let file = std::env::var(env::PROGRESS_FILE)
            .ok()
            .filter(|f| !f.is_empty())?;
        Some(Self {
            file: pod.roots.path(file),
            file_tick: duration(env::PROGRESS_FILE_TICK_DURATION)?,
            patch_tick: duration(env::PROGRESS_PATCH_TICK_DURATION)?,
        })
    }

    fn start(self, results: Arc<TaskResults>) -> RunningMonitor {
        let state = Arc::new(Mutex::new(ProgressState::default()));
        // In the current span: its progress patches belong to this command's trace.
        let task = tokio::spawn(
            monitor(
                self.file.clone(),
                self.file_tick,
                self.patch_tick,
                Arc::clone(&state),
                results,
            )
            .in_current_span(),
        );
        RunningMonitor {
            monitor: self,
            state,
            task,
        }
    }
}

impl RunningMonitor {
    /// Stops the monitor; returns the progress the API has not seen yet (the file is read one
    /// last time), to go with the outputs, or "" when there is nothing new.
    async fn stop(self) -> String {
        self.task.abort();
        let _ = self.task.await;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(latest) = read_progress(&self.monitor.file) {
            state.read = latest;
        }
        if state.read != state.reported {
            state.read.clone()
        } else {
            String::new()
        }
    }
}

async fn monitor(
    file: PathBuf,
    file_tick: Duration,
    patch_tick: Duration,
    state: Arc<Mutex<ProgressState>>,
    results: Arc<TaskResults>,
) {
    let mut read_tick = tokio::time::interval(file_tick);
    let mut patch = tokio::time::interval_at(Instant::now() + patch_tick, patch_tick);
    loop {
        tokio::select! {
            _ = read_tick.tick() => {
                if let Some(progress) = read_progress(&file) {
                    state.lock().unwrap_or_else(|p| p.into_inner()).read = progress;
                }
            }
            _ = patch.tick() => {
                let pending = {
                    let s = state.lock().unwrap_or_else(|p| p.into_inner());
                    (s.read != s.reported).then(|| s.read.clone())
                };
                let Some(progress) = pending else { continue };
                let update = NodeResult { progress: progress.clone(), ..Default::default() };
                match results.report(&update).await {
                    Ok(()) => {
                        tracing::info!(progress, "reported progress");
                        state.lock().unwrap_or_else(|p| p.into_inner()).reported = progress;
                    }
                    Err(e) => tracing::warn!(error = %e, "failed to report progress"),
                }
            }
        }
    }
}

/// The last non-empty line of the progress file when it reads `N/M` (0 <= N <= M, M > 0).
fn read_progress(file: &Path) -> Option<String> {
    const TAIL: u64 = 4096;
    let mut f = std::fs::File::open(file).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let (n, m) = line.split_once('/')?;
    let (n, m): (i64, i64) = (n.parse().ok()?, m.parse().ok()?);
    (n >= 0 && n <= m && m > 0).then(|| line.to_string())
}

/// Script result, output parameters, output artifacts and logs, with failures added to `errors`
/// as Argo groups them: one for the result, one for the parameters (the first failing parameter
/// stops the rest), one for all artifacts together, one per container log. Outputs already
/// saved from the emissary's streams are in `streamed`.
async fn collect_outputs(
    saver: &Saver<'_>,
    mut streamed: HashMap<String, Saved>,
    outputs_expected: bool,
    errors: &mut Errors,
) -> Outputs {
    let template = saver.template;
    let mut transfers = Vec::new();
    if template.resource.is_some() {
        // Resource templates only report their logs.
        let artifacts = save_logs(saver, template, errors, &mut transfers).await;
        metrics::export_from_env(Direction::Output, &transfers);
        return Outputs {
            artifacts,
            ..Default::default()
        };
    }
    let mut outputs = template.outputs.clone();
    outputs.artifacts.clear();
    if !outputs_expected {
        // Main never ran its command: there is nothing to collect but its logs.
        outputs.artifacts = save_logs(saver, template, errors, &mut transfers).await;
        metrics::export_from_env(Direction::Output, &transfers);
        return outputs;
    }
    trace::capture_script_result().in_scope(|| {
        if std::env::var(env::INCLUDE_SCRIPT_OUTPUT).as_deref() == Ok("true")
            && template.has_output()
        {
            match read_result(&saver.roots.container_dir("main").join("stdout")) {
                Ok(result) => outputs.result = Some(result),
                Err(e) => errors.add(e),
            }
        }
    });
    if let Err(e) = save_parameters(saver.roots, template, &mut outputs) {
        errors.add(e);
    }
    // Argo joins the artifacts' failures, each followed by "; ".
    let mut failures = String::new();
    let mut details = Vec::new();
    let saving = trace::save_artifacts();
    for art in &template.outputs.artifacts {
        let span = saving.in_scope(|| trace::save_artifact(&art.name));
        let saved = match streamed.remove(&art.name) {
            Some(saved) => Ok(Some(saved)),
            None => saver.save(art).instrument(span.clone()).await,
        };
        match saved {
            Ok(Some(saved)) => {
                let transfer = saved.transfer();
                trace::record_save(&span, &transfer);
                transfer.log();
                transfers.push(transfer);
                outputs.artifacts.push(saved.artifact);
            }
            Ok(None) => {
                tracing::info!(artifact = %art.name, "optional output artifact absent, skipped")
            }
            Err(e) => {
                failures.push_str(&format!("{}; ", e.termination_message()));
                details.push(format!("output artifact {}: {e}", art.name));
            }
        }
    }
    drop(saving);
    if !failures.is_empty() {
        errors.add_detailed(failures, details.join("; "));
    }
    outputs
        .artifacts
        .extend(save_logs(saver, template, errors, &mut transfers).await);
    metrics::export_from_env(Direction::Output, &transfers);
    outputs
}

/// `archiveLogs`: each main container's combined log, as `<name>-logs`.
async fn save_logs(
    saver: &Saver<'_>,
    template: &Template,
    errors: &mut Errors,
    transfers: &mut Vec<Transfer>,
) -> Vec<argoexec::model::Artifact> {
    let mut logs = Vec::new();
    let saving = trace::save_logs();
    if !template.archive_logs() {
        return logs;
    }
    for name in template.main_container_names() {
        let span = saving.in_scope(|| trace::save_container_logs(&name));
        match saver.save_log(&name).instrument(span.clone()).await {
            Ok(Some(saved)) => {
                let transfer = saved.transfer();
                trace::record_save(&span, &transfer);
                transfer.log();
                transfers.push(transfer);
                logs.push(saved.artifact);
            }
            Ok(None) => {}
            Err(e) => errors.add_detailed(e.termination_message(), format!("logs of {name}: {e}")),
        }
    }
    logs
}

/// `outputs.result`: main's stdout with one trailing newline removed, then only its last
/// 256 KiB. Only that tail is read, however long the log.
fn read_result(stdout: &Path) -> Result<String, String> {
    let fail = |e: std::io::Error| {
        format!(
            "failed to capture the script result from {}: {e}",
            stdout.display()
        )
    };
    let mut f = std::fs::File::open(stdout).map_err(fail)?;
    let len = f.metadata().map_err(fail)?.len();
    let keep = MAX_RESULT_BYTES as u64 + 1;
    f.seek(SeekFrom::Start(len.saturating_sub(keep)))
        .map_err(fail)?;
    let mut tail = Vec::with_capacity(keep as usize);
    f.read_to_end(&mut tail).map_err(fail)?;
    if tail.last() == Some(&b'\n') {
        tail.pop();
    }
    if tail.len() > MAX_RESULT_BYTES {
        tracing::warn!(
            "the output is larger than 256 KiB; only the last 256 KiB are kept as the result"
        );
        tail.drain(..tail.len() - MAX_RESULT_BYTES);
    }
    Ok(String::from_utf8_lossy(&tail).into_owned())
}

/// Output parameters with `valueFrom.path`: the file's content (one trailing newline removed),
/// or `valueFrom.default`. The first parameter with neither stops the rest, as in Argo.
fn save_parameters(
    roots: &Roots,
    template: &Template,
    outputs: &mut Outputs,
) -> Result<(), String> {
    for param in &mut outputs.parameters {
        let Some(vf) = param.value_from.as_ref().filter(|v| !v.path.is_empty()) else {
            continue;
        };
        let file = if template.is_on_shared_mount(&vf.path) {
            roots.main_ctr_fs(&vf.path)
        } else {
            roots.emissary_parameter(&vf.path)
        };
        match std::fs::read(&file) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                param.value = Some(text.strip_suffix('\n').unwrap_or(&text).to_string());
            }
            Err(e) => match &vf.default {
                Some(d) => param.value = Some(d.clone()),
                None => {
                    // Argo's text is Go's read error; ours names the parameter too.
                    tracing::error!(parameter = %param.name, path = %vf.path, error = %e, "failed to get an output parameter");
                    return Err(format!("open {}: {}", file.display(), go_error_text(&e)));
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_the_last_valid_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("progress");
        std::fs::write(&file, "1/10\n2/10\n\n").expect("write");
        assert_eq!(read_progress(&file).as_deref(), Some("2/10"));
        for bad in ["3/2", "1/0", "-1/3", "half", "1/x"] {
            std::fs::write(&file, bad).expect("write");
            assert_eq!(read_progress(&file), None, "{bad}");
        }
        assert_eq!(read_progress(&dir.path().join("absent")), None);
    }

    #[test]
    fn the_result_strips_one_newline_then_keeps_the_last_256_kib() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("stdout");
        std::fs::write(&file, "hello\n\n").expect("write");
        assert_eq!(read_result(&file).expect("read"), "hello\n");
        let mut big = vec![b'a'; 10];
        big.extend(std::iter::repeat_n(b'b', MAX_RESULT_BYTES));
        big.push(b'\n');
        std::fs::write(&file, &big).expect("write");
        let result = read_result(&file).expect("read");
        assert_eq!(result.len(), MAX_RESULT_BYTES);
        assert!(result.bytes().all(|b| b == b'b'));
    }
}
