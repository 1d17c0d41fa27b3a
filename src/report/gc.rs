//! The `WorkflowArtifactGCTask`s a GC pod works through (docs/contract.md#artifact-gc): listed by the
//! pod's label a page at a time, and answered with merge patches of their status subresource.
//!
//! Pages are decoded into the task's name and spec only (the status and the rest of the
//! metadata are skipped by the decoder, never held), and each artifact is kept as its JSON
//! text until its turn comes ([`RawArtifact`]): a decoded `Artifact` takes a few KiB (every
//! location kind is a field of it), its text about a hundred bytes. Memory follows the page,
//! not the number of tasks or artifacts.

use std::collections::BTreeMap;

use kube::api::{ListParams, Patch, PatchParams};
use serde::Deserialize;
use serde_json::json;

use super::client::{Error, KubeClient};
use argoexec::model::{
    API_GROUP, API_VERSION, Artifact, ArtifactGcStatus, ArtifactLocation, GC_TASK_PLURAL,
};

/// An artifact of a task as its JSON text, decoded when it is processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawArtifact(String);

impl RawArtifact {
    pub fn decode(&self) -> Result<Artifact, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RawArtifact {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(|v| Self(v.to_string()))
    }
}

/// One node of a task: its archive location and its artifacts, by name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcNodeSpec {
    #[serde(default)]
    pub archive_location: Option<ArtifactLocation>,
    #[serde(default)]
    pub artifacts: BTreeMap<String, RawArtifact>,
}

/// A task as the GC pod needs it: its name and `spec.artifactsByNode`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcTask {
    pub name: String,
    pub artifacts_by_node: BTreeMap<String, GcNodeSpec>,
}

/// One page of tasks, and the token of the next page.
#[derive(Debug, Clone, Default)]
pub struct GcTaskPage {
    pub tasks: Vec<GcTask>,
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    artifacts_by_node: BTreeMap<String, GcNodeSpec>,
}

#[derive(Deserialize)]
struct Item {
    metadata: Named,
    #[serde(default)]
    spec: Option<Spec>,
}

#[derive(Deserialize)]
struct List {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Item>,
}

/// The GC tasks of the client's namespace.
#[derive(Debug, Clone)]
pub struct GcTasks {
    client: KubeClient,
    collection: String,
}

impl GcTasks {
    pub fn new(client: KubeClient) -> Self {
        let collection = format!(
            "/apis/{API_GROUP}/{API_VERSION}/namespaces/{}/{GC_TASK_PLURAL}",
            client.namespace()
        );
        Self { client, collection }
    }

    pub fn namespace(&self) -> &str {
        self.client.namespace()
    }

    /// Up to `limit` tasks matching `selector`, from `token` on (the start when `None`).
    pub async fn page(
        &self,
        selector: &str,
        limit: u32,
        token: Option<String>,
    ) -> Result<GcTaskPage, Error> {
        let mut params = ListParams::default().labels(selector).limit(limit);
        params.continue_token = token;
        let request = kube::core::Request::new(&self.collection)
            .list(&params)
            .map_err(|e| Error::Config(format!("building the list request: {e}")))?;
        let list: List = self
            .client
            .call("list the artifact GC tasks", || async {
                self.client
                    .raw()
                    .request::<List>(clone_request(&request))
                    .await
                    .map_err(Error::from)
            })
            .await?;
        Ok(GcTaskPage {
            tasks: list
                .items
                .into_iter()
                .map(|i| GcTask {
                    name: i.metadata.name,
                    artifacts_by_node: i.spec.map(|s| s.artifacts_by_node).unwrap_or_default(),
                })
                .collect(),
            next: list.metadata.continue_token.filter(|t| !t.is_empty()),
        })
    }

    /// Merge-patches `results` into the task's status subresource:
    /// `{"status":{"artifactResultsByNode":{...}}}`. Maps merge, so results patched in several
    /// batches add up to what one patch of them all would write.
    pub async fn patch_results(&self, task: &str, results: &ArtifactGcStatus) -> Result<(), Error> {
        let body = json!({ "status": results });
        let request = kube::core::Request::new(&self.collection)
            .patch_subresource(
                "status",
                task,
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .map_err(|e| Error::Config(format!("building the status patch: {e}")))?;
        self.client
            .call("patch the artifact GC task status", || async {
                // The answer is the whole task; nothing in it is needed.
                self.client
                    .raw()
                    .request::<serde::de::IgnoredAny>(clone_request(&request))
                    .await
                    .map(drop)
                    .map_err(Error::from)
            })
            .await
    }
}

/// Whether a page request failed because its continue token expired (HTTP 410): the listing
/// has to start over.
pub fn is_expired(e: &Error) -> bool {
    let mut e = e;
    while let Error::GaveUp { last, .. } = e {
        e = last;
    }
    matches!(e, Error::Request { source: kube::Error::Api(status), .. } if status.code == 410)
}

/// `http::Request` is not `Clone`; a retry needs the same request again.
fn clone_request(r: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut out = http::Request::new(r.body().clone());
    *out.method_mut() = r.method().clone();
    *out.uri_mut() = r.uri().clone();
    *out.headers_mut() = r.headers().clone();
    *out.version_mut() = r.version();
    out
}

/// Per-artifact results of one task, collected until they are patched.
#[derive(Debug, Default)]
pub struct ResultBatch {
    status: ArtifactGcStatus,
    len: usize,
}

impl ResultBatch {
    pub fn add(&mut self, node: String, result: argoexec::model::ArtifactResult) {
        self.status
            .artifact_results_by_node
            .entry(node)
            .or_default()
            .artifact_results
            .insert(result.name.clone(), result);
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The collected results, leaving the batch empty.
    pub fn take(&mut self) -> ArtifactGcStatus {
        self.len = 0;
        std::mem::take(&mut self.status)
    }
}
