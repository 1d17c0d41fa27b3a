//! Artifact repositories for controllers and servers: which repository a workflow uses, the
//! archive location a pod gets from it, and where each artifact lives.
//!
//! Resolution follows Argo's controller (docs/contract.md#keys):
//!
//! 1. A workflow with `spec.artifactRepositoryRef` uses that ConfigMap entry (ConfigMap name
//!    default `artifact-repositories`; key default: the ConfigMap's
//!    `workflows.argoproj.io/default-artifact-repository` annotation), looked up first in the
//!    workflow's namespace, then in the controller's. Neither found is an error.
//! 2. Without a reference: the `artifact-repositories` ConfigMap of the workflow's namespace
//!    with its annotated default key, else the controller's configured default repository.
//!
//! A ConfigMap that does not exist, or lacks the key, moves on to the next candidate; one whose
//! entry is not a valid repository is an error. The library does not talk to the API:
//! [`Resolver::candidates`] names the ConfigMaps a caller should fetch, and
//! [`Resolver::resolve`] decides from what was found.
//!
//! ```
//! use argoexec::model::{ArtifactRepository, ArtifactRepositoryRef};
//! use argoexec::repository::{ConfigMapData, ConfigMaps, Resolver, DEFAULT_REPOSITORY_ANNOTATION};
//!
//! let controller_default = ArtifactRepository::from_yaml("s3: {bucket: fallback, endpoint: minio:9000}")?;
//! let resolver = Resolver::new("argo", Some(controller_default));
//!
//! // The workflow's namespace has an `artifact-repositories` ConfigMap with two entries.
//! let mut config_maps = ConfigMaps::default();
//! config_maps.insert("team-a", "artifact-repositories", ConfigMapData::default()
//!     .with_annotation(DEFAULT_REPOSITORY_ANNOTATION, "fast")
//!     .with_entry("fast", "s3: {bucket: team-a-fast, endpoint: minio:9000}")
//!     .with_entry("cold", "gcs: {bucket: team-a-cold}"));
//!
//! // No reference: the annotated default entry.
//! let got = resolver.resolve(None, "team-a", &config_maps)?;
//! assert_eq!(got.to_string(), "team-a/artifact-repositories#fast");
//!
//! // A reference names the entry.
//! let cold = ArtifactRepositoryRef { key: "cold".into(), ..Default::default() };
//! let got = resolver.resolve(Some(&cold), "team-a", &config_maps)?;
//! assert_eq!(got.artifact_repository.unwrap().gcs.unwrap().bucket.bucket, "team-a-cold");
//!
//! // Another namespace without the ConfigMap: the controller's default.
//! let got = resolver.resolve(None, "team-b", &config_maps)?;
//! assert!(got.default);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use crate::keys::{
    self,
    template::{KeyTemplate, KeyVariables, TemplateError},
};
use crate::model::{
    Artifact, ArtifactLocation, ArtifactRepository, ArtifactRepositoryRef,
    ArtifactRepositoryRefStatus, ArtifactoryArtifact, AzureArtifact, DEFAULT_KEY_FORMAT,
    GcsArtifact, HdfsArtifact, OssArtifact, PluginArtifact, RepositoryParseError, S3Artifact,
    Template,
};

/// Argo's key patterns and locations of a repository: here rather than beside the type in
/// [`crate::model`], because they use the key rules ([`keys`]), which build on the model.
impl ArtifactRepository {
    /// The key pattern of the kind in effect (variables unresolved): S3 `keyFormat`, else
    /// `keyPrefix` joined with the default pattern; GCS, OSS, Artifactory and plugin
    /// `keyFormat`; Azure `blobNameFormat`; HDFS `pathFormat`. Empty formats mean
    /// [`DEFAULT_KEY_FORMAT`]. `None` when no kind is set.
    pub fn key_pattern(&self) -> Option<String> {
        let pattern = if let Some(r) = &self.artifactory {
            or_default(&r.key_format)
        } else if let Some(r) = &self.azure {
            or_default(&r.blob_name_format)
        } else if let Some(r) = &self.gcs {
            or_default(&r.key_format)
        } else if let Some(r) = &self.hdfs {
            or_default(&r.path_format)
        } else if let Some(r) = &self.oss {
            or_default(&r.key_format)
        } else if let Some(r) = &self.plugin {
            or_default(&r.key_format)
        } else if let Some(r) = &self.s3 {
            if r.key_format.is_empty() {
                keys::join(&[&r.key_prefix, DEFAULT_KEY_FORMAT])
            } else {
                r.key_format.clone()
            }
        } else {
            return None;
        };
        Some(pattern)
    }

