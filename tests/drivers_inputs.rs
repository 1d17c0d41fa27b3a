//! One template with an input of each kind this worktree adds (http, artifactory, git, raw,
//! oss), loaded by the real `init` process, lands exactly as Argo's executor would place it
//! (docs/contract.md#inputs); and the kinds that cannot be saved or are not supported yet (raw and
//! git outputs, HDFS, unreachable plugins) fail with a clear message in the termination log.

#![cfg(all(feature = "http", feature = "git"))]

mod support;

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use support::git_server::{GitFixture, GitHttpServer, git};
use support::http_server::{HttpServer, Rules};
use support::{BUCKET, SECRET_NAME, TestPod, assert_ok, make_tree, snapshot};

#[tokio::test(flavor = "multi_thread")]
async fn init_places_one_input_of_each_kind_as_argo_does() {
    let pod = TestPod::new().await;
    let http = HttpServer::start(Rules {
        ranges: true,
        ..Rules::default()
    })
    .await;
    let fx = GitFixture::new();
    let git_server = GitHttpServer::start(fx.root.path(), None).await;

    // http: a tgz of a directory, auto-detected and unpacked to the artifact path.
    let tree = tempfile::tempdir().expect("tree");
    make_tree(&tree.path().join("report"));
    let mut tgz = Vec::new();
    argoexec::archive::write_tgz(&tree.path().join("report"), &mut tgz, 6, 1).expect("tgz");
    http.put_file("/in/report.tgz", tgz);
    // artifactory: a plain file, placed as it is.
    http.put_file("/repo/notes.txt", b"plain notes\n".to_vec());
    pod.write_secret("art", "user", "u");
    pod.write_secret("art", "pass", "p");
    // oss: an object in the loopback bucket.
    pod.put("oss/in.txt", b"from oss\n".to_vec()).await;

    let template = json!({"name": "consume", "inputs": {"artifacts": [
        {"name": "http", "path": "/in/report", "http": {"url": http.url("/in/report.tgz")}},
        {"name": "artifactory", "path": "/in/notes.txt", "artifactory": {
            "url": http.url("/repo/notes.txt"),
            "usernameSecret": {"name": "art", "key": "user"},
            "passwordSecret": {"name": "art", "key": "pass"}}},
        {"name": "git", "path": "/src", "git": {"repo": git_server.url("main.git"), "revision": "v1"}},
        {"name": "raw", "path": "/in/raw.txt", "mode": 384, "raw": {"data": "hello raw\n"}},
        {"name": "oss", "path": "/in/oss.txt", "oss": {
            "endpoint": pod.s3_addr.to_string(), "bucket": BUCKET, "key": "oss/in.txt",
            "accessKeySecret": {"name": SECRET_NAME, "key": "accessKey"},
            "secretKeySecret": {"name": SECRET_NAME, "key": "secretKey"}}},
    ]}});
    assert_ok(&pod.init(&template).await);

    let at = |name: &str| pod.roots().input_artifact(name);
    assert_eq!(snapshot(&at("http")), snapshot(&tree.path().join("report")));
    assert_eq!(
        std::fs::read(at("artifactory")).expect("file"),
        b"plain notes\n"
    );
    assert_eq!(std::fs::read(at("oss")).expect("file"), b"from oss\n");
    // raw: written verbatim (not an archive, so not unpacked), then chmod'ed.
    assert_eq!(std::fs::read(at("raw")).expect("file"), b"hello raw\n");
    let mode = std::fs::metadata(at("raw"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // git: a directory with its .git, at the revision.
    assert!(at("git").join(".git").is_dir());
    assert_eq!(git(&at("git"), &["rev-parse", "HEAD"]), fx.first);
    assert_eq!(std::fs::read(at("git").join("a.txt")).expect("a"), b"one\n");
    // Nothing temporary is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(pod.path("/argo/inputs/artifacts"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".tmpdir"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_optional_http_input_that_is_absent_is_skipped() {
    let pod = TestPod::new().await;
    let http = HttpServer::start(Rules::default()).await;
    let template = json!({"name": "consume", "inputs": {"artifacts": [
        {"name": "maybe", "path": "/in/x", "optional": true, "http": {"url": http.url("/nope")}},
    ]}});
    assert_ok(&pod.init(&template).await);
    assert!(!pod.roots().input_artifact("maybe").exists());

    let template = json!({"name": "consume", "inputs": {"artifacts": [
        {"name": "needed", "path": "/in/x", "http": {"url": http.url("/nope")}},
    ]}});
    let out = pod.init(&template).await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        pod.termination_log(),
        "artifact needed failed to load: 404 Not Found"
    );
}

async fn init_fails_with(input: serde_json::Value, want: &str) {
    let pod = TestPod::new().await;
    let template = json!({"name": "t", "inputs": {"artifacts": [input]}});
    let out = pod.init(&template).await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(pod.termination_log(), want);
}

async fn wait_fails_with(location: (&str, serde_json::Value), want: &str) {
    let pod = TestPod::new().await;
    let src = pod.path("/mainctrfs/work/out.txt");
    std::fs::create_dir_all(src.parent().expect("parent")).expect("mkdir");
    std::fs::write(&src, "x").expect("write");
    let mut art = json!({"name": "out", "path": "/work/out.txt"});
    art[location.0] = location.1;
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [art]},
    });
    let out = pod.wait(&template, &[]).await;
    assert_eq!(out.status.code(), Some(64));
    // Argo joins artifact failures as "<err1>; <err2>; " (docs/contract.md#outputs).
    assert_eq!(pod.termination_log(), format!("{want}; "));
}

