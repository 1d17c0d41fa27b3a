//! Tuning knobs of the transfer engine, passed in by the caller. Each knob's default and memory
//! cost is on its field; [`TransferConfig::from_env`] is the executor binary's reader.

use std::time::Duration;

use crate::archive::gzip;
use crate::storage::StorageConfig;

const MIB: u64 = 1 << 20;

/// A container memory limit at or below this gets the small-pod defaults
/// ([`TransferConfig::from_lookup_within`]).
pub const SMALL_POD_MEMORY: u64 = 96 * MIB;

/// How the engine moves bytes, and how the drivers it opens are tuned.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferConfig {
    /// Size of the first parts of a multipart upload (bigger objects get bigger parts).
    /// Default 8 MiB (`ARGOEXEC_PART_SIZE_MIB`); memory: `concurrency + 1` of them at most,
    /// see [`TransferConfig::upload_budget`].
    pub part_size: u64,
    /// Parts uploaded at once per object, and ranged reads in flight per download: fixed
    /// when configured, else where the adaptive controller starts ([`super::adaptive`]).
    /// Default 4 (`ARGOEXEC_CONCURRENCY`); memory: one part buffer or download chunk each.
    pub concurrency: usize,
    /// How far the adaptive controller may raise `concurrency`; `None` when it was configured
    /// (then it is a hard cap). Default 32 (`ARGOEXEC_CONCURRENCY_MAX`): enough connections to
    /// fill a link whose connections are each slow; memory: one download chunk each (uploads
    /// stay within their own budget).
    pub adaptive_ceiling: Option<usize>,
    /// Files moved at once for `archive: none` directories and key-as-directory loads: fixed
    /// when configured, else where the adaptive controller starts (one controller per
    /// directory). Default 16 (`ARGOEXEC_FILE_CONCURRENCY`); memory: within the shared
    /// budgets, one open file each.
    pub file_concurrency: usize,
    /// How far the adaptive controller may raise `file_concurrency`; `None` when it was
    /// configured (then it is a hard cap). Default 64 (`ARGOEXEC_FILE_CONCURRENCY_MAX`): small
    /// files are bound by request round trips, so a link with latency needs many in flight;
    /// memory: within the shared budgets, one open file and connection each.
    pub file_concurrency_ceiling: Option<usize>,
    /// Threads compressing gzip blocks. Default one per CPU (`ARGOEXEC_GZIP_THREADS`); memory:
    /// see `gzip::pipeline_bytes`.
    pub gzip_threads: usize,
    /// Bytes per ranged read when downloading; `concurrency + 2` of them are held at most.
    /// Default 1 MiB (`ARGOEXEC_DOWNLOAD_CHUNK_MIB`): small enough that the adaptive ceiling's
    /// reads in flight fit 34 MiB. On a link of 40 MiB/s and 20 ms per connection, 32 reads of
    /// 1 MiB filled 400 MiB/s where 16 of 2 MiB (the same memory) moved 310-340.
    pub download_chunk: u64,
    /// Whether downloaded files are written past the page cache (`O_DIRECT`) where the
    /// filesystem allows it, see [`super::local_file`]. Default on (`ARGOEXEC_DIRECT_WRITES`,
    /// `false` or `0` = off); no memory cost, and it saves the page cache's copy: 1.5-4
    /// CPU-seconds per GiB measured, and the dirty pages a small pod's memory limit counts.
    pub direct_writes: bool,
    /// Overrides the backend's maximum part count (tests of the >10,000-part sizing).
    /// Default none (`ARGOEXEC_MAX_PARTS`).
    pub max_parts_override: Option<u32>,
    /// Upper bound of the bytes an archive may unpack to (decompression bombs). Default none
    /// (`ARGOEXEC_MAX_UNPACKED_BYTES`).
    pub max_unpacked_bytes: Option<u64>,
    /// Time between progress lines of a long transfer; `None` logs none. Default 5 s
    /// (`ARGOEXEC_PROGRESS_SECONDS`, 0 = off). No memory cost.
    pub progress_interval: Option<Duration>,
    /// How the drivers the engine opens connect, retry and check.
    pub storage: StorageConfig,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            part_size: 8 * MIB,
            concurrency: 4,
            adaptive_ceiling: Some(32),
            file_concurrency: 16,
            file_concurrency_ceiling: Some(64),
            gzip_threads: gzip::default_threads(),
            download_chunk: MIB,
            direct_writes: true,
            max_parts_override: None,
            max_unpacked_bytes: None,
            progress_interval: Some(Duration::from_secs(5)),
            storage: StorageConfig::default(),
        }
    }
}

