//! # argoexec
//!
//! Argo Workflows' artifact rules as a library, for the executor (`argoexec-rs`), a controller
//! or an artifact server: no command line, no Kubernetes client, no server in its graph
//! (docs/library.md).
//!
//! * [`model`]: the Argo API types artifacts are described with (template, artifacts,
//!   locations, repositories, GC tasks).
//! * [`contract`]: the pod contract's fixed paths and environment names.
//! * [`keys`]: object keys, with Go's `path` semantics; Argo's key templates
//!   ([`keys::template`]); the key of each output ([`keys::output_key`]).
//! * [`repository`]: which artifact repository a workflow uses (`artifactRepositoryRef`, the
//!   `artifact-repositories` ConfigMaps, the controller default), the archive location of a
//!   pod, and where key-only artifacts live.
//! * [`archive`]: tar + parallel gzip, zip, and the safe unpack rules.
//! * [`storage`]: the [`storage::Driver`] trait, one module per backend, retry and integrity
//!   wrappers.
//! * [`transfer`]: the upload and download pipelines, and Argo's input/output artifact rules.
//! * [`gc`]: artifact garbage collection: which artifacts are due, grouped into GC pods with
//!   Argo's names and labels, and the deletion of one artifact.
//! * [`stream`]: streaming reads of any artifact through any driver, with byte ranges.
//! * [`observe`]: the figures and spans of each transfer, as plain `tracing` data.

pub mod archive;
pub mod contract;
pub mod gc;
pub mod keys;
pub mod model;
pub mod observe;
pub mod repository;
pub mod storage;
pub mod stream;
pub mod transfer;
