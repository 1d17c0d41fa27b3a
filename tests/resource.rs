//! `argoexec resource <action>` against the recording API server: discovery, the request of
//! each action with its content type, condition polling, output parameters and the
//! WorkflowTaskResult sequence, checked against Argo's behaviour (docs/contract.md#commands).

mod support;

use std::process::Stdio;

use serde_json::{Value, json};
use support::kube_server::{
    APPLY_PATCH, JSON, JSON_PATCH, MERGE_PATCH, PodWithApi, Recorded, STRATEGIC_MERGE_PATCH,
};
use support::{LOG_OPTS, assert_ok, eventually, finish};

const NS: &str = "argo";
const RESULTS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argo/workflowtaskresults";
const JOBS: &str = "/apis/batch/v1/namespaces/argo/jobs";
const CONFIGMAPS: &str = "/api/v1/namespaces/argo/configmaps";
const COMPLETED: &str = "workflows.argoproj.io/report-outputs-completed";

fn job_manifest() -> String {
    // As the controller hands it over with `setOwnerReference: true`.
    "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: pi-job-\n  ownerReferences:\n  - apiVersion: argoproj.io/v1alpha1\n    kind: Workflow\n    name: wf-1\n    uid: wf-uid-1\n    controller: true\n    blockOwnerDeletion: true\nspec:\n  template:\n    spec:\n      containers:\n      - name: pi\n        image: perl\n      restartPolicy: Never\n".to_string()
}

fn job_template() -> Value {
    json!({
        "name": "pi-tmpl",
        "resource": {
            "action": "create",
            "setOwnerReference": true,
            "successCondition": "status.succeeded > 0",
            "failureCondition": "status.failed > 3",
            "manifest": job_manifest(),
        },
        "outputs": {"parameters": [
            {"name": "job-name", "valueFrom": {"jsonPath": "{.metadata.name}"}},
            {"name": "job-obj", "valueFrom": {"jsonPath": "{.status}"}},
            {"name": "job-jq", "valueFrom": {"jqFilter": ".metadata.ownerReferences[0] | {kind, name}"}},
        ]},
    })
}

fn command(env: &PodWithApi, action: &str, template: &Value) -> tokio::process::Command {
    let t = template.to_string();
    let mut args = vec!["resource", action];
    args.extend(LOG_OPTS);
    let mut cmd = env.pod.command(
        &args,
        &[
            ("ARGO_TEMPLATE", &t),
            ("KUBECONFIG", &env.kubeconfig),
            ("RESOURCE_STATE_CHECK_INTERVAL", "50ms"),
        ],
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

async fn run(env: &PodWithApi, action: &str, template: &Value) -> std::process::Output {
    finish(command(env, action, template).spawn().expect("spawn")).await
}

fn summary(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let query = if r.query.is_empty() {
                String::new()
            } else {
                format!("?{}", r.query)
            };
            let ct = if r.content_type.is_empty() {
                String::new()
            } else {
                format!(" [{}]", r.content_type)
            };
            format!("{} {}{query}{ct}", r.method, r.path)
        })
        .collect()
}

/// The requests after the first `n` polls of the same GET collapsed into one.
fn collapse_polls(lines: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        if out.last() != Some(&line) || !line.starts_with("GET ") {
            out.push(line);
        }
    }
    out
}

