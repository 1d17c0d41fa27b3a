//! # argoexec-rs
//!
//! A drop-in, streaming replacement for the executor of Argo Workflows (`argoexec`), and a
//! library for controllers and servers that need Argo's artifact rules.
//!
//! * [`model`]: the Argo API types the executor sees (template, artifacts, locations,
//!   repositories, GC tasks).
//! * [`contract`]: the pod contract's fixed paths and environment names.
//! * [`keys`]: object keys, with Go's `path` semantics; Argo's key templates
//!   ([`keys::template`]); the key of each output ([`keys::output_key`]).
//! * [`archive`]: tar + parallel gzip, zip, and the safe unpack rules.
//! * [`storage`]: the [`storage::Driver`] trait, one module per backend, retry and integrity
//!   wrappers.
//! * [`transfer`]: the upload and download pipelines, and Argo's input/output artifact rules.
//! * [`report`]: the Kubernetes client, the WorkflowTaskResult `wait` reports through, and the
//!   WorkflowArtifactGCTasks of a GC pod.
//! * [`commands`]: `init`, `wait`, `emissary`, `kill`, `artifact delete`, `serve`, ...
//!
//! For controllers and servers (docs/library.md):
//!
//! * [`repository`]: which artifact repository a workflow uses (`artifactRepositoryRef`, the
//!   `artifact-repositories` ConfigMaps, the controller default), the archive location of a
//!   pod, and where key-only artifacts live.
//! * [`gc`]: artifact garbage collection: which artifacts are due, grouped into GC pods with
//!   Argo's names and labels, and the deletion of one artifact.
//! * [`stream`]: streaming reads of any artifact through any driver, with byte ranges.

pub mod archive;
pub mod commands;
pub mod contract;
pub mod gc;
pub mod keys;
pub mod model;
pub mod report;
pub mod repository;
pub mod storage;
pub mod stream;
pub mod transfer;
