//! Tuning knobs of the transfer engine, from the environment. Each knob's memory cost is stated
//! in the README's configuration table; this is the one place they are read.

use crate::archive::gzip;

const MIB: u64 = 1 << 20;

/// How the engine moves bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferConfig {
    /// Size of the first parts of a multipart upload (bigger objects get bigger parts).
    pub part_size: u64,
    /// Parts uploaded at once per object, and ranged reads in flight per download: fixed
    /// when configured, else where the adaptive controller starts ([`super::adaptive`]).
    pub concurrency: usize,
    /// How far the adaptive controller may raise `concurrency`; `None` when it was configured
    /// (then it is a hard cap).
    pub adaptive_ceiling: Option<usize>,
    /// Files moved at once for `archive: none` directories and key-as-directory loads.
    pub file_concurrency: usize,
    /// Threads compressing gzip blocks.
    pub gzip_threads: usize,
    /// Bytes per ranged read when downloading; `concurrency + 2` of them are held at most.
    pub download_chunk: u64,
    /// Overrides the backend's maximum part count (tests of the >10,000-part sizing).
    pub max_parts_override: Option<u32>,
    /// Upper bound of the bytes an archive may unpack to (decompression bombs).
    pub max_unpacked_bytes: Option<u64>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            part_size: 8 * MIB,
            concurrency: 4,
            adaptive_ceiling: Some(8),
            file_concurrency: 16,
            gzip_threads: gzip::default_threads(),
            download_chunk: 4 * MIB,
            max_parts_override: None,
            max_unpacked_bytes: None,
        }
    }
}

impl TransferConfig {
    /// Defaults overridden by `ARGOEXEC_*` variables, and by Argo's own
    /// `ARTIFACT_S3_UPLOAD_THREADS` / `ARTIFACT_S3_UPLOAD_PART_SIZE_MIB` when ours are unset.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// As [`TransferConfig::from_env`], reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<u64>().ok());
        let mut c = Self::default();
        if let Some(mib) = num("ARGOEXEC_PART_SIZE_MIB")
            .or_else(|| num("ARTIFACT_S3_UPLOAD_PART_SIZE_MIB").filter(|m| (5..=5120).contains(m)))
        {
            c.part_size = mib.max(1) * MIB;
        }
        if let Some(n) = num("ARGOEXEC_CONCURRENCY").or_else(|| num("ARTIFACT_S3_UPLOAD_THREADS")) {
            c.concurrency = n.clamp(1, 256) as usize;
            c.adaptive_ceiling = None;
        } else if let Some(n) = num("ARGOEXEC_CONCURRENCY_MAX") {
            c.adaptive_ceiling = Some((n as usize).clamp(c.concurrency, 256));
        }
        if let Some(n) = num("ARGOEXEC_FILE_CONCURRENCY") {
            c.file_concurrency = n.clamp(1, 1024) as usize;
        }
        if let Some(n) = num("ARGOEXEC_GZIP_THREADS") {
            c.gzip_threads = n.clamp(1, 64) as usize;
        }
        if let Some(mib) = num("ARGOEXEC_DOWNLOAD_CHUNK_MIB") {
            c.download_chunk = mib.max(1) * MIB;
        }
        c.max_parts_override = num("ARGOEXEC_MAX_PARTS").map(|n| n.clamp(1, 10_000) as u32);
        c.max_unpacked_bytes = num("ARGOEXEC_MAX_UNPACKED_BYTES").filter(|&n| n > 0);
        c
    }

    /// Bytes of buffers held at most across every upload of the process: the part buffers in
    /// flight and the one being filled, and the blocks of one gzip pipeline.
    pub fn upload_budget(&self) -> u64 {
        self.part_size * (self.concurrency as u64 + 1) + gzip::pipeline_bytes(self.gzip_threads)
    }

    /// The most requests of one object in flight: the adaptive ceiling, or the fixed value.
    pub fn max_concurrency(&self) -> usize {
        self.adaptive_ceiling.unwrap_or(self.concurrency)
    }

    /// Bytes of downloaded chunks held at most, across every download of the process: the
    /// most reads in flight plus two being handed to the unpacker.
    pub fn download_budget(&self) -> u64 {
        self.download_chunk * (self.max_concurrency() as u64 + 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn argo_knobs_apply_when_ours_are_unset() {
        let env: HashMap<&str, &str> = [
            ("ARTIFACT_S3_UPLOAD_THREADS", "7"),
            ("ARTIFACT_S3_UPLOAD_PART_SIZE_MIB", "16"),
        ]
        .into();
        let c = TransferConfig::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!((c.concurrency, c.part_size), (7, 16 * MIB));

        // Argo ignores part sizes outside 5..=5120 MiB.
        let env: HashMap<&str, &str> = [("ARTIFACT_S3_UPLOAD_PART_SIZE_MIB", "2")].into();
        let c = TransferConfig::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!(c.part_size, 8 * MIB);

        let env: HashMap<&str, &str> = [
            ("ARGOEXEC_CONCURRENCY", "2"),
            ("ARTIFACT_S3_UPLOAD_THREADS", "7"),
            ("ARGOEXEC_MAX_PARTS", "12"),
        ]
        .into();
        let c = TransferConfig::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!((c.concurrency, c.max_parts_override), (2, Some(12)));
    }

    #[test]
    fn a_configured_concurrency_is_fixed_and_an_unset_one_adapts_up_to_its_ceiling() {
        let c = TransferConfig::from_lookup(|_| None);
        assert_eq!((c.concurrency, c.max_concurrency()), (4, 8));
        let env: HashMap<&str, &str> = [("ARGOEXEC_CONCURRENCY_MAX", "20")].into();
        let c = TransferConfig::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!((c.concurrency, c.max_concurrency()), (4, 20));
        let env: HashMap<&str, &str> = [
            ("ARGOEXEC_CONCURRENCY", "6"),
            ("ARGOEXEC_CONCURRENCY_MAX", "20"),
        ]
        .into();
        let c = TransferConfig::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!((c.concurrency, c.max_concurrency()), (6, 6));
    }
}
