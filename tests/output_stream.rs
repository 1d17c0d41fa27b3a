//! Outputs in main's own filesystem streamed from the emissary to `wait` over the socket on
//! `/var/run/argo`, instead of staged as `.tgz` files: real `wait` and `emissary` processes,
//! the S3 server and the recording Kubernetes API server. Streaming must store exactly what
//! staging stores, stage nothing, and fall back to staging whenever the stream cannot be used.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::fault_proxy::{Fault, FaultProxy};
use support::kube_server::KubeServer;
use support::{LOG_OPTS, TestPod, assert_ok, eventually, finish};

const NS: &str = "argo";
const PREFIX: &str = "wf-1/wf-1-main-123";

/// The outputs of one template: every archive setting, for a file and a directory. Staging
/// keys its archive by path, so outputs of one path share the level it was staged at: each
/// gzip level gets a path of its own.
fn template(out: &Path, s3: Value) -> Value {
    let path = |name: &str| out.join(name).display().to_string();
    let (file, tree) = (path("data.bin"), path("tree"));
    json!({
        "name": "produce",
        "container": {"image": "alpine", "command": ["true"]},
        "outputs": {"artifacts": [
            {"name": "file-fast", "path": file, "archive": {"tar": {"compressionLevel": 1}}},
            {"name": "tree-best", "path": path("tree9"), "archive": {"tar": {"compressionLevel": 9}}},
            {"name": "tree-default", "path": path("tree6")},
            {"name": "file-raw", "path": file, "archive": {"none": {}}},
            {"name": "tree-raw", "path": tree, "archive": {"none": {}}},
            {"name": "tree-zip", "path": tree, "archive": {"zip": {}}},
            {"name": "absent", "path": out.join("absent").display().to_string(), "optional": true},
        ]},
        "archiveLocation": {"s3": s3},
    })
}

/// main's own filesystem: a compressible file and a tree.
fn main_filesystem() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("main's filesystem");
    std::fs::write(
        dir.path().join("data.bin"),
        support::pseudo_random(3 << 20, 5),
    )
    .expect("data");
    for tree in ["tree", "tree9", "tree6"] {
        support::make_tree(&dir.path().join(tree));
    }
    dir
}

fn wait_command(pod: &TestPod, kubeconfig: &Path, env: &[(&str, &str)]) -> tokio::process::Command {
    let flag = format!("--kubeconfig={}", kubeconfig.display());
    let mut args = vec!["wait"];
    args.extend(LOG_OPTS);
    args.push(&flag);
    let mut env = env.to_vec();
    env.push(("ARGO_CONTAINER_NAME", "wait"));
    let mut cmd = pod.command(&args, &env);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// A pod with the recording Kubernetes API server, and the kubeconfig that points to it.
async fn pod_with_api() -> (TestPod, KubeServer, PathBuf) {
    let pod = TestPod::new().await;
    let kube = KubeServer::start().await;
    let kubeconfig = kube.kubeconfig(pod.data.path(), NS);
    (pod, kube, kubeconfig)
}

/// Writes the template as init does, starts wait, and returns once it offers the socket.
async fn start_wait(pod: &TestPod, kubeconfig: &Path, template: &Value) -> tokio::process::Child {
    std::fs::write(pod.roots().template_file(), template.to_string()).expect("template");
    let wait = wait_command(pod, kubeconfig, &[]).spawn().expect("wait");
    eventually("wait to offer the output socket", || {
        pod.roots().output_socket().exists()
    })
    .await;
    wait
}

async fn emissary(pod: &TestPod, name: &str, command: &[&str]) -> Output {
    let mut args = vec!["emissary"];
    args.extend(LOG_OPTS);
    args.push("--");
    args.extend(command);
    tokio::time::timeout(
        Duration::from_secs(120),
        pod.command(&args, &[("ARGO_CONTAINER_NAME", name)])
            .output(),
    )
    .await
    .expect("the emissary finished in time")
    .expect("the emissary ran")
}

/// Every object under the pod's archive key, by key.
async fn objects(pod: &TestPod) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    for key in pod.keys(&format!("{PREFIX}/")).await {
        let body = pod.get(&key).await.expect("object");
        all.insert(key, body);
    }
    all
}