    /// Argo's `ToArtifactLocation`: the location of the kind in effect (Argo's order:
    /// artifactory, azure, gcs, hdfs, oss, plugin, s3) with the key set to
    /// [`ArtifactRepository::key_pattern`] (for Artifactory: the URL `repoURL`, with a `/`
    /// appended when missing, followed by the pattern); `archiveLogs` copied. `None` when no
    /// kind is set.
    pub fn to_location(&self) -> Option<ArtifactLocation> {
        let key = self.key_pattern()?;
        let mut l = ArtifactLocation {
            archive_logs: self.archive_logs,
            ..Default::default()
        };
        if let Some(r) = &self.artifactory {
            let mut url = r.repo_url.clone();
            if !url.ends_with('/') {
                url.push('/');
            }
            l.artifactory = Some(ArtifactoryArtifact {
                url: format!("{url}{key}"),
                username_secret: r.username_secret.clone(),
                password_secret: r.password_secret.clone(),
            });
        } else if let Some(r) = &self.azure {
            l.azure = Some(AzureArtifact {
                blob: key,
                ..r.container.clone()
            });
        } else if let Some(r) = &self.gcs {
            l.gcs = Some(GcsArtifact {
                key,
                ..r.bucket.clone()
            });
        } else if let Some(r) = &self.hdfs {
            l.hdfs = Some(HdfsArtifact {
                path: key,
                ..r.config.clone()
            });
        } else if let Some(r) = &self.oss {
            l.oss = Some(OssArtifact {
                key,
                ..r.bucket.clone()
            });
        } else if let Some(r) = &self.plugin {
            l.plugin = Some(PluginArtifact {
                name: r.name.clone(),
                configuration: r.configuration.clone(),
                key,
                connection_timeout_seconds: None,
            });
        } else if let Some(r) = &self.s3 {
            l.s3 = Some(S3Artifact {
                key,
                ..r.bucket.clone()
            });
        }
        Some(l)
    }
}

fn or_default(format: &str) -> String {
    if format.is_empty() {
        DEFAULT_KEY_FORMAT.to_string()
    } else {
        format.to_string()
    }
}

/// The ConfigMap name a reference without one means.
pub const DEFAULT_CONFIG_MAP: &str = "artifact-repositories";
/// The ConfigMap annotation naming its default key.
pub const DEFAULT_REPOSITORY_ANNOTATION: &str = "workflows.argoproj.io/default-artifact-repository";

/// Why a repository or a location could not be determined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    /// No candidate ConfigMap entry exists (with a reference), in Argo's words. `reference` is
    /// `<configMap>#<key>` as written in the workflow, or `nil`.
    #[error("failed to find any artifact repository for artifact repository ref \"{reference}\"")]
    NotFound { reference: String },
    /// A stored reference names a ConfigMap that is gone.
    #[error("config map \"{config_map}\" not found in namespace \"{namespace}\"")]
    ConfigMapNotFound {
        namespace: String,
        config_map: String,
    },
    /// A stored reference names a key the ConfigMap no longer has, in Argo's words.
    #[error("config map missing key \"{key}\" for artifact repository ref \"{reference}\"")]
    MissingKey { key: String, reference: String },
    /// The entry is not a repository (bad YAML, wrong types), in Argo's words.
    #[error(
        "failed to unmarshall config map key \"{key}\" for artifact repository ref \"{reference}\": {source}"
    )]
    Invalid {
        key: String,
        reference: String,
        #[source]
        source: RepositoryParseError,
    },
    /// A key pattern or location field has a variable that cannot be resolved.
    #[error("{0}")]
    Template(#[from] TemplateError),
    /// A location that does not survive its own encoding (not expected of any valid one).
    #[error("cannot substitute the variables of the location: {0}")]
    Encoding(String),
    /// An artifact without a full location, and no archive location to complete it.
    #[error("template artifact location not set")]
    NoArchiveLocation,
}

