//! Artifact driver plugins (Argo 4.0+): the plugin driver against a plugin server on its Unix
//! socket (tests/support/artifact_plugin.rs, tonic, backed by a directory), a whole pod through
//! one (init, the plugin's init container, main, wait with the plugin's sidecar, GC), and a
//! plugin written in Python with grpcio from the same proto, as third-party authors write them.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use argoexec::contract::Roots;
use argoexec::model::PluginArtifact;
use argoexec::storage::plugin::{PluginDriver, SAVE_STREAM_FRAME, socket_path};
use argoexec::storage::{Driver, ErrorKind, PutOptions};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use support::artifact_plugin::{self, Call};
use support::kube_server::PodWithApi;
use support::{LOG_OPTS, TestPod, assert_ok, eventually, finish};

const NS: &str = "argo";
const GV: &str = "argoproj.io/v1alpha1";

fn location(name: &str, key: &str) -> PluginArtifact {
    PluginArtifact {
        name: name.into(),
        configuration: "{\"bucket\": \"b\"}".into(),
        connection_timeout_seconds: Some(3),
        key: key.into(),
    }
}

/// A plugin named `name` served below `roots`, storing in `store`.
fn served(roots: &Roots, name: &str, store: &Path, save_stream: bool) -> artifact_plugin::Served {
    artifact_plugin::serve(store, &socket_path(roots, name), save_stream)
}

/// A plugin served below `roots`, and the driver connected to it.
async fn connected(
    roots: &Roots,
    name: &str,
    store: &Path,
    save_stream: bool,
) -> (artifact_plugin::Served, PluginDriver) {
    let server = served(roots, name, store, save_stream);
    let driver = PluginDriver::connect(&location(name, ""), roots)
        .await
        .expect("connect");
    (server, driver)
}

