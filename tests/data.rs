//! `argoexec data`: list the source's keys through the driver (a real S3 server on loopback),
//! transform them with expr-lang expressions, and report `outputs.result` through the
//! WorkflowTaskResult (create with the outputs, then the completion label), as Argo does.

mod support;

use serde_json::{Value, json};
use support::kube_server::{JSON, MERGE_PATCH, PodWithApi, summary};
use support::{LOG_OPTS, assert_ok};

const GV: &str = "argoproj.io/v1alpha1";
const NS: &str = "argo";
const RESULTS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argo/workflowtaskresults";

fn template(source: Value, transformation: Value) -> Value {
    json!({
        "name": "list-files",
        "data": {"source": {"artifactPaths": source}, "transformation": transformation},
        "outputs": {"parameters": [{"name": "kept", "value": "as given"}]},
    })
}

async fn run_data(env: &PodWithApi, template: &Value) -> std::process::Output {
    let data = template["data"].to_string();
    let t = template.to_string();
    let mut args = vec!["data", data.as_str()];
    args.extend(LOG_OPTS);
    env.pod
        .argoexec(
            &args,
            &[("ARGO_TEMPLATE", &t), ("KUBECONFIG", &env.kubeconfig)],
        )
        .await
}

#[tokio::test]
async fn lists_filters_maps_and_reports_the_result() {
    let env = PodWithApi::start(NS).await;
    for key in [
        "in/a.pdf",
        "in/b.txt",
        "in/sub/c.pdf",
        "inbox/d.pdf",
        "other/e.pdf",
    ] {
        env.pod.put(key, b"x".to_vec()).await;
    }
    let mut source = json!({"name": "files", "s3": env.pod.s3("in")});
    source["s3"]["key"] = json!("in");
    let t = template(
        source,
        json!([
            {"expression": "filter(data, {# endsWith \".pdf\"})"},
            {"expression": "map(data, {# + \".ready\"})"},
        ]),
    );
    let out = run_data(&env, &t).await;
    assert_ok(&out);

    let requests = env.kube.requests();
    assert_eq!(
        summary(&requests),
        vec![
            ("POST".into(), RESULTS.into(), JSON.into()),
            (
                "PATCH".into(),
                format!("{RESULTS}/wf-1-123"),
                MERGE_PATCH.into()
            ),
        ]
    );
    let created = requests[0].body.clone().expect("body");
    assert_eq!(created["kind"], "WorkflowTaskResult");
    assert_eq!(created["metadata"]["name"], "wf-1-123");
    assert_eq!(
        created["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"],
        "false"
    );
    let result = created["outputs"]["result"].as_str().expect("result");
    assert_eq!(
        serde_json::from_str::<Value>(result).expect("json"),
        json!(["in/a.pdf.ready", "in/sub/c.pdf.ready"]),
        "only keys under in/ (not inbox/), filtered then mapped"
    );
    assert_eq!(created["outputs"]["parameters"][0]["value"], "as given");
    assert_eq!(
        requests[1].body,
        Some(
            json!({"metadata": {"labels": {"workflows.argoproj.io/report-outputs-completed": "true"}}})
        )
    );
    let stored = env
        .kube
        .object(GV, NS, "workflowtaskresults", "wf-1-123")
        .expect("stored");
    assert_eq!(stored["outputs"]["result"], json!(result));
}

#[tokio::test]
async fn a_bad_expression_fails_the_step_and_still_completes_the_result() {
    let env = PodWithApi::start(NS).await;
    env.pod.put("in/a.pdf", b"x".to_vec()).await;
    let t = template(
        json!({"name": "files", "s3": env.pod.s3("in")}),
        json!([{"expression": "sortBy(data, #)"}]),
    );
    let out = run_data(&env, &t).await;
    assert_eq!(out.status.code(), Some(64));
    let message = env.pod.termination_log();
    assert!(
        message.starts_with(
            "unable to process data template: unable to process data transformation: error processing data step 0: "
        ) && message.contains("sortBy"),
        "{message}"
    );
    // No outputs are reported; as in Argo, the deferred completion label is still attempted
    // (and finds no result: the failed pod is what the controller goes by).
    assert_eq!(
        summary(&env.kube.requests()),
        vec![(
            "PATCH".into(),
            format!("{RESULTS}/wf-1-123"),
            MERGE_PATCH.into()
        )]
    );
}

#[tokio::test]
async fn an_unreachable_source_names_the_cause() {
    let env = PodWithApi::start(NS).await;
    let mut location = env.pod.s3("in");
    location["bucket"] = json!("no-such-bucket");
    let t = template(json!({"name": "files", "s3": location}), json!([]));
    let out = run_data(&env, &t).await;
    assert_eq!(out.status.code(), Some(64));
    let message = env.pod.termination_log();
    assert!(
        message.starts_with(
            "unable to process data template: unable to process data source: unable to source artifact paths: "
        ),
        "{message}"
    );
}
