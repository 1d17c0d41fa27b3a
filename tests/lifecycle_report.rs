//! `wait` reporting to a Kubernetes API server on loopback: the upsert rules (create, patch on
//! AlreadyExists, create again on NotFound), retries of transient and Forbidden failures and
//! their bound, progress, SIGTERM, error aggregation, and the no-API local mode.

mod support;

use std::process::Stdio;

use hyper::Method;
use serde_json::{Value, json};
use support::kube_server::{Fault, KubeServer, Recorded};
use support::{LOG_OPTS, TestPod, assert_ok, eventually, finish};

const GV: &str = "argoproj.io/v1alpha1";
const PLURAL: &str = "workflowtaskresults";
const NS: &str = "argo";
const NAME: &str = "wf-1-123";
const COMPLETED: &str = "workflows.argoproj.io/report-outputs-completed";

struct Setup {
    pod: TestPod,
    kube: KubeServer,
    kubeconfig: String,
}

async fn setup() -> Setup {
    let pod = TestPod::new().await;
    let kube = KubeServer::start().await;
    let kubeconfig = kube
        .kubeconfig(pod.data.path(), NS)
        .to_string_lossy()
        .into_owned();
    Setup {
        pod,
        kube,
        kubeconfig,
    }
}

/// A container template with one output parameter read from a shared volume.
fn template() -> Value {
    json!({
        "name": "t",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"parameters": [{"name": "p", "valueFrom": {"path": "/work/p.txt"}}]},
    })
}

fn write_param(pod: &TestPod, value: &str) {
    let path = pod.path("/mainctrfs/work/p.txt");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, value).expect("param");
}

/// Runs `wait` on `template()` after main has finished, reporting to the API server.
async fn run_wait(s: &Setup) -> std::process::Output {
    s.pod
        .wait(&template(), &[("KUBECONFIG", &s.kubeconfig)])
        .await
}

