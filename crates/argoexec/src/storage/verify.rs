//! Per-part integrity: every stored part is checked against what was sent (by the retry
//! wrapper, [`super::retry::Retrying`], so a corrupt part is simply sent again), and a part an
//! interrupted upload left in the store is only reused when it provably holds the same bytes.
//!
//! The pipeline sends a CRC32C with each part. A server that verifies it echoes it back (or
//! lists it), and that is the proof. A server that does not (s3s-fs, older MinIO) still returns
//! the part's MD5 as its ETag, so the check hashes the part and compares. A server that does
//! neither (SSE-KMS, some gateways: the ETag is opaque) proves nothing: the part is accepted
//! unchecked, and [`Evidence::None`] lets the caller say so. A mismatch is an
//! [`ErrorKind::Integrity`] error: transient, so the retry wrapper re-sends that part only.
//!
//! MD5 of a multi-MiB part is CPU work: it runs on a blocking thread, never on an async worker.

use bytes::Bytes;
use md5::{Digest, Md5};

use super::{Error, ErrorKind, Part, PartBody, PartReceipt, Result};

/// What a server's answer about a stored part can prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The server checked or computed the part's CRC32C.
    Crc32c(u32),
    /// The ETag is the MD5 of the part's bytes.
    Md5([u8; 16]),
    /// No CRC32C, and an ETag that is not an MD5: nothing to check against.
    None,
}

impl Evidence {
    /// What `receipt` (an UploadPart answer or a ListParts entry) can prove.
    pub fn of(receipt: &PartReceipt) -> Self {
        if let Some(crc) = receipt.server_crc32c {
            return Self::Crc32c(crc);
        }
        md5_etag(&receipt.etag).map_or(Self::None, Self::Md5)
    }

    /// Whether `part` is the stored part this evidence describes: `Some(true)` or
    /// `Some(false)` when it can tell, `None` when it proves nothing.
    async fn matches(self, part: &Part) -> Result<Option<bool>> {
        Ok(match self {
            Self::Crc32c(crc) => Some(crc == part.crc32c),
            Self::Md5(md5) => Some(md5 == part_md5(part).await?),
            Self::None => None,
        })
    }
}

/// The MD5 an ETag spells, when it is one (not the `...-N` of a multipart object, not the
/// opaque ETag of SSE-KMS).
pub fn md5_etag(etag: &str) -> Option<[u8; 16]> {
    let mut md5 = [0u8; 16];
    hex::decode_to_slice(etag.trim_matches('"'), &mut md5).ok()?;
    Some(md5)
}

/// The ETag S3 gives the object `parts` complete into (the MD5 of the parts' MD5s, `-N`),
/// when every part's ETag is an MD5.
pub fn multipart_etag(parts: &[PartReceipt]) -> Option<String> {
    let mut all = Md5::new();
    for part in parts {
        all.update(md5_etag(&part.etag)?);
    }
    Some(format!("{}-{}", hex::encode(all.finalize()), parts.len()))
}

/// MD5 of `data`, computed on a blocking thread (8 MiB take ~15 ms of CPU).
pub async fn md5_of(data: Bytes) -> Result<[u8; 16]> {
    tokio::task::spawn_blocking(move || Md5::digest(&data).into())
        .await
        .map_err(|e| Error::io("hashing a part", std::io::Error::other(e)))
}

/// MD5 of a part's body, from memory or read back from its file, on a blocking thread.
async fn part_md5(part: &Part) -> Result<[u8; 16]> {
    match &part.body {
        PartBody::Memory(data) => md5_of(data.clone()).await,
        PartBody::File(range) => {
            let context = format!("reading {}", range.path.display());
            let range = range.clone();
            tokio::task::spawn_blocking(move || range.md5())
                .await
                .map_err(|e| Error::io("hashing a part", std::io::Error::other(e)))?
                .map_err(|e| Error::io(context, e))
        }
    }
}

