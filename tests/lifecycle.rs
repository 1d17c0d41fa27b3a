//! A whole pod, as three real processes sharing one `/var/run/argo`: `init` loads the input and
//! copies the binary; `wait` starts next and blocks; `main` runs through the copied binary's
//! `emissary`; then wait saves every kind of output to the S3 server and reports them to the
//! Kubernetes API server, in the contract's exact requests.

mod support;

use std::io::Read;
use std::process::Stdio;

use serde_json::{Value, json};
use support::kube_server::{JSON, KubeServer, MERGE_PATCH, TOKEN};
use support::{LOG_OPTS, TestPod, assert_ok, eventually, finish};

const NS: &str = "argo";
const TASK_RESULTS: &str = "/apis/argoproj.io/v1alpha1/namespaces/argo/workflowtaskresults";

/// `(path, content)` of the regular files in a tgz, in archive order.
fn tgz_files(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(data));
    let mut files = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("entry");
        if entry.header().entry_type().is_file() {
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("content");
            files.push((path, content));
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn init_emissary_and_wait_run_a_script_pod_and_report_every_output() {
    let pod = TestPod::new().await;
    let kube = KubeServer::start().await;
    let kubeconfig = kube.kubeconfig(pod.data.path(), NS);
    let main_fs = tempfile::tempdir().expect("main's own filesystem");
    let out = main_fs.path().join("out");
    let out = out.to_str().expect("utf-8");
    let input = pod.roots().input_artifact("in");
    let input_bytes = support::pseudo_random(300_000, 11);
    pod.put("inputs/in.bin", input_bytes.clone()).await;

    let script = format!(
        "set -e\n\
         mkdir -p {out}/tree/sub\n\
         printf 'hello from main\\n' > {out}/greeting.txt\n\
         cat {input} > {out}/report.bin\n\
         printf 'alpha' > {out}/tree/a.txt\n\
         printf 'beta' > {out}/tree/sub/b.txt\n\
         echo 'a line on stderr' >&2\n\
         echo 'the result line'\n",
        input = input.display()
    );
    let template = json!({
        "name": "produce",
        "script": {"image": "alpine", "command": ["sh"], "source": script},
        "inputs": {"artifacts": [{"name": "in", "path": "/inputs/in.bin", "s3": {"key": "inputs/in.bin"}}]},
        "outputs": {
            "parameters": [
                {"name": "greeting", "valueFrom": {"path": format!("{out}/greeting.txt")}},
                {"name": "fallback", "valueFrom": {"path": format!("{out}/absent.txt"), "default": "plan-b"}},
            ],
            "artifacts": [
                {"name": "report", "path": format!("{out}/report.bin")},
                {"name": "tree", "path": format!("{out}/tree")},
            ],
        },
        "archiveLocation": {"archiveLogs": true, "s3": pod.s3("wf-1/wf-1-main-123")},
    });

    // init: inputs, template, script, and the binary the main container runs.
    assert_ok(&pod.init(&template).await);
    let copied_binary = pod.roots().binary_copy();
    assert!(copied_binary.exists(), "init copied the binary");

    // wait starts with main, creates the empty task result, then blocks on main's exit code.
    let pod_env = [("ARGO_INCLUDE_SCRIPT_OUTPUT", "true")];
    let kubeconfig_flag = format!("--kubeconfig={}", kubeconfig.display());
    let mut wait_args = vec!["wait"];
    wait_args.extend(LOG_OPTS);
    wait_args.push(&kubeconfig_flag);
    let mut wait_env = pod_env.to_vec();
    wait_env.push(("ARGO_CONTAINER_NAME", "wait"));
    let mut wait = pod
        .command(&wait_args, &wait_env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wait");
    eventually("wait to create the task result", || {
        !kube.requests().is_empty()
    })
    .await;
    assert!(
        wait.try_wait().expect("wait status").is_none(),
        "wait must block until main's exit code exists"
    );

    // main: the controller's command line, run from the copy init made.
    let staged_script = pod.roots().staging_script();
    let staged_script = staged_script.to_str().expect("utf-8");
    let mut main_args = vec!["emissary"];
    main_args.extend(LOG_OPTS);
    main_args.extend(["--", "sh", staged_script]);
    let mut main_env = pod_env.to_vec();
    main_env.push(("ARGO_CONTAINER_NAME", "main"));
    let main = pod
        .command_for(&copied_binary, &main_args, &main_env)
        .output()
        .await
        .expect("run main");
    assert_ok(&main);
    assert_eq!(
        String::from_utf8_lossy(&main.stdout),
        "the result line\n",
        "the child's stdout passes through the emissary"
    );
    assert!(String::from_utf8_lossy(&main.stderr).contains("a line on stderr"));
    let wait = finish(wait).await;
    assert_ok(&wait);
    assert_eq!(
        std::fs::read_to_string(pod.roots().exitcode_file("main")).expect("exit code"),
        "0"
    );

    // Storage: Argo's keys, Argo's formats.
    assert_eq!(
        pod.keys("wf-1/").await,
        vec![
            "wf-1/wf-1-main-123/main.log",
            "wf-1/wf-1-main-123/report.tgz",
            "wf-1/wf-1-main-123/tree.tgz",
        ]
    );
    let report = pod
        .get("wf-1/wf-1-main-123/report.tgz")
        .await
        .expect("report");
    assert_eq!(
        tgz_files(&report),
        vec![("report.bin".to_string(), input_bytes)]
    );
    let tree = pod.get("wf-1/wf-1-main-123/tree.tgz").await.expect("tree");
    let mut tree_files = tgz_files(&tree);
    tree_files.sort();
    assert_eq!(
        tree_files,
        vec![
            ("tree/a.txt".to_string(), b"alpha".to_vec()),
            ("tree/sub/b.txt".to_string(), b"beta".to_vec()),
        ]
    );
    let log = pod.get("wf-1/wf-1-main-123/main.log").await.expect("log");
    let mut lines: Vec<&str> = std::str::from_utf8(&log).expect("utf-8").lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, vec!["a line on stderr", "the result line"]);
    assert!(log.ends_with(b"\n"), "the log is stored as written");

    // The API: create (empty), merge-patch the outputs, merge-patch the completion label.
    let outputs = json!({
        "parameters": [
            {"name": "greeting", "value": "hello from main", "valueFrom": {"path": format!("{out}/greeting.txt")}},
            {"name": "fallback", "value": "plan-b", "valueFrom": {"path": format!("{out}/absent.txt"), "default": "plan-b"}},
        ],
        "artifacts": [
            {"name": "report", "path": format!("{out}/report.bin"), "s3": {"key": "wf-1/wf-1-main-123/report.tgz"}},
            {"name": "tree", "path": format!("{out}/tree"), "s3": {"key": "wf-1/wf-1-main-123/tree.tgz"}},
            {"name": "main-logs", "s3": {"key": "wf-1/wf-1-main-123/main.log"}},
        ],
        "result": "the result line",
    });
    let requests = kube.requests();
    let summary: Vec<(String, String, String)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.content_type.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("POST".into(), TASK_RESULTS.into(), JSON.into()),
            (
                "PATCH".into(),
                format!("{TASK_RESULTS}/wf-1-123"),
                MERGE_PATCH.into()
            ),
            (
                "PATCH".into(),
                format!("{TASK_RESULTS}/wf-1-123"),
                MERGE_PATCH.into()
            ),
        ]
    );
    assert!(
        requests
            .iter()
            .all(|r| r.authorization == format!("Bearer {TOKEN}"))
    );
    let bodies: Vec<Value> = requests
        .iter()
        .map(|r| r.body.clone().expect("body"))
        .collect();
    assert_eq!(
        bodies,
        vec![
            json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "WorkflowTaskResult",
                "metadata": {
                    "name": "wf-1-123",
                    "labels": {
                        "workflows.argoproj.io/workflow": "wf-1",
                        "workflows.argoproj.io/report-outputs-completed": "false",
                    },
                    "ownerReferences": [{
                        "apiVersion": "argoproj.io/v1alpha1",
                        "kind": "Workflow",
                        "name": "wf-1",
                        "uid": "wf-uid-1",
                    }],
                },
            }),
            json!({"outputs": outputs}),
            json!({"metadata": {"labels": {"workflows.argoproj.io/report-outputs-completed": "true"}}}),
        ]
    );
    let stored = kube
        .object(
            "argoproj.io/v1alpha1",
            NS,
            "workflowtaskresults",
            "wf-1-123",
        )
        .expect("stored task result");
    assert_eq!(stored["outputs"], outputs);
    assert_eq!(
        stored["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"],
        "true"
    );
}