/// Starts `wait` on `template()` while main is still running (no exit code yet).
fn spawn_wait(s: &Setup, env: &[(&str, &str)]) -> tokio::process::Child {
    std::fs::write(s.pod.roots().template_file(), template().to_string()).expect("template");
    let mut args = vec!["wait"];
    args.extend(LOG_OPTS);
    let mut all = vec![("KUBECONFIG", s.kubeconfig.as_str())];
    all.extend_from_slice(env);
    s.pod
        .command(&args, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wait")
}

/// What the emissary's last act looks like to wait.
fn main_exits(pod: &TestPod) {
    let exit = pod.roots().exitcode_file("main");
    std::fs::create_dir_all(exit.parent().expect("parent")).expect("mkdir");
    std::fs::write(exit, "0").expect("exit code");
}

fn methods(requests: &[Recorded]) -> Vec<&str> {
    requests.iter().map(|r| r.method.as_str()).collect()
}

fn outputs_patch(value: &str) -> Value {
    json!({"outputs": {"parameters": [
        {"name": "p", "value": value, "valueFrom": {"path": "/work/p.txt"}},
    ]}})
}

fn completed_patch() -> Value {
    json!({"metadata": {"labels": {COMPLETED: "true"}}})
}

fn stored(kube: &KubeServer) -> Value {
    kube.object(GV, NS, PLURAL, NAME)
        .expect("stored task result")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_task_result_is_patched_instead_of_created() {
    let s = setup().await;
    s.kube.insert(
        GV,
        NS,
        PLURAL,
        json!({"apiVersion": GV, "kind": "WorkflowTaskResult", "metadata": {"name": NAME, "labels": {COMPLETED: "false"}}}),
    );
    write_param(&s.pod, "v\n");
    let out = run_wait(&s).await;
    assert_ok(&out);
    let requests = s.kube.requests();
    assert_eq!(methods(&requests), ["POST", "PATCH", "PATCH", "PATCH"]);
    let bodies: Vec<Value> = requests[1..]
        .iter()
        .map(|r| r.body.clone().expect("body"))
        .collect();
    assert_eq!(bodies, [json!({}), outputs_patch("v"), completed_patch()]);
    assert_eq!(stored(&s.kube)["metadata"]["labels"][COMPLETED], "true");
    assert!(
        out.stdout.is_empty(),
        "nothing is printed when an API is configured"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_retried_with_the_same_request() {
    let s = setup().await;
    s.kube.fail(Fault::on(Method::POST, 500, 3));
    s.kube.fail(Fault::on(Method::PATCH, 503, 2));
    write_param(&s.pod, "v");
    let out = run_wait(&s).await;
    assert_ok(&out);
    let requests = s.kube.requests();
    assert_eq!(
        methods(&requests),
        [
            "POST", "POST", "POST", "POST", "PATCH", "PATCH", "PATCH", "PATCH"
        ]
    );
    let create = requests[0].body.clone();
    assert!(requests[..4].iter().all(|r| r.body == create));
    for r in &requests[4..7] {
        assert_eq!(r.body, Some(outputs_patch("v")));
    }
    assert_eq!(requests[7].body, Some(completed_patch()));
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_is_retried_with_a_warning_until_rbac_allows_it() {
    let s = setup().await;
    s.kube.fail(Fault::on(Method::POST, 403, 2));
    write_param(&s.pod, "v");
    let out = run_wait(&s).await;
    assert_ok(&out);
    assert_eq!(
        methods(&s.kube.requests()),
        ["POST", "POST", "POST", "PATCH", "PATCH"]
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("https://argo-workflows.readthedocs.io/en/latest/workflow-rbac/"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lasting_forbidden_gives_up_within_the_retry_timeout() {
    let s = setup().await;
    s.kube.fail(Fault {
        method: None,
        status: 403,
        times: usize::MAX,
    });
    let out = s
        .pod
        .wait(
            &json!({"name": "t", "container": {}}),
            &[
                ("KUBECONFIG", &s.kubeconfig),
                ("ARGOEXEC_API_RETRY_TIMEOUT", "300ms"),
            ],
        )
        .await;
    assert_eq!(out.status.code(), Some(64));
    let message = s.pod.termination_log();
    assert!(
        message.starts_with("upsert the task result gave up after"),
        "{message}"
    );
    assert!(
        message.ends_with(
            "workflowtaskresults.argoproj.io is forbidden: User \"system:serviceaccount:argo:default\" cannot create resource \"workflowtaskresults\" in API group \"argoproj.io\" in the namespace \"argo\" (Forbidden, HTTP 403)"
        ),
        "{message}"
    );
    let requests = s.kube.requests();
    assert!(
        requests.iter().any(|r| r.method == "PATCH"),
        "finalizing is still attempted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_result_deleted_meanwhile_is_created_again_with_the_outputs() {
    let s = setup().await;
    write_param(&s.pod, "v");
    let wait = spawn_wait(&s, &[]);
    eventually("the task result to exist", || {
        s.kube.object(GV, NS, PLURAL, NAME).is_some()
    })
    .await;
    s.kube.remove(GV, NS, PLURAL, NAME);
    main_exits(&s.pod);
    assert_ok(&finish(wait).await);
    let requests = s.kube.requests();
    assert_eq!(methods(&requests), ["POST", "PATCH", "POST", "PATCH"]);
    let recreated = requests[2].body.clone().expect("body");
    assert_eq!(recreated["metadata"]["name"], NAME);
    assert_eq!(recreated["outputs"], outputs_patch("v")["outputs"]);
    assert_eq!(stored(&s.kube)["metadata"]["labels"][COMPLETED], "true");
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_is_reported_while_main_runs_and_the_last_with_the_outputs() {
    let s = setup().await;
    write_param(&s.pod, "v");
    let progress = s.pod.path("/var/run/argo/progress");
    std::fs::write(&progress, "1/4\n").expect("progress");
    let wait = spawn_wait(
        &s,
        &[
            ("ARGO_PROGRESS_FILE", "/var/run/argo/progress"),
            ("ARGO_PROGRESS_PATCH_TICK_DURATION", "50ms"),
            ("ARGO_PROGRESS_FILE_TICK_DURATION", "10ms"),
        ],
    );
    eventually("progress 1/4 to be reported", || {
        s.kube
            .requests()
            .iter()
            .any(|r| r.body == Some(json!({"progress": "1/4"})))
    })
    .await;
    std::fs::write(&progress, "1/4\n3/4\n").expect("progress");
    main_exits(&s.pod);
    assert_ok(&finish(wait).await);
    let task_result = stored(&s.kube);
    assert_eq!(task_result["progress"], "3/4");
    assert_eq!(task_result["outputs"], outputs_patch("v")["outputs"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_the_wait_but_outputs_are_still_reported_and_finalized() {
    let s = setup().await;
    write_param(&s.pod, "early");
    let wait = spawn_wait(&s, &[]);
    eventually("wait to create the task result", || {
        !s.kube.requests().is_empty()
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(wait.id().expect("pid")).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    assert_ok(&finish(wait).await);
    assert!(!s.pod.roots().exitcode_file("main").exists());
    let requests = s.kube.requests();
    assert_eq!(methods(&requests), ["POST", "PATCH", "PATCH"]);
    assert_eq!(requests[1].body, Some(outputs_patch("early")));
    assert_eq!(requests[2].body, Some(completed_patch()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_error_is_the_message_and_everything_else_still_runs() {
    let s = setup().await;
    let good = s.pod.path("/mainctrfs/work/good.txt");
    std::fs::create_dir_all(good.parent().expect("parent")).expect("mkdir");
    std::fs::write(&good, "good").expect("good");
    let template = json!({
        "name": "t",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {
            "parameters": [
                {"name": "missing", "valueFrom": {"path": "/work/none.txt"}},
                {"name": "after", "valueFrom": {"path": "/work/good.txt"}},
            ],
            "artifacts": [
                {"name": "gone-1", "path": "/work/gone-1"},
                {"name": "good", "path": "/work/good.txt"},
                {"name": "gone-2", "path": "/work/gone-2"},
            ],
        },
        "archiveLocation": s.pod.archive_location("wf-1/wf-1-main-123"),
    });
    let out = s
        .pod
        .wait(&template, &[("KUBECONFIG", &s.kubeconfig)])
        .await;
    assert_eq!(out.status.code(), Some(64));
    let missing = |path: &str| {
        let p = s.pod.path(&format!("/mainctrfs{path}"));
        format!("{}: no such file or directory", p.display())
    };
    assert_eq!(
        s.pod.termination_log(),
        format!("open {}", missing("/work/none.txt"))
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let aggregated = format!(
        "stat {}; stat {}; ",
        missing("/work/gone-1"),
        missing("/work/gone-2")
    );
    assert!(
        log.contains(&aggregated),
        "artifact failures are one aggregated error: {log}"
    );
    // The good artifact was saved and reported; the parameter after the failing one was not read.
    assert_eq!(
        stored(&s.kube)["outputs"],
        json!({
            "parameters": [
                {"name": "missing", "valueFrom": {"path": "/work/none.txt"}},
                {"name": "after", "valueFrom": {"path": "/work/good.txt"}},
            ],
            "artifacts": [
                {"name": "good", "path": "/work/good.txt", "s3": {"key": "wf-1/wf-1-main-123/good.tgz"}},
            ],
        })
    );
    assert_eq!(stored(&s.kube)["metadata"]["labels"][COMPLETED], "true");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_namespace_flag_overrides_the_kubeconfig() {
    let s = setup().await;
    let mut args = vec!["wait"];
    args.extend(LOG_OPTS);
    let kubeconfig = format!("--kubeconfig={}", s.kubeconfig);
    args.extend([kubeconfig.as_str(), "--namespace", "team-a"]);
    std::fs::write(
        s.pod.roots().template_file(),
        json!({"name": "t", "container": {}}).to_string(),
    )
    .expect("template");
    main_exits(&s.pod);
    let out = s.pod.argoexec(&args, &[]).await;
    assert_ok(&out);
    assert!(s.kube.requests().iter().all(|r| {
        r.path
            .starts_with("/apis/argoproj.io/v1alpha1/namespaces/team-a/")
    }));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unparseable_deadline_is_refused() {
    let pod = TestPod::new().await;
    let out = pod
        .wait(
            &json!({"name": "t", "container": {}}),
            &[("ARGO_DEADLINE", "tomorrow")],
        )
        .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        pod.termination_log()
            .starts_with("ARGO_DEADLINE \"tomorrow\" is not an RFC 3339 time"),
        "{}",
        pod.termination_log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_api_the_task_result_is_printed_once() {
    let pod = TestPod::new().await;
    write_param(&pod, "v");
    let out = pod.wait(&template(), &[]).await;
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed: Value = serde_json::from_str(stdout.trim()).expect("one JSON document");
    assert_eq!(stdout.lines().count(), 1);
    assert_eq!(printed["metadata"]["name"], NAME);
    assert_eq!(printed["metadata"]["labels"][COMPLETED], "true");
    assert_eq!(printed["outputs"], outputs_patch("v")["outputs"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("no Kubernetes API configured").count(),
        1,
        "{log}"
    );
}

/// What the artifact-GC command will do with the same client and server: list its tasks by
/// label selector, then merge-patch each one's status subresource.
#[tokio::test(flavor = "multi_thread")]
async fn the_shared_client_lists_by_label_and_patches_status() {
    use argoexec_exec::report::{ApiOptions, KubeClient};
    use kube::api::{ListParams, Patch, PatchParams};
    use kube::core::ApiResource;

    let s = setup().await;
    for (name, pod_label) in [("gc-0", "123"), ("gc-1", "456")] {
        s.kube.insert(
            GV,
            NS,
            "workflowartifactgctasks",
            json!({
                "apiVersion": GV,
                "kind": "WorkflowArtifactGCTask",
                "metadata": {"name": name, "labels": {"workflows.argoproj.io/artifact-gc-pod": pod_label}},
                "spec": {"artifactsByNode": {}},
            }),
        );
    }
    let client = KubeClient::connect(&ApiOptions {
        kubeconfig: Some(s.kubeconfig.clone()),
        ..Default::default()
    })
    .await
    .expect("connect")
    .expect("an API is configured");
    assert_eq!(client.namespace(), NS);
    let tasks = client.api(&ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: GV.into(),
        kind: "WorkflowArtifactGCTask".into(),
        plural: "workflowartifactgctasks".into(),
    });
    let listed = client
        .call("list GC tasks", || async {
            tasks
                .list(&ListParams::default().labels("workflows.argoproj.io/artifact-gc-pod=123"))
                .await
                .map_err(Into::into)
        })
        .await
        .expect("list");
    let names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|t| t.metadata.name.clone())
        .collect();
    assert_eq!(names, ["gc-0"]);
    let status = json!({"status": {"artifactResultsByNode": {"n1": {"artifactResults": {"a": {"name": "a", "success": true}}}}}});
    client
        .call("patch GC task status", || async {
            tasks
                .patch_status("gc-0", &PatchParams::default(), &Patch::Merge(&status))
                .await
                .map_err(Into::into)
        })
        .await
        .expect("patch status");
    let requests = s.kube.requests();
    assert_eq!(methods(&requests), ["GET", "PATCH"]);
    let selector = url::form_urlencoded::parse(requests[0].query.as_bytes())
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        selector.as_deref(),
        Some("workflows.argoproj.io/artifact-gc-pod=123")
    );
    assert_eq!(
        requests[1].path,
        "/apis/argoproj.io/v1alpha1/namespaces/argo/workflowartifactgctasks/gc-0/status"
    );
    let task = s
        .kube
        .object(GV, NS, "workflowartifactgctasks", "gc-0")
        .expect("task");
    assert_eq!(task["status"], status["status"]);
    assert_eq!(task["spec"], json!({"artifactsByNode": {}}));
}
