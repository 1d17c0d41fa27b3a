//! The fixed paths and environment names of the Argo pod contract, in one place.
//!
//! Every absolute path the executor touches goes through [`Roots`], so one environment variable,
//! `ARGOEXEC_ROOT`, can relocate the whole contract under a directory. Production pods leave it
//! unset and get Argo's real paths; tests, the demo and the benchmarks set it so that `init`,
//! `emissary` and `wait` can run as real processes on one machine without root. A private mount
//! namespace (`unshare -m`) is the other way to get the real paths, and the lifecycle test uses both.

use std::path::{Component, Path, PathBuf};

/// Environment variable that prefixes every absolute contract path (unset in production).
pub const ENV_ROOT: &str = "ARGOEXEC_ROOT";

/// Environment variables the controller sets (docs/contract.md#environment).
pub mod env {
    pub const TEMPLATE: &str = "ARGO_TEMPLATE";
    pub const POD_NAME: &str = "ARGO_POD_NAME";
    pub const POD_UID: &str = "ARGO_POD_UID";
    pub const WORKFLOW_NAME: &str = "ARGO_WORKFLOW_NAME";
    pub const WORKFLOW_UID: &str = "ARGO_WORKFLOW_UID";
    pub const INSTANCE_ID: &str = "ARGO_INSTANCE_ID";
    pub const CONTAINER_NAME: &str = "ARGO_CONTAINER_NAME";
    pub const NODE_ID: &str = "ARGO_NODE_ID";
    pub const INCLUDE_SCRIPT_OUTPUT: &str = "ARGO_INCLUDE_SCRIPT_OUTPUT";
    pub const DEADLINE: &str = "ARGO_DEADLINE";
    pub const PROGRESS_FILE: &str = "ARGO_PROGRESS_FILE";
    pub const PROGRESS_PATCH_TICK_DURATION: &str = "ARGO_PROGRESS_PATCH_TICK_DURATION";
    pub const PROGRESS_FILE_TICK_DURATION: &str = "ARGO_PROGRESS_FILE_TICK_DURATION";
    pub const TERMINATION_GRACE_PERIOD_SECONDS: &str = "ARGO_TERMINATION_GRACE_PERIOD_SECONDS";
    pub const CONTAINER_ARGS_FILE: &str = "ARGO_CONTAINER_ARGS_FILE";
    pub const DEBUG_PAUSE_BEFORE: &str = "ARGO_DEBUG_PAUSE_BEFORE";
    pub const DEBUG_PAUSE_AFTER: &str = "ARGO_DEBUG_PAUSE_AFTER";
    pub const ARTIFACT_POD_NAME: &str = "ARGO_ARTIFACT_POD_NAME";
    pub const REMOVE_LOCAL_ART_PATH: &str = "REMOVE_LOCAL_ART_PATH";
    /// Set on the init-less layout's `supervisor` (docs/contract.md#the-init-less-layout).
    pub const INITLESS_POD: &str = "ARGO_INITLESS_POD";
    /// Set on the init-less layout's user containers: wait for the supervisor's status marker.
    pub const WAIT_FOR_READY: &str = "ARGO_WAIT_FOR_READY";
    /// Comma list of the artifact-plugin sidecar containers `wait` ends when it is done.
    pub const ARTIFACT_PLUGIN_NAMES: &str = "ARGO_ARTIFACT_PLUGIN_NAMES";
    /// Comma list of the plugins whose inputs the init-less `supervisor` loads.
    pub const INPUT_ARTIFACT_PLUGIN_NAMES: &str = "ARGO_INPUT_ARTIFACT_PLUGIN_NAMES";
}

/// The value of `ARGO_TEMPLATE` that means "read the template from the offload file".
pub const TEMPLATE_OFFLOADED: &str = "offloaded";

/// Error text Argo uses when no artifact location can be found (docs/contract.md#the-template).
pub const STORAGE_NOT_CONFIGURED: &str = "artifact storage is not configured; see the docs for setup instructions: https://argo-workflows.readthedocs.io/en/latest/configure-artifact-repository/";

/// Error text Argo uses when a template has no `archiveLocation` at all and an output needs its
/// key (`ArtifactLocation.Get` of a nil location).
pub const NO_ARCHIVE_LOCATION: &str =
    "key unsupported: cannot get key for artifact location, because it is invalid";

/// Where the contract's absolute paths live: `/` in a pod, a directory in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    base: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            base: PathBuf::from("/"),
        }
    }
}

impl Roots {
    /// Roots from `ARGOEXEC_ROOT`, or `/` when unset or empty.
    pub fn from_env() -> Self {
        match std::env::var_os(ENV_ROOT) {
            Some(v) if !v.is_empty() => Self::at(v),
            _ => Self::default(),
        }
    }

