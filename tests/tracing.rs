//! Argo 4.1's "Workflow Tracing" through the real `init` and `wait` (issue 16, section 5): they
//! continue the controller's trace from `TRACEPARENT`, emit Argo's span tree with our figures
//! as attributes, and export it over OTLP (http/protobuf and gRPC) to a receiver on loopback
//! that decodes what arrives; with no `OTEL_EXPORTER_OTLP_*` endpoint nothing is sent.
#![cfg(feature = "otel")]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use support::kube_server::PodWithApi;
use support::otlp::{GRPC_PATH, OtlpReceiver, ReceivedSpan};
use support::{TestPod, assert_ok};

const NS: &str = "argo";
/// The controller's span, as its `create_workflow_pod` span would be injected into the pod.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CONTROLLER_SPAN: &str = "00f067aa0ba902b7";
const INPUT_BYTES: usize = 70_000;
const OUTPUT_BYTES: usize = 50_000;

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{CONTROLLER_SPAN}-01")
}

/// A script template with one input, one output (tar.gz by default), the result captured and
/// the logs archived: every span Argo's executor emits for a container step.
fn template(pod: &TestPod) -> Value {
    json!({
        "name": "traced",
        "script": {"image": "alpine", "command": ["sh"], "source": "echo hi",
                   "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "inputs": {"artifacts": [{"name": "in", "path": "/inputs/in.bin", "s3": {"key": "inputs/in.bin"}}]},
        "outputs": {"artifacts": [{"name": "out", "path": "/work/out.bin"}]},
        "archiveLocation": {"archiveLogs": true, "s3": pod.s3("wf-1/wf-1-main-123")},
    })
}

/// Runs `init`, then main's part (its files), then `wait`, all with `env`; their stderr.
async fn run_pod(s: &PodWithApi, env: &[(&str, &str)]) -> String {
    let pod = &s.pod;
    let template = template(pod);
    // Every pod has its namespace mounted with its service account token.
    let account = pod.path("/var/run/secrets/kubernetes.io/serviceaccount");
    std::fs::create_dir_all(&account).expect("mkdir");
    std::fs::write(account.join("namespace"), NS).expect("namespace");
    pod.put("inputs/in.bin", support::pseudo_random(INPUT_BYTES, 3))
        .await;
    let init = pod.init_with(&template, env).await;
    assert_ok(&init);
    std::fs::create_dir_all(pod.path("/mainctrfs/work")).expect("mkdir");
    std::fs::write(
        pod.path("/mainctrfs/work/out.bin"),
        support::pseudo_random(OUTPUT_BYTES, 4),
    )
    .expect("output");
    let ctr = pod.roots().container_dir("main");
    std::fs::create_dir_all(&ctr).expect("ctr dir");
    std::fs::write(ctr.join("stdout"), "hi\n").expect("stdout");
    std::fs::write(ctr.join("combined"), "hi\n").expect("combined");
    let mut wait_env = env.to_vec();
    wait_env.extend([
        ("KUBECONFIG", s.kubeconfig.as_str()),
        ("ARGO_INCLUDE_SCRIPT_OUTPUT", "true"),
    ]);
    let wait = pod.wait(&template, &wait_env).await;
    assert_ok(&wait);
    [init, wait]
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect()
}

/// The one span named `name`.
fn span<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} span in {spans:#?}");
    found[0]
}