/// What resolution reads of a ConfigMap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigMapData {
    pub data: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl ConfigMapData {
    /// Adds a data entry (a repository as YAML).
    pub fn with_entry(mut self, key: impl Into<String>, yaml: impl Into<String>) -> Self {
        self.data.insert(key.into(), yaml.into());
        self
    }

    /// Adds an annotation.
    pub fn with_annotation(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(name.into(), value.into());
        self
    }
}

/// The ConfigMaps a caller fetched, by namespace and name. Absent means "not found".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigMaps {
    maps: BTreeMap<(String, String), ConfigMapData>,
}

impl ConfigMaps {
    pub fn insert(
        &mut self,
        namespace: impl Into<String>,
        name: impl Into<String>,
        config_map: ConfigMapData,
    ) {
        self.maps
            .insert((namespace.into(), name.into()), config_map);
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&ConfigMapData> {
        self.maps.get(&(namespace.to_string(), name.to_string()))
    }
}

/// The controller's side of resolution: its namespace and its configured default repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolver {
    pub controller_namespace: String,
    pub default_repository: Option<ArtifactRepository>,
}

/// A candidate ConfigMap, as [`Resolver::candidates`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// This ConfigMap, and the key (empty: the ConfigMap's annotated default key).
    ConfigMap {
        namespace: String,
        config_map: String,
        key: String,
    },
    /// The controller's default repository.
    Default,
}

impl Resolver {
    pub fn new(
        controller_namespace: impl Into<String>,
        default_repository: Option<ArtifactRepository>,
    ) -> Self {
        Self {
            controller_namespace: controller_namespace.into(),
            default_repository,
        }
    }

    /// Where resolution looks, in order: the ConfigMaps a caller must fetch (at most two).
    pub fn candidates(
        &self,
        reference: Option<&ArtifactRepositoryRef>,
        workflow_namespace: &str,
    ) -> Vec<Candidate> {
        let config_map = |namespace: &str, r: Option<&ArtifactRepositoryRef>| {
            let r = r.cloned().unwrap_or_default();
            Candidate::ConfigMap {
                namespace: namespace.to_string(),
                config_map: if r.config_map.is_empty() {
                    DEFAULT_CONFIG_MAP.to_string()
                } else {
                    r.config_map
                },
                key: r.key,
            }
        };
        match reference {
            Some(r) => vec![
                config_map(workflow_namespace, Some(r)),
                config_map(&self.controller_namespace, Some(r)),
            ],
            None => vec![config_map(workflow_namespace, None), Candidate::Default],
        }
    }

    /// Resolves the repository of a workflow with `reference` (its `spec.artifactRepositoryRef`)
    /// in `workflow_namespace`, given the ConfigMaps found. The result is what Argo stores in
    /// the workflow's `status.artifactRepositoryRef`: the fully named source (ConfigMap and key
    /// made explicit), so later changes of the default annotation do not move a running
    /// workflow.
    pub fn resolve(
        &self,
        reference: Option<&ArtifactRepositoryRef>,
        workflow_namespace: &str,
        config_maps: &ConfigMaps,
    ) -> Result<ArtifactRepositoryRefStatus, RepositoryError> {
        for candidate in self.candidates(reference, workflow_namespace) {
            match self.lookup(&candidate, config_maps)? {
                Lookup::Found(status) => return Ok(*status),
                Lookup::NoConfigMap | Lookup::NoKey(_) => continue,
            }
        }
        Err(RepositoryError::NotFound {
            reference: reference.map_or_else(|| "nil".to_string(), ToString::to_string),
        })
    }

