//! Artifact locations: one struct per storage kind, as Argo's JSON spells them.
//!
//! Every field is optional and unknown fields are ignored, so any template the controller sends
//! parses. Which location is in effect follows Argo's precedence ([`ArtifactLocation::kind`]).

use serde::{Deserialize, Serialize};

/// A reference to one key of a Kubernetes secret, mounted at `/argo/secret/<name>/<key>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl SecretKeySelector {
    /// Argo ignores selectors with an empty name or key.
    pub fn is_set(&self) -> bool {
        !self.name.is_empty() && !self.key.is_empty()
    }
}

/// Which storage kind a location uses, declared (and ordered) in Argo's precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocationKind {
    Artifactory,
    Azure,
    Git,
    Gcs,
    Hdfs,
    Http,
    Oss,
    Raw,
    S3,
    Plugin,
}

impl LocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Artifactory => "artifactory",
            Self::Azure => "azure",
            Self::Git => "git",
            Self::Gcs => "gcs",
            Self::Hdfs => "hdfs",
            Self::Http => "http",
            Self::Oss => "oss",
            Self::Raw => "raw",
            Self::S3 => "s3",
            Self::Plugin => "plugin",
        }
    }
}

impl std::fmt::Display for LocationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The location fields inlined into an Artifact (and the template's `archiveLocation`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactLocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_logs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifactory: Option<ArtifactoryArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdfs: Option<HdfsArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oss: Option<OssArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginArtifact>,
}

impl ArtifactLocation {
    /// The location kind in effect: Argo's precedence when several are set
    /// (artifactory, azure, git, gcs, hdfs, http, oss, raw, s3, plugin).
    pub fn kind(&self) -> Option<LocationKind> {
        use LocationKind as K;
        [
            (self.artifactory.is_some(), K::Artifactory),
            (self.azure.is_some(), K::Azure),
            (self.git.is_some(), K::Git),
            (self.gcs.is_some(), K::Gcs),
            (self.hdfs.is_some(), K::Hdfs),
            (self.http.is_some(), K::Http),
            (self.oss.is_some(), K::Oss),
            (self.raw.is_some(), K::Raw),
            (self.s3.is_some(), K::S3),
            (self.plugin.is_some(), K::Plugin),
        ]
        .into_iter()
        .find_map(|(set, kind)| set.then_some(kind))
    }

    /// Argo's `HasLocation`: the location alone is enough to reach the object.
    pub fn has_location(&self) -> bool {
        use LocationKind as K;
        match self.kind() {
            Some(K::S3) => self.s3.as_ref().is_some_and(|s| {
                !s.endpoint.is_empty() && !s.bucket.is_empty() && !s.key.is_empty()
            }),
            Some(K::Gcs) => self
                .gcs
                .as_ref()
                .is_some_and(|g| !g.bucket.is_empty() && !g.key.is_empty()),
            Some(K::Azure) => self.azure.as_ref().is_some_and(|a| {
                !a.endpoint.is_empty() && !a.container.is_empty() && !a.blob.is_empty()
            }),
            Some(K::Oss) => self.oss.as_ref().is_some_and(|o| {
                !o.bucket.is_empty() && !o.endpoint.is_empty() && !o.key.is_empty()
            }),
            Some(K::Http) => self.http.as_ref().is_some_and(|h| !h.url.is_empty()),
            Some(K::Artifactory) => self
                .artifactory
                .as_ref()
                .is_some_and(|a| !a.url.is_empty() && a.username_secret.is_some()),
            Some(K::Git) => self.git.as_ref().is_some_and(|g| !g.repo.is_empty()),
            Some(K::Raw) => true,
            Some(K::Hdfs) => self.hdfs.as_ref().is_some_and(|h| !h.addresses.is_empty()),
            Some(K::Plugin) => self
                .plugin
                .as_ref()
                .is_some_and(|p| !p.name.is_empty() && !p.key.is_empty()),
            None => false,
        }
    }

    /// The key of the location in effect (URL path for HTTP and Artifactory).
    pub fn key(&self) -> Option<String> {
        use LocationKind as K;
        let key = match self.kind()? {
            K::S3 => self.s3.as_ref()?.key.clone(),
            K::Gcs => self.gcs.as_ref()?.key.clone(),
            K::Azure => self.azure.as_ref()?.blob.clone(),
            K::Oss => self.oss.as_ref()?.key.clone(),
            K::Hdfs => self.hdfs.as_ref()?.path.clone(),
            K::Plugin => self.plugin.as_ref()?.key.clone(),
            K::Http => url_path(&self.http.as_ref()?.url),
            K::Artifactory => url_path(&self.artifactory.as_ref()?.url),
            K::Git | K::Raw => return None,
        };
        Some(key)
    }

    /// Argo's `HasKey`: a location kind is present and its key is non-empty.
    pub fn has_key(&self) -> bool {
        self.key().is_some_and(|k| !k.is_empty())
    }

    /// Argo's `HasLocationOrKey`.
    pub fn has_location_or_key(&self) -> bool {
        self.has_location() || self.has_key()
    }

