//! Artifact repositories: where a controller stores artifacts that carry no location of their
//! own, as configured in the controller's `artifactRepository`, in the `artifact-repositories`
//! ConfigMaps, and in a workflow's `spec.artifactRepositoryRef`.
//!
//! Each repository kind is its location type plus a key pattern (`keyFormat`, `blobNameFormat`,
//! `pathFormat`); turning one into an archive location is
//! [`ArtifactRepository::to_location`], in [`crate::repository`] with the key rules it needs.

use serde::{Deserialize, Serialize};

use super::location::{
    AzureArtifact, GcsArtifact, HdfsArtifact, OssArtifact, S3Artifact, SecretKeySelector,
};

/// The key pattern used when a repository gives none: `{{workflow.name}}/{{pod.name}}`.
pub const DEFAULT_KEY_FORMAT: &str = "{{workflow.name}}/{{pod.name}}";

/// `s3:` repository: a bucket, and `keyFormat` (or the deprecated `keyPrefix`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3ArtifactRepository {
    /// Bucket, endpoint, credentials... (its `key` is ignored).
    #[serde(flatten)]
    pub bucket: S3Artifact,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_format: String,
    /// Deprecated by Argo in favour of `keyFormat`; used only when `keyFormat` is empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_prefix: String,
}

/// `oss:` repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OssArtifactRepository {
    #[serde(flatten)]
    pub bucket: OssArtifact,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_format: String,
}

/// `gcs:` repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcsArtifactRepository {
    #[serde(flatten)]
    pub bucket: GcsArtifact,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_format: String,
}

/// `azure:` repository: a container, and `blobNameFormat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureArtifactRepository {
    #[serde(flatten)]
    pub container: AzureArtifact,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blob_name_format: String,
}

/// `hdfs:` repository: a cluster, and `pathFormat` (`force` is part of the config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HdfsArtifactRepository {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_format: String,
    #[serde(flatten)]
    pub config: HdfsArtifact,
}

/// `artifactory:` repository: `repoURL`, credentials, and `keyFormat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactoryArtifactRepository {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeySelector>,
    #[serde(default, rename = "repoURL", skip_serializing_if = "String::is_empty")]
    pub repo_url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_format: String,
}

/// `plugin:` repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginArtifactRepository {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_format: String,
    #[serde(default)]
    pub configuration: String,
}

/// A repository, as written in a controller ConfigMap, an `artifact-repositories` entry, or a
/// workflow status. Argo has no `http` or `git` repository kind: those are inputs only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRepository {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_logs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3ArtifactRepository>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifactory: Option<ArtifactoryArtifactRepository>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdfs: Option<HdfsArtifactRepository>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oss: Option<OssArtifactRepository>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsArtifactRepository>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureArtifactRepository>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginArtifactRepository>,
}

impl ArtifactRepository {
    /// Parses a repository as Argo reads ConfigMap values: YAML (JSON is YAML too), converted
    /// to JSON first, so types are checked as Go's `sigs.k8s.io/yaml` checks them.
    pub fn from_yaml(text: &str) -> Result<Self, RepositoryParseError> {
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| RepositoryParseError(e.to_string()))?;
        if value.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(value).map_err(|e| RepositoryParseError(e.to_string()))
    }

    /// Whether archived logs are forced on by this repository (`archiveLogs: true`).
    pub fn is_archive_logs(&self) -> bool {
        self.archive_logs == Some(true)
    }
}

/// A repository text that is not valid YAML, or not a repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RepositoryParseError(pub String);

/// `spec.artifactRepositoryRef` of a workflow: which ConfigMap entry holds its repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRepositoryRef {
    /// The ConfigMap's name; empty means `artifact-repositories`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_map: String,
    /// The ConfigMap key; empty means the key named by the ConfigMap's
    /// `workflows.argoproj.io/default-artifact-repository` annotation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

impl std::fmt::Display for ArtifactRepositoryRef {
    /// `<configMap>#<key>`, as Argo prints a reference.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.config_map, self.key)
    }
}

/// A resolved reference, as stored in a workflow's `status.artifactRepositoryRef`: where the
/// repository came from (a ConfigMap entry, or the controller's default) and the repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRepositoryRefStatus {
    #[serde(flatten)]
    pub reference: ArtifactRepositoryRef,
    /// The ConfigMap's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The controller's default repository, not a ConfigMap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// The repository; absent when the default was chosen and the controller has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_repository: Option<ArtifactRepository>,
}

impl std::fmt::Display for ArtifactRepositoryRefStatus {
    /// `<namespace>/<configMap>#<key>`, or `default-artifact-repository`, as Argo prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.default {
            f.write_str("default-artifact-repository")
        } else {
            write!(f, "{}/{}", self.namespace, self.reference)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_repositories_parse_with_their_kind_fields() {
        let repo = ArtifactRepository::from_yaml(
            "archiveLogs: true\ns3:\n  bucket: my-bucket\n  endpoint: minio:9000\n  insecure: true\n  accessKeySecret:\n    name: creds\n    key: accessKey\n  keyFormat: \"art/{{workflow.name}}\"\n",
        )
        .expect("parses");
        let s3 = repo.s3.as_ref().expect("s3");
        assert_eq!(s3.bucket.bucket, "my-bucket");
        assert_eq!(s3.bucket.insecure, Some(true));
        assert_eq!(s3.key_format, "art/{{workflow.name}}");
        assert!(repo.is_archive_logs());
        let loc = repo.to_location().expect("location");
        assert_eq!(loc.key().as_deref(), Some("art/{{workflow.name}}"));
        assert_eq!(loc.s3.expect("s3").endpoint, "minio:9000");
    }

    #[test]
    fn bad_yaml_and_wrong_types_are_errors() {
        assert!(ArtifactRepository::from_yaml("s3: [").is_err());
        assert!(ArtifactRepository::from_yaml("s3: {bucket: [1]}").is_err());
        assert_eq!(
            ArtifactRepository::from_yaml("").expect("empty"),
            ArtifactRepository::default()
        );
    }

    #[test]
    fn references_print_as_argo_prints_them() {
        let status = ArtifactRepositoryRefStatus {
            reference: ArtifactRepositoryRef {
                config_map: "artifact-repositories".into(),
                key: "main".into(),
            },
            namespace: "argo".into(),
            ..Default::default()
        };
        assert_eq!(status.to_string(), "argo/artifact-repositories#main");
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"configMap": "artifact-repositories", "key": "main", "namespace": "argo"})
        );
    }
}