#[tokio::test(flavor = "multi_thread")]
async fn hdfs_is_not_supported_yet_with_a_clear_message() {
    let hdfs = json!({"addresses": ["namenode:8020"], "path": "/data/in.tgz"});
    init_fails_with(
        json!({"name": "in", "path": "/in", "hdfs": hdfs}),
        "HDFS artifacts (path \"/data/in.tgz\") are not supported yet by argoexec-rs",
    )
    .await;
    wait_fails_with(
        ("hdfs", hdfs),
        "HDFS artifacts (path \"/data/in.tgz\") are not supported yet by argoexec-rs",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn init_leaves_plugin_inputs_to_the_plugins_init_container() {
    let pod = TestPod::new().await;
    let template = json!({"name": "t", "inputs": {"artifacts": [
        {"name": "in", "path": "/in", "plugin": {"name": "my-plugin", "key": "k"}},
    ]}});
    let out = pod.init(&template).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!pod.roots().input_artifact("in").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_to_a_plugin_that_is_not_serving_names_the_plugin_and_its_socket() {
    // The socket of a sidecar that has gone: it exists, nobody accepts.
    let pod = TestPod::new().await;
    let socket = argoexec::storage::plugin::socket_path(&pod.roots(), "my-plugin");
    std::fs::create_dir_all(socket.parent().expect("dir")).expect("dir");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    let src = pod.path("/mainctrfs/work/out.txt");
    std::fs::create_dir_all(src.parent().expect("parent")).expect("mkdir");
    std::fs::write(&src, "x").expect("write");
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [
            {"name": "out", "path": "/work/out.txt", "plugin": {"name": "my-plugin", "key": "k"}},
        ]},
    });
    let out = pod.wait(&template, &[]).await;
    assert_eq!(out.status.code(), Some(64));
    let message = pod.termination_log();
    let want = format!(
        "failed to dial plugin my-plugin at {:?}: ",
        socket.display().to_string()
    );
    assert!(message.starts_with(&want), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_outputs_are_refused_as_in_argo() {
    wait_fails_with(
        ("raw", json!({"data": "x"})),
        // A raw location has no key: Argo looks for the archive location's, and there is none.
        "key unsupported: cannot get key for artifact location, because it is invalid",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raw_input_is_never_an_archive_because_json_strings_are_utf8() {
    // Argo auto-detects archives in raw data too, but a gzip stream starts with 0x1f 0x8b, and
    // 0x8b cannot appear in the UTF-8 of a JSON string: what the controller sends is the text.
    let pod = TestPod::new().await;
    let text = "\u{1f}\u{8b}\u{8} not really gzip";
    let template = json!({"name": "t", "inputs": {"artifacts": [
        {"name": "raw", "path": "/in/raw", "raw": {"data": text}}]}});
    assert_ok(&pod.init(&template).await);
    assert_eq!(
        std::fs::read(pod.roots().input_artifact("raw")).expect("raw"),
        text.as_bytes()
    );
}
