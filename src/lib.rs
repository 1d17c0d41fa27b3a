//! # argoexec-rs
//!
//! The executor of Argo Workflows (`argoexec`) as a streaming drop-in: the commands of the
//! `argoexec` binary and what only they need. Argo's artifact rules (model, keys, archives,
//! storage drivers, transfers, GC, streaming reads) are the [`argoexec`] library crate.
//!
//! * [`cli`]: the command line, shaped like Argo's.
//! * [`commands`]: one file per command: `init`, `wait`, `emissary`, `kill`, `artifact delete`,
//!   `serve`, ...
//! * [`container`]: the emissary's process supervision, log capture and output capture.
//! * [`pod`]: what a command reads about its pod, and the shared `/var/run/argo` volume
//!   (file watches, the output stream from main's emissary to `wait`).
//! * [`report`]: the Kubernetes client, the WorkflowTaskResult `wait` reports through, and the
//!   WorkflowArtifactGCTasks of a GC pod.
//! * [`resource`]: what resource templates need: conditions, JSONPath and jq outputs, the API
//!   calls that replace kubectl.
//! * [`agent`]: the agent pod's HTTP and executor-plugin templates (feature `http`).
//! * [`expr`]: the expr-lang subset Argo evaluates in data templates and HTTP success
//!   conditions.
//! * [`telemetry`]: Argo-shaped log lines (text or JSON), the metrics file, the OTLP trace.

#[cfg(feature = "http")]
pub mod agent;
pub mod cli;
pub mod commands;
pub mod container;
pub mod expr;
pub mod pod;
pub mod report;
pub mod resource;
pub mod telemetry;
