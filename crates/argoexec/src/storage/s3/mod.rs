//! S3 and S3-compatible stores (AWS, MinIO, Ceph, R2, s3s) on `aws-sdk-s3`.

use std::ops::Range;

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{
    BucketLocationConstraint, ChecksumAlgorithm, ChecksumMode, ChecksumType,
    CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration, ServerSideEncryption,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::StreamExt;

use super::{
    Driver, Error, ErrorKind, GetStream, ListPage, MultipartLimits, ObjectMeta, Part, PartBody,
    PartReceipt, PendingUpload, PutOptions, Result, Secrets, StorageConfig, cause_chain, verify,
};
use crate::model::S3Artifact;
use crate::storage::file_range::READ_BLOCK;
use crate::storage::timeouts::Timeouts;
use aws_smithy_types::byte_stream::Length;

mod config;
mod error;

/// Listing pages read at most when looking for an interrupted upload of one key (1,000
/// uploads a page on S3): a bucket flooded with abandoned uploads of that key cannot stall
/// the upload that looks.
const PENDING_UPLOAD_PAGES: usize = 10;
/// ListParts pages read at most: 10,000 parts at S3's 1,000 a page.
const PART_PAGES: usize = 10;

pub use config::Endpoint;
use error::classify;

/// Server-side encryption to request on writes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Encryption {
    None,
    /// SSE-S3 (`AES256`).
    S3Managed,
    /// SSE-KMS with a key id and an optional JSON context (sent base64-encoded).
    Kms {
        key_id: String,
        context: Option<String>,
    },
}

/// One bucket of an S3-compatible store.
#[derive(Debug)]
pub struct S3Driver {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Where the bucket is, for error messages: `s3://bucket` on AWS, else the endpoint's URL
    /// of it (which server failed matters there; [`Driver::describe`] stays `s3://bucket`).
    located: String,
    encryption: Encryption,
    /// Ask the server to verify and keep a whole-object CRC32C on multipart uploads (S3's
    /// `FULL_OBJECT` checksums): [`StorageConfig::s3_full_object_checksum`].
    full_object_checksum: bool,
    /// Keys per listing page; `None` = the server's default (1,000 on S3).
    list_page_size: Option<i32>,
}