impl TransferConfig {
    /// Defaults overridden by `ARGOEXEC_*` variables, and by Argo's own
    /// `ARTIFACT_S3_UPLOAD_THREADS` / `ARTIFACT_S3_UPLOAD_PART_SIZE_MIB` when ours are unset;
    /// the drivers' settings by [`StorageConfig::from_lookup`]'s variables.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// As [`TransferConfig::from_env`], reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        Self::from_lookup_within(get, None)
    }

    /// As [`TransferConfig::from_lookup`], for a container limited to `memory_limit` bytes.
    /// At or below [`SMALL_POD_MEMORY`] the defaults shrink so the budgets leave room for the
    /// binary's code and the runtime (about 25 MiB resident): 5 MiB parts (S3's minimum;
    /// upload budget 28 MiB instead of 43) and at most 16 ranged reads in flight (download
    /// budget 18 MiB instead of 34). With the usual defaults, a 64 GiB tgz through a slow
    /// link filled a 64 MiB pod and the kernel evicted the binary's own code: 126,000 major
    /// page faults and 9 MiB/s instead of 220. Variables that are set still win.
    pub fn from_lookup_within(
        get: impl Fn(&str) -> Option<String>,
        memory_limit: Option<u64>,
    ) -> Self {
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<u64>().ok());
        let mut c = Self::default();
        if memory_limit.is_some_and(|limit| limit <= SMALL_POD_MEMORY) {
            c.part_size = 5 * MIB;
            c.adaptive_ceiling = Some(16);
        }
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
            c.file_concurrency_ceiling = None;
        } else if let Some(n) = num("ARGOEXEC_FILE_CONCURRENCY_MAX") {
            c.file_concurrency_ceiling = Some((n as usize).clamp(c.file_concurrency, 1024));
        }
        if let Some(n) = num("ARGOEXEC_GZIP_THREADS") {
            c.gzip_threads = n.clamp(1, 64) as usize;
        }
        if let Some(mib) = num("ARGOEXEC_DOWNLOAD_CHUNK_MIB") {
            c.download_chunk = mib.max(1) * MIB;
        }
        if let Some(v) = get("ARGOEXEC_DIRECT_WRITES") {
            c.direct_writes = !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off"
            );
        }
        c.max_parts_override = num("ARGOEXEC_MAX_PARTS").map(|n| n.clamp(1, 10_000) as u32);
        c.max_unpacked_bytes = num("ARGOEXEC_MAX_UNPACKED_BYTES").filter(|&n| n > 0);
        if let Some(secs) = num("ARGOEXEC_PROGRESS_SECONDS") {
            c.progress_interval = (secs > 0).then(|| Duration::from_secs(secs));
        }
        c.storage = StorageConfig::from_lookup(&get);
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

    /// The most files of one directory in flight: the adaptive ceiling, or the fixed value.
    pub fn max_file_concurrency(&self) -> usize {
        self.file_concurrency_ceiling
            .unwrap_or(self.file_concurrency)
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
    fn direct_writes_are_on_unless_turned_off() {
        assert!(TransferConfig::from_lookup(|_| None).direct_writes);
        for (value, on) in [
            ("false", false),
            ("0", false),
            ("Off", false),
            ("true", true),
        ] {
            let c = TransferConfig::from_lookup(|k| {
                (k == "ARGOEXEC_DIRECT_WRITES").then(|| value.to_string())
            });
            assert_eq!(c.direct_writes, on, "{value}");
        }
    }

    #[test]
    fn a_configured_concurrency_is_fixed_and_an_unset_one_adapts_up_to_its_ceiling() {
        let c = TransferConfig::from_lookup(|_| None);
        assert_eq!((c.concurrency, c.max_concurrency()), (4, 32));
        assert_eq!(c.download_budget(), 34 * MIB);
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

    #[test]
    fn a_small_memory_limit_shrinks_the_defaults_but_not_what_is_set() {
        let small = TransferConfig::from_lookup_within(|_| None, Some(64 * MIB));
        assert_eq!((small.part_size, small.max_concurrency()), (5 * MIB, 16));
        assert!(small.upload_budget() <= 28 * MIB + gzip::pipeline_bytes(small.gzip_threads));
        assert_eq!(small.download_budget(), 18 * MIB);
        let large = TransferConfig::from_lookup_within(|_| None, Some(128 * MIB));
        assert_eq!(large, TransferConfig::default());
        let env: HashMap<&str, &str> = [
            ("ARGOEXEC_PART_SIZE_MIB", "16"),
            ("ARGOEXEC_CONCURRENCY_MAX", "12"),
        ]
        .into();
        let set = TransferConfig::from_lookup_within(
            |k| env.get(k).map(|v| v.to_string()),
            Some(64 * MIB),
        );
        assert_eq!((set.part_size, set.max_concurrency()), (16 * MIB, 12));
    }

    #[test]
    fn a_configured_file_concurrency_is_fixed_and_an_unset_one_adapts_up_to_its_ceiling() {
        let c = TransferConfig::from_lookup(|_| None);
        assert_eq!((c.file_concurrency, c.max_file_concurrency()), (16, 64));
        let env: HashMap<&str, &str> = [("ARGOEXEC_FILE_CONCURRENCY_MAX", "128")].into();
        let c = TransferConfig::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!((c.file_concurrency, c.max_file_concurrency()), (16, 128));
        let env: HashMap<&str, &str> = [
            ("ARGOEXEC_FILE_CONCURRENCY", "8"),
            ("ARGOEXEC_FILE_CONCURRENCY_MAX", "128"),
        ]
        .into();
        let c = TransferConfig::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!((c.file_concurrency, c.max_file_concurrency()), (8, 8));
    }
}
