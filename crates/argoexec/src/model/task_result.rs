//! `WorkflowTaskResult`: how `wait` reports outputs to the controller (docs/contract.md#reporting).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::template::Outputs;

pub const API_GROUP: &str = "argoproj.io";
pub const API_VERSION: &str = "v1alpha1";
pub const KIND: &str = "WorkflowTaskResult";
pub const PLURAL: &str = "workflowtaskresults";
pub const LABEL_WORKFLOW: &str = "workflows.argoproj.io/workflow";
pub const LABEL_REPORT_OUTPUTS_COMPLETED: &str = "workflows.argoproj.io/report-outputs-completed";
pub const LABEL_CONTROLLER_INSTANCE_ID: &str = "workflows.argoproj.io/controller-instanceid";

/// The NodeResult fields inlined at the top level of a WorkflowTaskResult.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeResult {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub progress: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResultMetadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
}

/// The whole object, as created on the API server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTaskResult {
    pub api_version: String,
    pub kind: String,
    pub metadata: TaskResultMetadata,
    #[serde(flatten)]
    pub result: NodeResult,
}

impl WorkflowTaskResult {
    /// The empty result `wait` creates first: labels and owner as Argo sets them.
    pub fn new(
        node_id: &str,
        workflow_name: &str,
        workflow_uid: &str,
        instance_id: Option<&str>,
    ) -> Self {
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_WORKFLOW.to_string(), workflow_name.to_string());
        labels.insert(
            LABEL_REPORT_OUTPUTS_COMPLETED.to_string(),
            "false".to_string(),
        );
        if let Some(id) = instance_id.filter(|s| !s.is_empty()) {
            labels.insert(LABEL_CONTROLLER_INSTANCE_ID.to_string(), id.to_string());
        }
        Self {
            api_version: format!("{API_GROUP}/{API_VERSION}"),
            kind: KIND.to_string(),
            metadata: TaskResultMetadata {
                name: node_id.to_string(),
                namespace: String::new(),
                labels,
                owner_references: vec![OwnerReference {
                    api_version: format!("{API_GROUP}/{API_VERSION}"),
                    kind: "Workflow".to_string(),
                    name: workflow_name.to_string(),
                    uid: workflow_uid.to_string(),
                }],
            },
            result: NodeResult::default(),
        }
    }
}
