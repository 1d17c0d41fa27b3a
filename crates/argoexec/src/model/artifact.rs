//! The Artifact object and its archive strategy.

use serde::{Deserialize, Deserializer, Serialize};

use super::gc::PodMetadata;
use super::location::ArtifactLocation;

/// How an artifact's bytes are packed before storage (`archive:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveStrategy {
    /// tar + gzip at the given level (`None` = gzip's default, 6). The default when absent.
    Tar { compression_level: Option<i32> },
    /// The bytes as they are: a file is one object, a directory one object per file.
    None,
    /// A zip archive (Deflate).
    Zip,
}

impl Default for ArchiveStrategy {
    fn default() -> Self {
        Self::Tar {
            compression_level: None,
        }
    }
}

/// Wire shape of `archive:` (`{"tar":{...}}`, `{"none":{}}`, `{"zip":{}}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveStrategyWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar: Option<TarStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub none: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TarStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i32>,
}

impl ArchiveStrategyWire {
    /// The strategy in effect; Argo checks tar, then none, then zip.
    pub fn strategy(&self) -> ArchiveStrategy {
        self.declared().unwrap_or_default()
    }

    /// The strategy this `archive:` names, if it names one it knows: an empty or unknown
    /// strategy (`{}`, `{"rar": {}}`) names none, so inputs are detected by content, as Argo.
    pub fn declared(&self) -> Option<ArchiveStrategy> {
        if let Some(t) = &self.tar {
            Some(ArchiveStrategy::Tar {
                compression_level: t.compression_level,
            })
        } else if self.none.is_some() {
            Some(ArchiveStrategy::None)
        } else if self.zip.is_some() {
            Some(ArchiveStrategy::Zip)
        } else {
            None
        }
    }
}

/// `artifactGC:` on an artifact or a workflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactGc {
    /// `OnWorkflowCompletion`, `OnWorkflowDeletion`, `Never`, or empty (inherit).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub strategy: String,
    /// Labels and annotations of the pod that deletes these artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_metadata: Option<PodMetadata>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
}

/// One input or output artifact of a template.
///
/// Fields the executor does not interpret (`from`, `globalName`, ...) are kept in `rest`, so an
/// artifact reported back to the controller carries everything the template gave it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<i32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recurse_mode: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveStrategyWire>,
    #[serde(
        default,
        rename = "artifactGC",
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_gc: Option<ArtifactGc>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    #[serde(flatten)]
    pub location: ArtifactLocation,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl Artifact {
    /// The archive strategy in effect (tar with the default level when absent).
    pub fn archive_strategy(&self) -> ArchiveStrategy {
        self.archive
            .as_ref()
            .map(ArchiveStrategyWire::strategy)
            .unwrap_or_default()
    }

    /// Argo's `Relocate`: the location to use for this artifact. A full location is used as it
    /// is; otherwise the archive location is copied and this artifact's key kept.
    pub fn relocated(
        &self,
        archive: Option<&ArtifactLocation>,
    ) -> Result<ArtifactLocation, String> {
        if self.location.has_location() {
            return Ok(self.location.clone());
        }
        let archive = archive.ok_or_else(|| "template artifact location not set".to_string())?;
        let mut out = archive.clone();
        if let Some(key) = self.location.key() {
            if archive.kind().is_none() {
                // Argo sets the key on the copied location, which has no type to take it.
                return Err(crate::contract::STORAGE_NOT_CONFIGURED.to_string());
            }
            out.set_key(key);
        }
        Ok(out)
    }
}

/// Argo's `AnyString`: accepts a JSON string, number or boolean and keeps it as text.
pub(crate) fn any_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}
