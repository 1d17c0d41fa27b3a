//! Output capture: main's output parameters copied and its output artifacts handed to `wait`
//! once the child has exited: streamed over wait's socket, or archived on the emptyDir.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::commands::{CommandError, Pod};
use crate::pod::create_dir_all_with_mode;
use crate::pod::output_stream;
use argoexec::archive::{self, gzip};
use argoexec::model::{ArchiveStrategy, Template};

/// [`stage_outputs_blocking`] on a blocking thread: archiving a big output takes seconds of
/// tar and gzip that must not hold up the runtime.
pub(crate) async fn stage_outputs(pod: &Pod, template: &Template) -> Result<(), CommandError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Archiving main's outputs runs off the runtime: on a one-thread runtime a ticker keeps
    /// ticking while a 16 MiB output is compressed.
    #[tokio::test(flavor = "current_thread")]
    async fn staging_outputs_leaves_the_runtime_free() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::Duration;
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
}