impl S3Driver {
    /// A failure of the request `op` on `key`, named with where it happened (`head
    /// http://127.0.0.1:9000/bucket/key: <cause>`), so the message says where whatever the
    /// caller adds around it.
    fn failed<E, R>(&self, op: &str, key: &str, err: SdkError<E, R>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + error::HttpStatus + 'static,
    {
        let at = match key.trim_start_matches('/') {
            "" => self.located.clone(),
            k => format!("{}/{k}", self.located),
        };
        match classify(err, key) {
            e @ Error::Backend { .. } => e.detail(format!("{op} {at}")),
            other => other,
        }
    }

    /// Connects to the location's bucket as `settings` say, creating it first when
    /// `createBucketIfNotPresent` asks (an existing bucket is fine).
    pub async fn new(
        loc: &S3Artifact,
        secrets: &Secrets,
        settings: &StorageConfig,
    ) -> Result<Self> {
        // Argo reads the secrets as it builds the driver, and says a failure as it is; only
        // the client it makes later is `failed to create new S3 client`.
        for selector in [
            &loc.access_key_secret,
            &loc.secret_key_secret,
            &loc.session_token_secret,
            &loc.ca_secret,
        ] {
            secrets.read_opt(selector.as_ref())?;
        }
        let encryption = Self::encryption(loc)?;
        let client = config::client(loc, secrets, settings.timeouts.over(Timeouts::OBJECT_STORE))
            .await
            .map_err(|e| e.context("failed to create new S3 client"))?;
        Self::connect(loc, client, encryption, settings).await
    }

    /// As [`S3Driver::new`], with credentials the caller resolved (S3-compatible services with
    /// their own credential rules, such as OSS).
    pub(crate) async fn with_credentials(
        loc: &S3Artifact,
        secrets: &Secrets,
        credentials: aws_sdk_s3::config::SharedCredentialsProvider,
        settings: &StorageConfig,
    ) -> Result<Self> {
        let encryption = Self::encryption(loc)?;
        let timeouts = settings.timeouts.over(Timeouts::OBJECT_STORE);
        let client = aws_sdk_s3::Client::from_conf(
            config::builder(loc, secrets, timeouts)?
                .credentials_provider(credentials)
                .build(),
        );
        Self::connect(loc, client, encryption, settings).await
    }

    /// Replaces the bucket's lifecycle configuration. Sent with Content-MD5, which OSS
    /// requires for it (S3 takes either that or the SDK's checksum header).
    pub(crate) async fn put_lifecycle(
        &self,
        configuration: aws_sdk_s3::types::BucketLifecycleConfiguration,
    ) -> Result<()> {
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(configuration)
            .customize()
            .mutate_request(|request| {
                if let Some(body) = request.body().bytes() {
                    let md5 = B64.encode(<md5::Md5 as md5::Digest>::digest(body));
                    request.headers_mut().insert("Content-MD5", md5);
                }
            })
            .send()
            .await
            .map_err(|e| self.failed("put bucket lifecycle of", "", e))?;
        Ok(())
    }

    /// The server-side encryption the location asks for.
    fn encryption(loc: &S3Artifact) -> Result<Encryption> {
        if loc.bucket.is_empty() {
            return Err(Error::config("the S3 location has no bucket"));
        }
        let enc = loc.encryption_options.clone().unwrap_or_default();
        if enc
            .server_side_customer_key_secret
            .as_ref()
            .is_some_and(|s| s.is_set())
        {
            if !enc.kms_key_id.is_empty() {
                return Err(Error::config(
                    "serverSideCustomerKeySecret and kmsKeyId cannot be set together",
                ));
            }
            if loc.insecure == Some(true) {
                // Argo's client refuses it; a request that can never be right.
                return Err(Error::backend(
                    "s3",
                    ErrorKind::Request,
                    "secure must be set if EncryptOpts.SSECPassword is set",
                )
                .context("failed to create new S3 client"));
            }
            if enc.enable_encryption {
                return Err(Error::not_supported(
                    "s3",
                    "SSE-C (serverSideCustomerKeySecret) is not supported yet",
                ));
            }
        }
        let encryption = match (enc.enable_encryption, enc.kms_key_id.is_empty()) {
            (false, _) => Encryption::None,
            (true, true) => Encryption::S3Managed,
            (true, false) => Encryption::Kms {
                key_id: enc.kms_key_id.clone(),
                context: (!enc.kms_encryption_context.is_empty())
                    .then(|| B64.encode(enc.kms_encryption_context.as_bytes())),
            },
        };
        Ok(encryption)
    }

    async fn connect(
        loc: &S3Artifact,
        client: aws_sdk_s3::Client,
        encryption: Encryption,
        settings: &StorageConfig,
    ) -> Result<Self> {
        let endpoint = Endpoint::from_location(loc);
        let full_object_checksum = settings
            .s3_full_object_checksum
            .unwrap_or_else(|| endpoint.is_aws());
        // Scheme, host and port only: an endpoint URL could carry user info.
        let located = match endpoint.url.as_deref().map(url::Url::parse) {
            Some(Ok(url)) if !endpoint.is_aws() => format!(
                "{}://{}/{}",
                url.scheme(),
                &url[url::Position::BeforeHost..url::Position::AfterPort],
                loc.bucket
            ),
            _ => format!("s3://{}", loc.bucket),
        };
        let driver = Self {
            client,
            bucket: loc.bucket.clone(),
            located,
            encryption,
            full_object_checksum,
            list_page_size: None,
        };
        if let Some(opts) = &loc.create_bucket_if_not_present {
            driver
                .create_bucket(&Endpoint::from_location(loc).region, opts.object_locking)
                .await
                .map_err(|e| e.context(format!("failed to create bucket {}", loc.bucket)))?;
        }
        Ok(driver)
    }

    /// Lists `n` keys per page (tests force paging with it).
    pub fn with_list_page_size(mut self, n: i32) -> Self {
        self.list_page_size = Some(n);
        self
    }

    async fn create_bucket(&self, region: &str, object_locking: bool) -> Result<()> {
        let mut req = self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .object_lock_enabled_for_bucket(object_locking);
        if region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_bucket_already_exists() || s.is_bucket_already_owned_by_you()
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(self.failed("create bucket", "", e)),
        }
    }

    fn ranged(range: &Option<Range<u64>>) -> Option<String> {
        range
            .as_ref()
            .map(|r| format!("bytes={}-{}", r.start, r.end.saturating_sub(1)))
    }
}

fn metadata_of(
    m: Option<&std::collections::HashMap<String, String>>,
) -> std::collections::BTreeMap<String, String> {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    })
    .unwrap_or_default()
}

