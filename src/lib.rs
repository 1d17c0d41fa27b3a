//! # argoexec-rs
//!
//! A drop-in, streaming replacement for the executor of Argo Workflows (`argoexec`), and a
//! library for controllers and servers that need Argo's artifact rules.
//!
//! * [`model`]: the Argo API types the executor sees (template, artifacts, locations).
//! * [`contract`]: the pod contract's fixed paths and environment names.
//! * [`keys`]: object keys, with Go's `path` semantics.
//! * [`archive`]: tar + parallel gzip, zip, and the safe unpack rules.
//! * [`storage`]: the [`storage::Driver`] trait, one module per backend, retry and integrity
//!   wrappers.
//! * [`transfer`]: the upload and download pipelines, and Argo's input/output artifact rules.
//! * [`report`]: the Kubernetes client and the WorkflowTaskResult `wait` reports through.
//! * [`commands`]: `init`, `wait`, `emissary`, `kill`, ...
//! * [`telemetry`]: Argo-shaped log lines (text or JSON) and per-artifact transfer figures.

pub mod archive;
pub mod commands;
pub mod contract;
pub mod keys;
pub mod model;
pub mod report;
pub mod storage;
pub mod telemetry;
pub mod transfer;
