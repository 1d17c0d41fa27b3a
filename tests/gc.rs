//! `argoexec artifact delete` as the real process against an S3 server and the recording
//! Kubernetes API server on loopback: 100,000 artifacts in bounded memory, the status patches
//! in Argo's shape, per-artifact failures, prefix deletes, aborts, and paging.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};
use support::fault_proxy::{Fault as StoreFault, FaultProxy};
use support::kube_server::{Fault, MERGE_PATCH, PodWithApi, Recorded};
use support::{BUCKET, LOG_OPTS, assert_ok};

const GV: &str = "argoproj.io/v1alpha1";
const PLURAL: &str = "workflowartifactgctasks";
const NS: &str = "argo";
const LABEL: &str = "workflows.argoproj.io/artifact-gc-pod";
const POD_HASH: &str = "2932315447";
/// Argo's GC pod memory limit.
const GC_POD_LIMIT_KIB: u64 = 64 * 1024;
const NOT_SUPPORTED: &str = "delete not supported for this artifact storage, please check the following issue for details: https://github.com/argoproj/argo-workflows/issues/3102";

async fn setup() -> PodWithApi {
    PodWithApi::start(NS).await
}

/// Stores this pod's task number `index`, as the controller creates it.
fn add_task(s: &PodWithApi, index: usize, nodes: Vec<(String, Option<Value>, Vec<Value>)>) {
    s.kube.insert(
        GV,
        NS,
        PLURAL,
        task(
            &format!("wf-artgc-wfcomp-{POD_HASH}-{index}"),
            POD_HASH,
            nodes,
        ),
    );
}

/// A GC task as the controller creates it: `<node>: {archiveLocation, artifacts}` per node.
fn task(name: &str, label: &str, nodes: Vec<(String, Option<Value>, Vec<Value>)>) -> Value {
    let by_node: serde_json::Map<String, Value> = nodes
        .into_iter()
        .map(|(node, archive, artifacts)| {
            let artifacts: serde_json::Map<String, Value> = artifacts
                .into_iter()
                .map(|a| (a["name"].as_str().expect("name").to_string(), a))
                .collect();
            let mut spec = json!({"artifacts": artifacts});
            if let Some(a) = archive {
                spec["archiveLocation"] = a;
            }
            (node, spec)
        })
        .collect();
    json!({
        "apiVersion": GV,
        "kind": "WorkflowArtifactGCTask",
        "metadata": {"name": name, "labels": {LABEL: label}},
        "spec": {"artifactsByNode": by_node},
    })
}

/// The GC pod's command line and environment (docs/contract.md#artifact-gc): `ARGO_DEADLINE` is the
/// pod's creation time, `ARGO_TEMPLATE` is `{}`.
fn gc_command(s: &PodWithApi, env: &[(&str, &str)]) -> tokio::process::Command {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut args = vec!["artifact", "delete"];
    args.extend(LOG_OPTS);
    let mut all = vec![
        ("KUBECONFIG", s.kubeconfig.as_str()),
        ("ARGO_ARTIFACT_POD_NAME", POD_HASH),
        ("ARGO_TEMPLATE", "{}"),
        ("ARGO_DEADLINE", now.as_str()),
    ];
    all.extend_from_slice(env);
    let mut cmd = s.pod.command(&args, &all);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Runs the command to its end, polling its peak resident memory (`VmHWM`, KiB) meanwhile.
async fn run_measured(mut cmd: tokio::process::Command) -> (std::process::Output, u64) {
    use tokio::io::AsyncReadExt;
    let mut child = cmd.spawn().expect("spawn argoexec");
    let pid = child.id().expect("pid");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let stdout = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf).await;
        buf
    });
    let stderr = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf).await;
        buf
    });
    let mut peak = 0;
    let status = 'run: {
        // At most 20 minutes, in 20 ms steps.
        for _ in 0..60_000 {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break 'run status;
            }
            peak = peak.max(vm_hwm_kib(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("argoexec artifact delete did not finish in 20 minutes");
    };
    let output = std::process::Output {
        status,
        stdout: stdout.await.expect("stdout"),
        stderr: stderr.await.expect("stderr"),
    };
    (output, peak)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Regular files below `dir` (objects of the s3s-fs data directory).
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.expect("entry"))
        .map(|e| {
            let t = e.file_type().expect("type");
            if t.is_dir() {
                count_files(&e.path())
            } else {
                usize::from(t.is_file())
            }
        })
        .sum()
}

