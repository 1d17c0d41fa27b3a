//! Archives built byte by byte for hostile-input tests: names and link targets are written
//! into the tar headers as they are, so `../`, absolute and other hostile values survive the
//! tar builder's own checks.

use std::io::Write;

use tar::EntryType;

/// One tar entry: name, type, data, link target.
pub type RawEntry<'a> = (&'a str, EntryType, &'a [u8], Option<&'a str>);

/// A tar of `entries`, each with mode 0644 (devices get 1:3, `/dev/null`'s numbers).
pub fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        if matches!(kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(1).expect("major");
            h.set_device_minor(3).expect("minor");
        }
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

/// `data` gzip-compressed.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}
