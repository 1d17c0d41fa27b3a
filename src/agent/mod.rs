//! The agent pod's work (`argoexec agent main`): HTTP templates ([`http`]) and executor
//! plugin templates ([`plugin`]), each turned into the `NodeResult` the controller reads from
//! the WorkflowTaskSet's status.

pub mod http;
pub mod plugin;

use serde::{Deserialize, Serialize};

use crate::model::Outputs;

/// Node phases an agent reports.
pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";
pub const ERROR: &str = "Error";

/// What the agent reports for one node: the WorkflowTaskSet status' `nodes.<id>`.
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

impl NodeResult {
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            phase: FAILED.to_string(),
            message: message.into(),
            ..Default::default()
        }
    }
}