fn etag_of(e: Option<&str>) -> Option<String> {
    e.map(|e| e.trim_matches('"').to_string())
}

/// A base64 CRC32C header value; composite (`...-N`) values are not whole-object CRCs.
fn decode_crc(b64: &str) -> Option<u32> {
    let bytes = B64.decode(b64).ok()?;
    <[u8; 4]>::try_from(bytes.as_slice())
        .ok()
        .map(u32::from_be_bytes)
}

fn encode_crc(crc: u32) -> String {
    B64.encode(crc.to_be_bytes())
}

/// The whole-object CRC32C of a head or get: S3's own full-object checksum, else ours.
fn whole_crc(
    checksum: Option<&str>,
    kind: Option<&ChecksumType>,
    meta: &ObjectMeta,
) -> Option<u32> {
    let full = matches!(kind, None | Some(ChecksumType::FullObject));
    checksum
        .filter(|_| full)
        .and_then(decode_crc)
        .or_else(|| meta.crc32c_from_metadata())
}

/// Applies the configured encryption to a write request builder.
macro_rules! with_encryption {
    ($req:expr, $enc:expr) => {
        match $enc {
            Encryption::None => $req,
            Encryption::S3Managed => $req.server_side_encryption(ServerSideEncryption::Aes256),
            Encryption::Kms { key_id, context } => $req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(key_id)
                .set_ssekms_encryption_context(context.clone()),
        }
    };
}