    /// Roots under `base` (tests).
    pub fn at(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    /// Maps an absolute contract path (`/var/run/argo/...`) to where it lives here.
    pub fn path(&self, absolute: impl AsRef<Path>) -> PathBuf {
        let rel: PathBuf = absolute
            .as_ref()
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        self.base.join(rel)
    }

    /// `/var/run/argo`: the emptyDir shared by every container of the pod.
    pub fn var_run_argo(&self) -> PathBuf {
        self.path("/var/run/argo")
    }

    /// `/var/run/argo/argoexec`: the binary `init` copies for the user containers.
    pub fn binary_copy(&self) -> PathBuf {
        self.path("/var/run/argo/argoexec")
    }

    /// `/var/run/argo/status`: the init-less supervisor's status marker (docs/contract.md#the-init-less-layout).
    pub fn status_marker(&self) -> PathBuf {
        self.path("/var/run/argo/status")
    }

    /// `/var/run/argo/template`: the template JSON written by `init`, read by `wait`.
    pub fn template_file(&self) -> PathBuf {
        self.path("/var/run/argo/template")
    }

    /// `/argo/config/ARGO_TEMPLATE`: where an offloaded template lives.
    pub fn offloaded_template(&self) -> PathBuf {
        self.path("/argo/config/ARGO_TEMPLATE")
    }

    /// `/var/run/argo/ctr/<name>`: one container's control directory.
    pub fn container_dir(&self, container: &str) -> PathBuf {
        self.var_run_argo().join("ctr").join(container)
    }

    /// `/var/run/argo/ctr/<name>/exitcode`: written last by the emissary.
    pub fn exitcode_file(&self, container: &str) -> PathBuf {
        self.container_dir(container).join("exitcode")
    }

    /// `/var/run/argo/outputs/parameters/<path>`: the emissary's copy of a parameter file.
    pub fn emissary_parameter(&self, path: &str) -> PathBuf {
        self.var_run_argo()
            .join("outputs/parameters")
            .join(path.trim_start_matches('/'))
    }

    /// `/var/run/argo/outputs/artifacts/<path>.tgz`: the emissary's archive of an output path.
    pub fn emissary_artifact(&self, path: &str) -> PathBuf {
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        let mut p = self
            .var_run_argo()
            .join("outputs/artifacts")
            .join(trimmed.trim_start_matches('/'))
            .into_os_string();
        p.push(".tgz");
        PathBuf::from(p)
    }

    /// `/var/run/argo/outputs.sock`: where `wait` takes main's outputs as streams.
    pub fn output_socket(&self) -> PathBuf {
        self.var_run_argo().join("outputs.sock")
    }

    /// `/var/run/argo/outputs.token`: the per-pod secret an output stream must present.
    pub fn output_token(&self) -> PathBuf {
        self.var_run_argo().join("outputs.token")
    }

    /// `/argo/inputs/artifacts/<name>`: where `init` puts an input artifact.
    pub fn input_artifact(&self, name: &str) -> PathBuf {
        self.path("/argo/inputs/artifacts").join(name)
    }

    /// `/mainctrfs/<path>`: the main container's volume mounts as seen by init and wait.
    pub fn main_ctr_fs(&self, path: &str) -> PathBuf {
        self.path("/mainctrfs").join(path.trim_start_matches('/'))
    }

    /// `/argo/secret/<name>/<key>`: one mounted secret value.
    pub fn secret(&self, name: &str, key: &str) -> PathBuf {
        self.path("/argo/secret").join(name).join(key)
    }

    /// `/argo/staging/script`: the script source of script templates.
    pub fn staging_script(&self) -> PathBuf {
        self.path("/argo/staging/script")
    }

    /// `/dev/termination-log`: the first error message of a failed container.
    pub fn termination_log(&self) -> PathBuf {
        self.path("/dev/termination-log")
    }
}

/// Longest single argument the emissary passes inline when the controller offloaded the
/// arguments to `ARGO_CONTAINER_ARGS_FILE`; longer ones go through `@<file>` (docs/contract.md#environment).
pub const MAX_INLINE_ARG_BYTES: usize = 131_072;

/// Parses an RFC 3339 deadline; the zero time `0001-01-01T00:00:00Z` means none.
pub fn parse_deadline(s: &str) -> Result<Option<std::time::SystemTime>, chrono::ParseError> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim())?;
    if t.timestamp() <= -62_135_596_800 {
        return Ok(None);
    }
    Ok(Some(t.with_timezone(&chrono::Utc).into()))
}

/// Parses a Go duration string (`1m0s`, `1.5s`, `300ms`, `0`), as the controller writes them.
pub fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_roots_are_argos_real_paths() {
        let r = Roots::default();
        assert_eq!(r.template_file(), Path::new("/var/run/argo/template"));
        assert_eq!(r.secret("s", "k"), Path::new("/argo/secret/s/k"));
        assert_eq!(r.termination_log(), Path::new("/dev/termination-log"));
    }

    #[test]
    fn relocated_roots_prefix_every_path() {
        let r = Roots::at("/tmp/x");
        assert_eq!(
            r.exitcode_file("main"),
            Path::new("/tmp/x/var/run/argo/ctr/main/exitcode")
        );
        assert_eq!(
            r.main_ctr_fs("/tmp/out"),
            Path::new("/tmp/x/mainctrfs/tmp/out")
        );
    }

    #[test]
    fn emissary_artifact_path_drops_one_trailing_slash() {
        let r = Roots::default();
        assert_eq!(
            r.emissary_artifact("/tmp/dir/"),
            Path::new("/var/run/argo/outputs/artifacts/tmp/dir.tgz")
        );
        assert_eq!(
            r.emissary_parameter("/tmp/p.txt"),
            Path::new("/var/run/argo/outputs/parameters/tmp/p.txt")
        );
    }

    #[test]
    fn go_durations() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("10ms"), Some(Duration::from_millis(10)));
        assert_eq!(parse_go_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("abc"), None);
    }
}