/// The regular files the emissary staged on the emptyDir.
fn staged(pod: &TestPod) -> Vec<String> {
    let dir = pod.roots().var_run_argo().join("outputs/artifacts");
    support::paths_below(&dir)
        .into_iter()
        .filter(|p| dir.join(p).is_file())
        .collect()
}

struct Run {
    objects: BTreeMap<String, Vec<u8>>,
    reported: Value,
    staged: Vec<String>,
    main: Output,
    wait: Output,
}

/// One pod: `wait` started before main (streaming) or only after main finished (staging:
/// no socket is offered while main runs).
async fn run_pod(main_fs: &Path, streaming: bool) -> Run {
    let (pod, kube, kubeconfig) = pod_with_api().await;
    let template = template(main_fs, pod.s3(PREFIX));
    let (main, wait) = if streaming {
        let wait = start_wait(&pod, &kubeconfig, &template).await;
        let main = emissary(&pod, "main", &["true"]).await;
        (main, finish(wait).await)
    } else {
        std::fs::write(pod.roots().template_file(), template.to_string()).expect("template");
        let main = emissary(&pod, "main", &["true"]).await;
        let wait = wait_command(&pod, &kubeconfig, &[]).spawn().expect("wait");
        (main, finish(wait).await)
    };
    let reported = kube
        .object(
            "argoproj.io/v1alpha1",
            NS,
            "workflowtaskresults",
            "wf-1-123",
        )
        .expect("task result")["outputs"]
        .clone();
    Run {
        objects: objects(&pod).await,
        reported,
        staged: staged(&pod),
        main,
        wait,
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_outputs_are_stored_byte_for_byte_as_staged_ones_and_nothing_is_staged() {
    let main_fs = main_filesystem();
    let streamed = run_pod(main_fs.path(), true).await;
    let staged = run_pod(main_fs.path(), false).await;
    for run in [&streamed, &staged] {
        assert_ok(&run.main);
        assert_ok(&run.wait);
    }

    // Streaming: every output went over the socket, nothing was written to the emptyDir.
    assert_eq!(streamed.staged, Vec::<String>::new(), "nothing staged");
    assert_eq!(
        stderr(&streamed.main)
            .matches("streamed the output to wait")
            .count(),
        6,
        "{}",
        stderr(&streamed.main)
    );
    // Staging (no wait running): the fallback archives each output as before.
    assert_eq!(staged.staged.len(), 4, "{:?}", staged.staged);

    // The same objects, byte for byte, reported the same way.
    assert_eq!(
        streamed.objects.keys().collect::<Vec<_>>(),
        staged.objects.keys().collect::<Vec<_>>()
    );
    for (key, bytes) in &streamed.objects {
        assert!(bytes == &staged.objects[key], "{key} differs");
    }
    assert_eq!(streamed.reported, staged.reported);

    // compressionLevel is honoured (gzip's XFL byte: 4 fastest, 2 best) and `none` stores the
    // raw bytes.
    let get = |name: &str| &streamed.objects[&format!("{PREFIX}/{name}")];
    assert_eq!(get("file-fast.tgz")[8], 4);
    assert_eq!(get("tree-best.tgz")[8], 2);
    assert_eq!(get("tree-default.tgz")[8], 0);
    let data = std::fs::read(main_fs.path().join("data.bin")).expect("data");
    assert!(get("data.bin") == &data, "`none` stores the file as it is");
    assert_eq!(
        get("tree/sub/b.bin"),
        &std::fs::read(main_fs.path().join("tree/sub/b.bin")).expect("b")
    );
    let mut fast = Vec::new();
    flate2::read::GzDecoder::new(&get("file-fast.tgz")[..])
        .read_to_end(&mut fast)
        .expect("gunzip");
    let mut tar = tar::Archive::new(&fast[..]);
    let mut entry = tar
        .entries()
        .expect("tar")
        .next()
        .expect("one")
        .expect("entry");
    let mut content = Vec::new();
    entry.read_to_end(&mut content).expect("content");
    assert!(content == data);
}

/// The token and name framing of the protocol, as an emissary sends them.
fn connect(pod: &TestPod, token: &[u8], name: &str) -> (UnixStream, u8) {
    let mut stream = UnixStream::connect(pod.roots().output_socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut header = b"ARGOOUT1".to_vec();
    header.extend_from_slice(token);
    header.extend_from_slice(&u16::try_from(name.len()).expect("short").to_be_bytes());
    header.extend_from_slice(name.as_bytes());
    stream.write_all(&header).expect("header");
    let mut reply = [0u8; 1];
    stream.read_exact(&mut reply).expect("reply");
    (stream, reply[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_refuses_strangers_and_never_completes_a_stream_cut_short() {
    let (pod, _kube, kubeconfig) = pod_with_api().await;
    let main_fs = main_filesystem();
    let template = template(main_fs.path(), pod.s3(PREFIX));
    let wait = start_wait(&pod, &kubeconfig, &template).await;
    let token = std::fs::read(pod.roots().output_token()).expect("token");
    assert_eq!(token.len(), 64);
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
    };
    assert_eq!(mode(&pod.roots().output_token()), 0o444);
    assert_eq!(mode(&pod.roots().output_socket()), 0o666);

    // A wrong token, and an artifact the template does not declare, are refused.
    let mut wrong = token.clone();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    assert_eq!(connect(&pod, &wrong, "file-raw").1, b'R');
    assert_eq!(connect(&pod, &token, "not-declared").1, b'R');

    // A declared output whose stream ends before its end frame: its upload is never completed.
    let (mut stream, reply) = connect(&pod, &token, "file-raw");
    assert_eq!(reply, b'A');
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(1 << 20);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "data.bin", &vec![7u8; 1 << 20][..])
        .expect("tar");
    let tar = tar.into_inner().expect("tar bytes");
    let half = &tar[..tar.len() / 2];
    stream
        .write_all(&u32::try_from(half.len()).expect("frame").to_be_bytes())
        .expect("frame length");
    stream.write_all(half).expect("frame");
    drop(stream);
    // The same output cannot be streamed a second time (nor replaced once stored).
    assert_eq!(connect(&pod, &token, "file-raw").1, b'R');

    // main finishes (it staged nothing): wait reports that output failed, stores none of it.
    pod.stage_wait(&template);
    let wait = finish(wait).await;
    assert_eq!(wait.status.code(), Some(64), "{}", stderr(&wait));
    assert!(
        stderr(&wait).contains("ended before its end frame"),
        "{}",
        stderr(&wait)
    );
    let keys = pod.keys(&format!("{PREFIX}/")).await;
    assert!(!keys.contains(&format!("{PREFIX}/data.bin")), "{keys:?}");
    assert!(
        pod.termination_log().contains("data.bin"),
        "{}",
        pod.termination_log()
    );
    // The socket and token are withdrawn once main is done.
    assert!(!pod.roots().output_socket().exists());
    assert!(!pod.roots().output_token().exists());
}

/// A tar entry of `size` bytes under `name` as written, `..` included (the tar
/// crate's own `set_path` refuses such names, a hostile sender does not).
fn raw_entry(tar: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, size: usize) {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append(&header, &vec![b'x'; size][..]).expect("tar");
}

/// main can reach the socket (its token is readable by main's uid): a directory stream whose
/// entry names climb out of the artifact must not place objects elsewhere in the bucket with
/// wait's credentials.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_whose_names_climb_out_of_its_artifact_stores_nothing_outside_it() {
    let (pod, _kube, kubeconfig) = pod_with_api().await;
    let main_fs = main_filesystem();
    let template = template(main_fs.path(), pod.s3(PREFIX));
    let wait = start_wait(&pod, &kubeconfig, &template).await;
    let token = std::fs::read(pod.roots().output_token()).expect("token");

    let (mut stream, reply) = connect(&pod, &token, "tree-raw");
    assert_eq!(reply, b'A');
    let mut tar = tar::Builder::new(Vec::new());
    raw_entry(&mut tar, tar::EntryType::Directory, "tree", 0);
    raw_entry(
        &mut tar,
        tar::EntryType::Regular,
        "tree/../../../escaped.txt",
        64,
    );
    let tar = tar.into_inner().expect("tar bytes");
    for frame in [&tar[..], &[]] {
        stream
            .write_all(&u32::try_from(frame.len()).expect("frame").to_be_bytes())
            .expect("frame length");
        stream.write_all(frame).expect("frame");
    }
    let mut stored = [0u8; 1];
    stream.read_exact(&mut stored).expect("stored or failed");
    assert_eq!(stored[0], b'F');

    pod.stage_wait(&template);
    let wait = finish(wait).await;
    assert_eq!(wait.status.code(), Some(64), "{}", stderr(&wait));
    assert!(
        stderr(&wait).contains("illegal file path: tree/../../../escaped.txt"),
        "{}",
        stderr(&wait)
    );
    let everything = pod.keys("").await;
    assert!(
        everything.iter().all(|k| !k.contains("escaped")),
        "{everything:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_killed_mid_stream_leaves_no_object_and_the_emissary_stages_the_output() {
    let (pod, _kube, kubeconfig) = pod_with_api().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let main_fs = main_filesystem();
    let file = main_fs.path().join("data.bin");
    let template = json!({
        "name": "produce",
        "container": {"image": "alpine", "command": ["true"]},
        "outputs": {"artifacts": [{"name": "file-raw", "path": file, "archive": {"none": {}}}]},
        "archiveLocation": {"s3": pod.s3_via(proxy.addr, PREFIX)},
    });
    // The store holds every upload, so wait is still receiving when it is killed.
    proxy.add("PUT", PREFIX, Fault::Stall(Duration::from_secs(60)), 100);
    let mut wait = start_wait(&pod, &kubeconfig, &template).await;
    let main = tokio::spawn({
        let args: Vec<String> = ["emissary", "--loglevel", "info", "--", "true"]
            .map(String::from)
            .to_vec();
        let mut cmd = pod.command(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &[("ARGO_CONTAINER_NAME", "main")],
        );
        async move { cmd.output().await.expect("emissary") }
    });
    eventually("the upload of the streamed output to start", || {
        proxy.seen().iter().any(|s| s.method == "PUT")
    })
    .await;
    wait.start_kill().expect("kill wait");
    let _ = finish(wait).await;

    let main = tokio::time::timeout(Duration::from_secs(120), main)
        .await
        .expect("main finished in time")
        .expect("main");
    assert_ok(&main);
    assert!(
        stderr(&main).contains("staging the output instead of streaming it"),
        "{}",
        stderr(&main)
    );
    assert_eq!(
        std::fs::read_to_string(pod.roots().exitcode_file("main")).expect("exit code"),
        "0"
    );
    assert_eq!(pod.keys(&format!("{PREFIX}/")).await, Vec::<String>::new());
    assert!(
        pod.roots()
            .emissary_artifact(file.to_str().expect("utf-8"))
            .is_file()
    );

    // A wait started again saves the staged output: nothing was lost.
    proxy.clear_rules();
    let again = finish(wait_command(&pod, &kubeconfig, &[]).spawn().expect("wait")).await;
    assert_ok(&again);
    let stored = pod
        .get(&format!("{PREFIX}/data.bin"))
        .await
        .expect("stored");
    assert!(stored == std::fs::read(&file).expect("data"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_token_is_refused_and_the_output_is_staged_and_saved() {
    let (pod, _kube, kubeconfig) = pod_with_api().await;
    let main_fs = main_filesystem();
    let file = main_fs.path().join("data.bin");
    let template = json!({
        "name": "produce",
        "container": {"image": "alpine", "command": ["true"]},
        "outputs": {"artifacts": [{"name": "file", "path": file}]},
        "archiveLocation": {"s3": pod.s3(PREFIX)},
    });
    let wait = start_wait(&pod, &kubeconfig, &template).await;
    // What a process that cannot read this wait's token would present.
    std::fs::write(pod.roots().output_token(), "0".repeat(64)).expect("token");
    let main = emissary(&pod, "main", &["true"]).await;
    assert_ok(&main);
    assert!(
        stderr(&main).contains("wait refused the stream"),
        "{}",
        stderr(&main)
    );
    let wait = finish(wait).await;
    assert_ok(&wait);
    assert!(
        stderr(&wait).contains("refused an output stream"),
        "{}",
        stderr(&wait)
    );
    let stored = pod
        .get(&format!("{PREFIX}/file.tgz"))
        .await
        .expect("stored");
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&stored[..])
        .read_to_end(&mut tar)
        .expect("gunzip");
    assert!(
        tar.windows(1 << 12)
            .any(|w| w == &std::fs::read(&file).expect("data")[..1 << 12])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staging_that_fills_the_emptydir_frees_its_partial_archive_and_still_writes_the_exit_code()
 {
    let pod = TestPod::new().await;
    let main_fs = main_filesystem();
    let template = json!({
        "name": "produce",
        "container": {"image": "alpine", "command": ["true"]},
        "outputs": {"artifacts": [{"name": "big", "path": main_fs.path().join("data.bin")}]},
        "archiveLocation": {"s3": pod.s3(PREFIX)},
    });
    let var_run_argo = pod.roots().var_run_argo();
    let exit_code = pod.root.path().join("exitcode-on-tmpfs.txt");
    // No wait runs: the emissary stages, onto an emptyDir of 1 MiB (the output is 3 MiB).
    let t = template.to_string();
    let env = [
        ("ARGO_TEMPLATE", t.as_str()),
        ("ARGO_CONTAINER_NAME", "main"),
        ("EXITCODE", exit_code.to_str().expect("utf8")),
    ];
    let (out, left) = pod
        .argoexec_on_tmpfs(
            &var_run_argo,
            1,
            &["emissary", "--loglevel", "info", "--", "true"],
            r#"cat "$DIR/ctr/main/exitcode" > "$EXITCODE""#,
            &env,
        )
        .await;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let message = pod.termination_log();
    assert!(
        message.contains("failed to archive output artifact 'big'")
            && message.contains("No space left on device"),
        "{message}"
    );
    assert!(
        !left.lines().any(|l| l.contains(".tgz")),
        "the partial archive is gone: {left}"
    );
    assert!(
        left.lines().any(|l| l.ends_with("ctr/main/exitcode")),
        "{left}"
    );
    assert_eq!(
        std::fs::read_to_string(&exit_code).expect("the exit code was written"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_set_streams_main_s_outputs_one_after_another() {
    let (pod, _kube, kubeconfig) = pod_with_api().await;
    let main_fs = main_filesystem();
    let (file, tree) = (main_fs.path().join("data.bin"), main_fs.path().join("tree"));
    let template = json!({
        "name": "set",
        "containerSet": {"containers": [
            {"name": "main", "image": "alpine", "command": ["true"]},
            {"name": "after", "image": "alpine", "command": ["true"], "dependencies": ["main"]},
        ]},
        "outputs": {"artifacts": [
            {"name": "file", "path": file},
            {"name": "tree", "path": tree, "archive": {"none": {}}},
        ]},
        "archiveLocation": {"s3": pod.s3(PREFIX)},
    });
    let wait = start_wait(&pod, &kubeconfig, &template).await;
    let (main, after) = tokio::join!(
        emissary(&pod, "main", &["true"]),
        emissary(&pod, "after", &["true"])
    );
    assert_ok(&main);
    assert_ok(&after);
    assert_ok(&finish(wait).await);
    assert_eq!(
        stderr(&main).matches("streamed the output to wait").count(),
        2,
        "{}",
        stderr(&main)
    );
    assert_eq!(staged(&pod), Vec::<String>::new(), "nothing staged");
    let stored = objects(&pod).await;
    assert!(
        stored[&format!("{PREFIX}/tree/sub/b.bin")]
            == std::fs::read(tree.join("sub/b.bin")).expect("b")
    );
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&stored[&format!("{PREFIX}/file.tgz")][..])
        .read_to_end(&mut tar)
        .expect("gunzip");
    let data = std::fs::read(&file).expect("data");
    assert_eq!(tar.len() % 512, 0);
    assert!(
        tar[512..512 + data.len()] == data[..],
        "the file follows its tar header"
    );
}
