//! `argoexec emissary -- CMD ARGS...`: PID 1 of every user container (contract section 4).
//!
//! Runs the command in its own process group, forwards signals to it, tees its output when
//! the result or the logs are wanted, copies `main`'s outputs for the wait container, and
//! writes the exit code file last: its creation tells wait that everything is in place.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use super::pod::template_from_file_or_env;
use super::{CommandError, Pod};
use crate::archive::{self, gzip};
use crate::contract::env;
use crate::model::ArchiveStrategy;
use crate::model::Template;

pub async fn run(pod: &Pod, args: Vec<String>) -> Result<(), CommandError> {
    let name = std::env::var(env::CONTAINER_NAME).unwrap_or_else(|_| "main".to_string());
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let dir = pod.roots.container_dir(&name);
    let _ = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o777)
        .create(&dir);

    let mut code = 64;
    let outcome = supervise(pod, &name, args, &mut code).await;
    let exit_file = dir.join("exitcode");
    if let Err(e) = fs::write(&exit_file, code.to_string()) {
        tracing::error!(path = %exit_file.display(), error = %e, "cannot write the exit code");
    }
    match outcome {
        Err(e) => Err(e),
        Ok(()) if code == 0 => Ok(()),
        Ok(()) => Err(CommandError::Exited(code)),
    }
}

/// Runs the child and, for `main`, stages its outputs. `code` gets the child's exit code as
/// soon as it is known, so the exit code file records it even if staging fails.
async fn supervise(
    pod: &Pod,
    name: &str,
    args: Vec<String>,
    code: &mut i32,
) -> Result<(), CommandError> {
    let template = template_from_file_or_env(&pod.roots)?.template;
    let capture = std::env::var(env::INCLUDE_SCRIPT_OUTPUT).as_deref() == Ok("true")
        || template.archive_logs();
    *code = run_child(pod, name, &args, capture).await?;
    if name == "main" {
        stage_outputs(pod, &template)?;
    }
    Ok(())
}

async fn run_child(
    pod: &Pod,
    name: &str,
    args: &[String],
    capture: bool,
) -> Result<i32, CommandError> {
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| CommandError::failed("no command given to the emissary"))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest).process_group(0).stdin(Stdio::inherit());
    if capture {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| {
        CommandError::failed(format!(
            "failed to find name in PATH: exec: \"{program}\": {e}"
        ))
    })?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));

    let tees = if capture {
        let dir = pod.roots.container_dir(name);
        let stdout_file = open_log(&dir.join("stdout"))?;
        let combined = open_log(&dir.join("combined"))?;
        let combined_for_stdout = combined.try_clone().await.map_err(io_failed)?;
        let out = child.stdout.take().map(|s| {
            tokio::spawn(tee(
                s,
                tokio::io::stdout(),
                vec![stdout_file, combined_for_stdout],
            ))
        });
        let err = child
            .stderr
            .take()
            .map(|s| tokio::spawn(tee(s, tokio::io::stderr(), vec![combined])));
        vec![out, err]
    } else {
        Vec::new()
    };

    let signal_file = pod.roots.container_dir(name).join("signal");
    let mut term = signal(SignalKind::terminate()).map_err(io_failed)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io_failed)?;
    let mut hup = signal(SignalKind::hangup()).map_err(io_failed)?;
    let mut quit = signal(SignalKind::quit()).map_err(io_failed)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(io_failed)?;
    let mut usr2 = signal(SignalKind::user_defined2()).map_err(io_failed)?;
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    let status = loop {
        let forward = tokio::select! {
            status = child.wait() => break status.map_err(io_failed)?,
            _ = term.recv() => Some(Signal::SIGTERM),
            _ = int.recv() => Some(Signal::SIGINT),
            _ = hup.recv() => Some(Signal::SIGHUP),
            _ = quit.recv() => Some(Signal::SIGQUIT),
            _ = usr1.recv() => Some(Signal::SIGUSR1),
            _ = usr2.recv() => Some(Signal::SIGUSR2),
            _ = poll.tick() => read_signal_file(&signal_file),
        };
        if let (Some(sig), Some(pgid)) = (forward, pgid) {
            tracing::info!(signal = %sig, "forwarding signal to the child process group");
            let _ = killpg(pgid, sig);
        }
    };
    for t in tees.into_iter().flatten() {
        let _ = t.await;
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        _ => 64,
    })
}

fn io_failed(e: std::io::Error) -> CommandError {
    CommandError::failed(e)
}

/// A signal number written to `ctr/<name>/signal` by wait (or the controller); the file is
/// removed once read.
fn read_signal_file(path: &Path) -> Option<Signal> {
    let text = fs::read_to_string(path).ok()?;
    let _ = fs::remove_file(path);
    let num: i32 = text.trim().parse().ok()?;
    Signal::try_from(num).ok().filter(|_| num > 0)
}

fn open_log(path: &Path) -> Result<tokio::fs::File, CommandError> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o666)
        .open(path)
        .map_err(|e| CommandError::failed(format!("cannot open {}: {e}", path.display())))?;
    Ok(tokio::fs::File::from_std(f))
}

/// Copies a child stream to our own stream and to the log files.
async fn tee<R, W>(mut src: R, mut dst: W, mut files: Vec<tokio::fs::File>)
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match src.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let _ = dst.write_all(&buf[..n]).await;
        let _ = dst.flush().await;
        for f in &mut files {
            let _ = f.write_all(&buf[..n]).await;
        }
    }
}

/// Copies `main`'s output parameter files and archives its output artifact paths for the wait
/// container (paths on shared volumes are read by wait directly and skipped here).
fn stage_outputs(pod: &Pod, template: &Template) -> Result<(), CommandError> {
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
        if path.is_empty() || template.is_output_on_shared_mount(path) || !Path::new(path).exists()
        {
            continue;
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

fn copy_file(src: &Path, dest: &Path) -> Result<(), CommandError> {
    let fail = |e: std::io::Error| {
        CommandError::failed(format!(
            "failed to copy {} to {}: {e}",
            src.display(),
            dest.display()
        ))
    };
    if let Some(parent) = dest.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(fail)?;
    }
    fs::copy(src, dest).map(drop).map_err(fail)
}

/// Writes `src` as a tgz to `dest` through a temporary name.
fn archive_to(src: &Path, dest: &Path, level: u32, threads: usize) -> std::io::Result<()> {
    if let Some(parent) = dest.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    let tmp: PathBuf = dest.with_extension("tgz.tmp");
    let file = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(&tmp)?);
    let (out, _) = archive::write_tgz(src, file, level, threads)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    fs::rename(&tmp, dest)
}