    /// The repository of an already resolved reference (a workflow's stored
    /// `status.artifactRepositoryRef`): the stored repository when present, else read again.
    pub fn get(
        &self,
        stored: &ArtifactRepositoryRefStatus,
        config_maps: &ConfigMaps,
    ) -> Result<Option<ArtifactRepository>, RepositoryError> {
        if stored.artifact_repository.is_some() {
            return Ok(stored.artifact_repository.clone());
        }
        if stored.default {
            return Ok(self.default_repository.clone());
        }
        let config_map = if stored.reference.config_map.is_empty() {
            DEFAULT_CONFIG_MAP.to_string()
        } else {
            stored.reference.config_map.clone()
        };
        let candidate = Candidate::ConfigMap {
            namespace: stored.namespace.clone(),
            config_map: config_map.clone(),
            key: stored.reference.key.clone(),
        };
        match self.lookup(&candidate, config_maps)? {
            Lookup::Found(status) => Ok(status.artifact_repository),
            Lookup::NoConfigMap => Err(RepositoryError::ConfigMapNotFound {
                namespace: stored.namespace.clone(),
                config_map,
            }),
            Lookup::NoKey(key) => Err(RepositoryError::MissingKey {
                key,
                reference: stored.to_string(),
            }),
        }
    }

    fn lookup(
        &self,
        candidate: &Candidate,
        config_maps: &ConfigMaps,
    ) -> Result<Lookup, RepositoryError> {
        let Candidate::ConfigMap {
            namespace,
            config_map,
            key,
        } = candidate
        else {
            return Ok(Lookup::Found(Box::new(ArtifactRepositoryRefStatus {
                default: true,
                artifact_repository: self.default_repository.clone(),
                ..Default::default()
            })));
        };
        let Some(cm) = config_maps.get(namespace, config_map) else {
            return Ok(Lookup::NoConfigMap);
        };
        let key = if key.is_empty() {
            cm.annotations
                .get(DEFAULT_REPOSITORY_ANNOTATION)
                .cloned()
                .unwrap_or_default()
        } else {
            key.clone()
        };
        let Some(yaml) = cm.data.get(&key) else {
            return Ok(Lookup::NoKey(key));
        };
        let reference = ArtifactRepositoryRef {
            config_map: config_map.clone(),
            key,
        };
        let repository =
            ArtifactRepository::from_yaml(yaml).map_err(|source| RepositoryError::Invalid {
                key: reference.key.clone(),
                reference: format!("{namespace}/{reference}"),
                source,
            })?;
        Ok(Lookup::Found(Box::new(ArtifactRepositoryRefStatus {
            reference,
            namespace: namespace.clone(),
            default: false,
            artifact_repository: Some(repository),
        })))
    }
}

enum Lookup {
    Found(Box<ArtifactRepositoryRefStatus>),
    NoConfigMap,
    NoKey(String),
}

/// Substitutes the variables of every text field of a location (the controller substitutes
/// the whole pod, so a bucket may use `{{workflow.namespace}}` as well as the key).
///
/// ```
/// use argoexec::keys::template::KeyVariables;
/// use argoexec::model::ArtifactRepository;
/// use argoexec::repository::render_location;
///
/// let repo = ArtifactRepository::from_yaml(
///     "s3: {bucket: 'art-{{workflow.namespace}}', endpoint: minio:9000, keyPrefix: runs}")?;
/// let vars = KeyVariables { workflow_name: "wf-abc".into(), workflow_namespace: "ml".into(),
///                           pod_name: "wf-abc-main-1234".into(), ..Default::default() };
/// let loc = render_location(&repo.to_location().unwrap(), &vars)?;
/// let s3 = loc.s3.unwrap();
/// assert_eq!((s3.bucket.as_str(), s3.key.as_str()), ("art-ml", "runs/wf-abc/wf-abc-main-1234"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn render_location(
    location: &ArtifactLocation,
    vars: &KeyVariables,
) -> Result<ArtifactLocation, RepositoryError> {
    let encoding = |e: serde_json::Error| RepositoryError::Encoding(e.to_string());
    let mut value = serde_json::to_value(location).map_err(encoding)?;
    render_strings(&mut value, vars)?;
    serde_json::from_value(value).map_err(encoding)
}

