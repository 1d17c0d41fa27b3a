//! Resuming an interrupted multipart upload from the store itself.
//!
//! Argo never restarts a container (`restartPolicy: Never`): a retried step is a new pod with
//! fresh emptyDirs, so nothing the killed `wait` wrote locally survives. The store does: a
//! multipart upload that was neither completed nor aborted keeps its parts. Before a multipart
//! upload starts, [`Resumable::find`] asks the store for the unfinished uploads of exactly
//! that key (S3's ListMultipartUploads) and takes the newest, with its part list. The rerun
//! regenerates the same bytes (the tar writer and the parallel gzip are deterministic, and the
//! part plan depends on the part index alone, see [`super::parts`]), and a part is skipped only
//! when the stored one has its size and a CRC32C or MD5 that proves the same bytes
//! ([`verify::holds`]). Any other part is sent again, so a source that changed in between is
//! re-sent where it changed, never mixed.
//!
//! It applies whenever the retry writes the same key: key-only artifacts and key formats
//! without the pod name. Argo's default archive key, `{{workflow.name}}/{{pod.name}}`, differs
//! per retry, so there every upload starts afresh (as with drivers that cannot list uploads).

use std::collections::HashMap;
use std::time::Duration;

use crate::storage::{self, Driver, Part, PartReceipt, verify};

/// How long looking for an interrupted upload may take before the upload starts afresh.
const LOOKUP_TIME: Duration = Duration::from_secs(60);

/// An unfinished upload of the key and the parts the store holds for it.
#[derive(Debug)]
pub struct Resumable {
    upload_id: String,
    stored: HashMap<u32, PartReceipt>,
}

impl Resumable {
    /// The newest unfinished upload of exactly `key` in the store, if there is one and it can
    /// be listed within a minute (`LOOKUP_TIME`). Any failure to look means starting afresh:
    /// resuming saves work, it never decides whether the upload succeeds.
    pub async fn find(driver: &dyn Driver, key: &str) -> Option<Self> {
        let lookup = async {
            let Some(newest) = driver.pending_uploads(key).await?.into_iter().next() else {
                return Ok(None);
            };
            let parts = driver.list_parts(key, &newest.upload_id).await?;
            Ok::<_, storage::Error>(Some(Self {
                upload_id: newest.upload_id,
                stored: parts.into_iter().map(|p| (p.number, p)).collect(),
            }))
        };
        match tokio::time::timeout(LOOKUP_TIME, lookup).await {
            Ok(Ok(found)) => found,
            Ok(Err(storage::Error::NotSupported { .. })) => None,
            Ok(Err(e)) => {
                tracing::info!(key, error = %e, "cannot look for an interrupted upload in the store; starting afresh");
                None
            }
            Err(_) => {
                tracing::warn!(
                    key,
                    seconds = LOOKUP_TIME.as_secs(),
                    "looking for an interrupted upload in the store took too long; starting afresh"
                );
                None
            }
        }
    }

    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// Parts the store holds for the upload.
    pub fn stored(&self) -> usize {
        self.stored.len()
    }

    /// The receipt to reuse for the regenerated `part`, when the store provably holds exactly
    /// its bytes already.
    pub async fn reuse(&self, part: &Part) -> Option<PartReceipt> {
        let stored = self.stored.get(&part.number)?;
        match verify::holds(stored, part).await {
            Ok(true) => Some(PartReceipt {
                crc32c: part.crc32c,
                ..stored.clone()
            }),
            _ => None,
        }
    }
}
