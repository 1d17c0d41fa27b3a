//! The library's repository rules agree with the executor: a repository resolved from an
//! `artifact-repositories` ConfigMap gives the archive location under which the real `wait`
//! uploads, at the keys [`argoexec::keys::output_key`] predicts; and a server using
//! [`argoexec::stream::Streamer`] reads the reported (key-only) artifacts back, ranged, from
//! the S3 server on loopback.

mod support;

use argoexec::keys::output_key;
use argoexec::keys::template::KeyVariables;
use argoexec::model::{Artifact, Template};
use argoexec::repository::{
    ConfigMapData, ConfigMaps, DEFAULT_CONFIG_MAP, DEFAULT_REPOSITORY_ANNOTATION, Resolver,
    archive_location,
};
use argoexec::storage::Secrets;
use argoexec::stream::{ByteRange, Streamer};
use argoexec::transfer::TransferConfig;
use futures::TryStreamExt;
use serde_json::{Value, json};
use support::{BUCKET, SECRET_NAME, TestPod, assert_ok, pseudo_random};

#[tokio::test(flavor = "multi_thread")]
async fn a_resolved_repository_places_outputs_where_the_library_says() {
    let pod = TestPod::new().await;
    // The workflow's namespace holds `artifact-repositories` with two entries; the annotation
    // makes `fast` the default. Values are YAML, as in Argo's documentation.
    let fast = format!(
        "s3:\n  bucket: {BUCKET}\n  endpoint: {}\n  insecure: true\n  accessKeySecret: {{name: {SECRET_NAME}, key: accessKey}}\n  secretKeySecret: {{name: {SECRET_NAME}, key: secretKey}}\n  keyFormat: \"runs/{{{{workflow.labels.team}}}}/{{{{workflow.creationTimestamp.Y}}}}/{{{{workflow.creationTimestamp.m}}}}/{{{{workflow.name}}}}/{{{{pod.name}}}}\"\n",
        pod.s3_addr
    );
    let mut config_maps = ConfigMaps::default();
    config_maps.insert(
        "team-a",
        DEFAULT_CONFIG_MAP,
        ConfigMapData::default()
            .with_annotation(DEFAULT_REPOSITORY_ANNOTATION, "fast")
            .with_entry("fast", fast)
            .with_entry("cold", "gcs: {bucket: cold}"),
    );
    let resolved = Resolver::new("argo", None)
        .resolve(None, "team-a", &config_maps)
        .expect("resolves");
    assert_eq!(resolved.to_string(), "team-a/artifact-repositories#fast");
    let repository = resolved.artifact_repository.expect("a repository");

    let vars = KeyVariables {
        workflow_name: "wf-1".into(),
        workflow_namespace: "team-a".into(),
        pod_name: "wf-1-main-123".into(),
        labels: [("team".to_string(), "ml".to_string())].into(),
        creation_timestamp: chrono::DateTime::parse_from_rfc3339("2024-03-05T07:08:09Z").ok(),
        ..Default::default()
    };
    let template: Template = serde_json::from_value(json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [
            {"name": "model", "path": "/work/model"},
            {"name": "report", "path": "/work/report.txt", "archive": {"none": {}}},
            {"name": "pinned", "path": "/work/report.txt", "s3": {"key": "pinned/report.tgz"}},
        ]},
    }))
    .expect("template");
    let archive = archive_location(&template, Some(&repository), None, &vars)
        .expect("renders")
        .expect("outputs without locations need one");
    assert_eq!(
        archive.key().as_deref(),
        Some("runs/ml/2024/03/wf-1/wf-1-main-123")
    );

    // The controller puts the archive location into the pod's template; `wait` saves.
    let report = pseudo_random(300_000, 5);
    std::fs::create_dir_all(pod.path("/mainctrfs/work/model")).expect("mkdir");
    std::fs::write(pod.path("/mainctrfs/work/model/weights.bin"), b"w").expect("file");
    std::fs::write(pod.path("/mainctrfs/work/report.txt"), &report).expect("file");
    let mut sent = serde_json::to_value(&template).expect("json");
    sent["archiveLocation"] = serde_json::to_value(&archive).expect("json");
    let out = pod.wait(&sent, &[]).await;
    assert_ok(&out);

    let mut predicted: Vec<String> = template
        .outputs
        .artifacts
        .iter()
        .map(|a| output_key(a, Some(&archive)).expect("key"))
        .collect();
    predicted.sort();
    assert_eq!(
        predicted,
        [
            "pinned/report.tgz",
            "runs/ml/2024/03/wf-1/wf-1-main-123/model.tgz",
            "runs/ml/2024/03/wf-1/wf-1-main-123/report.txt",
        ]
    );
    let mut stored = pod.keys("").await;
    stored.sort();
    assert_eq!(stored, predicted);

    // Without an API, `wait` prints the task result: its artifacts are key-only, and a server
    // reads them back through the archive location.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("the task result on stdout");
    let reported: Vec<Artifact> =
        serde_json::from_value(result["outputs"]["artifacts"].clone()).expect("artifacts");
    let reported_report = reported
        .iter()
        .find(|a| a.name == "report")
        .expect("report");
    assert_eq!(
        reported_report
            .location
            .s3
            .as_ref()
            .map(|s| s.bucket.as_str()),
        Some(""),
        "reported without the bucket"
    );
    let streamer = Streamer::new(TransferConfig::default());
    let secrets = Secrets::new(pod.roots());
    let read = |range| {
        let streamer = streamer.clone();
        let secrets = secrets.clone();
        let archive = archive.clone();
        let art = reported_report.clone();
        async move {
            let stream = streamer
                .open_artifact(&art, Some(&archive), &secrets, range)
                .await
                .expect("opens");
            let range = stream.range.clone();
            let bytes: Vec<u8> = stream
                .try_fold(Vec::new(), |mut acc, b| async move {
                    acc.extend_from_slice(&b);
                    Ok(acc)
                })
                .await
                .expect("reads");
            (range, bytes)
        }
    };
    let (range, whole) = read(None).await;
    assert_eq!((range, whole.as_slice()), (0..300_000, report.as_slice()));
    let (range, part) = read(ByteRange::from_http("bytes=299990-")).await;
    assert_eq!(
        (range, part.as_slice()),
        (299_990..300_000, &report[299_990..])
    );
}
