//! The Template the controller hands the executor (`ARGO_TEMPLATE`), reduced to what it reads.

use serde::{Deserialize, Serialize};

use super::artifact::{Artifact, any_string};
use super::location::ArtifactLocation;

/// `valueFrom:` of an output parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(
        default,
        deserialize_with = "any_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<String>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// One parameter; unknown fields (`globalName`, `enum`, ...) are kept for reporting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    #[serde(default)]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "any_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inputs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
}

/// Template outputs, and the `outputs` the executor reports back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outputs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mount_path: String,
}

/// A container, script or containerSet member: only the fields the executor reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// `script.source`, for script templates.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSetRetryStrategy {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub duration: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<serde_json::Value>,
}

impl ContainerSetRetryStrategy {
    /// `retries` as a count: an integer or a decimal string, as Kubernetes' IntOrString; anything
    /// else counts as 0.
    pub fn retry_count(&self) -> u32 {
        match &self.retries {
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSet {
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_strategy: Option<ContainerSetRetryStrategy>,
}

/// The fully resolved Template (docs/contract.md#the-template). Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub inputs: Inputs,
    #[serde(default)]
    pub outputs: Outputs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_location: Option<ArtifactLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_set: Option<ContainerSet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<serde_json::Value>,
}

impl Template {
    /// Parses template JSON leniently (unknown fields ignored), as Argo's executor does.
    pub fn from_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// Names of the containers `wait` waits for: the containerSet members, else `main`.
    pub fn main_container_names(&self) -> Vec<String> {
        match &self.container_set {
            Some(cs) if !cs.containers.is_empty() => {
                cs.containers.iter().map(|c| c.name.clone()).collect()
            }
            _ => vec!["main".to_string()],
        }
    }

    /// Names of the user sidecars (their emissaries stop themselves once main is done).
    pub fn sidecar_names(&self) -> impl Iterator<Item = &str> {
        self.sidecars.iter().map(|c| c.name.as_str())
    }

    /// The containerSet members `container` must wait for before it starts.
    pub fn dependencies_of(&self, container: &str) -> &[String] {
        self.container_set
            .iter()
            .flat_map(|cs| &cs.containers)
            .find(|c| c.name == container)
            .map_or(&[], |c| c.dependencies.as_slice())
    }

    /// Whether the template has a main process whose stdout can be its `result`: a container,
    /// script, data, http or plugin template, or a containerSet with a member named `main`.
    pub fn has_output(&self) -> bool {
        self.container.is_some()
            || self.script.is_some()
            || self.data.is_some()
            || self.http.is_some()
            || self.plugin.is_some()
            || self
                .container_set
                .as_ref()
                .is_some_and(|cs| cs.containers.iter().any(|c| c.name == "main"))
    }

    /// Every volume mount of the main container(s): the paths shared with init and wait.
    pub fn volume_mounts(&self) -> Vec<&VolumeMount> {
        let mut out: Vec<&VolumeMount> = Vec::new();
        for c in [&self.container, &self.script].into_iter().flatten() {
            out.extend(&c.volume_mounts);
        }
        if let Some(cs) = &self.container_set {
            out.extend(&cs.volume_mounts);
            for c in &cs.containers {
                out.extend(&c.volume_mounts);
            }
        }
        out
    }

    /// Whether archived logs are requested (`archiveLocation.archiveLogs`).
    pub fn archive_logs(&self) -> bool {
        self.archive_location
            .as_ref()
            .and_then(|l| l.archive_logs)
            .unwrap_or(false)
    }

    /// Whether `path` is on a volume shared with the main container, so init and wait reach it
    /// under `/mainctrfs` instead of through the emissary.
    pub fn is_on_shared_mount(&self, path: &str) -> bool {
        self.volume_mounts()
            .iter()
            .any(|m| path_is_under(path, &m.mount_path))
    }

    /// Like [`Template::is_on_shared_mount`], but, in the legacy layout, input artifact paths
    /// count too: an output at or under an input path is on the input-artifacts emptyDir,
    /// mirrored into wait (unless it is an optional input that was not supplied). In the
    /// init-less layout (`initless`) inputs are symlinks main may have replaced, so such
    /// outputs come from the emissary's archive instead, as in Argo.
    pub fn is_output_on_shared_mount(&self, path: &str, initless: bool) -> bool {
        if self.is_on_shared_mount(path) {
            return true;
        }
        !initless
            && self.inputs.artifacts.iter().any(|a| {
                let unsupplied = a.optional && !a.location.has_location_or_key();
                (path == a.path && !unsupplied) || path_is_under(path, &a.path) && path != a.path
            })
    }
}

/// `path` equals `prefix` or lies below it (component-wise, not by string prefix).
fn path_is_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    !prefix.is_empty()
        && (path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/')))
}
