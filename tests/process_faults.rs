//! Process and host faults of `init` through the real binary: killed mid-unpack (nothing at
//! the artifact path; a rerun is correct), and a full disk on the destination, for real: a
//! size-limited tmpfs in a private mount namespace (`unshare -m`; the tests run as root).
//! `wait` killed or sent SIGTERM mid-upload: tests/transfer.rs.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::fault_proxy::{Fault, FaultProxy};
use support::{TestPod, assert_ok};

#[tokio::test(flavor = "multi_thread")]
async fn init_killed_mid_unpack_leaves_nothing_at_the_path_and_a_rerun_is_exact() {
    let pod = TestPod::new().await;
    // A tree of 64 files of 256 KiB, read back in 1 MiB ranges slowed down by the proxy.
    let tree = pod.root.path().join("source");
    for i in 0..64 {
        let dir = tree.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join(format!("f{i}")),
            support::pseudo_random(256 << 10, i),
        )
        .expect("write");
    }
    let tgz = std::process::Command::new("tar")
        .args(["-czf", "-", "-C"])
        .arg(&tree)
        .arg(".")
        .output()
        .expect("tar");
    assert!(tgz.status.success());
    pod.put("u/tree.tgz", tgz.stdout).await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "GET",
        "u/tree.tgz",
        Fault::DelayResponse(Duration::from_millis(250)),
        1000,
    );
    let template = json!({
        "name": "consume",
        "inputs": {"artifacts": [{"name": "tree", "path": "/in/tree", "s3": pod.s3_via(proxy.addr, "u/tree.tgz")}]},
    });
    let t = template.to_string();
    let env = [
        ("ARGO_TEMPLATE", t.as_str()),
        ("ARGOEXEC_DOWNLOAD_CHUNK_MIB", "1"),
        ("ARGOEXEC_CONCURRENCY", "1"),
    ];
    let dest = pod.roots().input_artifact("tree");
    let tmpdir = PathBuf::from(format!("{}.tmpdir", dest.display()));
    let mut init = pod
        .command(&["init"], &env)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("init");
    let unpacked = |dir: &Path| {
        support::snapshot(dir)
            .iter()
            .filter(|e| e.1 == "file")
            .count()
    };
    support::eventually("a partly unpacked tree", || {
        tmpdir.is_dir() && unpacked(&tmpdir) >= 4
    })
    .await;
    init.start_kill().expect("SIGKILL");
    let _ = init.wait().await;
    assert!(!dest.exists(), "nothing half-placed at the artifact path");
    assert!(
        unpacked(&tmpdir) < 64,
        "killed before the end: the test proves nothing otherwise"
    );

    proxy.clear_rules();
    assert_ok(&pod.init(&template).await);
    assert_eq!(support::snapshot(&dest), support::snapshot(&tree), "exact");
    assert!(!tmpdir.exists(), "the stale partial tree is gone");
}

/// The size of the tmpfs the destination gets in the disk-full tests.
const TMPFS_MIB: u64 = 4;

/// Runs `init` in a private mount namespace where the pod's input artifacts directory is a
/// tmpfs of [`TMPFS_MIB`]. Returns the output and what was left on the tmpfs afterwards.
async fn init_on_a_small_tmpfs(pod: &TestPod, template: &Value) -> (std::process::Output, String) {
    assert!(
        which("unshare").is_some(),
        "the disk-full tests need `unshare` (util-linux) and root: run scripts/test.sh as root"
    );
    let dir = pod.roots().input_artifact("x");
    let dir = dir.parent().expect("artifacts dir").to_path_buf();
    let t = template.to_string();
    pod.argoexec_on_tmpfs(
        &dir,
        TMPFS_MIB,
        &["init", "--loglevel", "debug"],
        "",
        &[("ARGO_TEMPLATE", t.as_str())],
    )
    .await
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The disk-full failure: exit 64, one termination-log line naming the artifact, the object,
/// the cause and the free space; nothing left on the tmpfs.
fn assert_disk_full(pod: &TestPod, out: &std::process::Output, left: &str, object: &str) {
    let message = support::failure(pod, out);
    let dir = pod.roots().input_artifact("big");
    let dir = dir.parent().expect("dir").display().to_string();
    let expected_start = format!(
        "artifact big failed to load: not enough space at {dir} for s3://argo-artifacts/{object} ("
    );
    assert!(
        message.starts_with(&expected_start),
        "{message}\nshould start with\n{expected_start}"
    );
    assert!(
        message.contains(&format!(
            "{TMPFS_MIB}.0 MiB ({} bytes) free",
            TMPFS_MIB << 20
        )),
        "the whole tmpfs is free again: {message}"
    );
    assert!(
        message
            .ends_with("once the partial copy is removed): No space left on device (os error 28)"),
        "{message}"
    );
    assert_eq!(left, "", "nothing left on the full filesystem");
}

fn load_big(pod: &TestPod, key: &str, archive: Option<Value>) -> Value {
    let mut art = json!({"name": "big", "path": "/in/big", "s3": pod.s3(key)});
    if let Some(a) = archive {
        art["archive"] = a;
    }
    json!({"name": "consume", "inputs": {"artifacts": [art]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_while_downloading_names_artifact_key_cause_and_space() {
    let pod = TestPod::new().await;
    pod.put("d/big.bin", support::pseudo_random(12 << 20, 4))
        .await;
    let template = load_big(&pod, "d/big.bin", Some(json!({"none": {}})));
    let (out, left) = init_on_a_small_tmpfs(&pod, &template).await;
    assert_disk_full(&pod, &out, &left, "d/big.bin");
    assert!(
        pod.termination_log()
            .contains("(12.0 MiB (12582912 bytes) stored,"),
        "{}",
        pod.termination_log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_while_unpacking_names_artifact_key_cause_and_space() {
    let pod = TestPod::new().await;
    // 16 MiB of zeros: a small tgz that unpacks past the tmpfs.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros").expect("path");
    h.set_size(16 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append(&h, std::io::Read::take(std::io::repeat(0), 16 << 20))
        .expect("append");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar.into_inner().expect("tar")).expect("gz");
    pod.put("d/zeros.tgz", gz.finish().expect("gz")).await;
    let (out, left) = init_on_a_small_tmpfs(&pod, &load_big(&pod, "d/zeros.tgz", None)).await;
    assert_disk_full(&pod, &out, &left, "d/zeros.tgz");
}
