//! The termination log holds Argo's message, byte for byte: it becomes the node's `message`,
//! which users read in the UI and match in `retryStrategy.expression` (`lastRetry.message`)
//! and in alerts. Each case runs the real binary (`init` for inputs, `wait` for outputs)
//! against the loopback servers and compares the whole termination log to Argo's text; our
//! own context goes to the log lines, which are checked to carry it where it matters.

mod support;

use serde_json::{Value, json};
use support::TestPod;
use support::fault_proxy::{Fault, FaultProxy};

/// Argo's words for a path that climbs out of its directory.
fn traversal(name: &str) -> String {
    format!(
        "Artifact '{name}' attempted to use a path containing '..'. Directory traversal is not permitted"
    )
}

/// A template loading the input `in` (at `/in/data`, unless `artifact` says otherwise).
fn consume(artifact: Value) -> Value {
    let mut art = json!({"name": "in", "path": "/in/data"});
    for (k, v) in artifact.as_object().expect("object") {
        art[k] = v.clone();
    }
    json!({"name": "consume", "inputs": {"artifacts": [art]}})
}

/// Runs `init` with `template`, expects exit 64, and returns the termination log and stderr.
async fn init_message(pod: &TestPod, template: &Value, env: &[(&str, &str)]) -> (String, String) {
    let out = pod.init_with(template, env).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "stderr:\n{stderr}");
    (pod.termination_log(), stderr)
}

/// Runs `wait` with `template` once main exited 0, expects exit 64, and returns the
/// termination log and stderr.
async fn wait_message(pod: &TestPod, template: &Value) -> (String, String) {
    let out = pod.wait(template, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "stderr:\n{stderr}");
    (pod.termination_log(), stderr)
}

/// A template saving `outputs` with the test server as its archive location.
fn produce(pod: &TestPod, outputs: Value) -> Value {
    json!({
        "name": "produce",
        "outputs": {"artifacts": outputs},
        "archiveLocation": pod.archive_location("wf-1/wf-1-main-123"),
    })
}

/// What main left for an output at `path` in its own filesystem: the emissary's tgz.
fn emissary_output(pod: &TestPod, path: &str, content: &[u8]) {
    let tgz = pod.roots().emissary_artifact(path);
    std::fs::create_dir_all(tgz.parent().expect("parent")).expect("dirs");
    let name = path.rsplit('/').next().expect("name");
    let tar = support::archives::raw_tar(&[(name, tar::EntryType::Regular, content, None)]);
    std::fs::write(tgz, support::archives::gzip(&tar)).expect("tgz");
}