/// Every span's name mapped to its parent's name (the controller's span is `controller`).
fn tree(spans: &[ReceivedSpan]) -> BTreeMap<String, String> {
    let names: BTreeMap<&str, &str> = spans
        .iter()
        .map(|s| (s.span_id.as_str(), s.name.as_str()))
        .collect();
    spans
        .iter()
        .map(|s| {
            let parent = match s.parent_span_id.as_str() {
                CONTROLLER_SPAN => "controller",
                "" => "(root)",
                id => names.get(id).copied().unwrap_or("(unknown)"),
            };
            (s.name.clone(), parent.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn init_and_wait_continue_the_controllers_trace_with_argos_span_tree_over_http() {
    let s = PodWithApi::start(NS).await;
    let receiver = OtlpReceiver::start().await;
    let (url, parent) = (receiver.url(), traceparent());
    let stderr = run_pod(
        &s,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &url),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("TRACEPARENT", &parent),
        ],
    )
    .await;
    assert_eq!(
        stderr
            .matches("msg=\"Starting OTLP tracing exporter\"")
            .count(),
        2,
        "{stderr}"
    );

    let spans = receiver.spans();
    let expected: BTreeMap<String, String> = [
        ("runInitContainer", "controller"),
        ("stageFiles", "runInitContainer"),
        ("loadArtifacts", "runInitContainer"),
        ("loadArtifact", "loadArtifacts"),
        ("unarchiveArtifact", "loadArtifact"),
        ("runWaitContainer", "controller"),
        ("createTaskResult", "runWaitContainer"),
        ("waitWorkload", "runWaitContainer"),
        ("captureScriptResult", "runWaitContainer"),
        ("saveArtifacts", "runWaitContainer"),
        ("saveArtifact", "saveArtifacts"),
        ("archiveArtifact", "saveArtifact"),
        ("saveLogs", "runWaitContainer"),
        ("saveContainerLogs", "saveLogs"),
        ("patchTaskResult", "runWaitContainer"),
        ("patchTaskResultLabels", "runWaitContainer"),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p.to_string()))
    .collect();
    assert_eq!(tree(&spans), expected, "{spans:#?}");
    assert_eq!(spans.len(), expected.len(), "no span twice, none else");
    for span in &spans {
        assert_eq!(span.trace_id, TRACE_ID, "{} continues the trace", span.name);
        assert_eq!(span.path, "/v1/traces");
        assert_eq!(span.resource["service.name"], "argoexec");
    }

    for root in ["runInitContainer", "runWaitContainer"] {
        let attrs = &span(&spans, root).attributes;
        assert_eq!(attrs["name"], "wf-1", "{root}");
        assert_eq!(attrs["namespace"], NS, "{root}");
    }
    let load = &span(&spans, "loadArtifact").attributes;
    assert_eq!(load["bytes"], INPUT_BYTES.to_string());
    assert_eq!(load["key"], "inputs/in.bin");
    assert!(
        load["path"].ends_with("/argo/inputs/artifacts/in"),
        "{load:?}"
    );
    assert_eq!(load["retries"], "0");
    assert!(load.contains_key("duration_seconds"), "{load:?}");
    assert_eq!(
        span(&spans, "unarchiveArtifact").attributes["archive"],
        "none"
    );
    let save = &span(&spans, "saveArtifact").attributes;
    assert_eq!(save["artifact"], "out");
    assert_eq!(save["key"], "wf-1/wf-1-main-123/out.tgz");
    assert_eq!(save["parts"], "0", "one PUT");
    assert!(save["bytes"].parse::<u64>().expect("bytes") > 0, "{save:?}");
    let logs = &span(&spans, "saveContainerLogs").attributes;
    assert_eq!(logs["container_name"], "main");
    assert_eq!(logs["bytes"], "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_is_the_default_protocol_as_in_argo() {
    let pod = TestPod::new().await;
    let receiver = OtlpReceiver::start().await;
    let (url, parent) = (receiver.url(), traceparent());
    pod.put("inputs/in.bin", support::pseudo_random(INPUT_BYTES, 3))
        .await;
    let env = [
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url.as_str()),
        ("TRACEPARENT", parent.as_str()),
    ];
    assert_ok(&pod.init_with(&template(&pod), &env).await);

    let spans = receiver.spans();
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "runInitContainer",
            "stageFiles",
            "loadArtifacts",
            "loadArtifact",
            "unarchiveArtifact"
        ])
    );
    let root = span(&spans, "runInitContainer");
    assert_eq!(root.parent_span_id, CONTROLLER_SPAN);
    assert!(
        spans
            .iter()
            .all(|s| s.trace_id == TRACE_ID && s.path == GRPC_PATH)
    );
}

