//! Pods against GCS (fake-gcs-server) and Azure Blob (Azurite): `wait` saves outputs under
//! Argo's keys, `init` loads them back as Argo's executor would place them (docs/contract.md:
//! keys, outputs, inputs), each the real binary as a process.
#![cfg(all(feature = "gcs", feature = "azure"))]

mod support;

use serde_json::{Value, json};
use support::azure_server::{ACCOUNT_KEY, Azurite};
use support::gcs_server::FakeGcs;
use support::{TestPod, assert_ok, make_tree, snapshot};

const BUCKET: &str = "argo-artifacts-gcs";
const CONTAINER: &str = "argo-artifacts-azure";

/// A cloud store under test: its server, and how a location names a key in it.
enum Cloud {
    Gcs(FakeGcs),
    Azure(Azurite),
}

impl Cloud {
    async fn gcs() -> Self {
        let server = FakeGcs::start().await;
        server.create_bucket(BUCKET).await;
        Self::Gcs(server)
    }

    async fn azure(pod: &TestPod) -> Self {
        let server = Azurite::start().await;
        server.create_container(CONTAINER).await;
        pod.write_secret("azure-creds", "accountKey", ACCOUNT_KEY);
        Self::Azure(server)
    }

    /// A full location of `key`.
    fn location(&self, key: &str) -> Value {
        match self {
            Self::Gcs(_) => json!({"gcs": {"bucket": BUCKET, "key": key}}),
            Self::Azure(s) => json!({"azure": {
                "endpoint": s.endpoint(),
                "container": CONTAINER,
                "accountKeySecret": {"name": "azure-creds", "key": "accountKey"},
                "blob": key,
            }}),
        }
    }

    /// A key-only location (completed from the archive location, as Argo's controller leaves
    /// inputs that name an earlier step's output).
    fn key_only(&self, key: &str) -> Value {
        match self {
            Self::Gcs(_) => json!({"gcs": {"key": key}}),
            Self::Azure(_) => json!({"azure": {"blob": key}}),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Gcs(s) => vec![("STORAGE_EMULATOR_HOST", s.emulator_host())],
            Self::Azure(_) => Vec::new(),
        }
    }

    async fn names(&self, prefix: &str) -> Vec<String> {
        match self {
            Self::Gcs(s) => s.names(BUCKET, prefix).await,
            Self::Azure(s) => s.names(CONTAINER, prefix).await,
        }
    }
}

/// `artifact` with the location `loc` inlined, as Argo's JSON does.
fn with_location(mut artifact: Value, loc: Value) -> Value {
    if let (Some(a), Some(l)) = (artifact.as_object_mut(), loc.as_object()) {
        a.extend(l.clone());
    }
    artifact
}

fn regular_files(dir: &std::path::Path) -> Vec<(String, String, Vec<u8>)> {
    snapshot(dir)
        .into_iter()
        .filter(|(_, kind, _)| kind == "file")
        .collect()
}

