//! Azure Blob Storage on the official `azure_storage_blob` crate.
//!
//! Large objects are block blobs staged in parallel: the Driver's multipart calls map onto
//! blocks (`create_multipart` picks an upload id, `put_part` = Put Block, `complete_multipart`
//! = Put Block List in part order, `abort_multipart` leaves the uncommitted blocks for the
//! service to discard). Every block is sent with its Content-MD5: the service refuses a block
//! whose bytes do not match (`Md5Mismatch`, retried as an integrity error), and the MD5 it
//! echoes back is the part's receipt, which [`crate::storage::verify`] checks again.
//!
//! "Directories" follow Argo: a blob name is a directory when blobs exist below `name/`;
//! delete removes such a directory with its contents; empty marker blobs (`hdi_isfolder`, as
//! ADLS Gen2 accounts keep them) are not listed as files.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZero;
use std::ops::Range;
use std::sync::Mutex;

use async_trait::async_trait;
use azure_core::http::Url;
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlobContainerClientListBlobsOptions, BlockBlobClientCommitBlockListOptions,
    BlockBlobClientStageBlockOptions, BlockBlobClientStageBlockResultHeaders,
    BlockBlobClientUploadOptions, BlockListType, BlockLookupList, HttpRange, ListBlobsIncludeItem,
};
use azure_storage_blob::{BlobClient, BlobContainerClient};
use bytes::Bytes;
use futures::StreamExt;

use super::{
    Driver, Error, ErrorKind, GetStream, ListPage, MultipartLimits, ObjectMeta, Part, PartBody,
    PartReceipt, PutOptions, Result, Secrets, StorageConfig, verify,
};
use crate::model::AzureArtifact;

mod config;
mod error;
mod sas;

pub use config::{AzureSdkEnv, account_name, container_url, is_sas};
use error::classify;

const MIB: u64 = 1 << 20;
/// Block blob limits (service version 2019-12-12 and later).
const LIMITS: MultipartLimits = MultipartLimits {
    min_part_size: 1,
    max_part_size: 4000 * MIB,
    max_parts: 50_000,
};
/// Metadata of the empty blobs ADLS Gen2 keeps for directories.
const FOLDER_MARKER: &str = "hdi_isfolder";

/// Tuning of the driver; the defaults suit production, tests lower them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureOptions {
    /// Blobs per listing page; `None` = the service's default (5,000).
    pub list_page_size: Option<u32>,
    /// Where `useSDKCreds` finds its credential (default: no variable set, the managed
    /// identity).
    pub sdk_credentials: AzureSdkEnv,
}

/// One container of an Azure storage account.
pub struct AzureDriver {
    container: BlobContainerClient,
    /// The container URL without its SAS, for messages.
    location: String,
    list_page_size: Option<u32>,
    /// What to apply when an upload is committed (Put Block List sets a blob's properties).
    pending: Mutex<HashMap<String, PutOptions>>,
}

impl AzureDriver {
    /// Connects to the location's container as `settings.azure` says, with `settings`' timeouts.
    pub fn new(loc: &AzureArtifact, secrets: &Secrets, settings: &StorageConfig) -> Result<Self> {
        let container = config::container_client(loc, secrets, settings)?;
        let mut location: Url = container.url().clone();
        location.set_query(None);
        Ok(Self {
            container,
            location: location.to_string(),
            list_page_size: settings.azure.list_page_size,
            pending: Mutex::new(HashMap::new()),
        })
    }

    fn blob(&self, key: &str) -> BlobClient {
        self.container.blob_client(key)
    }

