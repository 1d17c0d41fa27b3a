//! Per-part integrity as a wrapper: every stored part is checked against what was sent.
//!
//! The pipeline sends a CRC32C with each part. A server that verifies it echoes it back, and
//! that echo is the proof. A server that does not (s3s-fs, older MinIO) still returns the part's
//! MD5 as its ETag, so the wrapper hashes the part and compares. A mismatch is an
//! [`ErrorKind::Integrity`] error: transient, so the retry wrapper above re-sends that part only.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use md5::{Digest, Md5};

use super::{
    ByteStream, Driver, Error, ErrorKind, GetStream, ListPage, MultipartLimits, ObjectMeta, Part,
    PartReceipt, PutOptions, Result,
};

/// Checks each stored part against the bytes sent.
#[derive(Debug)]
pub struct Verified {
    inner: Arc<dyn Driver>,
}

impl Verified {
    pub fn new(inner: Arc<dyn Driver>) -> Self {
        Self { inner }
    }
}

/// Whether `receipt` proves the server stored exactly `part`.
pub fn check_part(driver: &str, key: &str, part: &Part, receipt: &PartReceipt) -> Result<()> {
    let mismatch = |what: String| {
        Err(Error::backend(
            "verify",
            ErrorKind::Integrity,
            format!(
                "part {} of {key} on {driver} is corrupt: {what}",
                part.number
            ),
        ))
    };
    if let Some(crc) = receipt.server_crc32c {
        if crc != part.crc32c {
            return mismatch(format!("server CRC32C {crc:08x}, sent {:08x}", part.crc32c));
        }
        return Ok(());
    }
    let etag = receipt.etag.trim_matches('"');
    if etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        let md5 = hex::encode(Md5::digest(&part.data));
        if !etag.eq_ignore_ascii_case(&md5) {
            return mismatch(format!("server MD5 {etag}, sent {md5}"));
        }
    }
    Ok(())
}

#[async_trait]
impl Driver for Verified {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn retry_count(&self) -> u64 {
        self.inner.retry_count()
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }

    fn serves_ranges(&self, key: &str) -> bool {
        self.inner.serves_ranges(key)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetStream> {
        self.inner.get(key, range).await
    }

    async fn get_bytes(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.inner.get_bytes(key, range).await
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<()> {
        self.inner.put(key, data, opts).await
    }

    async fn put_stream(&self, key: &str, body: ByteStream, opts: &PutOptions) -> Result<()> {
        self.inner.put_stream(key, body, opts).await
    }

    async fn list(&self, prefix: &str, page: Option<String>) -> Result<ListPage> {
        self.inner.list(prefix, page).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }

    fn multipart_limits(&self) -> Option<MultipartLimits> {
        self.inner.multipart_limits()
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> Result<String> {
        self.inner.create_multipart(key, opts).await
    }

    async fn put_part(&self, key: &str, upload_id: &str, part: &Part) -> Result<PartReceipt> {
        let receipt = self.inner.put_part(key, upload_id, part).await?;
        check_part(&self.inner.describe(), key, part, &receipt)?;
        Ok(receipt)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartReceipt],
    ) -> Result<()> {
        self.inner.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartReceipt>> {
        self.inner.list_parts(key, upload_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(etag: &str, crc: Option<u32>) -> PartReceipt {
        PartReceipt {
            number: 1,
            etag: etag.into(),
            size: 5,
            crc32c: 0,
            server_crc32c: crc,
        }
    }

    #[test]
    fn crc_echo_or_md5_etag_proves_the_part() {
        let part = Part::new(1, Bytes::from_static(b"hello"));
        let md5 = hex::encode(Md5::digest(b"hello"));
        assert!(check_part("s3://b", "k", &part, &receipt(&md5, None)).is_ok());
        assert!(check_part("s3://b", "k", &part, &receipt("x", Some(part.crc32c))).is_ok());
        // An ETag that is not an MD5 (SSE-KMS) proves nothing and is accepted.
        assert!(check_part("s3://b", "k", &part, &receipt("abc-1", None)).is_ok());
    }

    #[test]
    fn a_corrupt_part_is_a_transient_integrity_error_naming_the_part() {
        let part = Part::new(3, Bytes::from_static(b"hello"));
        let bad = hex::encode(Md5::digest(b"hellO"));
        let e = check_part("s3://b", "k", &part, &receipt(&bad, None)).expect_err("mismatch");
        assert_eq!(e.kind(), Some(ErrorKind::Integrity));
        assert!(e.is_transient());
        assert!(e.to_string().contains("part 3 of k"), "{e}");
        let e = check_part("s3://b", "k", &part, &receipt("x", Some(part.crc32c ^ 1)))
            .expect_err("crc mismatch");
        assert!(e.to_string().contains("CRC32C"), "{e}");
    }
}