#[tokio::test]
async fn create_waits_for_success_and_reports_json_path_and_jq_outputs() {
    let env = PodWithApi::start(NS).await;
    let child = command(&env, "create", &job_template())
        .spawn()
        .expect("spawn");
    // Play the job controller: the job succeeds a few polls after it is created.
    let created = || {
        env.kube
            .requests()
            .iter()
            .find(|r| r.method == "POST" && r.path == JOBS)
            .and_then(|r| r.body.clone())
    };
    eventually("the job to be created", || created().is_some()).await;
    eventually("the first condition poll", || {
        env.kube
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.starts_with(&format!("{JOBS}/")))
    })
    .await;
    let job_name = env
        .kube
        .requests()
        .iter()
        .find(|r| r.method == "GET" && r.path.starts_with(&format!("{JOBS}/")))
        .map(|r| r.path.trim_start_matches(&format!("{JOBS}/")).to_string())
        .expect("polled");
    env.kube.update(
        "batch/v1",
        NS,
        "jobs",
        &job_name,
        &json!({"status": {"succeeded": 1, "active": 0}}),
    );
    let out = finish(child).await;
    assert_ok(&out);

    let requests = env.kube.requests();
    assert_eq!(
        collapse_polls(summary(&requests)),
        vec![
            format!("POST {RESULTS} [{JSON}]"),
            "GET /apis/batch/v1".to_string(),
            format!("POST {JOBS} [{JSON}]"),
            format!("GET {JOBS}/{job_name}"),
            format!("PATCH {RESULTS}/wf-1-123 [{MERGE_PATCH}]"),
            format!("PATCH {RESULTS}/wf-1-123 [{MERGE_PATCH}]"),
        ],
        "initialize, discover, create, poll (then read the outputs), report, complete"
    );
    // The manifest is sent as it is, owner reference included (the controller put it there).
    let body = created().expect("body");
    assert_eq!(body["metadata"]["generateName"], "pi-job-");
    assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "wf-uid-1");
    assert_eq!(body["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert!(job_name.starts_with("pi-job-"), "{job_name}");

    let report = requests
        .iter()
        .rev()
        .nth(1)
        .and_then(|r| r.body.clone())
        .expect("outputs patch");
    assert_eq!(report["outputs"]["parameters"][0]["name"], "job-name");
    assert_eq!(report["outputs"]["parameters"][0]["value"], json!(job_name));
    assert_eq!(
        serde_json::from_str::<Value>(
            report["outputs"]["parameters"][1]["value"]
                .as_str()
                .expect("text")
        )
        .expect("json"),
        json!({"succeeded": 1, "active": 0})
    );
    assert_eq!(
        report["outputs"]["parameters"][2]["value"],
        r#"{"kind":"Workflow","name":"wf-1"}"#
    );
    assert!(report["outputs"].get("artifacts").is_none());
    assert_eq!(
        requests.last().and_then(|r| r.body.clone()),
        Some(json!({"metadata": {"labels": {COMPLETED: "true"}}}))
    );
}

#[tokio::test]
async fn a_met_failure_condition_fails_the_step() {
    let env = PodWithApi::start(NS).await;
    let mut template = job_template();
    template["resource"]["manifest"] =
        json!(job_manifest().replace("generateName: pi-job-", "name: pi-job"));
    let child = command(&env, "create", &template).spawn().expect("spawn");
    eventually("the job to exist", || {
        env.kube.object("batch/v1", NS, "jobs", "pi-job").is_some()
    })
    .await;
    env.kube.update(
        "batch/v1",
        NS,
        "jobs",
        "pi-job",
        &json!({"status": {"failed": 4}}),
    );
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        env.pod.termination_log(),
        "failure condition 'status.failed>3' evaluated true"
    );
    let requests = env.kube.requests();
    // No outputs are reported after a failure, but the result is labelled complete.
    assert_eq!(
        summary(&requests).last().map(String::as_str),
        Some(format!("PATCH {RESULTS}/wf-1-123 [{MERGE_PATCH}]").as_str())
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.body.as_ref().is_some_and(|b| b.get("outputs").is_some()))
    );
}

fn configmap_template(action: &str, strategy: &str, manifest: &str, flags: &[&str]) -> Value {
    json!({
        "name": "cm",
        "resource": {"action": action, "mergeStrategy": strategy, "manifest": manifest, "flags": flags},
    })
}

/// Runs a configmap template that must succeed.
async fn run_ok(env: &PodWithApi, action: &str, manifest: &str) {
    assert_ok(&run(env, action, &configmap_template(action, "", manifest, &[])).await);
}

