//! Per-part integrity: every stored part is checked against what was sent (by the retry
//! wrapper, [`super::retry::Retrying`], so a corrupt part is simply sent again).
//!
//! The pipeline sends a CRC32C with each part. A server that verifies it echoes it back, and
//! that echo is the proof. A server that does not (s3s-fs, older MinIO) still returns the part's
//! MD5 as its ETag, so the check hashes the part and compares. A mismatch is an
//! [`ErrorKind::Integrity`] error: transient, so the retry wrapper re-sends that part only.

use md5::{Digest, Md5};

use super::{Error, ErrorKind, Part, PartReceipt, Result};

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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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