#[async_trait]
impl Driver for S3Driver {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| self.failed("head", key, e))?;
        let mut meta = ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or_default().max(0) as u64,
            etag: etag_of(out.e_tag()),
            metadata: metadata_of(out.metadata()),
            crc32c: None,
        };
        meta.crc32c = whole_crc(out.checksum_crc32_c(), out.checksum_type(), &meta);
        Ok(meta)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetStream> {
        if range.as_ref().is_some_and(|r| r.is_empty()) {
            return Ok(GetStream::empty(self.head(key).await?));
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(Self::ranged(&range))
            .send()
            .await
            .map_err(|e| self.failed("get", key, e))?;
        // With a range, the total size is after the '/' of Content-Range.
        let size = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or(out.content_length().unwrap_or_default().max(0) as u64);
        let mut meta = ObjectMeta {
            key: key.to_string(),
            size,
            etag: etag_of(out.e_tag()),
            metadata: metadata_of(out.metadata()),
            crc32c: None,
        };
        // Only a read of the whole object can be checked against its CRC32C.
        if range.as_ref().is_none_or(|r| r.start == 0 && r.end >= size) {
            meta.crc32c = meta.crc32c_from_metadata();
        }
        let at = format!("get {}/{}", self.located, key.trim_start_matches('/'));
        let body = futures::stream::unfold(Some(out.body), |body| async move {
            let mut body = body?;
            match body.next().await {
                Some(Ok(b)) => Some((Ok(b), Some(body))),
                Some(Err(e)) => Some((
                    Err(Error::backend(
                        "s3",
                        ErrorKind::Network,
                        format!("reading the response body failed: {}", cause_chain(&e)),
                    )),
                    None,
                )),
                None => None,
            }
        })
        .map(move |r| r.map_err(|e| e.context(&at)))
        .boxed();
        Ok(GetStream { meta, body })
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<()> {
        let md5 = B64.encode(verify::md5_of(data.clone()).await?);
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_md5(md5)
            .checksum_crc32_c(encode_crc(crc32c::crc32c(&data)))
            .set_content_type(opts.content_type.clone())
            .set_metadata(Some(opts.metadata.clone().into_iter().collect()))
            .body(SdkBody::from(data));
        with_encryption!(req, &self.encryption)
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.failed("put", key, e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str, page: Option<String>) -> Result<ListPage> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_max_keys(self.list_page_size)
            .set_continuation_token(page)
            .send()
            .await
            .map_err(|e| self.failed("list", prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or_default().max(0) as u64,
                    etag: etag_of(o.e_tag()),
                    ..Default::default()
                })
            })
            .collect();
        let next = out
            .is_truncated()
            .unwrap_or(false)
            .then(|| out.next_continuation_token().map(str::to_string))
            .flatten();
        Ok(ListPage { objects, next })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.failed("delete", key, e))?;
        Ok(())
    }

    fn multipart_limits(&self) -> Option<MultipartLimits> {
        Some(MultipartLimits::S3)
    }

    fn streams_file_parts(&self) -> bool {
        true
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> Result<String> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(opts.content_type.clone())
            .set_metadata(Some(opts.metadata.clone().into_iter().collect()));
        if self.full_object_checksum {
            req = req
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .checksum_type(ChecksumType::FullObject);
        }
        let out = with_encryption!(req, &self.encryption)
            .send()
            .await
            .map_err(|e| self.failed("create multipart upload", key, e))?;
        out.upload_id().map(str::to_string).ok_or_else(|| {
            Error::backend(
                "s3",
                ErrorKind::Server,
                "CreateMultipartUpload returned no upload id",
            )
        })
    }

    async fn put_part(&self, key: &str, upload_id: &str, part: &Part) -> Result<PartReceipt> {
        let body = match &part.body {
            PartBody::Memory(data) => SdkBody::from(data.clone()),
            // Re-read from the file on every attempt, a block at a time.
            PartBody::File(range) => SdkBody::read_from()
                .path(&range.path)
                .offset(range.offset)
                .length(Length::Exact(range.len))
                .buffer_size(READ_BLOCK)
                .build()
                .await
                .map_err(|e| {
                    Error::io(
                        format!("reading part {} of {key}", part.number),
                        std::io::Error::other(e),
                    )
                })?,
        };
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part.number as i32)
            .checksum_crc32_c(encode_crc(part.crc32c))
            .body(body)
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.failed("upload part", key, e))?;
        let server_crc32c = out.checksum_crc32_c().and_then(decode_crc);
        Ok(PartReceipt {
            number: part.number,
            etag: etag_of(out.e_tag()).unwrap_or_default(),
            size: part.len(),
            crc32c: part.crc32c,
            server_crc32c,
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartReceipt],
    ) -> Result<()> {
        let full = self.full_object_checksum;
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        let part = CompletedPart::builder()
                            .part_number(p.number as i32)
                            .e_tag(format!("\"{}\"", p.etag));
                        if full {
                            part.checksum_crc32_c(encode_crc(p.crc32c)).build()
                        } else {
                            part.build()
                        }
                    })
                    .collect(),
            ))
            .build();
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed);
        if full {
            let whole = parts.iter().fold(0u32, |acc, p| {
                crc32c::crc32c_combine(acc, p.crc32c, p.size as usize)
            });
            req = req
                .checksum_crc32_c(encode_crc(whole))
                .checksum_type(ChecksumType::FullObject);
        }
        req.send()
            .await
            .map_err(|e| self.failed("complete multipart upload", key, e))?;
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| self.failed("abort multipart upload", key, e))?;
        Ok(())
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartReceipt>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..PART_PAGES {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| self.failed("list parts", key, e))?;
            out.extend(page.parts().iter().filter_map(|p| {
                let listed_crc = p.checksum_crc32_c().and_then(decode_crc);
                Some(PartReceipt {
                    number: u32::try_from(p.part_number()?).ok()?,
                    // Some servers (s3s-fs) list parts without ETags: keep the part anyway.
                    etag: etag_of(p.e_tag()).unwrap_or_default(),
                    size: p.size().unwrap_or_default().max(0) as u64,
                    crc32c: listed_crc.unwrap_or(0),
                    server_crc32c: listed_crc,
                })
            }));
            if !page.is_truncated().unwrap_or(false) {
                break;
            }
            marker = page.next_part_number_marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
        out.sort_by_key(|p| p.number);
        Ok(out)
    }

    /// ListMultipartUploads with the key as prefix, keeping exact matches only (S3 lists a
    /// key's uploads oldest first, so the newest is last).
    async fn pending_uploads(&self, key: &str) -> Result<Vec<PendingUpload>> {
        let mut found = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        for _ in 0..PENDING_UPLOAD_PAGES {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take())
                .send()
                .await
                .map_err(|e| self.failed("list multipart uploads", key, e))?;
            found.extend(
                page.uploads()
                    .iter()
                    .filter(|u| u.key() == Some(key))
                    .filter_map(|u| {
                        Some(PendingUpload {
                            upload_id: u.upload_id()?.to_string(),
                            initiated: u
                                .initiated()
                                .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                        })
                    }),
            );
            markers = (
                page.next_key_marker().map(str::to_string),
                page.next_upload_id_marker().map(str::to_string),
            );
            if !page.is_truncated().unwrap_or(false) || markers.0.is_none() {
                break;
            }
        }
        found.reverse();
        // Stable: uploads without a start time keep the listing's order.
        found.sort_by_key(|u| std::cmp::Reverse(u.initiated));
        Ok(found)
    }
}