fn render_strings(value: &mut serde_json::Value, vars: &KeyVariables) -> Result<(), TemplateError> {
    match value {
        serde_json::Value::String(s) if s.contains("{{") => {
            *s = KeyTemplate::parse(s)?.render(vars)?;
        }
        serde_json::Value::Array(items) => {
            for item in items {
                render_strings(item, vars)?;
            }
        }
        serde_json::Value::Object(fields) => {
            for field in fields.values_mut() {
                render_strings(field, vars)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether a template's logs are archived: forced by the repository's `archiveLogs: true`,
/// else the template's `archiveLocation.archiveLogs`, else the workflow's `spec.archiveLogs`.
pub fn effective_archive_logs(
    template: &Template,
    repository: Option<&ArtifactRepository>,
    workflow_archive_logs: Option<bool>,
) -> bool {
    if repository.is_some_and(ArtifactRepository::is_archive_logs) {
        return true;
    }
    template
        .archive_location
        .as_ref()
        .and_then(|l| l.archive_logs)
        .or(workflow_archive_logs)
        .unwrap_or(false)
}

/// The `archiveLocation` a pod's template gets (Argo's `addArchiveLocation`, then variable
/// substitution): the template's own when it is a full location; else, when logs are archived
/// or some input or output artifact lacks a full location, the repository's location with
/// `archiveLogs` set to the effective value; else the template's as it is (possibly none).
///
/// ```
/// use argoexec::keys::template::KeyVariables;
/// use argoexec::model::{Artifact, ArtifactRepository, Template};
/// use argoexec::repository::archive_location;
///
/// let repo = ArtifactRepository::from_yaml(
///     "s3: {bucket: b, endpoint: minio:9000, keyFormat: 'art/{{workflow.name}}/{{pod.name}}'}")?;
/// let mut template = Template::default();
/// template.outputs.artifacts.push(Artifact { name: "result".into(), path: "/tmp/r".into(),
///                                            ..Default::default() });
/// let vars = KeyVariables { workflow_name: "wf-abc".into(), pod_name: "wf-abc-main-1234".into(),
///                           ..Default::default() };
/// let loc = archive_location(&template, Some(&repo), None, &vars)?.expect("needed");
/// assert_eq!(loc.key().as_deref(), Some("art/wf-abc/wf-abc-main-1234"));
/// assert_eq!(loc.archive_logs, Some(false));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn archive_location(
    template: &Template,
    repository: Option<&ArtifactRepository>,
    workflow_archive_logs: Option<bool>,
    vars: &KeyVariables,
) -> Result<Option<ArtifactLocation>, RepositoryError> {
    if let Some(own) = template
        .archive_location
        .as_ref()
        .filter(|l| l.has_location())
    {
        return render_location(own, vars).map(Some);
    }
    let archive_logs = effective_archive_logs(template, repository, workflow_archive_logs);
    let needed = archive_logs
        || template
            .inputs
            .artifacts
            .iter()
            .chain(&template.outputs.artifacts)
            .any(|a| !a.location.has_location());
    if !needed {
        return Ok(template.archive_location.clone());
    }
    let mut location = repository
        .and_then(ArtifactRepository::to_location)
        .unwrap_or_default();
    location.archive_logs = Some(archive_logs);
    render_location(&location, vars).map(Some)
}

/// Where an artifact lives (Argo's `Relocate`): its own location when full; a key-only artifact
/// (`s3: {key: my-file}`) is its key, verbatim, in the archive location's bucket.
///
/// ```
/// use argoexec::model::{Artifact, ArtifactLocation, S3Artifact};
/// use argoexec::repository::artifact_location;
///
/// let archive = ArtifactLocation { s3: Some(S3Artifact { bucket: "b".into(), endpoint: "e".into(),
///     key: "art/wf/pod".into(), ..Default::default() }), ..Default::default() };
/// let key_only: Artifact = serde_json::from_str(r#"{"name": "in", "s3": {"key": "my-file"}}"#)?;
/// let loc = artifact_location(&key_only, Some(&archive))?;
/// assert_eq!((loc.key().as_deref(), loc.s3.unwrap().bucket.as_str()), (Some("my-file"), "b"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn artifact_location(
    artifact: &Artifact,
    archive: Option<&ArtifactLocation>,
) -> Result<ArtifactLocation, RepositoryError> {
    artifact
        .relocated(archive)
        .map_err(|_| RepositoryError::NoArchiveLocation)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: &str = "s3: {bucket: fast, endpoint: minio:9000}";
    const COLD: &str = "gcs: {bucket: cold}";

    fn repo(yaml: &str) -> ArtifactRepository {
        ArtifactRepository::from_yaml(yaml).expect("valid repository")
    }

    fn cm(default_key: Option<&str>, entries: &[(&str, &str)]) -> ConfigMapData {
        let mut cm = ConfigMapData::default();
        if let Some(k) = default_key {
            cm = cm.with_annotation(DEFAULT_REPOSITORY_ANNOTATION, k);
        }
        for (k, v) in entries {
            cm = cm.with_entry(*k, *v);
        }
        cm
    }

    fn reference(config_map: &str, key: &str) -> ArtifactRepositoryRef {
        ArtifactRepositoryRef {
            config_map: config_map.into(),
            key: key.into(),
        }
    }

    /// What a resolution chose: `ns/cm#key`, `default`, or the error text.
    fn outcome(r: Result<ArtifactRepositoryRefStatus, RepositoryError>) -> String {
        match r {
            Ok(s) if s.default => format!(
                "default:{}",
                s.artifact_repository
                    .and_then(|r| r.s3)
                    .map_or("none".to_string(), |s| s.bucket.bucket)
            ),
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn precedence_table() {
        let resolver = Resolver::new("argo", Some(repo("s3: {bucket: ctrl-default}")));
        let in_wf_ns = |cm_name: &str, data: ConfigMapData| {
            let mut cms = ConfigMaps::default();
            cms.insert("wf-ns", cm_name, data);
            cms
        };
        let both = {
            let mut cms = ConfigMaps::default();
            cms.insert("wf-ns", "my-repos", cm(None, &[("fast", FAST)]));
            cms.insert(
                "argo",
                "my-repos",
                cm(None, &[("fast", FAST), ("cold", COLD)]),
            );
            cms
        };
        let none = ConfigMaps::default();
        #[rustfmt::skip]
        let table: Vec<(&str, Option<ArtifactRepositoryRef>, ConfigMaps, &str)> = vec![
            // No reference: the workflow namespace's `artifact-repositories`, annotated key.
            ("default cm, annotated key", None,
             in_wf_ns("artifact-repositories", cm(Some("fast"), &[("fast", FAST)])),
             "wf-ns/artifact-repositories#fast"),
            // No reference, no ConfigMap: the controller's default.
            ("no cm", None, none.clone(), "default:ctrl-default"),
            // No reference, ConfigMap without the annotation: key "" is missing -> default.
            ("no annotation", None,
             in_wf_ns("artifact-repositories", cm(None, &[("fast", FAST)])),
             "default:ctrl-default"),
            // No reference, annotation names a key that is absent -> default.
            ("annotated key missing", None,
             in_wf_ns("artifact-repositories", cm(Some("gone"), &[("fast", FAST)])),
             "default:ctrl-default"),
            // No reference: other ConfigMaps of the namespace are not looked at.
            ("other cm ignored", None, in_wf_ns("my-repos", cm(Some("fast"), &[("fast", FAST)])),
             "default:ctrl-default"),
            // Reference with a key: the workflow namespace first.
            ("ref, wf ns", Some(reference("my-repos", "fast")), both.clone(), "wf-ns/my-repos#fast"),
            // Key missing in the workflow namespace: the controller namespace's ConfigMap.
            ("ref, key only in ctrl ns", Some(reference("my-repos", "cold")), both.clone(),
             "argo/my-repos#cold"),
            // Reference without a ConfigMap name means `artifact-repositories`.
            ("ref, default cm name", Some(reference("", "fast")),
             in_wf_ns("artifact-repositories", cm(None, &[("fast", FAST)])),
             "wf-ns/artifact-repositories#fast"),
            // Reference without a key: the ConfigMap's annotated default key.
            ("ref, annotated key", Some(reference("my-repos", "")),
             in_wf_ns("my-repos", cm(Some("fast"), &[("fast", FAST)])),
             "wf-ns/my-repos#fast"),
            // A reference never falls back to the controller's default.
            ("ref, not found", Some(reference("my-repos", "nope")), both.clone(),
             "failed to find any artifact repository for artifact repository ref \"my-repos#nope\""),
            ("ref, no cm", Some(reference("missing", "fast")), none.clone(),
             "failed to find any artifact repository for artifact repository ref \"missing#fast\""),
            // An entry that is not a repository stops resolution.
            ("invalid entry", Some(reference("my-repos", "bad")),
             in_wf_ns("my-repos", cm(None, &[("bad", "s3: [")])),
             "failed to unmarshall config map key \"bad\" for artifact repository ref \"wf-ns/my-repos#bad\""),
        ];
        for (case, r, cms, want) in table {
            let got = outcome(resolver.resolve(r.as_ref(), "wf-ns", &cms));
            assert!(got.starts_with(want), "{case}: got {got:?}, want {want:?}");
        }
        // Without a controller default, the default candidate still resolves, to nothing.
        let bare = Resolver::new("argo", None);
        assert_eq!(outcome(bare.resolve(None, "wf-ns", &none)), "default:none");
    }

    #[test]
    fn resolved_reference_is_fully_named() {
        let resolver = Resolver::new("argo", None);
        let mut cms = ConfigMaps::default();
        cms.insert(
            "wf-ns",
            DEFAULT_CONFIG_MAP,
            cm(Some("fast"), &[("fast", FAST)]),
        );
        let got = resolver.resolve(None, "wf-ns", &cms).expect("resolves");
        assert_eq!(got.reference, reference(DEFAULT_CONFIG_MAP, "fast"));
        assert_eq!(got.namespace, "wf-ns");
        // Stored, it keeps naming the same entry after the annotation moves.
        let moved = {
            let mut m = ConfigMaps::default();
            m.insert(
                "wf-ns",
                DEFAULT_CONFIG_MAP,
                cm(Some("cold"), &[("fast", FAST), ("cold", COLD)]),
            );
            m
        };
        let without_repo = ArtifactRepositoryRefStatus {
            artifact_repository: None,
            ..got.clone()
        };
        let again = resolver.get(&without_repo, &moved).expect("still there");
        assert_eq!(again, Some(repo(FAST)));
        assert_eq!(
            resolver
                .get(&without_repo, &ConfigMaps::default())
                .expect_err("gone"),
            RepositoryError::ConfigMapNotFound {
                namespace: "wf-ns".into(),
                config_map: DEFAULT_CONFIG_MAP.into()
            }
        );
        assert_eq!(
            resolver.get(&got, &ConfigMaps::default()),
            Ok(Some(repo(FAST)))
        );
    }

    #[test]
    fn candidates_name_what_to_fetch() {
        let resolver = Resolver::new("argo", None);
        assert_eq!(
            resolver.candidates(None, "wf-ns"),
            vec![
                Candidate::ConfigMap {
                    namespace: "wf-ns".into(),
                    config_map: DEFAULT_CONFIG_MAP.into(),
                    key: String::new()
                },
                Candidate::Default
            ]
        );
        assert_eq!(
            resolver.candidates(Some(&reference("repos", "k")), "wf-ns")[1],
            Candidate::ConfigMap {
                namespace: "argo".into(),
                config_map: "repos".into(),
                key: "k".into()
            }
        );
    }

    #[test]
    fn archive_location_rules() {
        let vars = KeyVariables {
            workflow_name: "wf".into(),
            pod_name: "wf-main-1".into(),
            ..Default::default()
        };
        let repository = repo("s3: {bucket: b, endpoint: e}");
        let full: Artifact = serde_json::from_value(
            serde_json::json!({"name": "x", "s3": {"bucket": "o", "endpoint": "e", "key": "k"}}),
        )
        .expect("artifact");
        let mut template = Template::default();
        template.outputs.artifacts.push(full);
        // Every artifact has a full location and no logs: nothing is added.
        assert_eq!(
            archive_location(&template, Some(&repository), None, &vars),
            Ok(None)
        );
        // Logs archived by the workflow: the repository's location, archiveLogs on.
        let loc = archive_location(&template, Some(&repository), Some(true), &vars)
            .expect("renders")
            .expect("needed");
        assert_eq!(loc.archive_logs, Some(true));
        assert_eq!(loc.key().as_deref(), Some("wf/wf-main-1"));
        // The template's own full location wins, rendered.
        template.archive_location = Some(
            serde_json::from_value(serde_json::json!({"s3": {"bucket": "t", "endpoint": "e", "key": "t/{{pod.name}}"}}))
                .expect("location"),
        );
        let loc = archive_location(&template, Some(&repository), Some(true), &vars)
            .expect("renders")
            .expect("own");
        assert_eq!(loc.key().as_deref(), Some("t/wf-main-1"));
        // The repository's archiveLogs forces logs on whatever the template says.
        let forcing = repo("archiveLogs: true\ns3: {bucket: b, endpoint: e}");
        let t2 = Template {
            archive_location: Some(ArtifactLocation {
                archive_logs: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(effective_archive_logs(&t2, Some(&forcing), None));
        assert!(!effective_archive_logs(&t2, Some(&repository), Some(true)));
        // Unknown variables in the repository are errors, not literal keys.
        let bad = repo("s3: {bucket: b, endpoint: e, keyFormat: '{{workflow.nope}}'}");
        assert_eq!(
            archive_location(&Template::default(), Some(&bad), Some(true), &vars)
                .expect_err("unresolved")
                .to_string(),
            "failed to resolve {{workflow.nope}}"
        );
    }

    #[test]
    fn key_only_artifacts_need_an_archive_location() {
        let key_only: Artifact =
            serde_json::from_value(serde_json::json!({"name": "in", "s3": {"key": "k"}}))
                .expect("artifact");
        assert_eq!(
            artifact_location(&key_only, None),
            Err(RepositoryError::NoArchiveLocation)
        );
    }

    #[test]
    fn every_kind_gets_its_key_pattern_or_the_default() {
        let cases = [
            (
                "s3: {bucket: b, keyPrefix: pre/fix}",
                "pre/fix/{{workflow.name}}/{{pod.name}}",
            ),
            ("s3: {bucket: b}", DEFAULT_KEY_FORMAT),
            (
                "gcs: {bucket: b, keyFormat: 'g/{{pod.name}}'}",
                "g/{{pod.name}}",
            ),
            ("oss: {bucket: b, endpoint: e}", DEFAULT_KEY_FORMAT),
            (
                "azure: {container: c, endpoint: e, blobNameFormat: 'a/{{pod.name}}'}",
                "a/{{pod.name}}",
            ),
            (
                "hdfs: {addresses: ['n:8020'], pathFormat: '/h/{{pod.name}}'}",
                "/h/{{pod.name}}",
            ),
            ("plugin: {name: p, configuration: c}", DEFAULT_KEY_FORMAT),
        ];
        for (yaml, key) in cases {
            let loc = ArtifactRepository::from_yaml(yaml)
                .expect(yaml)
                .to_location()
                .expect(yaml);
            assert_eq!(loc.key().as_deref(), Some(key), "{yaml}");
        }
        let art = ArtifactRepository::from_yaml(
            "artifactory: {repoURL: 'https://art.example/repo', keyFormat: 'k/{{pod.name}}'}",
        )
        .expect("parses")
        .to_location()
        .expect("location");
        assert_eq!(
            art.artifactory.expect("artifactory").url,
            "https://art.example/repo/k/{{pod.name}}"
        );
        assert!(ArtifactRepository::default().to_location().is_none());
    }
}
