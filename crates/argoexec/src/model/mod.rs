//! Serde types of the Argo API objects the executor sees.
//!
//! Decoding is lenient (unknown fields ignored, camelCase as in Argo) because the controller sends
//! the whole Template; encoding omits empty fields, as Go's `omitempty` does.

mod artifact;
mod gc;
mod location;
mod repository;
mod task_result;
mod template;

pub use artifact::{ArchiveStrategy, ArchiveStrategyWire, Artifact, ArtifactGc, TarStrategy};
pub use gc::*;
pub use location::*;
pub use repository::*;
pub use task_result::*;
pub use template::{
    Container, ContainerSet, ContainerSetRetryStrategy, Inputs, Outputs, Parameter, Template,
    ValueFrom, VolumeMount,
};
