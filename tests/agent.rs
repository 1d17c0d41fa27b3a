//! `argoexec agent init` / `agent main` against the recording API server and a loopback HTTP
//! server: the WorkflowTaskSet watch, HTTP templates (headers from secrets, bodies, success
//! conditions, failures), an executor plugin, the status patches, and the agent's exits.

#![cfg(feature = "http")]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use base64::Engine;
use hyper::Method;
use serde_json::{Value, json};
use support::echo_server::EchoServer;
use support::kube_server::{Fault, MERGE_PATCH, PodWithApi};
use support::{LOG_OPTS, assert_ok, eventually, finish};

const GV: &str = "argoproj.io/v1alpha1";
const NS: &str = "argo";
const SETS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argo/workflowtasksets";

fn http_task(http: Value) -> Value {
    json!({"name": "http", "http": http})
}

fn insert_task_set(env: &PodWithApi, tasks: Value) {
    env.kube.insert(
        GV,
        NS,
        "workflowtasksets",
        json!({"apiVersion": GV, "kind": "WorkflowTaskSet", "metadata": {"name": "wf-1"}, "spec": {"tasks": tasks}}),
    );
}

fn agent(env: &PodWithApi, sub: &str, plugin_address: &str) -> tokio::process::Command {
    let mut args = vec!["agent", sub];
    args.extend(LOG_OPTS);
    let addresses = json!([plugin_address]).to_string();
    let mut cmd = env.pod.command(
        &args,
        &[
            ("KUBECONFIG", &env.kubeconfig),
            ("ARGO_AGENT_PATCH_RATE", "50ms"),
            ("ARGO_PLUGIN_NAMES", "[\"hello\"]"),
            ("ARGO_PLUGIN_ADDRESSES", &addresses),
        ],
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn nodes(env: &PodWithApi) -> Value {
    env.kube
        .object(GV, NS, "workflowtasksets", "wf-1")
        .map(|s| s["status"]["nodes"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn runs_http_and_plugin_tasks_once_and_patches_their_results() {
    let env = PodWithApi::start(NS).await;
    let web = EchoServer::start().await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    env.kube.insert(
        "v1",
        NS,
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-token"}, "data": {"token": b64("s3cr3t")}}),
    );
    let refused = format!("http://{}/nothing", support::process::refused_addr());
    insert_task_set(
        &env,
        json!({
            "wf-1-1": http_task(json!({
                "url": web.url("/status/201"),
                "headers": [
                    {"name": "X-Static", "value": "a"},
                    {"name": "X-Secret", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}}},
                ],
                "successCondition": "response.statusCode == 201 && response.headers['X-Echo'][0] == 'yes' && request.headers['X-Static'][0] == 'a'",
            })),
            "wf-1-2": http_task(json!({"method": "POST", "url": web.url("/status/500"), "body": "payload"})),
            "wf-1-3": http_task(json!({"url": refused, "timeoutSeconds": 5})),
            "wf-1-4": http_task(json!({"url": web.url("/status/200"), "successCondition": "response.body contains 'nope'"})),
            "wf-1-5": {"name": "plug", "plugin": {"hello": {"greeting": "hi"}}},
            "wf-1-6": {"name": "ctr", "container": {"image": "alpine"}},
        }),
    );

    let init = finish(agent(&env, "init", &web.url("")).spawn().expect("init")).await;
    assert_ok(&init);
    let token_file = env.pod.path("/var/run/argo/hello/token");
    let token = std::fs::read_to_string(&token_file).expect("token");
    assert_eq!(token.len(), 32);
    assert_eq!(
        std::fs::metadata(&token_file)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o440
    );

    let child = agent(&env, "main", &web.url("")).spawn().expect("main");
    eventually("six node results", || {
        nodes(&env).as_object().is_some_and(|n| n.len() == 6)
    })
    .await;
    // The status patches re-deliver the set (MODIFIED): nothing may run twice.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    env.kube.update(
        GV,
        NS,
        "workflowtasksets",
        "wf-1",
        &json!({"metadata": {"labels": {"workflows.argoproj.io/completed": "true"}}}),
    );
    let out = finish(child).await;
    assert_ok(&out);

    let n = nodes(&env);
    assert_eq!(n["wf-1-1"]["phase"], "Succeeded", "{n}");
    assert_eq!(
        serde_json::from_str::<Value>(n["wf-1-1"]["outputs"]["result"].as_str().expect("result"))
            .expect("json"),
        json!({"path": "/status/201", "method": "GET"})
    );
    assert_eq!(n["wf-1-2"]["phase"], "Failed");
    assert_eq!(
        n["wf-1-2"]["message"],
        "received non-2xx response code: 500"
    );
    assert_eq!(n["wf-1-3"]["phase"], "Failed");
    assert!(
        n["wf-1-3"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing")),
        "{n}"
    );
    assert_eq!(
        n["wf-1-4"]["message"],
        "successCondition 'response.body contains 'nope'' evaluated false"
    );
    assert_eq!(
        n["wf-1-5"],
        json!({"phase": "Succeeded", "message": "done by plugin", "outputs": {"result": "plugged"}})
    );
    assert_eq!(n["wf-1-6"]["phase"], "Error");
    assert_eq!(
        n["wf-1-6"]["message"],
        "error processing task: agent cannot execute: unknown task type: Container"
    );

    let seen = web.seen();
    let count = |path: &str| seen.iter().filter(|s| s.path == path).count();
    assert_eq!(
        (
            count("/status/201"),
            count("/status/500"),
            count("/api/v1/template.execute")
        ),
        (1, 1, 1),
        "{seen:?}"
    );
    let get = seen.iter().find(|s| s.path == "/status/201").expect("get");
    assert_eq!(get.headers["x-static"], vec!["a".to_string()]);
    assert_eq!(get.headers["x-secret"], vec!["s3cr3t".to_string()]);
    let post = seen.iter().find(|s| s.path == "/status/500").expect("post");
    assert_eq!(
        (post.method.as_str(), post.body.as_slice()),
        ("POST", b"payload".as_slice())
    );
    let plugin = seen
        .iter()
        .find(|s| s.path == "/api/v1/template.execute")
        .expect("plugin");
    assert_eq!(
        plugin.headers["authorization"],
        vec![format!("Bearer {token}")]
    );
    let args: Value = serde_json::from_slice(&plugin.body).expect("json");
    assert_eq!(
        args["workflow"]["metadata"],
        json!({"name": "wf-1", "namespace": "argo", "uid": "wf-uid-1"})
    );
    assert_eq!(args["template"]["plugin"]["hello"]["greeting"], "hi");

    let requests = env.kube.requests();
    let watch = requests.iter().find(|r| r.path == SETS).expect("watch");
    assert_eq!(
        watch.query,
        "fieldSelector=metadata%2Ename%3Dwf%2D1&watch=true"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.path == "/api/v1/namespaces/argo/secrets/api-token")
    );
    let patches: Vec<_> = requests.iter().filter(|r| r.method == "PATCH").collect();
    assert!(!patches.is_empty());
    for p in &patches {
        assert_eq!(
            (p.path.as_str(), p.content_type.as_str()),
            (format!("{SETS}/wf-1/status").as_str(), MERGE_PATCH)
        );
        assert!(
            p.body
                .as_ref()
                .is_some_and(|b| b["status"]["nodes"].is_object())
        );
    }
}

#[tokio::test]
async fn a_refused_patch_becomes_an_error_result_and_deletion_stops_the_agent() {
    let env = PodWithApi::start(NS).await;
    let web = EchoServer::start().await;
    insert_task_set(
        &env,
        json!({"wf-1-1": http_task(json!({
            "url": web.url("/status/200"),
            "headers": [{"name": "X-Secret", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}],
        }))}),
    );
    env.kube.fail(Fault::on(Method::PATCH, 422, 1));
    assert_ok(&finish(agent(&env, "init", &web.url("")).spawn().expect("init")).await);
    let child = agent(&env, "main", &web.url("")).spawn().expect("main");
    eventually("an error result", || {
        nodes(&env)["wf-1-1"]["phase"] == "Error"
    })
    .await;
    env.kube.remove(GV, NS, "workflowtasksets", "wf-1");
    let out = finish(child).await;
    assert_ok(&out);
    // The request was never sent (its secret is missing), and the first patch was refused:
    // the node says both.
    assert!(web.seen().is_empty());
    let requests = env.kube.requests();
    let first_patch = requests
        .iter()
        .find(|r| r.method == "PATCH")
        .and_then(|r| r.body.clone())
        .expect("patch");
    assert_eq!(first_patch["status"]["nodes"]["wf-1-1"]["phase"], "Failed");
    assert_eq!(
        first_patch["status"]["nodes"]["wf-1-1"]["message"],
        "secrets \"absent\" not found"
    );
    let last_patch = requests
        .iter()
        .rfind(|r| r.method == "PATCH")
        .and_then(|r| r.body.clone())
        .expect("patch");
    let message = last_patch["status"]["nodes"]["wf-1-1"]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.starts_with(
            "HTTP request completed successfully but an error occurred when patching its result: "
        ),
        "{message}"
    );
}