/// The first request with `method` whose path starts with `prefix`.
fn first_request(env: &PodWithApi, method: &str, prefix: &str) -> Recorded {
    env.kube
        .requests()
        .into_iter()
        .find(|r| r.method == method && r.path.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {method} {prefix}"))
}

fn seed_configmap(env: &PodWithApi) {
    env.kube.insert(
        "v1",
        NS,
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "my-cm"}, "data": {"a": "1", "b": "2"}}),
    );
}

#[tokio::test]
async fn patch_sends_each_merge_strategy_with_its_content_type() {
    let env = PodWithApi::start(NS).await;
    seed_configmap(&env);
    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: my-cm\ndata:\n  a: changed\n";
    for (strategy, content_type) in [("", STRATEGIC_MERGE_PATCH), ("merge", MERGE_PATCH)] {
        let out = run(
            &env,
            "patch",
            &configmap_template("patch", strategy, manifest, &[]),
        )
        .await;
        assert_ok(&out);
        let patch = env
            .kube
            .requests()
            .into_iter()
            .rfind(|r| r.method == "PATCH" && r.path.starts_with(CONFIGMAPS))
            .expect("patched");
        assert_eq!(patch.path, format!("{CONFIGMAPS}/my-cm"));
        assert_eq!(patch.content_type, content_type, "strategy {strategy:?}");
        assert_eq!(
            patch.body.as_ref().map(|b| b["data"].clone()),
            Some(json!({"a": "changed"}))
        );
    }
    // A JSON patch names its target in the flags; the type is found through discovery.
    let ops = "- op: replace\n  path: /data/b\n  value: patched\n- op: add\n  path: /data/c\n  value: new\n";
    let out = run(
        &env,
        "patch",
        &configmap_template("patch", "json", ops, &["configmap", "my-cm"]),
    )
    .await;
    assert_ok(&out);
    let stored = env
        .kube
        .object("v1", NS, "configmaps", "my-cm")
        .expect("cm");
    assert_eq!(
        stored["data"],
        json!({"a": "changed", "b": "patched", "c": "new"})
    );
    let json_patch = env
        .kube
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PATCH" && r.path.starts_with(CONFIGMAPS))
        .expect("patch");
    assert_eq!(json_patch.content_type, JSON_PATCH);
    assert!(json_patch.body.as_ref().is_some_and(Value::is_array));
    assert!(
        env.kube
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/api/v1")
    );
}

#[tokio::test]
async fn strategic_patch_of_a_custom_resource_fails_with_the_servers_answer() {
    let env = PodWithApi::start(NS).await;
    env.kube.insert(
        "argoproj.io/v1alpha1",
        NS,
        "workflows",
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "other"}, "spec": {}}),
    );
    let manifest = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  name: other\nspec:\n  suspend: true\n";
    let out = run(
        &env,
        "patch",
        &configmap_template("patch", "", manifest, &[]),
    )
    .await;
    assert_eq!(out.status.code(), Some(64));
    let message = env.pod.termination_log();
    assert!(
        message.starts_with("no more retries Error from server (UnsupportedMediaType): the body of the request was in an unknown format"),
        "{message}"
    );
}

