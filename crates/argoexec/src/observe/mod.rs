//! What the library tells whoever watches it: the figures of every artifact transfer
//! ([`Transfer`], logged as the artifact's final line), the span each artifact's lines are
//! logged in ([`artifact_span`]), and the spans of Argo's executor trace the transfer engine
//! opens ([`trace`]). Only `tracing`: where the lines and spans go (log format, a metrics
//! file, an OTLP exporter) is the binary's choice.

pub mod trace;

use std::time::Duration;

/// The span every line about one artifact is logged in: its name, and its key once known
/// (`Span::record("key", ..)`), so retries and progress lines name the artifact they are about.
pub fn artifact_span(name: &str) -> tracing::Span {
    tracing::info_span!("artifact", artifact = %name, key = tracing::field::Empty)
}

/// Which way an artifact moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// An input artifact `init` loaded.
    Input,
    /// An output artifact (or a log) `wait` saved.
    Output,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }
}

/// One artifact's transfer, as it finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    pub direction: Direction,
    pub artifact: String,
    pub key: String,
    /// Where the bytes went: the object's URL for outputs (`s3://bucket/key`), the local path
    /// for inputs.
    pub location: String,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Requests the retry layer sent again.
    pub retries: u64,
    /// Multipart parts (0 for a single PUT); unknown for downloads.
    pub parts: Option<u32>,
    /// CRC32C of the whole object, when the upload computed it.
    pub crc32c: Option<u32>,
    /// Parts the store accepted without an answer that could prove them intact (uploads).
    pub unchecked_parts: Option<u32>,
}

impl Transfer {
    /// MiB per second over the whole transfer.
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / f64::from(1 << 20) / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The artifact's final log line, with every figure of the transfer; before it, once per
    /// artifact, a warning when some of its parts could not be checked.
    pub fn log(&self) {
        if let Some(unchecked) = self.unchecked_parts.filter(|&n| n > 0) {
            tracing::warn!(
                artifact = %self.artifact,
                location = %self.location,
                unchecked_parts = unchecked,
                "the store did not prove parts intact (no CRC32C echoed and ETags that are not MD5s, as with SSE-KMS or some gateways): they were accepted unchecked"
            );
        }
        let message = match self.direction {
            Direction::Input => "loaded input artifact",
            Direction::Output => "saved output artifact",
        };
        tracing::info!(
            artifact = %self.artifact,
            key = %self.key,
            location = %self.location,
            bytes = self.bytes,
            seconds = self.elapsed.as_secs_f64(),
            mib_per_s = self.mib_per_s(),
            retries = self.retries,
            parts = self.parts.map(u64::from),
            crc32c = self.crc32c.map(|c| format!("{c:08x}")),
            unchecked_parts = self.unchecked_parts.map(u64::from),
            "{message}"
        );
    }
}