/// Without an endpoint nothing is exported, nor attempted: receivers on the OTLP default ports
/// (where an exporter left at its defaults would send) see no connection, and no exporter
/// starts, whatever else of the trace's environment is set.
#[tokio::test(flavor = "multi_thread")]
async fn without_an_endpoint_nothing_is_exported_or_attempted() {
    let grpc = OtlpReceiver::start_at("127.0.0.1:4317")
        .await
        .expect("the OTLP gRPC default port 4317 is free on loopback");
    let http = OtlpReceiver::start_at("127.0.0.1:4318")
        .await
        .expect("the OTLP HTTP default port 4318 is free on loopback");
    let s = PodWithApi::start(NS).await;
    let parent = traceparent();
    let stderr = run_pod(
        &s,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "argoexec"),
            ("TRACEPARENT", &parent),
        ],
    )
    .await;
    assert!(!stderr.contains("OTLP"), "{stderr}");
    assert_eq!(grpc.connections() + http.connections(), 0);
    assert!(grpc.spans().is_empty() && http.spans().is_empty());
}

/// The emissary's `runMainContainer` continues the trace too, and its child gets that span as
/// its `TRACEPARENT`: a workload that traces itself nests under it, as under Argo's.
#[tokio::test(flavor = "multi_thread")]
async fn the_emissary_hands_its_span_to_the_workload() {
    let pod = TestPod::new().await;
    let receiver = OtlpReceiver::start().await;
    let (url, parent) = (receiver.url(), traceparent());
    std::fs::write(
        pod.roots().template_file(),
        json!({"name": "main", "container": {"image": "busybox"}}).to_string(),
    )
    .expect("template");
    let seen = pod.path("/tmp/traceparent");
    let script = format!("printf %s \"$TRACEPARENT\" > {}", seen.display());
    let mut args = vec!["emissary"];
    args.extend(support::LOG_OPTS);
    args.extend(["--", "sh", "-c", &script]);
    let env = [
        ("ARGO_CONTAINER_NAME", "main"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("TRACEPARENT", parent.as_str()),
    ];
    assert_ok(&pod.argoexec(&args, &env).await);

    let spans = receiver.spans();
    let main = span(&spans, "runMainContainer");
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(main.parent_span_id, CONTROLLER_SPAN);
    assert_eq!(main.trace_id, TRACE_ID);
    assert_eq!(
        std::fs::read_to_string(&seen).expect("the child wrote its TRACEPARENT"),
        format!("00-{TRACE_ID}-{}-01", main.span_id)
    );
}

/// The progress patches `wait` sends while main runs (from a task of their own) belong to the
/// same trace, under `runWaitContainer`, not to traces of their own.
#[tokio::test(flavor = "multi_thread")]
async fn progress_patches_stay_in_the_waits_trace() {
    let s = PodWithApi::start(NS).await;
    let receiver = OtlpReceiver::start().await;
    let (url, parent) = (receiver.url(), traceparent());
    let template = json!({"name": "t", "container": {"image": "busybox"}});
    std::fs::write(s.pod.roots().template_file(), template.to_string()).expect("template");
    std::fs::write(s.pod.path("/var/run/argo/progress"), "1/4\n").expect("progress");
    let mut args = vec!["wait"];
    args.extend(support::LOG_OPTS);
    let env = [
        ("KUBECONFIG", s.kubeconfig.as_str()),
        ("ARGO_PROGRESS_FILE", "/var/run/argo/progress"),
        ("ARGO_PROGRESS_PATCH_TICK_DURATION", "50ms"),
        ("ARGO_PROGRESS_FILE_TICK_DURATION", "10ms"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("TRACEPARENT", parent.as_str()),
    ];
    let wait = s
        .pod
        .command(&args, &env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn wait");
    support::eventually("progress 1/4 to be reported", || {
        s.kube
            .requests()
            .iter()
            .any(|r| r.body == Some(json!({"progress": "1/4"})))
    })
    .await;
    let exit = s.pod.roots().exitcode_file("main");
    std::fs::create_dir_all(exit.parent().expect("parent")).expect("mkdir");
    std::fs::write(exit, "0").expect("exit code");
    assert_ok(&support::finish(wait).await);

    let spans = receiver.spans();
    assert!(spans.iter().all(|s| s.trace_id == TRACE_ID), "{spans:#?}");
    let patches: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "patchTaskResult")
        .collect();
    assert!(
        patches.len() >= 2,
        "the progress and the outputs: {spans:#?}"
    );
    let root = span(&spans, "runWaitContainer");
    assert!(patches.iter().all(|p| p.parent_span_id == root.span_id));
}
