//! `argoexec wait`: wait for the main container(s), then save and report the outputs
//! (contract section 10).

use std::time::Duration;

use super::pod::{required_env, template_from_file};
use super::{CommandError, Pod};
use crate::contract::env;
use crate::model::{Outputs, Template};
use crate::transfer::Uploader;
use crate::transfer::save::Saver;

/// Script results keep only their last 256 KiB, as Argo does.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

pub async fn run(pod: &Pod) -> Result<(), CommandError> {
    required_env(env::POD_NAME)?;
    let template = template_from_file(&pod.roots)?.template;
    wait_for_main(pod, &template).await;
    let (outputs, errors) = collect_outputs(pod, &template).await;
    let json = serde_json::to_string(&outputs)
        .map_err(|e| CommandError::failed(format!("cannot encode the outputs: {e}")))?;
    tracing::info!(outputs = %json, "outputs (no Kubernetes reporting in this build)");
    match errors.first() {
        None => Ok(()),
        Some(_) => Err(CommandError::failed(errors.join("; "))),
    }
}

/// Blocks until every main container has written its exit code.
async fn wait_for_main(pod: &Pod, template: &Template) {
    for name in template.main_container_names() {
        let file = pod.roots.exitcode_file(&name);
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        while !file.exists() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::info!(container = %name, "main container finished");
    }
}

/// Script result, output parameters, output artifacts and logs; errors are collected so one
/// bad artifact does not hide the others.
pub async fn collect_outputs(pod: &Pod, template: &Template) -> (Outputs, Vec<String>) {
    let mut errors = Vec::new();
    let mut outputs = template.outputs.clone();
    outputs.artifacts.clear();
    if std::env::var(env::INCLUDE_SCRIPT_OUTPUT).as_deref() == Ok("true") {
        outputs.result = read_result(pod);
    }
    if let Err(e) = save_parameters(pod, template, &mut outputs) {
        errors.push(e);
    }
    let uploader = Uploader::new(pod.transfer.clone()).with_journal_dir(pod.roots.resume_dir());
    let saver = Saver {
        roots: &pod.roots,
        secrets: &pod.secrets,
        uploader: &uploader,
        template,
    };
    for art in &template.outputs.artifacts {
        match saver.save(art).await {
            Ok(Some(saved)) => {
                tracing::info!(
                    artifact = %art.name,
                    destination = %saved.destination,
                    bytes = saved.stats.bytes,
                    parts = saved.stats.parts,
                    crc32c = format!("{:08x}", saved.stats.crc32c),
                    seconds = saved.stats.elapsed.as_secs_f64(),
                    mib_per_s = saved.stats.throughput_mib_s(),
                    "saved output artifact"
                );
                outputs.artifacts.push(saved.artifact);
            }
            Ok(None) => {
                tracing::info!(artifact = %art.name, "optional output artifact absent, skipped")
            }
            Err(e) => errors.push(format!("failed to save artifact '{}': {e}", art.name)),
        }
    }
    if template.archive_logs() {
        for name in template.main_container_names() {
            match saver.save_log(&name).await {
                Ok(Some(saved)) => outputs.artifacts.push(saved.artifact),
                Ok(None) => {}
                Err(e) => errors.push(format!("failed to save logs of {name}: {e}")),
            }
        }
    }
    (outputs, errors)
}

/// `outputs.result`: main's stdout, the last 256 KiB, one trailing newline removed.
fn read_result(pod: &Pod) -> Option<String> {
    let data = std::fs::read(pod.roots.container_dir("main").join("stdout")).ok()?;
    let tail = &data[data.len().saturating_sub(MAX_RESULT_BYTES)..];
    let text = String::from_utf8_lossy(tail);
    Some(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

/// Output parameters with `valueFrom.path`: the file's content (one trailing newline removed),
/// or `valueFrom.default`. The first parameter with neither stops the rest, as in Argo.
fn save_parameters(pod: &Pod, template: &Template, outputs: &mut Outputs) -> Result<(), String> {
    for param in &mut outputs.parameters {
        let Some(vf) = param.value_from.as_ref().filter(|v| !v.path.is_empty()) else {
            continue;
        };
        let file = if template.is_on_shared_mount(&vf.path) {
            pod.roots.main_ctr_fs(&vf.path)
        } else {
            pod.roots.emissary_parameter(&vf.path)
        };
        match std::fs::read(&file) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                param.value = Some(text.strip_suffix('\n').unwrap_or(&text).to_string());
            }
            Err(e) => match &vf.default {
                Some(d) => param.value = Some(d.clone()),
                None => {
                    return Err(format!(
                        "failed to get output parameter '{}' from {}: {e}",
                        param.name, vf.path
                    ));
                }
            },
        }
    }
    Ok(())
}