    /// One page of blobs below `prefix`, directory markers included or not.
    async fn list_page(
        &self,
        prefix: &str,
        marker: Option<String>,
        with_markers: bool,
    ) -> Result<ListPage> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(prefix.to_string()),
            marker,
            maxresults: self.list_page_size.map(|n| n.min(i32::MAX as u32) as i32),
            include: Some(vec![ListBlobsIncludeItem::Metadata]),
            ..Default::default()
        };
        let mut pages = self
            .container
            .list_blobs(Some(options))
            .map_err(|e| classify(e, prefix))?
            .into_pages();
        let Some(page) = pages.next().await else {
            return Ok(ListPage::default());
        };
        let page = page
            .map_err(|e| classify(e, prefix))?
            .into_model()
            .map_err(|e| classify(e, prefix))?;
        let objects = page
            .blob_items
            .into_iter()
            .filter_map(|item| {
                let metadata: std::collections::BTreeMap<String, String> = item
                    .metadata
                    .and_then(|m| m.values)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect();
                let is_marker = metadata
                    .get(FOLDER_MARKER)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                if is_marker && !with_markers {
                    return None;
                }
                let properties = item.properties.unwrap_or_default();
                Some(ObjectMeta {
                    key: item.name?,
                    size: properties.content_length.unwrap_or_default(),
                    etag: properties.etag.map(|e| e.to_string()),
                    metadata,
                    crc32c: None,
                })
            })
            .collect();
        Ok(ListPage {
            objects,
            next: page.next_marker.filter(|m| !m.is_empty()),
        })
    }

    /// Deletes one blob; an absent blob is not an error.
    async fn delete_blob(&self, name: &str) -> Result<()> {
        match self.blob(name).delete(None).await {
            Ok(_) => Ok(()),
            Err(e) => match classify(e, name) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }
}

impl std::fmt::Debug for AzureDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's URL carries the SAS: show the container without it.
        f.debug_struct("AzureDriver")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// A block id: the upload id and the part number, fixed-length as Azure requires.
fn block_id(upload_id: &str, number: u32) -> Vec<u8> {
    format!("{upload_id}-{number:06}").into_bytes()
}

/// An id no other upload of this blob is using.
fn new_upload_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", h.finish())
}

/// User metadata as Azure takes it: names must be C# identifiers, so `-` becomes `_`
/// (`argoexec-crc32c` is stored as `argoexec_crc32c`).
fn metadata_map(opts: &PutOptions) -> Option<HashMap<String, String>> {
    (!opts.metadata.is_empty()).then(|| {
        opts.metadata
            .iter()
            .map(|(k, v)| (k.replace('-', "_"), v.clone()))
            .collect()
    })
}

#[async_trait]
impl Driver for AzureDriver {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn describe(&self) -> String {
        self.location.clone()
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let response = self
            .blob(key)
            .get_properties(None)
            .await
            .map_err(|e| classify(e, key))?;
        let header = |e: azure_core::Error| classify(e, key);
        let mut meta = ObjectMeta {
            key: key.to_string(),
            size: response
                .content_length()
                .map_err(header)?
                .unwrap_or_default(),
            etag: response.etag().map_err(header)?.map(|e| e.to_string()),
            metadata: response
                .metadata()
                .map_err(header)?
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            crc32c: None,
        };
        meta.crc32c = meta.crc32c_from_metadata();
        Ok(meta)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetStream> {
        if range.as_ref().is_some_and(|r| r.is_empty()) {
            return Ok(GetStream::empty(self.head(key).await?));
        }
        // One request, streamed: the crate's parallel download is the pipeline's job here.
        let options = BlobClientDownloadOptions {
            range: range
                .as_ref()
                .map(|r| HttpRange::new(r.start, r.end - r.start)),
            parallel: Some(NonZero::<usize>::MIN),
            partition_size: NonZero::new(usize::MAX),
            ..Default::default()
        };
        let response = self
            .blob(key)
            .download(Some(options))
            .await
            .map_err(|e| classify(e, key))?;
        let headers = &response.headers;
        // With a range, the total size is after the '/' of Content-Range.
        let size = headers
            .get_optional_str(&"content-range".into())
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.parse().ok())
            .or(response.properties.content_length)
            .unwrap_or_default();
        let meta = ObjectMeta {
            key: key.to_string(),
            size,
            etag: response.properties.etag.as_ref().map(|e| e.to_string()),
            ..Default::default()
        };
        let owned = key.to_string();
        let body = response
            .body
            .map(move |chunk| chunk.map_err(|e| classify(e, &owned)))
            .boxed();
        Ok(GetStream { meta, body })
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<()> {
        let md5 = verify::md5_of(data.clone()).await?.to_vec();
        let options = BlockBlobClientUploadOptions {
            blob_content_md5: Some(md5.clone()),
            blob_content_type: opts.content_type.clone(),
            metadata: metadata_map(opts),
            parallel: Some(NonZero::<usize>::MIN),
            // One Put Blob request: the pipeline calls put only for objects of one part.
            partition_size: NonZero::new((data.len() as u64).max(1)),
            ..Default::default()
        };
        let result = self
            .blob(key)
            .upload(data.into(), Some(options))
            .await
            .map_err(|e| classify(e, key))?;
        // The service returns the MD5 it computed of what it stored.
        match result.content_md5 {
            Some(stored) if stored != md5 => Err(Error::backend(
                "azure",
                ErrorKind::Integrity,
                format!(
                    "{key} on {} is corrupt: server MD5 {}, sent {}",
                    self.location,
                    hex::encode(stored),
                    hex::encode(&md5)
                ),
            )),
            _ => Ok(()),
        }
    }