#[tokio::test(flavor = "multi_thread")]
async fn inputs_fail_with_argos_texts() {
    let pod = TestPod::new().await;
    let s3 = |key: &str| pod.s3(key);
    let mut missing_bucket = s3("k");
    missing_bucket["bucket"] = json!("no-such-bucket");
    let mut sse_c_and_kms = s3("k");
    sse_c_and_kms["encryptionOptions"] = json!({
        "kmsKeyId": "key-1",
        "serverSideCustomerKeySecret": {"name": "s3-creds", "key": "secretKey"},
    });
    let mut sse_c_insecure = s3("k");
    sse_c_insecure["encryptionOptions"] = json!({
        "serverSideCustomerKeySecret": {"name": "s3-creds", "key": "secretKey"},
    });
    let mut missing_secret = s3("k");
    missing_secret["secretKeySecret"]["key"] = json!("no-such-key");
    let secret_path = pod.roots().secret("s3-creds", "no-such-key");
    let cases: Vec<(&str, Value, String)> = vec![
        (
            "not supplied",
            consume(json!({})),
            "required artifact 'in' not supplied".into(),
        ),
        (
            "no path",
            consume(json!({"path": "", "s3": s3("k")})),
            "Artifact 'in' did not specify a path".into(),
        ),
        (
            "a path climbing out of its directory",
            consume(json!({"path": "/in/../etc/passwd", "s3": s3("k")})),
            traversal("in"),
        ),
        (
            "a key and no archive location",
            consume(json!({"s3": {"key": "k"}})),
            "failed to load artifact 'in': template artifact location not set".into(),
        ),
        (
            "a key and an archive location naming no storage",
            {
                let mut t = consume(json!({"s3": {"key": "k"}}));
                t["archiveLocation"] = json!({"archiveLogs": false});
                t
            },
            "failed to load artifact 'in': artifact storage is not configured; see the docs for setup instructions: https://argo-workflows.readthedocs.io/en/latest/configure-artifact-repository/".into(),
        ),
        (
            "a missing key",
            consume(json!({"s3": s3("no/such/key")})),
            "artifact in failed to load: The specified key does not exist.".into(),
        ),
        (
            "a missing bucket",
            consume(json!({"s3": missing_bucket})),
            "artifact in failed to load: failed to test if k is a directory: The specified bucket does not exist".into(),
        ),
        (
            "SSE-C and KMS together",
            consume(json!({"s3": sse_c_and_kms})),
            "serverSideCustomerKeySecret and kmsKeyId cannot be set together".into(),
        ),
        (
            "SSE-C without TLS",
            consume(json!({"s3": sse_c_insecure})),
            "artifact in failed to load: failed to create new S3 client: secure must be set if EncryptOpts.SSECPassword is set".into(),
        ),
        (
            "a missing secret",
            consume(json!({"s3": missing_secret})),
            format!("open {}: no such file or directory", secret_path.display()),
        ),
    ];
    for (case, template, expected) in cases {
        let (message, _) = init_message(&pod, &template, &[]).await;
        assert_eq!(message, expected, "{case}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_context_goes_to_the_log_not_the_message() {
    let pod = TestPod::new().await;
    let mut loc = pod.s3("k");
    loc["bucket"] = json!("no-such-bucket");
    let (message, stderr) = init_message(&pod, &consume(json!({"s3": loc})), &[]).await;
    assert!(!message.contains(&pod.s3_addr.to_string()), "{message}");
    for context in [
        pod.s3_addr.to_string().as_str(),
        "NoSuchBucket",
        "input artifact in",
    ] {
        assert!(
            stderr.contains(context),
            "{context:?} missing from:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_archive_fails_in_the_unpackers_words() {
    let pod = TestPod::new().await;
    let tar = support::archives::raw_tar(&[("../evil", tar::EntryType::Regular, b"x", None)]);
    pod.put("hostile.tgz", support::archives::gzip(&tar)).await;
    let (message, _) =
        init_message(&pod, &consume(json!({"s3": pod.s3("hostile.tgz")})), &[]).await;
    assert_eq!(message, "illegal file path: ../evil");
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_that_run_out_say_timed_out_waiting_for_the_condition() {
    let pod = TestPod::new().await;
    pod.put("k", b"data".to_vec()).await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let slow_down = Fault::Respond {
        status: 503,
        code: "SlowDown",
    };
    proxy.add("GET", "/k", slow_down, 100);
    let (message, _) = init_message(
        &pod,
        &consume(json!({"s3": pod.s3_via(proxy.addr, "k")})),
        &[("EXECUTOR_RETRY_BACKOFF_STEPS", "2")],
    )
    .await;
    assert_eq!(
        message,
        "artifact in failed to load: timed out waiting for the condition: failed to get file: injected by the test proxy"
    );
}

#[cfg(feature = "http")]
#[tokio::test(flavor = "multi_thread")]
async fn an_http_404_is_the_status_text() {
    use support::http_server::{HttpServer, Rules};
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules::default()).await;
    let template = consume(json!({"http": {"url": server.url("/missing.txt")}}));
    let (message, _) = init_message(&pod, &template, &[]).await;
    assert_eq!(message, "artifact in failed to load: 404 Not Found");
}

#[tokio::test(flavor = "multi_thread")]
async fn outputs_fail_with_argos_texts_each_followed_by_a_separator() {
    let pod = TestPod::new().await;
    let missing_tgz = pod.roots().emissary_artifact("/tmp/absent.txt");
    let shared_missing = pod.roots().main_ctr_fs("/work/absent");
    let cases: Vec<(&str, Value, String)> = vec![
        (
            "absent from main's filesystem",
            json!([{"name": "out", "path": "/tmp/absent.txt"}]),
            format!(
                "open {}: no such file or directory; ",
                missing_tgz.display()
            ),
        ),
        (
            "absent from a shared volume, archived",
            json!([{"name": "out", "path": "/work/absent"}]),
            format!(
                "stat {}: no such file or directory; ",
                shared_missing.display()
            ),
        ),
        (
            "absent from a shared volume, not archived",
            json!([{"name": "out", "path": "/work/absent", "archive": {"none": {}}}]),
            "/work/absent no such file or directory; ".into(),
        ),
        (
            "a path climbing out of its directory",
            json!([{"name": "out", "path": "/tmp/../etc/passwd"}]),
            format!("{}; ", traversal("out")),
        ),
        (
            "no path",
            json!([{"name": "out"}]),
            "Artifact 'out' did not specify a path; ".into(),
        ),
        (
            "two failures, joined",
            json!([{"name": "a"}, {"name": "b", "path": "/tmp/b/.."}]),
            format!("Artifact 'a' did not specify a path; {}; ", traversal("b")),
        ),
    ];
    for (case, outputs, expected) in cases {
        let mut template = produce(&pod, outputs);
        template["volumes"] = json!([{"name": "work", "emptyDir": {}}]);
        template["container"] = json!({
            "image": "busybox",
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        });
        let (message, _) = wait_message(&pod, &template).await;
        assert_eq!(message, expected, "{case}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outputs_with_nowhere_to_go_say_so() {
    let pod = TestPod::new().await;
    emissary_output(&pod, "/tmp/out.txt", b"out");
    let no_archive = json!({
        "name": "produce",
        "outputs": {"artifacts": [{"name": "out", "path": "/tmp/out.txt"}]},
    });
    let (message, _) = wait_message(&pod, &no_archive).await;
    assert_eq!(
        message,
        "key unsupported: cannot get key for artifact location, because it is invalid; "
    );
    let mut empty_archive = no_archive.clone();
    empty_archive["archiveLocation"] = json!({"archiveLogs": false});
    let (message, _) = wait_message(&pod, &empty_archive).await;
    assert_eq!(
        message,
        "artifact storage is not configured; see the docs for setup instructions: https://argo-workflows.readthedocs.io/en/latest/configure-artifact-repository/; "
    );
}

/// The server's answer to a write into a bucket that does not exist (s3s-fs would create it),
/// with a wording of its own: the message is minio's sentence for the code.
fn no_such_bucket(proxy: &FaultProxy) {
    let missing = Fault::Respond {
        status: 404,
        code: "NoSuchBucket",
    };
    proxy.add("PUT", "/no-such-bucket/", missing, 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn saving_to_a_missing_bucket_says_failed_to_put_file() {
    let pod = TestPod::new().await;
    emissary_output(&pod, "/tmp/out.txt", b"out");
    let proxy = FaultProxy::start(pod.s3_addr).await;
    no_such_bucket(&proxy);
    let mut archive =
        json!({"archiveLogs": false, "s3": pod.s3_via(proxy.addr, "wf-1/wf-1-main-123")});
    archive["s3"]["bucket"] = json!("no-such-bucket");
    let template = json!({
        "name": "produce",
        "outputs": {"artifacts": [{"name": "out", "path": "/tmp/out.txt"}]},
        "archiveLocation": archive,
    });
    let (message, stderr) = wait_message(&pod, &template).await;
    assert_eq!(
        message,
        "failed to put file: The specified bucket does not exist; "
    );
    assert!(stderr.contains("output artifact out"), "{stderr}");

    // The logs are their own failure: no separator after it.
    let logs_only = json!({
        "name": "produce",
        "archiveLocation": {"archiveLogs": true, "s3": archive["s3"].clone()},
    });
    let ctr = pod.roots().container_dir("main");
    std::fs::create_dir_all(&ctr).expect("ctr");
    std::fs::write(ctr.join("combined"), "hello\n").expect("log");
    let (message, _) = wait_message(&pod, &logs_only).await;
    assert_eq!(
        message,
        "failed to put file: The specified bucket does not exist"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_template_over_a_missing_key_says_no_key_found() {
    let pod = TestPod::new().await;
    let data = json!({
        "source": {"artifactPaths": {"name": "src", "s3": pod.s3("no/such/dir")}},
        "transformation": [],
    });
    let template = json!({"name": "data", "data": data});
    let t = template.to_string();
    let d = data.to_string();
    let mut args = vec!["data", d.as_str()];
    args.extend(support::LOG_OPTS);
    let out = pod.argoexec(&args, &[("ARGO_TEMPLATE", &t)]).await;
    assert_eq!(
        support::failure(&pod, &out),
        "unable to process data template: unable to process data source: unable to source artifact paths: no key found of name no/such/dir"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_output_parameter_is_gos_read_error() {
    let pod = TestPod::new().await;
    let template = json!({
        "name": "produce",
        "outputs": {"parameters": [{"name": "p", "valueFrom": {"path": "/tmp/p.txt"}}]},
    });
    let (message, stderr) = wait_message(&pod, &template).await;
    let file = pod.path("/var/run/argo/outputs/parameters/tmp/p.txt");
    assert_eq!(
        message,
        format!("open {}: no such file or directory", file.display())
    );
    assert!(stderr.contains("parameter=p"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_emissary_fails_with_argos_texts() {
    let pod = TestPod::new().await;
    let run = |command: &'static str| {
        let mut args = vec!["emissary"];
        args.extend(support::LOG_OPTS);
        args.extend(["--", command]);
        let pod = &pod;
        async move {
            let out = pod
                .argoexec(&args, &[("ARGO_CONTAINER_NAME", "main")])
                .await;
            support::failure(pod, &out)
        }
    };
    assert_eq!(
        run("true").await,
        "neither /var/run/argo/template nor ARGO_TEMPLATE is available"
    );
    std::fs::write(
        pod.roots().template_file(),
        json!({"name": "main", "container": {"image": "busybox"}}).to_string(),
    )
    .expect("template");
    assert_eq!(
        run("no-such-program-anywhere").await,
        "failed to find name in PATH: exec: \"no-such-program-anywhere\": executable file not found in $PATH"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_storage_refuses_to_save_in_argos_words() {
    use argoexec::storage::{self, Secrets, StorageConfig};
    let pod = TestPod::new().await;
    let location = serde_json::from_value(json!({"raw": {"data": "x"}})).expect("location");
    let driver = storage::open(
        &location,
        &Secrets::new(pod.roots()),
        &StorageConfig::default(),
    )
    .await
    .expect("open");
    let e = driver
        .put("", bytes::Bytes::new(), &Default::default())
        .await
        .expect_err("save");
    assert_eq!(e.termination_message(), "Raw output artifacts unsupported");
}
