//! The agent pod's work (`argoexec agent main`): HTTP templates ([`http`]) and executor
//! plugin templates ([`plugin`]), each turned into the `NodeResult` the controller reads from
//! the WorkflowTaskSet's status.

pub mod http;
pub mod plugin;

pub use argoexec::model::NodeResult;

/// Node phases an agent reports.
pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";
pub const ERROR: &str = "Error";

/// A node that failed with `message`.
pub fn failed(message: impl Into<String>) -> NodeResult {
    NodeResult {
        phase: FAILED.to_string(),
        message: message.into(),
        ..Default::default()
    }
}
