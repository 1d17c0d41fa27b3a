//! The figures of every artifact transfer ([`Transfer`], from the library) written as a
//! Prometheus textfile when `ARGOEXEC_METRICS_FILE` names one (off by default).
//!
//! The textfile is for a node-exporter textfile collector or a sidecar that ships it: gauges,
//! one sample per artifact, labelled with the workflow, pod, artifact and direction. `init`
//! and `wait` of one pod may share the file: each rewrites its own direction's samples and keeps
//! the other's. The file is replaced atomically (written beside it, then renamed), so a
//! collector never reads half of it.

use std::fmt::Write as _;
use std::path::Path;

use argoexec::contract::env;
pub use argoexec::observe::{Direction, Transfer};

/// The textfile to write the transfer figures to; unset or empty = none.
pub const ENV_METRICS_FILE: &str = "ARGOEXEC_METRICS_FILE";

/// Writes `transfers` to the file `ARGOEXEC_METRICS_FILE` names, if any. A failure is logged,
/// never fatal: figures must not fail a step whose artifacts moved.
pub fn export_from_env(direction: Direction, transfers: &[Transfer]) {
    let Some(path) = std::env::var_os(ENV_METRICS_FILE).filter(|p| !p.is_empty()) else {
        return;
    };
    let labels = PodLabels::from_env();
    if let Err(e) = write_textfile(Path::new(&path), direction, &labels, transfers) {
        tracing::warn!(path = %Path::new(&path).display(), error = %e, "cannot write the metrics file");
    }
}

/// The labels every sample carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLabels {
    pub workflow: String,
    pub pod: String,
}

impl PodLabels {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Self {
            workflow: var(env::WORKFLOW_NAME),
            pod: var(env::POD_NAME),
        }
    }
}

/// The metric families: name, help, and how to read the value off a transfer.
type Family = (&'static str, &'static str, fn(&Transfer) -> Option<f64>);
const FAMILIES: [Family; 5] = [
    (
        "argoexec_artifact_bytes",
        "Bytes of the artifact as stored.",
        |t| Some(t.bytes as f64),
    ),
    (
        "argoexec_artifact_duration_seconds",
        "Wall time of the artifact's transfer.",
        |t| Some(t.elapsed.as_secs_f64()),
    ),
    (
        "argoexec_artifact_throughput_bytes_per_second",
        "Bytes over wall time of the artifact's transfer.",
        |t| Some(t.bytes as f64 / t.elapsed.as_secs_f64().max(1e-9)),
    ),
    (
        "argoexec_artifact_retries",
        "Storage requests sent again after a transient failure.",
        |t| Some(t.retries as f64),
    ),
    (
        "argoexec_artifact_parts",
        "Multipart parts of the upload (0 for a single PUT).",
        |t| t.parts.map(f64::from),
    ),
];

/// The textfile: this direction's samples, plus the other direction's samples already in
/// `existing` (what the pod's other command wrote).
pub fn render(
    direction: Direction,
    labels: &PodLabels,
    transfers: &[Transfer],
    existing: &str,
) -> String {
    let other = format!("direction=\"{}\"", other_direction(direction).as_str());
    let mut out = String::new();
    for (name, help, value) in FAMILIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for t in transfers {
            if let Some(v) = value(t) {
                let _ = writeln!(
                    out,
                    "{name}{{workflow=\"{}\",pod=\"{}\",artifact=\"{}\",direction=\"{}\"}} {v}",
                    escape(&labels.workflow),
                    escape(&labels.pod),
                    escape(&t.artifact),
                    t.direction.as_str()
                );
            }
        }
        for kept in existing.lines().filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
                && l.contains(&other)
        }) {
            let _ = writeln!(out, "{kept}");
        }
    }
    out
}

fn other_direction(direction: Direction) -> Direction {
    match direction {
        Direction::Input => Direction::Output,
        Direction::Output => Direction::Input,
    }
}

/// Prometheus label value escaping: backslash, double quote, newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders and atomically replaces `path`.
pub fn write_textfile(
    path: &Path,
    direction: Direction,
    labels: &PodLabels,
    transfers: &[Transfer],
) -> std::io::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let text = render(direction, labels, transfers, &existing);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn transfer(direction: Direction, artifact: &str, parts: Option<u32>) -> Transfer {
        Transfer {
            direction,
            artifact: artifact.into(),
            key: format!("wf/{artifact}.tgz"),
            location: "s3://bucket".into(),
            bytes: 2 << 20,
            elapsed: Duration::from_millis(500),
            retries: 1,
            parts,
            crc32c: None,
            unchecked_parts: None,
        }
    }

    fn labels() -> PodLabels {
        PodLabels {
            workflow: "wf".into(),
            pod: "wf-1".into(),
        }
    }

    #[test]
    fn a_textfile_has_one_sample_per_artifact_and_family() {
        let text = render(
            Direction::Output,
            &labels(),
            &[transfer(Direction::Output, "out\"1", Some(2))],
            "",
        );
        let l = "{workflow=\"wf\",pod=\"wf-1\",artifact=\"out\\\"1\",direction=\"output\"}";
        for sample in [
            format!("argoexec_artifact_bytes{l} 2097152"),
            format!("argoexec_artifact_duration_seconds{l} 0.5"),
            format!("argoexec_artifact_throughput_bytes_per_second{l} 4194304"),
            format!("argoexec_artifact_retries{l} 1"),
            format!("argoexec_artifact_parts{l} 2"),
        ] {
            assert!(text.lines().any(|line| line == sample), "{sample}\n{text}");
        }
        assert_eq!(text.matches("# TYPE").count(), FAMILIES.len());
    }

    #[test]
    fn each_command_keeps_the_other_directions_samples() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("argoexec.prom");
        write_textfile(
            &path,
            Direction::Input,
            &labels(),
            &[transfer(Direction::Input, "in", None)],
        )
        .expect("init writes");
        write_textfile(
            &path,
            Direction::Output,
            &labels(),
            &[transfer(Direction::Output, "out", Some(0))],
        )
        .expect("wait writes");
        // A second wait run replaces its own samples rather than adding to them.
        write_textfile(
            &path,
            Direction::Output,
            &labels(),
            &[transfer(Direction::Output, "out", Some(0))],
        )
        .expect("wait rewrites");
        let text = std::fs::read_to_string(&path).expect("read");
        let bytes: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("argoexec_artifact_bytes{"))
            .collect();
        assert_eq!(bytes.len(), 2, "{text}");
        assert!(
            bytes[0].contains("artifact=\"out\",direction=\"output\""),
            "{text}"
        );
        assert!(
            bytes[1].contains("artifact=\"in\",direction=\"input\""),
            "{text}"
        );
        // Inputs have no part count: no sample rather than a made-up one.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("argoexec_artifact_parts{"))
                .count(),
            1
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temp file left"
        );
    }
}