    async fn list(&self, prefix: &str, page: Option<String>) -> Result<ListPage> {
        self.list_page(prefix, page, false).await
    }

    /// Argo's dir-aware delete: every blob below `key/` (markers included), then `key`.
    async fn delete(&self, key: &str) -> Result<()> {
        let prefix = format!("{}/", key.trim_end_matches('/'));
        let mut marker = None;
        loop {
            let page = self.list_page(&prefix, marker, true).await?;
            for object in &page.objects {
                self.delete_blob(&object.key).await?;
            }
            marker = page.next;
            if marker.is_none() {
                break;
            }
        }
        self.delete_blob(key).await
    }

    fn multipart_limits(&self) -> Option<MultipartLimits> {
        Some(LIMITS)
    }

    async fn create_multipart(&self, _key: &str, opts: &PutOptions) -> Result<String> {
        let id = new_upload_id();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(id.clone(), opts.clone());
        }
        Ok(id)
    }

    async fn put_part(&self, key: &str, upload_id: &str, part: &Part) -> Result<PartReceipt> {
        // Blocks are staged from memory: this driver does not stream file parts.
        let PartBody::Memory(data) = &part.body else {
            return Err(self.no_multipart());
        };
        let md5 = verify::md5_of(data.clone()).await?.to_vec();
        let options = BlockBlobClientStageBlockOptions {
            transactional_content_md5: Some(md5),
            ..Default::default()
        };
        let response = self
            .blob(key)
            .block_blob_client()
            .stage_block(
                &block_id(upload_id, part.number),
                data.len() as u64,
                data.clone().into(),
                Some(options),
            )
            .await
            .map_err(|e| classify(e, key))?;
        let echoed = response
            .content_md5()
            .map_err(|e| classify(e, key))?
            .map(hex::encode);
        Ok(PartReceipt {
            number: part.number,
            // An MD5 as S3's part ETags are: storage::verify compares it with the part.
            etag: echoed.unwrap_or_default(),
            size: data.len() as u64,
            crc32c: part.crc32c,
            server_crc32c: None,
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartReceipt],
    ) -> Result<()> {
        let opts = self
            .pending
            .lock()
            .ok()
            .and_then(|p| p.get(upload_id).cloned())
            .unwrap_or_default();
        let mut numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
        numbers.sort_unstable();
        let blocks = BlockLookupList {
            latest: Some(numbers.iter().map(|&n| block_id(upload_id, n)).collect()),
            ..Default::default()
        };
        let options = BlockBlobClientCommitBlockListOptions {
            blob_content_type: opts.content_type.clone(),
            metadata: metadata_map(&opts),
            ..Default::default()
        };
        self.blob(key)
            .block_blob_client()
            .commit_block_list(
                blocks.try_into().map_err(|e| classify(e, key))?,
                Some(options),
            )
            .await
            .map_err(|e| classify(e, key))?;
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(upload_id);
        }
        Ok(())
    }

    /// Uncommitted blocks cannot be deleted; the service discards them (at the latest after a
    /// week, or when the blob is next committed), so there is nothing to call.
    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<()> {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(upload_id);
        }
        Ok(())
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartReceipt>> {
        let list = self
            .blob(key)
            .block_blob_client()
            .get_block_list(BlockListType::Uncommitted, None)
            .await
            .map_err(|e| classify(e, key))?
            .into_model()
            .map_err(|e| classify(e, key))?;
        let prefix = format!("{upload_id}-");
        let mut parts: Vec<PartReceipt> = list
            .uncommitted_blocks
            .unwrap_or_default()
            .into_iter()
            .filter_map(|block| {
                let name = String::from_utf8(block.name?).ok()?;
                let number = name.strip_prefix(&prefix)?.parse().ok()?;
                Some(PartReceipt {
                    number,
                    etag: String::new(),
                    size: block.size.unwrap_or_default().max(0) as u64,
                    crc32c: 0,
                    server_crc32c: None,
                })
            })
            .collect();
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }
}