#[tokio::test]
async fn apply_get_replace_and_delete() {
    let env = PodWithApi::start(NS).await;
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: my-cm\ndata:\n  a: \"1\"\n";
    run_ok(&env, "apply", manifest).await;
    let apply = first_request(&env, "PATCH", CONFIGMAPS);
    assert_eq!(apply.path, format!("{CONFIGMAPS}/my-cm"));
    assert_eq!(apply.query, "fieldManager=argoexec&force=true");
    assert_eq!(apply.content_type, APPLY_PATCH);
    assert_eq!(
        env.kube
            .object("v1", NS, "configmaps", "my-cm")
            .expect("cm")["data"]["a"],
        "1"
    );

    let get = configmap_template("get", "", manifest, &[]);
    let mut get_with_output = get.clone();
    get_with_output["outputs"] =
        json!({"parameters": [{"name": "a", "valueFrom": {"jsonPath": "{.data.a}"}}]});
    assert_ok(&run(&env, "get", &get_with_output).await);
    let reported = env
        .kube
        .object(
            "argoproj.io/v1alpha1",
            NS,
            "workflowtaskresults",
            "wf-1-123",
        )
        .expect("result");
    assert_eq!(reported["outputs"]["parameters"][0]["value"], "1");

    let replaced =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: my-cm\ndata:\n  z: \"26\"\n";
    run_ok(&env, "replace", replaced).await;
    let put = first_request(&env, "PUT", CONFIGMAPS);
    assert_eq!(
        (put.path.as_str(), put.content_type.as_str()),
        (format!("{CONFIGMAPS}/my-cm").as_str(), JSON)
    );
    assert_eq!(
        env.kube
            .object("v1", NS, "configmaps", "my-cm")
            .expect("cm")["data"],
        json!({"z": "26"})
    );

    run_ok(&env, "delete", replaced).await;
    assert!(env.kube.object("v1", NS, "configmaps", "my-cm").is_none());
    let delete = first_request(&env, "DELETE", CONFIGMAPS);
    assert_eq!(
        delete.body,
        Some(
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        )
    );
    // Deleting what is not there succeeds (`--ignore-not-found`).
    run_ok(&env, "delete", replaced).await;
}

#[tokio::test]
async fn refusals_name_their_cause() {
    let env = PodWithApi::start(NS).await;
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: my-cm\n";
    let mut delete = configmap_template("delete", "", manifest, &[]);
    delete["resource"]["successCondition"] = json!("status.phase == Done");
    let out = run(&env, "delete", &delete).await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        env.pod.termination_log(),
        "successCondition, failureCondition and outputs are not supported for delete action"
    );

    let out = run(&env, "get", &configmap_template("get", "", manifest, &[])).await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        env.pod.termination_log(),
        "no more retries Error from server (NotFound): configmaps \"my-cm\" not found"
    );

    let out = run(
        &env,
        "create",
        &configmap_template("create", "", manifest, &["--dry-run=client"]),
    )
    .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        env.pod
            .termination_log()
            .starts_with("flag --dry-run is not supported by argoexec-rs")
    );

    let unknown = "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n";
    let out = run(
        &env,
        "create",
        &configmap_template("create", "", unknown, &[]),
    )
    .await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        env.pod.termination_log(),
        "no matches for kind \"Gadget\" in version \"example.com/v1\""
    );
}

#[tokio::test]
async fn a_manifest_from_an_input_artifact_gets_the_owner_reference() {
    let env = PodWithApi::start(NS).await;
    let path = env.pod.path("/inputs/manifest.yaml");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-artifact\ndata:\n  k: v\n",
    )
    .expect("manifest");
    let template = json!({
        "name": "cm",
        "inputs": {"artifacts": [{"name": "manifest", "path": "/inputs/manifest.yaml"}]},
        "resource": {"action": "create", "setOwnerReference": true, "manifestFrom": {"artifact": {"name": "manifest"}}},
    });
    assert_ok(&run(&env, "create", &template).await);
    let stored = env
        .kube
        .object("v1", NS, "configmaps", "from-artifact")
        .expect("created");
    assert_eq!(
        stored["metadata"]["ownerReferences"],
        json!([{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "wf-1", "uid": "wf-uid-1", "controller": true, "blockOwnerDeletion": true}])
    );
    assert!(
        !env.pod.path("/tmp/manifest.yaml").exists(),
        "nothing staged for manifestFrom"
    );
}

#[tokio::test]
async fn sigterm_ends_the_wait_and_the_result_is_still_completed() {
    let env = PodWithApi::start(NS).await;
    let mut template = job_template();
    template["resource"]["manifest"] =
        json!(job_manifest().replace("generateName: pi-job-", "name: pi-job"));
    let child = command(&env, "create", &template).spawn().expect("spawn");
    eventually("a condition poll", || {
        env.kube
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == format!("{JOBS}/pi-job"))
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        env.pod.termination_log(),
        "context canceled: SIGTERM received"
    );
    assert_eq!(
        env.kube.requests().last().and_then(|r| r.body.clone()),
        Some(json!({"metadata": {"labels": {COMPLETED: "true"}}}))
    );
}
