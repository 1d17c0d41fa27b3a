//! Log capture: the child's stdout and stderr copied to the container's own and to the
//! `ctr/<name>/stdout` and `combined` files `wait` reads for output parameters and logs.

use std::fs::{self, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::commands::CommandError;

/// After the child exits, at most this much of what is still buffered in its output pipes is
/// copied: everything the child wrote fits (a pipe holds at most 1 MiB), while a background
/// grandchild that keeps writing cannot hold the container open.
const DRAIN_LIMIT: usize = 4 << 20;

/// Copies the child's stdout to ours and to `ctr/<name>/stdout` and `combined`, its stderr to
/// ours and to `combined` (files mode 0666, appended).
pub(crate) struct Tee {
    copies: Vec<tokio::task::JoinHandle<()>>,
    child_exited: CancellationToken,
}

/// `ctr/<name>/stdout` and `combined`, opened before the child starts.
pub(crate) struct LogFiles {
    stdout: Arc<fs::File>,
    combined: Arc<fs::File>,
}

impl LogFiles {
    pub(crate) fn open(dir: &Path) -> Result<Self, CommandError> {
        Ok(Self {
            stdout: Arc::new(open_log(&dir.join("stdout"))?),
            combined: Arc::new(open_log(&dir.join("combined"))?),
        })
    }
}

impl Tee {
    pub(crate) fn start(
        child: &mut std::process::Child,
        logs: LogFiles,
    ) -> Result<Self, CommandError> {
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
    pub(crate) async fn finish(self) {
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