    /// Sets the key of the location in effect; `false` for kinds without keys (git, raw).
    pub fn set_key(&mut self, key: String) -> bool {
        use LocationKind as K;
        match self.kind() {
            Some(K::S3) => self.s3.as_mut().map(|s| s.key = key).is_some(),
            Some(K::Gcs) => self.gcs.as_mut().map(|g| g.key = key).is_some(),
            Some(K::Azure) => self.azure.as_mut().map(|a| a.blob = key).is_some(),
            Some(K::Oss) => self.oss.as_mut().map(|o| o.key = key).is_some(),
            Some(K::Hdfs) => self.hdfs.as_mut().map(|h| h.path = key).is_some(),
            Some(K::Plugin) => self.plugin.as_mut().map(|p| p.key = key).is_some(),
            Some(K::Http) => self
                .http
                .as_mut()
                .map(|h| h.url = with_url_path(&h.url, &key))
                .is_some(),
            Some(K::Artifactory) => self
                .artifactory
                .as_mut()
                .map(|a| a.url = with_url_path(&a.url, &key))
                .is_some(),
            Some(K::Git) | Some(K::Raw) | None => false,
        }
    }

    /// An otherwise empty location of the same kind carrying only `key`: what Argo reports
    /// for artifacts saved under the archive location.
    pub fn key_only(&self, key: String) -> ArtifactLocation {
        use LocationKind as K;
        let mut out = ArtifactLocation::default();
        match self.kind() {
            Some(K::S3) => out.s3 = Some(S3Artifact::default()),
            Some(K::Gcs) => out.gcs = Some(GcsArtifact::default()),
            Some(K::Azure) => out.azure = Some(AzureArtifact::default()),
            Some(K::Oss) => out.oss = Some(OssArtifact::default()),
            Some(K::Hdfs) => out.hdfs = Some(HdfsArtifact::default()),
            Some(K::Plugin) => {
                out.plugin = self.plugin.as_ref().map(|p| PluginArtifact {
                    name: p.name.clone(),
                    ..Default::default()
                })
            }
            Some(K::Http) => {
                out.http = self.http.as_ref().map(|h| HttpArtifact {
                    url: h.url.clone(),
                    ..Default::default()
                })
            }
            Some(K::Artifactory) => {
                out.artifactory = self.artifactory.as_ref().map(|a| ArtifactoryArtifact {
                    url: a.url.clone(),
                    ..Default::default()
                })
            }
            Some(K::Git) | Some(K::Raw) | None => return out,
        }
        out.set_key(key);
        out
    }
}

/// The path part of a URL, without the leading slash (Argo's key for HTTP-like locations).
fn url_path(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => u.path().trim_start_matches('/').to_string(),
        Err(_) => String::new(),
    }
}

fn with_url_path(raw: &str, key: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            u.set_path(key);
            u.to_string()
        }
        Err(_) => key.to_string(),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateS3BucketOptions {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub object_locking: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3EncryptionOptions {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kms_key_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kms_encryption_context: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_encryption: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_side_customer_key_secret: Option<SecretKeySelector>,
}

/// `s3:` location (also used for S3-compatible stores such as MinIO, Ceph, R2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Artifact {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_secret: Option<SecretKeySelector>,
    #[serde(default, rename = "roleARN", skip_serializing_if = "String::is_empty")]
    pub role_arn: String,
    #[serde(
        default,
        rename = "useSDKCreds",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub use_sdk_creds: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_bucket_if_not_present: Option<CreateS3BucketOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_options: Option<S3EncryptionOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addressing_style: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcsArtifact {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_key_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureArtifact {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key_secret: Option<SecretKeySelector>,
    #[serde(
        default,
        rename = "useSDKCreds",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub use_sdk_creds: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blob: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OssLifecycleRule {
    #[serde(default)]
    pub mark_infrequent_access_after_days: i32,
    #[serde(default)]
    pub mark_deletion_after_days: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OssArtifact {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_bucket_if_not_present: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub security_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_rule: Option<OssLifecycleRule>,
    #[serde(
        default,
        rename = "useSDKCreds",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub use_sdk_creds: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeySelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_secret: Option<SecretKeySelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2EndpointParam {
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Auth {
    #[serde(
        default,
        rename = "clientIDSecret",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_id_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_secret: Option<SecretKeySelector>,
    #[serde(
        default,
        rename = "tokenURLSecret",
        skip_serializing_if = "Option::is_none"
    )]
    pub token_url_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoint_params: Vec<OAuth2EndpointParam>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<ClientCertAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Auth>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpArtifact {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<HttpAuth>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub save_stream_via_file: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactoryArtifact {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeySelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitArtifact {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repo: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fetch: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_private_key_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_ignore_host_key: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_submodules: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_branch: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    #[serde(
        default,
        rename = "insecureSkipTLS",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub insecure_skip_tls: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawArtifact {
    #[serde(default)]
    pub data: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HdfsArtifact {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hdfs_user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// Kerberos and transfer-protection fields, kept verbatim (HDFS is not supported yet).
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginArtifact {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub configuration: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_timeout_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}