/// wait saves a directory (tgz and `none`) and a file; init loads them by key-only and full
/// locations, a key that names a "directory", and skips a missing optional input.
async fn outputs_and_inputs_follow_argo(pod: &TestPod, cloud: &Cloud) {
    let env = cloud.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let src = pod.path("/mainctrfs/work/out");
    make_tree(&src);
    std::fs::write(pod.path("/mainctrfs/work/r.txt"), b"result\n").expect("file");
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [
            {"name": "out", "path": "/work/out"},
            {"name": "tree", "path": "/work/out", "archive": {"none": {}}},
            {"name": "result", "path": "/work/r.txt"},
        ]},
        "archiveLocation": cloud.location("wf-1/wf-1-main-123"),
    });
    let out = pod.wait(&template, &env).await;
    assert_ok(&out);
    let base = "wf-1/wf-1-main-123";
    assert_eq!(
        cloud.names("wf-1/").await,
        [
            format!("{base}/out.tgz"),
            format!("{base}/out/a.txt"),
            format!("{base}/out/sub/b.bin"),
            format!("{base}/out/sub/deeper/c.txt"),
            format!("{base}/result.tgz"),
        ]
    );
    // With no Kubernetes API, wait prints the task result on stdout.
    let log = String::from_utf8_lossy(&out.stdout);
    let (kind, key_field) = match cloud {
        Cloud::Gcs(_) => ("gcs", "key"),
        Cloud::Azure(_) => ("azure", "blob"),
    };
    let reported = format!(
        r#"{{"name":"result","path":"/work/r.txt","{kind}":{{"{key_field}":"{base}/result.tgz"}}}}"#
    );
    assert!(
        log.contains(&reported),
        "the reported artifact is key-only ({reported}): {log}"
    );

    let consume = json!({
        "name": "consume",
        "inputs": {"artifacts": [
            with_location(json!({"name": "dir", "path": "/in/dir"}), cloud.key_only(&format!("{base}/out.tgz"))),
            with_location(json!({"name": "tree", "path": "/in/tree"}), cloud.key_only(&format!("{base}/out"))),
            with_location(json!({"name": "file", "path": "/in/r.txt"}), cloud.location(&format!("{base}/result.tgz"))),
            with_location(json!({"name": "absent", "path": "/in/absent", "optional": true}), cloud.key_only("wf-1/nothing-here")),
        ]},
        "archiveLocation": cloud.location("wf-1/wf-1-consume-456"),
    });
    let out = pod.init_with(&consume, &env).await;
    assert_ok(&out);
    let roots = pod.roots();
    assert_eq!(
        snapshot(&roots.input_artifact("dir")),
        snapshot(&src),
        "tgz input"
    );
    let want: Vec<_> = regular_files(&src)
        .into_iter()
        .filter(|(p, _, _)| p != "link-to-a")
        .collect();
    assert_eq!(
        regular_files(&roots.input_artifact("tree")),
        want,
        "key-as-directory input"
    );
    assert_eq!(
        std::fs::read(roots.input_artifact("file")).expect("file input"),
        b"result\n"
    );
    assert!(
        !roots.input_artifact("absent").exists(),
        "optional and absent: skipped"
    );

    // A required input that is not there fails init with Argo's message.
    let missing = json!({
        "name": "consume",
        "inputs": {"artifacts": [
            with_location(json!({"name": "gone", "path": "/in/gone"}), cloud.key_only("wf-1/nothing-here")),
        ]},
        "archiveLocation": cloud.location("wf-1/wf-1-consume-456"),
    });
    let out = pod.init_with(&missing, &env).await;
    assert!(!out.status.success(), "a missing required input fails");
    assert!(
        pod.termination_log()
            .contains("artifact gone failed to load"),
        "{}",
        pod.termination_log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_pods_save_and_load_like_argo() {
    let pod = TestPod::new().await;
    let cloud = Cloud::gcs().await;
    outputs_and_inputs_follow_argo(&pod, &cloud).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_pods_save_and_load_like_argo() {
    let pod = TestPod::new().await;
    let cloud = Cloud::azure(&pod).await;
    outputs_and_inputs_follow_argo(&pod, &cloud).await;
}

/// ADLS Gen2 accounts show a directory as an empty blob: Argo's Azure driver then loads what
/// is below it, and so does init.
#[tokio::test(flavor = "multi_thread")]
async fn azure_empty_directory_blobs_load_as_directories() {
    let pod = TestPod::new().await;
    let cloud = Cloud::azure(&pod).await;
    let Cloud::Azure(server) = &cloud else {
        unreachable!("an Azure store")
    };
    server
        .put(
            CONTAINER,
            "data/set",
            Vec::new(),
            &[("hdi_isfolder", "true")],
        )
        .await;
    server
        .put(CONTAINER, "data/set/part-0.csv", b"a,b\n".to_vec(), &[])
        .await;
    server
        .put(
            CONTAINER,
            "data/set/nested/part-1.csv",
            b"c,d\n".to_vec(),
            &[],
        )
        .await;
    let consume = json!({
        "name": "consume",
        "inputs": {"artifacts": [
            with_location(json!({"name": "set", "path": "/in/set"}), cloud.location("data/set")),
        ]},
    });
    let out = pod.init_with(&consume, &[]).await;
    assert_ok(&out);
    let loaded = pod.roots().input_artifact("set");
    assert_eq!(
        regular_files(&loaded),
        [
            (
                "nested/part-1.csv".to_string(),
                "file".to_string(),
                b"c,d\n".to_vec()
            ),
            (
                "part-0.csv".to_string(),
                "file".to_string(),
                b"a,b\n".to_vec()
            ),
        ]
    );
}
