//! `argoexec init`: copy the binary for the user containers, write the template, stage the
//! script or manifest, load every input artifact.

use std::path::PathBuf;

use futures::StreamExt;
use tracing::Instrument;

use super::{CommandError, Pod};
use crate::pod::{copy_atomic, required_env, template_from_env, write_atomic};
use crate::telemetry::{Direction, Transfer, metrics, trace};
use argoexec::contract::env;
use argoexec::model::Template;
use argoexec::transfer::load::{Loaded, Loader, Sources};

pub async fn run(pod: &Pod) -> Result<(), CommandError> {
    required_env(env::POD_NAME)?;
    let loaded = template_from_env(&pod.roots)?;
    copy_binary(pod)?;
    write_atomic(&pod.roots.template_file(), &loaded.raw, 0o444).map_err(|e| {
        CommandError::failed(format!(
            "failed to write {}: {e}",
            pod.roots.template_file().display()
        ))
    })?;
    stage_files(pod, &loaded.template)?;
    load_inputs(pod, &loaded.template, Sources::AllButPlugins).await
}

/// Finds our own binary as Argo does (the name `argoexec` on PATH, else this executable) and
/// copies it to `/var/run/argo/argoexec` with mode 0555.
fn copy_binary(pod: &Pod) -> Result<(), CommandError> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("argoexec"))
            .find(|p| p.is_file())
    });
    let src: PathBuf = match on_path {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| CommandError::failed(format!("cannot find the argoexec binary: {e}")))?,
    };
    let dest = pod.roots.binary_copy();
    copy_atomic(&src, &dest, 0o555).map_err(|e| {
        CommandError::failed(format!(
            "failed to copy the binary {} to {}: {e}",
            src.display(),
            dest.display()
        ))
    })?;
    tracing::info!(from = %src.display(), to = %dest.display(), "copied the executor binary");
    Ok(())
}

/// Writes the script source (script templates) and the manifest (resource templates).
pub(super) fn stage_files(pod: &Pod, template: &Template) -> Result<(), CommandError> {
    let _span = trace::stage_files().entered();
    if let Some(script) = template.script.as_ref().filter(|s| !s.source.is_empty()) {
        let path = pod.roots.staging_script();
        write_atomic(&path, script.source.as_bytes(), 0o755).map_err(|e| {
            CommandError::failed(format!("failed to write {}: {e}", path.display()))
        })?;
    }
    if let Some(manifest) = template
        .resource
        .as_ref()
        .and_then(|r| r.get("manifest"))
        .and_then(|m| m.as_str())
    {
        let path = pod.roots.path("/tmp/manifest.yaml");
        write_atomic(&path, manifest.as_bytes(), 0o644).map_err(|e| {
            CommandError::failed(format!("failed to write {}: {e}", path.display()))
        })?;
    }
    Ok(())
}

/// Loads the inputs, several at once; the first failure in template order is the error.
pub(super) async fn load_inputs(
    pod: &Pod,
    template: &Template,
    sources: Sources,
) -> Result<(), CommandError> {
    let loader = Loader::new(&pod.roots, &pod.secrets, &pod.transfer, template).taking(sources);
    let results: Vec<_> = futures::stream::iter(template.inputs.artifacts.iter())
        .map(|art| {
            let loader = &loader;
            async move {
                let span = trace::load_artifact(&art.name);
                let started = std::time::Instant::now();
                let r = loader.load(art).instrument(span.clone()).await;
                let elapsed = started.elapsed();
                if let Ok(Loaded::Placed {
                    path,
                    bytes,
                    key,
                    retries,
                }) = &r
                {
                    trace::record_load(&span, path, key, *bytes, elapsed, *retries);
                }
                (art, r, elapsed)
            }
        })
        .buffered(pod.transfer.file_concurrency.min(4))
        .collect()
        .instrument(trace::load_artifacts())
        .await;
    let mut transfers = Vec::new();
    for (art, result, elapsed) in results {
        match result {
            Ok(Loaded::Placed {
                path,
                bytes,
                key,
                retries,
            }) => {
                let transfer = Transfer {
                    direction: Direction::Input,
                    artifact: art.name.clone(),
                    key,
                    location: path.display().to_string(),
                    bytes,
                    elapsed,
                    retries,
                    parts: None,
                    crc32c: None,
                    unchecked_parts: None,
                };
                transfer.log();
                transfers.push(transfer);
            }
            Ok(Loaded::Skipped) => {
                tracing::info!(artifact = %art.name, "optional input artifact not supplied, skipped")
            }
            Ok(Loaded::NotOurs) => {
                tracing::info!(artifact = %art.name, "input artifact loaded by another container, skipped")
            }
            Err(e) => {
                metrics::export_from_env(Direction::Input, &transfers);
                return Err(CommandError::with_detail(
                    e.termination_message(),
                    format!("input artifact {}: {e}", art.name),
                ));
            }
        }
    }
    metrics::export_from_env(Direction::Input, &transfers);
    Ok(())
}