/// Whether `receipt` proves the server stored exactly `part`. A receipt that proves nothing
/// passes ([`Evidence::None`]: the caller counts those).
pub async fn check_part(driver: &str, key: &str, part: &Part, receipt: &PartReceipt) -> Result<()> {
    let evidence = Evidence::of(receipt);
    if evidence.matches(part).await? != Some(false) {
        return Ok(());
    }
    let what = match evidence {
        Evidence::Crc32c(crc) => format!("server CRC32C {crc:08x}, sent {:08x}", part.crc32c),
        _ => format!(
            "server MD5 {}, sent {}",
            receipt.etag.trim_matches('"'),
            hex::encode(part_md5(part).await?)
        ),
    };
    Err(Error::backend(
        "verify",
        ErrorKind::Integrity,
        format!(
            "part {} of {key} on {driver} is corrupt: {what}",
            part.number
        ),
    ))
}

/// Whether `stored`, a part an earlier attempt left in the store, holds exactly the bytes of
/// the regenerated `part`: same number and size, and a CRC32C or MD5 that proves it.
pub async fn holds(stored: &PartReceipt, part: &Part) -> Result<bool> {
    if stored.number != part.number || stored.size != part.len() {
        return Ok(false);
    }
    Ok(Evidence::of(stored).matches(part).await? == Some(true))
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

    #[tokio::test]
    async fn crc_echo_or_md5_etag_proves_the_part() {
        let part = Part::new(1, Bytes::from_static(b"hello"));
        let md5 = hex::encode(Md5::digest(b"hello"));
        assert!(
            check_part("s3://b", "k", &part, &receipt(&md5, None))
                .await
                .is_ok()
        );
        let echoed = receipt("x", Some(part.crc32c));
        assert!(check_part("s3://b", "k", &part, &echoed).await.is_ok());
        // An ETag that is not an MD5 (SSE-KMS) proves nothing: accepted, and said so.
        let opaque = receipt("abc-1", None);
        assert!(check_part("s3://b", "k", &part, &opaque).await.is_ok());
        assert_eq!(Evidence::of(&opaque), Evidence::None);
    }

    #[tokio::test]
    async fn a_corrupt_part_is_a_transient_integrity_error_naming_the_part() {
        let part = Part::new(3, Bytes::from_static(b"hello"));
        let bad = hex::encode(Md5::digest(b"hellO"));
        let e = check_part("s3://b", "k", &part, &receipt(&bad, None))
            .await
            .expect_err("mismatch");
        assert_eq!(e.kind(), Some(ErrorKind::Integrity));
        assert!(e.is_transient());
        assert!(e.to_string().contains("part 3 of k"), "{e}");
        let e = check_part("s3://b", "k", &part, &receipt("x", Some(part.crc32c ^ 1)))
            .await
            .expect_err("crc mismatch");
        assert!(e.to_string().contains("CRC32C"), "{e}");
    }

    #[tokio::test]
    async fn a_stored_part_is_reused_only_when_size_and_checksum_prove_it() {
        let part = Part::new(1, Bytes::from_static(b"hello"));
        let md5 = hex::encode(Md5::digest(b"hello"));
        assert!(holds(&receipt(&md5, None), &part).await.expect("md5"));
        assert!(
            holds(&receipt("", Some(part.crc32c)), &part)
                .await
                .expect("crc")
        );
        let other = hex::encode(Md5::digest(b"hellO"));
        assert!(!holds(&receipt(&other, None), &part).await.expect("changed"));
        assert!(
            !holds(&receipt("opaque-1", None), &part)
                .await
                .expect("unprovable")
        );
        let longer = PartReceipt {
            size: 6,
            ..receipt(&md5, None)
        };
        assert!(!holds(&longer, &part).await.expect("size"));
    }

    #[test]
    fn the_multipart_etag_is_the_md5_of_the_part_md5s() {
        let (a, b) = (Md5::digest(b"a"), Md5::digest(b"b"));
        let parts = [
            receipt(&hex::encode(a), None),
            receipt(&hex::encode(b), None),
        ];
        let whole = Md5::digest([a.as_slice(), b.as_slice()].concat());
        let expected = format!("{}-2", hex::encode(whole));
        assert_eq!(multipart_etag(&parts), Some(expected));
        assert_eq!(multipart_etag(&[receipt("opaque", None)]), None);
    }
}
