//! The Kubernetes calls of resource templates, without kubectl: discovery of a kind's or a
//! type name's REST resource, and requests on any resource's path with the content type each
//! operation needs.

use serde::Deserialize;
use serde_json::Value;

use crate::report::{Error, ErrorKind, KubeClient};

pub const JSON: &str = "application/json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
pub const JSON_PATCH: &str = "application/json-patch+json";
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// A REST resource found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The collection path: `/api/v1/namespaces/<ns>/configmaps`, `/apis/<g>/<v>/<plural>`.
    pub fn collection(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{base}/namespaces/{ns}/{}", self.plural),
            None => format!("{base}/{}", self.plural),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResourceEntry {
    name: String,
    #[serde(default)]
    singular_name: String,
    #[serde(default)]
    namespaced: bool,
    kind: String,
    #[serde(default)]
    short_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ApiResourceList {
    #[serde(default)]
    resources: Vec<ApiResourceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupVersion {
    version: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiGroup {
    name: String,
    #[serde(default)]
    versions: Vec<GroupVersion>,
    #[serde(default)]
    preferred_version: Option<GroupVersion>,
}

#[derive(Debug, Deserialize)]
struct ApiGroupList {
    #[serde(default)]
    groups: Vec<ApiGroup>,
}

/// Resource-template calls through one client.
#[derive(Debug, Clone)]
pub struct ResourceApi {
    client: KubeClient,
}

/// What went wrong finding a resource type.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("{0}")]
    Api(#[from] Error),
    #[error("the server doesn't have a resource type \"{0}\"")]
    UnknownType(String),
    #[error("no matches for kind \"{kind}\" in version \"{api_version}\"")]
    UnknownKind { api_version: String, kind: String },
}

impl ResourceApi {
    pub fn new(client: KubeClient) -> Self {
        Self { client }
    }

    pub fn namespace(&self) -> &str {
        self.client.namespace()
    }

    /// One request, retried while it fails transiently; the response body as JSON (`null`
    /// when empty).
    pub async fn request(
        &self,
        method: http::Method,
        uri: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Value, Error> {
        self.client
            .call(&format!("{method} {uri}"), || async {
                self.once(method.clone(), uri, content_type, body.clone())
                    .await
            })
            .await
    }

    /// One request, not retried (a poll's next round is its retry).
    pub async fn once(
        &self,
        method: http::Method,
        uri: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Value, Error> {
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        let request = builder
            .body(body.unwrap_or_default())
            .map_err(|e| Error::Config(format!("invalid request {uri}: {e}")))?;
        let text = self
            .client
            .raw()
            .request_text(request)
            .await
            .map_err(Error::from)?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&text)?)
    }

    async fn resources(&self, group: &str, version: &str) -> Result<ApiResourceList, Error> {
        let uri = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let value = self.request(http::Method::GET, &uri, None, None).await?;
        Ok(serde_json::from_value(value)?)
    }

    /// The resource serving `kind` in `api_version` (one discovery request).
    pub async fn discover_kind(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<ResourceType, DiscoveryError> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let unknown = || DiscoveryError::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        };
        let list = match self.resources(group, version).await {
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(unknown()),
            other => other?,
        };
        list.resources
            .into_iter()
            .find(|r| r.kind == kind && !r.name.contains('/'))
            .map(|r| ResourceType {
                group: group.to_string(),
                version: version.to_string(),
                kind: r.kind,
                plural: r.name,
                namespaced: r.namespaced,
            })
            .ok_or_else(unknown)
    }

    /// The resource a kubectl type name means: `configmaps`, `configmap`, `cm`, `ConfigMap`,
    /// `deployments.apps`, `deployments.v1.apps`. The core group is searched first, then every
    /// group at its preferred version.
    pub async fn discover_type(&self, type_name: &str) -> Result<ResourceType, DiscoveryError> {
        let (name, qualifier) = type_name.split_once('.').unwrap_or((type_name, ""));
        let mut candidates: Vec<(String, String)> = Vec::new();
        if qualifier.is_empty() {
            candidates.push((String::new(), "v1".to_string()));
        }
        let groups: ApiGroupList =
            serde_json::from_value(self.request(http::Method::GET, "/apis", None, None).await?)
                .map_err(Error::from)?;
        for g in groups.groups {
            let preferred = g
                .preferred_version
                .as_ref()
                .or(g.versions.first())
                .map(|v| v.version.clone())
                .unwrap_or_default();
            if qualifier.is_empty() || qualifier == g.name {
                candidates.push((g.name.clone(), preferred));
            } else if let Some((version, group)) = qualifier.split_once('.')
                && group == g.name
                && g.versions.iter().any(|v| v.version == version)
            {
                candidates.push((g.name.clone(), version.to_string()));
            }
        }
        for (group, version) in candidates {
            let list = match self.resources(&group, &version).await {
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                other => other?,
            };
            let lower = name.to_ascii_lowercase();
            if let Some(r) = list.resources.into_iter().find(|r| {
                !r.name.contains('/')
                    && (r.name == lower
                        || r.singular_name == lower
                        || r.kind.to_ascii_lowercase() == lower
                        || r.short_names.contains(&lower))
            }) {
                return Ok(ResourceType {
                    group,
                    version,
                    kind: r.kind,
                    plural: r.name,
                    namespaced: r.namespaced,
                });
            }
        }
        Err(DiscoveryError::UnknownType(type_name.to_string()))
    }
}

/// The API status a failed call carries, through any retries.
fn api_status(e: &Error) -> Option<&kube::core::Status> {
    match e {
        Error::GaveUp { last, .. } => api_status(last),
        Error::Request {
            source: kube::Error::Api(status),
            ..
        } => Some(status),
        _ => None,
    }
}

/// A failed call as client-go's error prints it: the status' message for an API status, the
/// error otherwise.
pub fn status_message(e: &Error) -> String {
    api_status(e).map_or_else(|| e.to_string(), |s| s.message.clone())
}

/// kubectl's rendering of a failed call: `Error from server (NotFound): ...` for an API
/// status, the error otherwise.
pub fn kubectl_message(e: &Error) -> String {
    api_status(e).map_or_else(
        || e.to_string(),
        |s| format!("Error from server ({}): {}", s.reason, s.message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_paths() {
        let cm = ResourceType {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            namespaced: true,
        };
        assert_eq!(
            cm.collection(Some("argo")),
            "/api/v1/namespaces/argo/configmaps"
        );
        let crd = ResourceType {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
            namespaced: false,
        };
        assert_eq!(
            crd.collection(Some("argo")),
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        );
        assert_eq!(crd.api_version(), "apiextensions.k8s.io/v1");
    }
}