/// The status patches the command sent, in order.
fn status_patches(requests: &[Recorded]) -> Vec<Recorded> {
    requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/status"))
        .cloned()
        .collect()
}

/// Every `(task, node, artifact) -> result` the patches carried.
fn patched_results(patches: &[Recorded]) -> BTreeMap<(String, String, String), Value> {
    let mut out = BTreeMap::new();
    for p in patches {
        let task = p
            .path
            .trim_end_matches("/status")
            .rsplit('/')
            .next()
            .expect("task name")
            .to_string();
        let body = p.body.as_ref().expect("patch body");
        let nodes = body["status"]["artifactResultsByNode"]
            .as_object()
            .expect("artifactResultsByNode");
        for (node, results) in nodes {
            for (name, result) in results["artifactResults"]
                .as_object()
                .expect("artifactResults")
            {
                out.insert((task.clone(), node.clone(), name.clone()), result.clone());
            }
        }
    }
    out
}

/// 90 tasks of 1,000 artifacts and one of 10,000 (about 1.2 MB of JSON, near the API
/// server's object size limit): 100,000 artifacts in 10 nodes per task.
const BIG_TASKS: usize = 91;
const NODES: usize = 10;

fn per_node(task: usize) -> usize {
    if task == BIG_TASKS - 1 { 1000 } else { 100 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_of_100000_artifacts_fits_the_gc_pod_memory_limit() {
    let total: usize = (0..BIG_TASKS).map(|t| NODES * per_node(t)).sum();
    assert_eq!(total, 100_000);
    let s = setup().await;
    let bucket = s.pod.data.path().join(BUCKET);
    // The objects, written straight into s3s-fs's layout (`<data>/<bucket>/<key>`).
    let key = |t: usize, n: usize, a: usize| format!("wf-big/wf-big-{t}-{n}/out-{a}.tgz");
    for t in 0..BIG_TASKS {
        for n in 0..NODES {
            let dir = bucket.join(format!("wf-big/wf-big-{t}-{n}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            for a in 0..per_node(t) {
                std::fs::write(dir.join(format!("out-{a}.tgz")), b"artifact bytes")
                    .expect("object");
            }
        }
    }
    // Another GC pod's objects and task: untouched by this pod.
    std::fs::create_dir_all(bucket.join("other")).expect("mkdir");
    std::fs::write(bucket.join("other/keep.tgz"), b"keep").expect("object");
    s.kube.insert(
        GV,
        NS,
        PLURAL,
        task(
            "wf-big-artgc-wfcomp-1-0",
            "1",
            vec![(
                "wf-big-other".into(),
                Some(s.pod.archive_location("x")),
                vec![json!({"name": "keep", "s3": {"key": "other/keep.tgz"}})],
            )],
        ),
    );
    for t in 0..BIG_TASKS {
        let nodes = (0..NODES)
            .map(|n| {
                let artifacts = (0..per_node(t))
                    .map(|a| json!({"name": format!("out-{a}"), "path": "/tmp/out", "s3": {"key": key(t, n, a)}}))
                    .collect();
                (
                    format!("wf-big-{t}-{n}"),
                    Some(s.pod.archive_location("wf-big/{{pod.name}}")),
                    artifacts,
                )
            })
            .collect();
        s.kube.insert(
            GV,
            NS,
            PLURAL,
            task(
                &format!("wf-big-artgc-wfcomp-{POD_HASH}-{t:03}"),
                POD_HASH,
                nodes,
            ),
        );
    }
    assert_eq!(count_files(&bucket.join("wf-big")), total);

    let (out, peak_kib) = run_measured(gc_command(&s, &[])).await;
    assert_ok(&out);
    eprintln!(
        "artifact delete of {total} artifacts: peak RSS (VmHWM) {peak_kib} KiB = {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    assert!(peak_kib > 0, "the peak RSS was measured");
    assert!(
        peak_kib < GC_POD_LIMIT_KIB,
        "peak RSS {peak_kib} KiB exceeds the GC pod's 64 MiB limit"
    );

    // Every object of this pod's tasks is gone; the other pod's is not.
    assert_eq!(count_files(&bucket.join("wf-big")), 0);
    assert!(bucket.join("other/keep.tgz").exists());

    let requests = s.kube.requests();
    // Listed a page at a time, by this pod's label.
    let lists: Vec<&Recorded> = requests.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(lists.len(), BIG_TASKS, "one task per page by default");
    for l in &lists {
        let q: BTreeMap<String, String> = url::form_urlencoded::parse(l.query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(q["labelSelector"], format!("{LABEL}={POD_HASH}"));
        assert_eq!(q["limit"], "1");
    }
    // Results: merge patches of the status subresource, at most 1,000 results each: one per
    // small task, ten for the big one.
    let patches = status_patches(&requests);
    assert_eq!(patches.len(), BIG_TASKS - 1 + 10);
    assert!(patches.iter().all(|p| p.content_type == MERGE_PATCH));
    let results = patched_results(&patches);
    assert_eq!(results.len(), total);
    for ((_, _, name), result) in &results {
        assert_eq!(result, &json!({"name": name, "success": true}));
    }
    // The stored status of the big task holds all its results, merged from its patches.
    let stored = s
        .kube
        .object(
            GV,
            NS,
            PLURAL,
            &format!("wf-big-artgc-wfcomp-{POD_HASH}-090"),
        )
        .expect("task");
    let by_node = stored["status"]["artifactResultsByNode"]
        .as_object()
        .expect("status");
    assert_eq!(by_node.len(), NODES);
    assert!(by_node.values().all(
        |n| n["artifactResults"].as_object().map(|r| r.len()) == Some(per_node(BIG_TASKS - 1))
    ));
    // The other pod's task was never touched.
    let other = s
        .kube
        .object(GV, NS, PLURAL, "wf-big-artgc-wfcomp-1-0")
        .expect("task");
    assert!(other.get("status").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_per_artifact_in_argos_shape() {
    let s = setup().await;
    for (key, body) in [
        ("dir/a.txt", "a"),
        ("dir/sub/b.txt", "b"),
        ("dir-sibling.txt", "not below dir/"),
        ("single.tgz", "s"),
        ("wf/pod-2/relocated.tgz", "r"),
    ] {
        s.pod.put(key, body.as_bytes().to_vec()).await;
    }
    let archive = s.pod.archive_location("wf/pod-1");
    let mut missing_bucket = s.pod.s3("whatever.tgz");
    missing_bucket["bucket"] = json!("no-such-bucket");
    add_task(
        &s,
        0,
        vec![
            (
                "wf-1".into(),
                Some(archive.clone()),
                vec![
                    json!({"name": "tree", "s3": {"key": "dir/"}}),
                    json!({"name": "single", "s3": {"key": "single.tgz"}}),
                    json!({"name": "absent", "s3": {"key": "never/written.tgz"}}),
                    json!({"name": "web", "http": {"url": "http://127.0.0.1:9/file"}}),
                    json!({"name": "repo", "git": {"repo": "https://example.invalid/r.git"}}),
                    json!({"name": "elsewhere", "s3": missing_bucket}),
                ],
            ),
            (
                "wf-2".into(),
                Some(archive),
                vec![json!({"name": "relocated", "s3": {"key": "wf/pod-2/relocated.tgz"}})],
            ),
        ],
    );
    // A second task, reached through a continue token that has expired once, and a status
    // patch that fails twice before the server takes it.
    add_task(
        &s,
        1,
        vec![(
            "wf-3".into(),
            Some(s.pod.archive_location("wf/pod-3")),
            vec![json!({"name": "late", "s3": {"key": "single.tgz"}})],
        )],
    );
    s.kube.expire_continue_tokens(1);
    s.kube.fail(Fault::on(Method::PATCH, 503, 2));

    let (out, _) = run_measured(gc_command(&s, &[])).await;
    assert_ok(&out);

    // What is left: only the sibling that merely shares the prefix's letters.
    assert_eq!(s.pod.keys("").await, ["dir-sibling.txt"]);

    let requests = s.kube.requests();
    let patches = status_patches(&requests);
    let first = format!("/apis/{GV}/namespaces/{NS}/{PLURAL}/wf-artgc-wfcomp-{POD_HASH}-0/status");
    let answered: Vec<&Recorded> = patches.iter().filter(|p| p.path == first).collect();
    assert!(!answered.is_empty(), "the first task was patched");
    let body = answered.last().expect("patch").body.clone().expect("body");
    let results = &body["status"]["artifactResultsByNode"];
    assert_eq!(
        results["wf-2"],
        json!({"artifactResults": {"relocated": {"name": "relocated", "success": true}}})
    );
    let node = &results["wf-1"]["artifactResults"];
    for ok in ["tree", "single", "absent"] {
        assert_eq!(node[ok], json!({"name": ok, "success": true}), "{ok}");
    }
    for unsupported in ["web", "repo"] {
        assert_eq!(
            node[unsupported],
            json!({"name": unsupported, "error": NOT_SUPPORTED}),
            "{unsupported}"
        );
    }
    let failed = &node["elsewhere"];
    assert_eq!(failed["name"], "elsewhere");
    assert!(
        failed.get("success").is_none(),
        "false is omitted, as Go does"
    );
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    // The listing restarted after the expired token, and the second task was answered too.
    let lists = requests.iter().filter(|r| r.method == "GET").count();
    assert!(
        lists >= 4,
        "first page, expired page, first page again, second page: {lists}"
    );
    let second = s
        .kube
        .object(GV, NS, PLURAL, &format!("wf-artgc-wfcomp-{POD_HASH}-1"))
        .expect("task");
    assert_eq!(
        second["status"]["artifactResultsByNode"]["wf-3"]["artifactResults"]["late"],
        json!({"name": "late", "success": true})
    );
    // Retried status patches: the two 503s and the one that went through, same body.
    let to_first: Vec<&Recorded> = patches.iter().filter(|p| p.path == first).collect();
    assert!(to_first.len() >= 3, "{}", to_first.len());
    assert!(to_first.windows(2).all(|w| w[0].body == w[1].body));
}

/// GC deletes follow Argo's GC backoff whatever the pod's `ARGO_DEADLINE` says (it is the GC
/// pod's creation time): a retry due after the deadline still happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delete_is_retried_past_the_pod_deadline() {
    let s = setup().await;
    s.pod.put("flaky.tgz", b"f".to_vec()).await;
    let proxy = FaultProxy::start(s.pod.s3_addr).await;
    let unavailable = StoreFault::Respond {
        status: 503,
        code: "ServiceUnavailable",
    };
    proxy.add("DELETE", "flaky.tgz", unavailable, 1);
    add_task(
        &s,
        0,
        vec![(
            "wf-1".into(),
            None,
            vec![json!({"name": "flaky", "s3": s.pod.s3_via(proxy.addr, "flaky.tgz")})],
        )],
    );
    // The retry is due 4 s after the refusal, past a deadline 3 s away.
    let deadline = (chrono::Utc::now() + chrono::Duration::seconds(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let env = [
        ("ARGO_DEADLINE", deadline.as_str()),
        ("RETRY_BACKOFF_DURATION", "4s"),
    ];
    let (out, _) = run_measured(gc_command(&s, &env)).await;
    assert_ok(&out);
    assert!(s.pod.keys("").await.is_empty(), "deleted");
    let deletes = proxy.seen().iter().filter(|r| r.method == "DELETE").count();
    assert_eq!(
        deletes, 2,
        "a refused delete, then the one that went through"
    );
    let task = s
        .kube
        .object(GV, NS, PLURAL, &format!("wf-artgc-wfcomp-{POD_HASH}-0"))
        .expect("task");
    assert_eq!(
        task["status"]["artifactResultsByNode"]["wf-1"]["artifactResults"]["flaky"],
        json!({"name": "flaky", "success": true})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlocatable_artifact_stops_the_command_with_exit_64() {
    let s = setup().await;
    add_task(
        &s,
        0,
        vec![(
            "wf-1".into(),
            None,
            vec![json!({"name": "orphan", "s3": {"key": "wf/pod/orphan.tgz"}})],
        )],
    );
    let (out, _) = run_measured(gc_command(&s, &[])).await;
    assert_eq!(out.status.code(), Some(64));
    let message = s.pod.termination_log();
    assert!(
        message.contains("\"orphan\"") && message.contains("template artifact location not set"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_that_cannot_be_opened_stops_the_command() {
    let s = setup().await;
    let mut archive = s.pod.archive_location("wf/pod");
    archive["s3"]["accessKeySecret"]["name"] = json!("not-mounted");
    add_task(
        &s,
        0,
        vec![(
            "wf-1".into(),
            Some(archive),
            vec![json!({"name": "out", "s3": {"key": "wf/pod/out.tgz"}})],
        )],
    );
    let (out, _) = run_measured(gc_command(&s, &[])).await;
    assert_eq!(out.status.code(), Some(64));
    let message = s.pod.termination_log();
    assert!(message.contains("not-mounted"), "{message}");
    assert!(
        status_patches(&s.kube.requests()).is_empty(),
        "nothing was deleted, so nothing is reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pod_hash_there_is_nothing_to_do() {
    let s = setup().await;
    let mut cmd = gc_command(&s, &[]);
    cmd.env_remove("ARGO_ARTIFACT_POD_NAME");
    let (out, _) = run_measured(cmd).await;
    assert_ok(&out);
    assert!(s.kube.requests().is_empty());
}
