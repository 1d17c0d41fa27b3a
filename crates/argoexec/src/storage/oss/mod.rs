//! Alibaba Cloud OSS through its S3-compatible API, on the S3 driver.
//!
//! OSS answers S3 requests (SigV4, virtual-hosted buckets) on its ordinary endpoints, so the S3
//! driver does the work: ranged parallel reads, and multipart uploads in parallel from the
//! shared pipeline (where Argo uploads `ceil(size/5 GiB)+1` parts one after the other above
//! 5 GiB). What stays OSS-specific: endpoint and credential rules (see `config` and
//! `credentials`: keys, RRSA, the ECS RAM role), the bucket's `lifecycleRule`, and the empty
//! "directory" marker objects Argo writes when it saves a directory, kept here so the OSS
//! console shows the same tree. Errors are the S3 driver's: the wire protocol is the same.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_s3::types::BucketLifecycleConfiguration;
use bytes::Bytes;
use tokio::sync::OnceCell;

use super::s3::S3Driver;
use super::{
    Driver, GetStream, ListPage, MultipartLimits, ObjectMeta, Part, PartReceipt, PendingUpload,
    PutOptions, Result, Secrets, StorageConfig,
};
use crate::model::OssArtifact;

mod config;
pub mod credentials;

pub use credentials::AlibabaEnv;

/// One OSS bucket.
#[derive(Debug)]
pub struct OssDriver {
    s3: S3Driver,
    bucket: String,
    /// The location's key: objects below `<root>/` come from a directory save.
    root: String,
    /// Marker objects already written by this driver.
    markers: Mutex<HashSet<String>>,
    /// The bucket lifecycle the location's `lifecycleRule` asks for, if any.
    lifecycle: Option<BucketLifecycleConfiguration>,
    lifecycle_applied: OnceCell<()>,
}

impl OssDriver {
    /// The driver of `loc`, with `useSDKCreds` reading Alibaba's chain from
    /// `settings.oss_credentials`.
    pub async fn new(
        loc: &OssArtifact,
        secrets: &Secrets,
        settings: &StorageConfig,
    ) -> Result<Self> {
        let s3_loc = config::s3_location(loc)?;
        let credentials = config::credentials(loc, secrets, settings)?;
        let lifecycle = match &loc.lifecycle_rule {
            Some(rule) => {
                config::check_lifecycle_rule(rule)?;
                config::lifecycle_configuration(rule, &crate::keys::clean(&loc.key))?
            }
            None => None,
        };
        let s3 = S3Driver::with_credentials(&s3_loc, secrets, credentials, settings)
            .await
            .map_err(|e| e.map_message(|m| m.replace("S3 client", "OSS client")))?;
        Ok(Self {
            s3,
            bucket: loc.bucket.clone(),
            root: crate::keys::clean(&loc.key),
            markers: Mutex::new(HashSet::new()),
            lifecycle,
            lifecycle_applied: OnceCell::new(),
        })
    }

    /// Before the first write: the location's `lifecycleRule` on the bucket (as Argo sets it
    /// on every save; once per driver is enough, the rule does not change in between).
    async fn prepare_save(&self, key: &str) -> Result<()> {
        if let Some(configuration) = &self.lifecycle {
            self.lifecycle_applied
                .get_or_try_init(|| self.s3.put_lifecycle(configuration.clone()))
                .await?;
        }
        self.write_markers(key).await
    }

    /// Argo's explicit empty objects `<root>/` and `<root>/<dir>/` for the directories leading
    /// to `key`, when `key` lies below the location's key; each written once.
    async fn write_markers(&self, key: &str) -> Result<()> {
        let wanted = markers(&self.root, key);
        let new: Vec<String> = match self.markers.lock() {
            Ok(mut seen) => wanted
                .into_iter()
                .filter(|m| seen.insert(m.clone()))
                .collect(),
            Err(_) => wanted,
        };
        for marker in new {
            self.s3
                .put(&marker, Bytes::new(), &PutOptions::default())
                .await?;
        }
        Ok(())
    }
}

/// The directory markers leading to `key` below `root`, outermost first; none when `key` is
/// not below `root/`.
fn markers(root: &str, key: &str) -> Vec<String> {
    let Some(rel) = key.strip_prefix(&format!("{root}/")) else {
        return Vec::new();
    };
    let mut dir = format!("{root}/");
    let mut out = vec![dir.clone()];
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        dir = format!("{dir}{part}/");
        out.push(dir.clone());
    }
    out
}

#[async_trait]
impl Driver for OssDriver {
    fn name(&self) -> &'static str {
        "oss"
    }

    fn describe(&self) -> String {
        format!("oss://{}", self.bucket)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.s3.head(key).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetStream> {
        self.s3.get(key, range).await
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<()> {
        self.prepare_save(key).await?;
        self.s3.put(key, data, opts).await
    }

    async fn list(&self, prefix: &str, page: Option<String>) -> Result<ListPage> {
        self.s3.list(prefix, page).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.s3.delete(key).await
    }

    fn multipart_limits(&self) -> Option<MultipartLimits> {
        // OSS: parts of 100 KiB to 5 GiB, 10,000 of them; S3's stricter minimum fits both.
        self.s3.multipart_limits()
    }

    fn streams_file_parts(&self) -> bool {
        self.s3.streams_file_parts()
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> Result<String> {
        self.prepare_save(key).await?;
        self.s3.create_multipart(key, opts).await
    }

    async fn put_part(&self, key: &str, upload_id: &str, part: &Part) -> Result<PartReceipt> {
        self.s3.put_part(key, upload_id, part).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartReceipt],
    ) -> Result<()> {
        self.s3.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.s3.abort_multipart(key, upload_id).await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartReceipt>> {
        self.s3.list_parts(key, upload_id).await
    }

    async fn pending_uploads(&self, key: &str) -> Result<Vec<PendingUpload>> {
        self.s3.pending_uploads(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::markers;

    #[test]
    fn markers_are_argos_directory_objects() {
        assert_eq!(
            markers("wf/out", "wf/out/sub/deeper/c.txt"),
            vec!["wf/out/", "wf/out/sub/", "wf/out/sub/deeper/"]
        );
        assert_eq!(markers("wf/out", "wf/out/a.txt"), vec!["wf/out/"]);
        assert!(
            markers("wf/out", "wf/out").is_empty(),
            "a single file has none"
        );
        assert!(markers("wf/out", "wf/outer/a.txt").is_empty());
    }
}
