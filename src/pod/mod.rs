//! What every command reads about the pod it runs in: roots, template, environment; and the
//! files the pod's containers share on the `/var/run/argo` volume.
//!
//! * [`watch`]: waiting for files other containers write there.
//! * [`output_stream`]: main's outputs streamed from its emissary to `wait` over a socket there.
//! * [`memory_limit`]: the container's memory limit, which the transfer defaults fit.

pub mod memory_limit;
pub mod output_stream;
pub mod watch;

use std::fs;
use std::path::Path;

use crate::commands::CommandError;
use argoexec::contract::{Roots, TEMPLATE_OFFLOADED, env};
use argoexec::model::Template;

/// The template as received (raw JSON bytes, kept verbatim for `/var/run/argo/template`).
#[derive(Debug, Clone)]
pub struct LoadedTemplate {
    pub raw: Vec<u8>,
    pub template: Template,
}

/// The names in a comma-list variable (`ARGO_ARTIFACT_PLUGIN_NAMES`...) of the process
/// environment (the binary's commands read it): trimmed, blanks dropped, as Argo's
/// `SplitPluginNames`.
pub fn plugin_names_from_env(var: &str) -> Vec<String> {
    split_names(&std::env::var(var).unwrap_or_default())
}

fn split_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether this container belongs to an init-less pod (docs/contract.md#the-init-less-layout): the supervisor
/// carries `ARGO_INITLESS_POD=true`, the user containers `ARGO_WAIT_FOR_READY=true`.
pub fn initless_pod_from_env() -> bool {
    [env::INITLESS_POD, env::WAIT_FOR_READY]
        .iter()
        .any(|name| std::env::var(name).as_deref() == Ok("true"))
}

/// `ARGO_DEADLINE` of the process environment as a time; `None` when unset or the zero time
/// (no deadline). For the binary's commands; the library is given it
/// ([`argoexec::storage::StorageConfig::deadline`]).
pub fn deadline_from_env() -> Option<std::time::SystemTime> {
    argoexec::contract::parse_deadline(&std::env::var(env::DEADLINE).ok()?)
        .ok()
        .flatten()
}

/// How long a container gets between SIGTERM and SIGKILL: `ARGO_TERMINATION_GRACE_PERIOD_SECONDS`
/// of the process environment when it is a positive integer, else 30 s (Argo's default). For
/// the binary's commands.
pub fn termination_grace_period() -> std::time::Duration {
    let seconds = std::env::var(env::TERMINATION_GRACE_PERIOD_SECONDS)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(30);
    std::time::Duration::from_secs(seconds)
}

fn parse(raw: Vec<u8>, source: &str) -> Result<LoadedTemplate, CommandError> {
    let template = Template::from_json(&raw).map_err(|e| {
        CommandError::failed(format!("cannot parse the template from {source}: {e}"))
    })?;
    Ok(LoadedTemplate { raw, template })
}

/// The template from `ARGO_TEMPLATE`, or from `/argo/config/ARGO_TEMPLATE` when it says
/// `offloaded` (how init and the init-less supervisor receive it).
pub fn template_from_env(roots: &Roots) -> Result<LoadedTemplate, CommandError> {
    let value = std::env::var(env::TEMPLATE)
        .map_err(|_| CommandError::failed(format!("{} is not set", env::TEMPLATE)))?;
    if value == TEMPLATE_OFFLOADED {
        let path = roots.offloaded_template();
        let raw = fs::read(&path).map_err(|e| {
            CommandError::failed(format!(
                "cannot read the offloaded template {}: {e}",
                path.display()
            ))
        })?;
        return parse(raw, &path.display().to_string());
    }
    parse(value.into_bytes(), env::TEMPLATE)
}

/// The template init wrote to `/var/run/argo/template` (how wait receives it).
pub fn template_from_file(roots: &Roots) -> Result<LoadedTemplate, CommandError> {
    let path = roots.template_file();
    let raw = fs::read(&path)
        .map_err(|e| CommandError::failed(format!("cannot read {}: {e}", path.display())))?;
    parse(raw, &path.display().to_string())
}

/// `/var/run/argo/template` if it exists, else `ARGO_TEMPLATE` (the emissary's rule).
pub fn template_from_file_or_env(roots: &Roots) -> Result<LoadedTemplate, CommandError> {
    if roots.template_file().exists() {
        return template_from_file(roots);
    }
    if std::env::var_os(env::TEMPLATE).is_some() {
        return template_from_env(roots);
    }
    Err(CommandError::failed(
        "neither /var/run/argo/template nor ARGO_TEMPLATE is available",
    ))
}

/// A required environment variable.
pub fn required_env(name: &str) -> Result<String, CommandError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| CommandError::failed(format!("{name} is not set")))
}

/// Writes `data` to `path` atomically (temp name + rename) with `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    replace_atomic(path, mode, |tmp| fs::write(tmp, data))
}

/// Copies the file `from` to `path` atomically with `mode`, in the kernel (`copy_file_range`):
/// the binary `init` copies costs no memory, whatever its size.
pub fn copy_atomic(from: &Path, path: &Path, mode: u32) -> std::io::Result<()> {
    replace_atomic(path, mode, |tmp| fs::copy(from, tmp).map(drop))
}

/// Fills a temporary name beside `path` with `fill`, sets `mode`, then renames it over `path`:
/// a reader sees the old file or the whole new one.
fn replace_atomic(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("argoexec-tmp");
    let _ = fs::remove_file(&tmp);
    fill(&tmp)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path)
}

/// Creates `path` and its missing parents, each with exactly `mode` whatever the umask: the
/// container's umask is left alone for the user's process, and other containers of the pod
/// (possibly other uids) still get the access the contract promises.
pub fn create_dir_all_with_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_with_mode(parent, mode)?;
    }
    match fs::create_dir(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// `/var/run/argo/ctr/<name>`-style directories: writable by every container of the pod.
pub fn create_shared_dir(path: &Path) -> std::io::Result<()> {
    create_dir_all_with_mode(path, 0o777)
}

/// `ARGO_TEMPLATE` when set, else `/var/run/argo/template`: how Argo's executor `Init` finds
/// the template of commands that run as the main container (`resource`, `data`).
pub fn template_from_env_or_file(roots: &Roots) -> Result<LoadedTemplate, CommandError> {
    if std::env::var_os(env::TEMPLATE).is_some() {
        return template_from_env(roots);
    }
    template_from_file(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_name_lists_drop_blanks_and_spaces() {
        assert_eq!(
            split_names(" artifact-plugin-a,,artifact-plugin-b ,"),
            ["artifact-plugin-a", "artifact-plugin-b"]
        );
        assert!(split_names("").is_empty());
    }
}
