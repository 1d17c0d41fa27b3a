//! Artifact garbage collection objects: the workflow's `artifactGC` settings, and the
//! `WorkflowArtifactGCTask` through which the controller hands a GC pod its work and the pod
//! reports back (docs/contract.md#artifact-gc).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::artifact::{Artifact, ArtifactGc};
use super::location::ArtifactLocation;
use super::task_result::TaskResultMetadata;

pub const GC_TASK_KIND: &str = "WorkflowArtifactGCTask";
pub const GC_TASK_PLURAL: &str = "workflowartifactgctasks";
/// The label on GC tasks that names the GC pod (its fnv32a hash) meant to process them.
pub const LABEL_ARTIFACT_GC_POD: &str = "workflows.argoproj.io/artifact-gc-pod";
/// The annotation on a GC pod naming the strategy it deletes for.
pub const ANNOTATION_ARTIFACT_GC_STRATEGY: &str = "workflows.argoproj.io/artifact-gc-strategy";
/// The finalizer the controller puts on workflows that have artifacts to collect.
pub const FINALIZER_ARTIFACT_GC: &str = "workflows.argoproj.io/artifact-gc";

/// Labels and annotations for a pod (`podMetadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `spec.artifactGC` of a workflow: the artifact-level settings plus workflow-only ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowLevelArtifactGc {
    #[serde(flatten)]
    pub artifact_gc: ArtifactGc,
    /// Remove the finalizer even when some deletions failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_finalizer_removal: bool,
    /// A strategic merge patch for the GC pod's spec.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_spec_patch: String,
}

/// The artifacts of one node to delete, and the archive location their keys are relative to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactNodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_location: Option<ArtifactLocation>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, Artifact>,
}

/// `spec` of a GC task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactGcSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts_by_node: BTreeMap<String, ArtifactNodeSpec>,
}

/// The outcome of deleting one artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactResult {
    pub name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Results of one node, by artifact name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactResultNodeStatus {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifact_results: BTreeMap<String, ArtifactResult>,
}

/// `status` of a GC task, written by the GC pod through the status subresource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactGcStatus {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifact_results_by_node: BTreeMap<String, ArtifactResultNodeStatus>,
}

/// A `WorkflowArtifactGCTask` (`argoproj.io/v1alpha1`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowArtifactGcTask {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub metadata: TaskResultMetadata,
    #[serde(default)]
    pub spec: ArtifactGcSpec,
    #[serde(default)]
    pub status: ArtifactGcStatus,
}
