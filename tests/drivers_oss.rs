//! The OSS driver (OSS's S3-compatible API on the S3 driver) against the in-process s3s-fs
//! server on 127.0.0.1. An IP endpoint is addressed path-style, as Alibaba's SDK does, so the
//! loopback server sees exactly the requests the driver would send to such an endpoint; what a
//! loopback test cannot show is virtual-hosted addressing on real OSS (unit-tested in
//! `storage::oss::config`).

mod support;

use std::sync::Arc;

use argoexec::model::ArtifactLocation;
use argoexec::storage::{self, Driver, Secrets};
use argoexec::transfer::{TransferConfig, Uploader, download};
use futures::TryStreamExt;
use serde_json::{Value, json};
use support::{BUCKET, SECRET_NAME, TestPod, assert_ok, make_tree, pseudo_random};

fn oss(pod: &TestPod, key: &str) -> Value {
    json!({
        "endpoint": pod.s3_addr.to_string(),
        "bucket": BUCKET,
        "accessKeySecret": {"name": SECRET_NAME, "key": "accessKey"},
        "secretKeySecret": {"name": SECRET_NAME, "key": "secretKey"},
        "key": key,
    })
}

async fn open(pod: &TestPod, key: &str) -> Arc<dyn Driver> {
    let loc: ArtifactLocation = serde_json::from_value(json!({"oss": oss(pod, key)})).expect("loc");
    storage::open(&loc, &Secrets::new(pod.roots()))
        .await
        .expect("oss driver")
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_uses_parallel_multipart_and_ranged_reads() {
    let pod = TestPod::new().await;
    let driver = open(&pod, "big.bin").await;
    assert_eq!(driver.name(), "oss");
    assert_eq!(driver.describe(), format!("oss://{BUCKET}"));
    let data = pseudo_random(11 << 20, 21);
    let cfg = TransferConfig {
        part_size: 5 << 20,
        download_chunk: 1 << 20,
        concurrency: 3,
        ..TransferConfig::default()
    };
    let up = data.clone();
    let stats = Uploader::new(cfg.clone())
        .upload(
            Arc::clone(&driver),
            "big.bin",
            Default::default(),
            None,
            move |w| std::io::Write::write_all(w, &up),
        )
        .await
        .expect("upload");
    assert_eq!(stats.parts, 3, "5 + 5 + 1 MiB, sent concurrently");
    assert_eq!(pod.get("big.bin").await.as_deref(), Some(&data[..]));
    let budget = argoexec::transfer::budget::Budget::new(cfg.download_budget());
    let (meta, body) = download::open(driver, "big.bin", &cfg, &budget)
        .await
        .expect("download");
    assert_eq!(meta.size, data.len() as u64);
    // Each chunk holds download budget until dropped: copy and drop, never collect chunks.
    let got = body
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk.bytes);
            Ok(all)
        })
        .await
        .expect("body");
    assert_eq!(got, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn not_found_is_typed() {
    let pod = TestPod::new().await;
    let driver = open(&pod, "nothing-here").await;
    let e = driver.head("nothing-here").await.expect_err("absent");
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_credentials_are_a_config_error_naming_the_fields() {
    let pod = TestPod::new().await;
    let loc: ArtifactLocation = serde_json::from_value(json!({"oss": {
        "endpoint": pod.s3_addr.to_string(), "bucket": BUCKET, "key": "k"}}))
    .expect("loc");
    let e = storage::open(&loc, &Secrets::new(pod.roots()))
        .await
        .expect_err("no credentials");
    assert!(e.to_string().contains("accessKeySecret"), "{e}");
}

/// `wait` saves an `archive: none` directory to OSS, one object per file (the driver also
/// writes Argo's empty marker objects `<key>/` and `<key>/<dir>/`, which s3s-fs, storing
/// objects as files, accepts but cannot list: `storage::oss` unit-tests which markers are
/// written); `init` loads the directory back.
#[tokio::test(flavor = "multi_thread")]
async fn a_directory_saves_as_one_object_per_file_and_loads_back() {
    let pod = TestPod::new().await;
    let src = pod.path("/mainctrfs/work/out");
    make_tree(&src);
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "out", "path": "/work/out",
            "archive": {"none": {}}, "oss": oss(&pod, "wf/out")}]},
    });
    assert_ok(&pod.wait(&template, &[]).await);
    assert_eq!(
        pod.keys("wf/").await,
        vec![
            "wf/out/a.txt",
            "wf/out/sub/b.bin",
            "wf/out/sub/deeper/c.txt"
        ]
    );
    let consume = json!({"name": "consume", "inputs": {"artifacts": [
        {"name": "in", "path": "/in", "oss": oss(&pod, "wf/out")}]}});
    assert_ok(&pod.init(&consume).await);
    let loaded = pod.roots().input_artifact("in");
    assert_eq!(std::fs::read(loaded.join("a.txt")).expect("a"), b"alpha\n");
    assert_eq!(
        std::fs::read(loaded.join("sub/deeper/c.txt")).expect("c"),
        b"gamma"
    );
}
