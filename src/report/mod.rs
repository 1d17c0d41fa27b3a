//! Reporting to the Kubernetes API.
//!
//! * [`client`]: configuration (kubeconfig or in-cluster), the namespace, typed error
//!   classification and one bounded retry policy, for every command that talks to the API.
//! * [`gc`]: the WorkflowArtifactGCTasks an artifact-GC pod lists and answers.
//! * [`task_result`]: the WorkflowTaskResult through which `wait` hands outputs to the
//!   controller (docs/contract.md#reporting).

pub mod client;
pub mod gc;
pub mod task_result;

pub use client::{ApiOptions, ApiRetry, Error, ErrorKind, KubeClient};
pub use task_result::{TaskResultIdentity, TaskResults};