fn body(data: Vec<u8>, frames: usize) -> argoexec::storage::ByteStream {
    let size = data.len().div_ceil(frames);
    let chunks: Vec<_> = data
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks).boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_stream_is_used_when_offered_in_frames_under_grpcs_message_limit() {
    let (root, store) = (
        tempfile::tempdir().expect("root"),
        tempfile::tempdir().expect("store"),
    );
    let roots = Roots::at(root.path());
    let (server, driver) = connected(&roots, "dir", store.path(), true).await;
    // One 9 MiB body chunk (a part of the upload pipeline) must go as several frames.
    let data = support::pseudo_random(9 << 20, 3);
    driver
        .put_stream("out/big.bin", body(data.clone(), 1), &PutOptions::default())
        .await
        .expect("save");
    assert_eq!(
        std::fs::read(store.path().join("out/big.bin")).expect("stored"),
        data
    );
    assert_eq!(
        server.calls(),
        [
            Call::GetCapabilities,
            Call::SaveStream {
                key: "out/big.bin".into(),
                bytes: 9 << 20
            }
        ]
    );
    let largest = *server.plugin.largest_frame.lock().expect("frame");
    assert!(largest <= SAVE_STREAM_FRAME, "{largest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_failing_mid_save_stream_cancels_the_call_and_stores_nothing() {
    let (root, store) = (
        tempfile::tempdir().expect("root"),
        tempfile::tempdir().expect("store"),
    );
    let roots = Roots::at(root.path());
    let (server, driver) = connected(&roots, "dir", store.path(), true).await;
    // The body fails only once the plugin holds its first bytes: a reset that came sooner could
    // reach the plugin before the call's metadata frame, leaving it nothing to name.
    let received = Arc::clone(&server.plugin.largest_frame);
    let failing = futures::stream::once(async { Ok(Bytes::from(vec![7u8; 100_000])) })
        .chain(futures::stream::once(async move {
            eventually("the plugin to receive the first bytes", || {
                *received.lock().expect("frame") > 0
            })
            .await;
            Err(argoexec::storage::Error::io(
                "reading the source",
                std::io::Error::other("disk gone"),
            ))
        }))
        .boxed();
    let err = driver
        .put_stream("out/cut.bin", failing, &PutOptions::default())
        .await
        .expect_err("the body failed");
    assert!(err.to_string().contains("disk gone"), "{err}");
    eventually("the plugin to see the call broken off", || {
        server.calls().contains(&Call::SaveStreamBroken {
            key: "out/cut.bin".into(),
        })
    })
    .await;
    assert!(
        !store.path().join("out/cut.bin").exists(),
        "a truncated artifact was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_save_stream_a_file_is_staged_where_the_sidecar_reads_it_then_removed() {
    let (root, store) = (
        tempfile::tempdir().expect("root"),
        tempfile::tempdir().expect("store"),
    );
    let roots = Roots::at(root.path());
    let (server, driver) = connected(&roots, "old", store.path(), false).await;
    let data = support::pseudo_random(300_000, 5);
    driver
        .put_stream("out/a.tgz", body(data.clone(), 3), &PutOptions::default())
        .await
        .expect("save");
    assert_eq!(
        std::fs::read(store.path().join("out/a.tgz")).expect("stored"),
        data
    );
    let calls = server.calls();
    let Some(Call::Save { key, path }) = calls.last() else {
        panic!("no Save: {calls:?}");
    };
    assert_eq!(key, "out/a.tgz");
    let staging = roots.path("/tmp/argo/outputs/artifacts");
    assert!(
        Path::new(path).starts_with(&staging),
        "{path} is not in the directory shared with the sidecar"
    );
    assert!(!Path::new(path).exists(), "the staged file was left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_lists_checks_and_deletes_through_the_plugin() {
    let (root, store) = (
        tempfile::tempdir().expect("root"),
        tempfile::tempdir().expect("store"),
    );
    let roots = Roots::at(root.path());
    std::fs::create_dir_all(store.path().join("dir/sub")).expect("dirs");
    let data = support::pseudo_random(200_000, 9);
    std::fs::write(store.path().join("dir/a.bin"), &data).expect("a");
    std::fs::write(store.path().join("dir/sub/b.txt"), "b").expect("b");
    let (_server, driver) = connected(&roots, "dir", store.path(), true).await;

    let read: Vec<u8> = driver
        .get("dir/a.bin", None)
        .await
        .expect("open stream")
        .body
        .try_fold(Vec::new(), |mut acc, b| async move {
            acc.extend_from_slice(&b);
            Ok(acc)
        })
        .await
        .expect("read");
    assert_eq!(read, data);
    let listed: Vec<String> = driver
        .list("dir", None)
        .await
        .expect("list")
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, ["dir/a.bin", "dir/sub/b.txt"]);
    assert!(driver.is_directory("dir/sub").await.expect("is dir"));
    assert!(!driver.is_directory("dir/a.bin").await.expect("is dir"));
    driver.delete("dir/a.bin").await.expect("delete");
    assert!(!store.path().join("dir/a.bin").exists());
    let missing = driver.get("dir/absent", None).await.expect_err("absent");
    assert!(missing.is_not_found(), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_is_not_serving_is_a_transient_network_error() {
    let root = tempfile::tempdir().expect("root");
    let roots = Roots::at(root.path());
    // The socket file of a server that has gone: it exists, nobody accepts.
    let socket = socket_path(&roots, "gone");
    std::fs::create_dir_all(socket.parent().expect("dir")).expect("dir");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    let err = PluginDriver::connect(&location("gone", ""), &roots)
        .await
        .expect_err("nobody serves");
    assert_eq!(err.kind(), Some(ErrorKind::Network), "{err:?}");
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .starts_with("failed to dial plugin gone at "),
        "{err}"
    );
}

/// A stand-in for the plugin's own process in the tests where the plugin server runs in the
/// test: a process the plugin containers start, signal and stop (the socket path is its last
/// argument, as the controller appends it).
fn stand_in(socket: &Path) -> Vec<String> {
    ["sh", "-c", "exec sleep 600", "plugin-server"]
        .iter()
        .map(|s| s.to_string())
        .chain([socket.display().to_string()])
        .collect()
}

fn tgz_member(path: &Path) -> (String, Vec<u8>) {
    let file = std::fs::File::open(path).expect("tgz");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut entry = archive
        .entries()
        .expect("entries")
        .next()
        .expect("one entry")
        .expect("entry");
    let name = entry.path().expect("path").display().to_string();
    let mut data = Vec::new();
    entry.read_to_end(&mut data).expect("read");
    (name, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_pod_loads_saves_and_collects_through_a_plugin() {
    let s = PodWithApi::start(NS).await;
    let pod = &s.pod;
    let roots = pod.roots();
    let store = tempfile::tempdir().expect("store");
    std::fs::create_dir_all(store.path().join("inputs")).expect("inputs");
    std::fs::write(store.path().join("inputs/in.txt"), "from the plugin\n").expect("input");
    let server = served(&roots, "dir", store.path(), true);
    let socket = socket_path(&roots, "dir");
    let main_fs = tempfile::tempdir().expect("main's filesystem");
    let out = main_fs.path().join("out.txt");
    let input = roots.input_artifact("in");
    let template = json!({
        "name": "main",
        "container": {"image": "alpine", "command": ["sh"]},
        "inputs": {"artifacts": [
            {"name": "in", "path": "/in.txt", "plugin": {"name": "dir", "configuration": "c", "key": "inputs/in.txt"}},
        ]},
        "outputs": {"artifacts": [
            {"name": "out", "path": out.display().to_string(), "plugin": {"name": "dir", "configuration": "c", "key": "wf-1/out.tgz"}},
        ]},
    });
    let template_text = template.to_string();

    // init: everything but the plugin's inputs.
    assert_ok(&pod.init(&template).await);
    assert!(!input.exists(), "init loaded a plugin artifact");
    assert!(server.calls().is_empty());

    // init-artifact-dir: starts the plugin, loads its inputs through Load, stops it.
    let stand_in_args = stand_in(&socket);
    let mut args = vec!["artifact-plugin-init", "--plugin-name", "dir"];
    args.extend(LOG_OPTS);
    args.push("--");
    args.extend(stand_in_args.iter().map(String::as_str));
    let plugin_init = pod
        .argoexec(
            &args,
            &[
                ("ARGO_TEMPLATE", &template_text),
                ("ARGO_CONTAINER_NAME", "init-artifact-dir"),
            ],
        )
        .await;
    assert_ok(&plugin_init);
    assert_eq!(
        std::fs::read_to_string(&input).expect("input placed"),
        "from the plugin\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&input)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o666,
        "Argo's mode for plugin inputs without one"
    );
    assert!(matches!(&server.calls()[..], [Call::Load { key, path }]
        if key == "inputs/in.txt" && path.ends_with("/argo/inputs/artifacts/in.tmp")));

    // The sidecar, for wait.
    let mut args = vec!["artifact-plugin-sidecar"];
    args.extend(LOG_OPTS);
    args.push("--");
    args.extend(stand_in_args.iter().map(String::as_str));
    let sidecar = pod
        .command(&args, &[("ARGO_CONTAINER_NAME", "artifact-plugin-dir")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the sidecar");

    // main, through the emissary.
    let script = format!("tr a-z A-Z < {} > {}", input.display(), out.display());
    let mut main_args = vec!["emissary"];
    main_args.extend(LOG_OPTS);
    main_args.extend(["--", "sh", "-c", &script]);
    let main = pod
        .command_for(
            &roots.binary_copy(),
            &main_args,
            &[("ARGO_CONTAINER_NAME", "main")],
        )
        .output()
        .await
        .expect("main");
    assert_ok(&main);

    // wait: saves through the sidecar's plugin, reports, then ends the sidecar.
    let wait = wait_ending(&s, "artifact-plugin-dir").await;
    assert_ok(&wait);
    let sidecar = finish(sidecar).await;
    assert_ok(&sidecar);
    assert_eq!(
        std::fs::read_to_string(roots.exitcode_file("artifact-plugin-dir")).expect("exit code"),
        "143",
        "wait's SIGTERM ended the plugin's server"
    );
    let (name, data) = tgz_member(&store.path().join("wf-1/out.tgz"));
    assert_eq!(
        (name.as_str(), data.as_slice()),
        ("out.txt", &b"FROM THE PLUGIN\n"[..])
    );
    let result = s
        .kube
        .object(GV, NS, "workflowtaskresults", "wf-1-123")
        .expect("task result");
    assert_eq!(
        result["outputs"]["artifacts"][0]["plugin"],
        json!({"name": "dir", "configuration": "c", "key": "wf-1/out.tgz"})
    );

    // GC: the output deleted through the plugin, reported as a success.
    let saved: Value = result["outputs"]["artifacts"][0].clone();
    s.kube.insert(
        GV,
        NS,
        "workflowartifactgctasks",
        json!({
            "apiVersion": GV,
            "kind": "WorkflowArtifactGCTask",
            "metadata": {"name": "wf-1-artgc-wfcomp-7-0", "labels": {"workflows.argoproj.io/artifact-gc-pod": "7"}},
            "spec": {"artifactsByNode": {"wf-1-123": {"artifacts": {"out": saved}}}},
        }),
    );
    let mut gc_args = vec!["artifact", "delete"];
    gc_args.extend(LOG_OPTS);
    let gc = pod
        .argoexec(
            &gc_args,
            &[
                ("KUBECONFIG", s.kubeconfig.as_str()),
                ("ARGO_ARTIFACT_POD_NAME", "7"),
                ("ARGO_TEMPLATE", "{}"),
            ],
        )
        .await;
    assert_ok(&gc);
    assert!(!store.path().join("wf-1/out.tgz").exists(), "not deleted");
    let task = s
        .kube
        .object(GV, NS, "workflowartifactgctasks", "wf-1-artgc-wfcomp-7-0")
        .expect("task");
    assert_eq!(
        task["status"]["artifactResultsByNode"]["wf-1-123"]["artifactResults"]["out"],
        json!({"name": "out", "success": true})
    );
    assert!(server.calls().contains(&Call::Delete {
        key: "wf-1/out.tgz".into()
    }));
}

/// Runs `wait` (with the API) in a pod whose plugin sidecar is `sidecar`.
async fn wait_ending(s: &PodWithApi, sidecar: &str) -> std::process::Output {
    let kubeconfig = format!("--kubeconfig={}", s.kubeconfig);
    let mut wait_args = vec!["wait"];
    wait_args.extend(LOG_OPTS);
    wait_args.push(&kubeconfig);
    s.pod
        .argoexec(
            &wait_args,
            &[
                ("ARGO_CONTAINER_NAME", "wait"),
                ("ARGO_ARTIFACT_PLUGIN_NAMES", sidecar),
                ("ARGO_TERMINATION_GRACE_PERIOD_SECONDS", "5"),
            ],
        )
        .await
}

/// A plugin written in Python with grpcio: its stubs generated from `proto/artifact.proto`
/// with grpc_tools.protoc, as a third-party plugin author does; it stores below a directory.
const PYTHON_PLUGIN: &str = r#"
import os, shutil, signal, sys
from concurrent import futures
import grpc
import artifact_pb2 as pb
import artifact_pb2_grpc as rpc

STORE = os.environ["PLUGIN_STORE"]

class Plugin(rpc.ArtifactServiceServicer):
    def Load(self, request, context):
        src = os.path.join(STORE, request.input_artifact.plugin.key)
        try:
            shutil.copyfile(src, request.path)
        except OSError as e:
            return pb.LoadArtifactResponse(success=False, error=str(e))
        return pb.LoadArtifactResponse(success=True)

    def Save(self, request, context):
        dest = os.path.join(STORE, request.output_artifact.plugin.key)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(request.path, dest)
        return pb.SaveArtifactResponse(success=True)

    def Delete(self, request, context):
        os.remove(os.path.join(STORE, request.artifact.plugin.key))
        return pb.DeleteArtifactResponse(success=True)

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
rpc.add_ArtifactServiceServicer_to_server(Plugin(), server)
server.add_insecure_port("unix://" + sys.argv[1])
server.start()
signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
server.wait_for_termination()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_plugin_serves_the_init_container_and_the_sidecar() {
    let grpc = support::process::tool("ARGOEXEC_PYTHON_GRPC");
    let s = PodWithApi::start(NS).await;
    let pod: &TestPod = &s.pod;
    let roots = pod.roots();
    let store = tempfile::tempdir().expect("store");
    std::fs::create_dir_all(store.path().join("in")).expect("in");
    std::fs::write(store.path().join("in/data.txt"), "python-stored input").expect("input");

    // The plugin author's build step: stubs from the proto.
    let plugin_dir = tempfile::tempdir().expect("plugin dir");
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let protoc = std::process::Command::new("python3")
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto_dir.display()))
        .arg(format!("--python_out={}", plugin_dir.path().display()))
        .arg(format!("--grpc_python_out={}", plugin_dir.path().display()))
        .arg(proto_dir.join("artifact.proto"))
        .env("PYTHONPATH", &grpc)
        .output()
        .expect("grpc_tools.protoc");
    assert_ok(&protoc);
    let script = plugin_dir.path().join("plugin.py");
    std::fs::write(&script, PYTHON_PLUGIN).expect("plugin");
    let pythonpath = format!("{}:{}", plugin_dir.path().display(), grpc.display());
    let socket = socket_path(&roots, "py");
    let plugin_cmd = [
        "python3".to_string(),
        script.display().to_string(),
        socket.display().to_string(),
    ];
    let plugin_env = [
        ("PYTHONPATH", pythonpath.as_str()),
        ("PLUGIN_STORE", store.path().to_str().expect("utf-8")),
    ];

    // main's output, on a volume wait mounts too.
    let out = pod.path("/mainctrfs/work/result.txt");
    std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
    std::fs::write(&out, "saved by python").expect("output");
    let template = json!({
        "name": "main",
        "container": {"image": "alpine", "command": ["true"], "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "inputs": {"artifacts": [
            {"name": "in", "path": "/in.txt", "plugin": {"name": "py", "key": "in/data.txt"}},
        ]},
        "outputs": {"artifacts": [
            {"name": "result", "path": "/work/result.txt", "archive": {"none": {}},
             "plugin": {"name": "py", "key": "out/result.txt"}},
        ]},
    });
    let template_text = template.to_string();

    let mut args = vec!["artifact-plugin-init", "--plugin-name", "py"];
    args.extend(LOG_OPTS);
    args.push("--");
    args.extend(plugin_cmd.iter().map(String::as_str));
    let mut env = plugin_env.to_vec();
    env.extend([
        ("ARGO_TEMPLATE", template_text.as_str()),
        ("ARGO_CONTAINER_NAME", "init-artifact-py"),
    ]);
    let plugin_init = pod.argoexec(&args, &env).await;
    assert_ok(&plugin_init);
    assert_eq!(
        std::fs::read_to_string(roots.input_artifact("in")).expect("input placed"),
        "python-stored input"
    );
    eventually("the init container's plugin to be gone", || {
        std::os::unix::net::UnixStream::connect(&socket).is_err()
    })
    .await;
    let _ = std::fs::remove_file(&socket);

    let mut args = vec!["artifact-plugin-sidecar"];
    args.extend(LOG_OPTS);
    args.push("--");
    args.extend(plugin_cmd.iter().map(String::as_str));
    let mut env = plugin_env.to_vec();
    env.push(("ARGO_CONTAINER_NAME", "artifact-plugin-py"));
    let sidecar = pod
        .command(&args, &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the sidecar");
    pod.stage_wait(&template);
    let wait = wait_ending(&s, "artifact-plugin-py").await;
    assert_ok(&wait);
    assert_eq!(
        std::fs::read_to_string(store.path().join("out/result.txt")).expect("saved"),
        "saved by python",
        "saved through Save of a staged file (the Python plugin has no SaveStream)"
    );
    let sidecar = finish(sidecar).await;
    assert_ok(&sidecar);
    assert!(
        roots.exitcode_file("artifact-plugin-py").exists(),
        "the sidecar recorded its server's exit"
    );
}
