//! The init-less layout (docs/contract.md#the-init-less-layout): `supervisor` beside main's emissary, with the
//! status marker between them. Happy path: inputs loaded and linked, main released by
//! `READY`, outputs reported. Failure: a missing input makes the marker `FAILED`, main exits
//! 65 without running its command, and the supervisor reports only logs and the cause.

mod support;

use std::process::Stdio;

use serde_json::{Value, json};
use support::kube_server::{JSON, MERGE_PATCH, PodWithApi, summary};
use support::{LOG_OPTS, assert_ok, finish};

const NS: &str = "argo";
const RESULTS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argo/workflowtaskresults";

fn template(env: &PodWithApi, input_key: &str) -> (Value, std::path::PathBuf) {
    let data = env.pod.root.path().join("data");
    let input = data.join("in.txt");
    let out = data.join("out.txt");
    let t = json!({
        "name": "initless",
        "container": {"image": "alpine"},
        "inputs": {"artifacts": [{"name": "in", "path": input.to_str().expect("utf-8"), "s3": env.pod.s3(input_key)}]},
        "outputs": {"parameters": [{"name": "copied", "valueFrom": {"path": out.to_str().expect("utf-8")}}]},
        "archiveLocation": {"archiveLogs": false, "s3": env.pod.s3("wf-1/wf-1-main-123")},
    });
    (t, data)
}

/// Starts the supervisor and main's emissary together, as the kubelet does.
async fn run_pod(
    env: &PodWithApi,
    template: &Value,
    data: &std::path::Path,
) -> (std::process::Output, std::process::Output) {
    let t = template.to_string();
    let mut sup_args = vec!["supervisor"];
    sup_args.extend(LOG_OPTS);
    let supervisor = env
        .pod
        .command(
            &sup_args,
            &[
                ("ARGO_TEMPLATE", &t),
                ("ARGO_INITLESS_POD", "true"),
                ("ARGO_CONTAINER_NAME", "supervisor"),
                ("KUBECONFIG", &env.kubeconfig),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn supervisor");
    let script = format!(
        "cat {in_} > {out} && echo ran > {marker}",
        in_ = data.join("in.txt").display(),
        out = data.join("out.txt").display(),
        marker = data.join("ran").display(),
    );
    let mut main_args = vec!["emissary"];
    main_args.extend(LOG_OPTS);
    main_args.extend(["--", "sh", "-c", &script]);
    let main = env
        .pod
        .command(
            &main_args,
            &[
                ("ARGO_WAIT_FOR_READY", "true"),
                ("ARGO_CONTAINER_NAME", "main"),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn main");
    let main = finish(main).await;
    let supervisor = finish(supervisor).await;
    (supervisor, main)
}

#[tokio::test]
async fn ready_releases_main_and_the_outputs_are_reported() {
    let env = PodWithApi::start(NS).await;
    env.pod
        .put("inputs/in.txt", b"hello from s3".to_vec())
        .await;
    let (t, data) = template(&env, "inputs/in.txt");
    let (supervisor, main) = run_pod(&env, &t, &data).await;
    assert_ok(&main);
    assert_ok(&supervisor);

    assert_eq!(
        std::fs::read_to_string(env.pod.roots().status_marker()).expect("marker"),
        "READY\n"
    );
    // The input is a link into the input-artifacts volume, which the supervisor filled.
    let link = data.join("in.txt");
    assert_eq!(
        std::fs::read_link(&link).expect("symlink"),
        env.pod.roots().input_artifact("in")
    );
    assert_eq!(
        std::fs::read_to_string(data.join("out.txt")).expect("out"),
        "hello from s3"
    );
    assert!(
        env.pod.roots().template_file().exists(),
        "the supervisor wrote the template"
    );

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
            (
                "PATCH".into(),
                format!("{RESULTS}/wf-1-123"),
                MERGE_PATCH.into()
            ),
        ]
    );
    let outputs = requests[1].body.clone().expect("outputs");
    assert_eq!(
        outputs["outputs"]["parameters"][0]["value"],
        "hello from s3"
    );
}

#[tokio::test]
async fn a_failed_pre_main_stops_main_with_65_and_is_reported() {
    let env = PodWithApi::start(NS).await;
    let (t, data) = template(&env, "inputs/absent.txt");
    let (supervisor, main) = run_pod(&env, &t, &data).await;
    assert_eq!(
        main.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&main.stderr)
    );
    assert!(!data.join("ran").exists(), "main's command never ran");
    assert_eq!(
        std::fs::read_to_string(env.pod.roots().exitcode_file("main")).expect("exit code"),
        "65"
    );
    assert_eq!(supervisor.status.code(), Some(64));
    let marker = std::fs::read_to_string(env.pod.roots().status_marker()).expect("marker");
    let message = env.pod.termination_log();
    assert!(
        message
            .starts_with("failed to load non-plugin input artifacts: artifact in failed to load"),
        "{message}"
    );
    assert_eq!(marker, format!("FAILED\n{message}"));
    // Outputs are not collected (no parameter value), but the result is reported and
    // labelled complete.
    let requests = env.kube.requests();
    let outputs = requests[1].body.clone().expect("outputs");
    assert_eq!(outputs["outputs"]["parameters"][0]["name"], "copied");
    assert!(outputs["outputs"]["parameters"][0].get("value").is_none());
    assert_eq!(
        requests.last().and_then(|r| r.body.clone()),
        Some(
            json!({"metadata": {"labels": {"workflows.argoproj.io/report-outputs-completed": "true"}}})
        )
    );
}

#[tokio::test]
async fn main_presumes_a_silent_supervisor_dead() {
    let env = PodWithApi::start(NS).await;
    let mut args = vec!["emissary"];
    args.extend(LOG_OPTS);
    args.extend(["--", "true"]);
    let main = env
        .pod
        .argoexec(
            &args,
            &[
                ("ARGO_WAIT_FOR_READY", "true"),
                ("ARGO_CONTAINER_NAME", "main"),
                ("ARGOEXEC_SUPERVISOR_HEARTBEAT_TIMEOUT", "1s"),
            ],
        )
        .await;
    assert_eq!(main.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&main.stderr);
    assert!(
        stderr.contains("supervisor presumed dead: status marker never appeared within 1s"),
        "{stderr}"
    );
}
