//! `argoexec supervisor`: the init-less layout's one executor container (docs/contract.md#the-init-less-layout).
//!
//! It runs beside main from the start. Pre-main, it does what `init` does (write the
//! template, stage the script or manifest, load the inputs) while refreshing the status marker
//! `/var/run/argo/status` with `RUNNING` every 5 s; then it writes `READY`, or `FAILED` and the
//! cause on the following lines (always atomically: `.tmp` then rename). Main's emissary
//! waits for that marker ([`evaluate_status`]). Then it does everything `wait` does; after a
//! pre-main failure only main's logs are collected, and the failure is the container's
//! message.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{CommandError, Pod};
use crate::pod::{required_env, template_from_env, write_atomic};
use crate::report::ApiOptions;
use argoexec::contract::{env, parse_go_duration};
use argoexec::transfer::load::Sources;

pub const RUNNING: &str = "RUNNING";
pub const READY: &str = "READY";
pub const FAILED: &str = "FAILED";
/// How often the marker is refreshed while pre-main runs.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long main tolerates a marker that neither appeared nor changed (default 30 s, Argo's;
/// `ARGOEXEC_SUPERVISOR_HEARTBEAT_TIMEOUT`, a Go duration, overrides it).
pub const ENV_HEARTBEAT_TIMEOUT: &str = "ARGOEXEC_SUPERVISOR_HEARTBEAT_TIMEOUT";
/// How often main re-checks the marker's freshness (inotify reports the writes themselves).
pub const STATUS_POLL: Duration = Duration::from_secs(2);
/// Main's exit code when pre-main failed.
pub const PRE_MAIN_FAILURE_CODE: i32 = 65;

pub fn heartbeat_timeout() -> Duration {
    std::env::var(ENV_HEARTBEAT_TIMEOUT)
        .ok()
        .and_then(|v| parse_go_duration(&v))
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(30))
}

/// Writes the marker atomically: a reader sees the old or the new content, never a part.
fn write_marker(path: &Path, body: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)
        .map_err(|e| format!("failed to write marker tmp {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| format!("failed to rename marker {}: {e}", path.display()))
}

/// Reads the marker once: `None` to keep waiting, `Some(Ok)` when ready, `Some(Err)` when
/// pre-main failed or the supervisor is presumed dead. `started` is when the reader began.
pub fn evaluate_status(
    path: &Path,
    timeout: Duration,
    started: SystemTime,
) -> Option<Result<(), String>> {
    let since = |t: SystemTime| SystemTime::now().duration_since(t).unwrap_or_default();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (since(started) > timeout).then(|| {
                Err(format!(
                    "supervisor presumed dead: status marker never appeared within {}",
                    go_duration(timeout)
                ))
            });
        }
        Err(e) => return Some(Err(format!("stat supervisor status: {e}"))),
    };
    // A failed read raced the supervisor's rename: look again at the next event.
    let body = std::fs::read_to_string(path).ok()?;
    let (token, message) = body.split_once('\n').unwrap_or((&body, ""));
    match token.trim() {
        READY => Some(Ok(())),
        FAILED => Some(Err(format!(
            "supervisor reported pre-main failure: {}",
            message.trim()
        ))),
        _ if meta.modified().is_ok_and(|m| since(m) > timeout) => Some(Err(format!(
            "supervisor presumed dead: no status update within {}",
            go_duration(timeout)
        ))),
        _ => None,
    }
}

/// A whole-second duration as Go prints it (`30s`, `1m0s`).
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else if d.subsec_millis() > 0 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{secs}s")
    }
}

pub async fn run(pod: &Pod, api: &ApiOptions) -> Result<(), CommandError> {
    required_env(env::POD_NAME)?;
    let loaded = template_from_env(&pod.roots)?;
    let marker = pod.roots.status_marker();
    if let Some(dir) = marker.parent() {
        let _ = crate::pod::create_shared_dir(dir);
    }
    let failure = match write_marker(&marker, &format!("{RUNNING}\n")) {
        // Without a marker main cannot be told anything: it will presume us dead.
        Err(e) => Some(format!("failed to write initial status marker: {e}")),
        Ok(()) => {
            let heartbeat = tokio::spawn(heartbeat(marker.clone()));
            let pre_main = pre_main(pod, &loaded).await;
            heartbeat.abort();
            let _ = heartbeat.await;
            match pre_main {
                Err(e) => {
                    if let Err(w) = write_marker(&marker, &format!("{FAILED}\n{e}")) {
                        tracing::error!(error = %w, "failed to write failure status marker");
                    }
                    Some(e)
                }
                Ok(()) => match write_marker(&marker, &format!("{READY}\n")) {
                    Ok(()) => None,
                    Err(e) => {
                        let _ = write_marker(&marker, &format!("{FAILED}\n{e}"));
                        Some(e)
                    }
                },
            }
        }
    };
    if let Some(e) = &failure {
        tracing::error!(error = %e, "executor error");
    }
    super::wait::post_main(pod, api, &loaded.template, failure).await
}

async fn heartbeat(marker: std::path::PathBuf) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = write_marker(&marker, &format!("{RUNNING}\n")) {
            tracing::warn!(error = %e, "failed to write status heartbeat");
        }
    }
}

/// What `init` does, with Argo's supervisor messages.
async fn pre_main(pod: &Pod, loaded: &crate::pod::LoadedTemplate) -> Result<(), String> {
    // Files made here must be usable by main, whatever its uid (as init).
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    write_atomic(&pod.roots.template_file(), &loaded.raw, 0o444)
        .map_err(|e| format!("failed to write template: {e}"))?;
    super::init::stage_files(pod, &loaded.template)
        .map_err(|e| format!("failed to stage files: {e}"))?;
    // Argo's order: the non-plugin inputs and each plugin's (through its sidecar) at once.
    let non_plugin = async {
        super::init::load_inputs(pod, &loaded.template, Sources::AllButPlugins)
            .await
            .map_err(|e| format!("failed to load non-plugin input artifacts: {e}"))
    };
    let plugins = crate::pod::plugin_names_from_env(env::INPUT_ARTIFACT_PLUGIN_NAMES);
    let from_plugins = futures::future::try_join_all(plugins.into_iter().map(|name| async move {
        super::init::load_inputs(pod, &loaded.template, Sources::Plugin(name.clone()))
            .await
            .map_err(|e| format!("failed to load input artifacts from plugin {name:?}: {e}"))
    }));
    futures::future::try_join(non_plugin, from_plugins)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_protocol() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("status");
        let long = Duration::from_secs(30);
        let now = SystemTime::now();
        assert_eq!(evaluate_status(&path, long, now), None, "not yet written");
        let old = now - Duration::from_secs(31);
        assert_eq!(
            evaluate_status(&path, long, old),
            Some(Err(
                "supervisor presumed dead: status marker never appeared within 30s".into()
            ))
        );
        write_marker(&path, "RUNNING\n").expect("write");
        assert_eq!(evaluate_status(&path, long, now), None);
        assert_eq!(
            evaluate_status(&path, Duration::ZERO, now).map(|r| r.is_err()),
            Some(true),
            "a stale heartbeat"
        );
        write_marker(&path, "FAILED\nno bucket\n").expect("write");
        assert_eq!(
            evaluate_status(&path, long, now),
            Some(Err("supervisor reported pre-main failure: no bucket".into()))
        );
        write_marker(&path, "READY\n").expect("write");
        assert_eq!(evaluate_status(&path, long, now), Some(Ok(())));
        assert!(!path.with_extension("tmp").exists());
    }
}
