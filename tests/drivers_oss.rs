//! The OSS driver (OSS's S3-compatible API on the S3 driver) against the in-process s3s-fs
//! server on 127.0.0.1. An IP endpoint is addressed path-style, as Alibaba's SDK does, so the
//! loopback server sees exactly the requests the driver would send to such an endpoint; what a
//! loopback test cannot show is virtual-hosted addressing on real OSS (unit-tested in
//! `storage::oss::config`).

mod support;

use std::sync::Arc;

use argoexec::model::ArtifactLocation;
use argoexec::storage::oss::OssDriver;
use argoexec::storage::oss::credentials::{self, AlibabaEnv};
use argoexec::storage::{self, Driver, Secrets, StorageConfig};
use argoexec::transfer::{TransferConfig, Uploader, download};
use futures::TryStreamExt;
use serde_json::{Value, json};
use support::alibaba::{CredentialServer, OidcRole, TemporaryKeys};
use support::{BUCKET, SECRET_NAME, TestPod, assert_ok, make_tree, pseudo_random};

fn oss(pod: &TestPod, key: &str) -> Value {
    json!({
        "endpoint": pod.s3_addr.to_string(),
        "bucket": BUCKET,
        "accessKeySecret": {"name": SECRET_NAME, "key": "accessKey"},
        "secretKeySecret": {"name": SECRET_NAME, "key": "secretKey"},
        "key": key,
    })
}

async fn open(pod: &TestPod, key: &str) -> Arc<dyn Driver> {
    let loc: ArtifactLocation = serde_json::from_value(json!({"oss": oss(pod, key)})).expect("loc");
    storage::open(&loc, &Secrets::new(pod.roots()), &StorageConfig::default())
        .await
        .expect("oss driver")
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_uses_parallel_multipart_and_ranged_reads() {
    let pod = TestPod::new().await;
    let driver = open(&pod, "big.bin").await;
    assert_eq!(driver.name(), "oss");
    assert_eq!(driver.describe(), format!("oss://{BUCKET}"));
    let data = pseudo_random(11 << 20, 21);
    let cfg = TransferConfig {
        part_size: 5 << 20,
        download_chunk: 1 << 20,
        concurrency: 3,
        ..TransferConfig::default()
    };
    let up = data.clone();
    let stats = Uploader::new(cfg.clone())
        .upload(
            Arc::clone(&driver),
            "big.bin",
            Default::default(),
            None,
            move |w| std::io::Write::write_all(w, &up),
        )
        .await
        .expect("upload");
    assert_eq!(stats.parts, 3, "5 + 5 + 1 MiB, sent concurrently");
    assert_eq!(pod.get("big.bin").await.as_deref(), Some(&data[..]));
    let budget = argoexec::transfer::budget::Budget::new(cfg.download_budget());
    let (meta, body) = download::open(driver, "big.bin", &cfg, &budget)
        .await
        .expect("download");
    assert_eq!(meta.size, data.len() as u64);
    // Each chunk holds download budget until dropped: copy and drop, never collect chunks.
    let got = body
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk.bytes);
            Ok(all)
        })
        .await
        .expect("body");
    assert_eq!(got, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn not_found_is_typed() {
    let pod = TestPod::new().await;
    let driver = open(&pod, "nothing-here").await;
    let e = driver.head("nothing-here").await.expect_err("absent");
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_credentials_are_a_config_error_naming_the_fields() {
    let pod = TestPod::new().await;
    let loc: ArtifactLocation = serde_json::from_value(json!({"oss": {
        "endpoint": pod.s3_addr.to_string(), "bucket": BUCKET, "key": "k"}}))
    .expect("loc");
    let e = storage::open(&loc, &Secrets::new(pod.roots()), &StorageConfig::default())
        .await
        .expect_err("no credentials");
    assert!(e.to_string().contains("accessKeySecret"), "{e}");
}

/// `wait` saves an `archive: none` directory to OSS, one object per file (the driver also
/// writes Argo's empty marker objects `<key>/` and `<key>/<dir>/`, which s3s-fs, storing
/// objects as files, accepts but cannot list: `storage::oss` unit-tests which markers are
/// written); `init` loads the directory back.
#[tokio::test(flavor = "multi_thread")]
async fn a_directory_saves_as_one_object_per_file_and_loads_back() {
    let pod = TestPod::new().await;
    let src = pod.path("/mainctrfs/work/out");
    make_tree(&src);
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "out", "path": "/work/out",
            "archive": {"none": {}}, "oss": oss(&pod, "wf/out")}]},
    });
    assert_ok(&pod.wait(&template, &[]).await);
    assert_eq!(
        pod.keys("wf/").await,
        vec![
            "wf/out/a.txt",
            "wf/out/sub/b.bin",
            "wf/out/sub/deeper/c.txt"
        ]
    );
    let consume = json!({"name": "consume", "inputs": {"artifacts": [
        {"name": "in", "path": "/in", "oss": oss(&pod, "wf/out")}]}});
    assert_ok(&pod.init(&consume).await);
    let loaded = pod.roots().input_artifact("in");
    assert_eq!(std::fs::read(loaded.join("a.txt")).expect("a"), b"alpha\n");
    assert_eq!(
        std::fs::read(loaded.join("sub/deeper/c.txt")).expect("c"),
        b"gamma"
    );
}

/// An S3 server on loopback that accepts only the temporary keys the credential stubs issue
/// (refusing them once expired), with the test bucket; and a pod root with the RRSA token.
struct AlibabaCloud {
    pod: TestPod,
    keys: TemporaryKeys,
    s3_addr: std::net::SocketAddr,
    data: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for AlibabaCloud {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const ROLE_ARN: &str = "acs:ram::1234567890:role/argo-artifacts";
const PROVIDER_ARN: &str = "acs:ram::1234567890:oidc-provider/ack-rrsa-c0ffee";

impl AlibabaCloud {
    async fn new() -> Self {
        let pod = TestPod::new().await;
        let keys = TemporaryKeys::default();
        let data = tempfile::tempdir().expect("data");
        std::fs::create_dir(data.path().join(BUCKET)).expect("bucket");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let s3_addr = listener.local_addr().expect("addr");
        let (root, auth) = (data.path().to_path_buf(), keys.clone());
        let server = tokio::spawn(async move {
            let _ = support::s3_server::serve_with_auth(&root, listener, auth).await;
        });
        std::fs::create_dir_all(pod.path("/rrsa")).expect("rrsa dir");
        std::fs::write(pod.path("/rrsa/token"), "oidc-token-1\n").expect("token");
        Self {
            pod,
            keys,
            s3_addr,
            data,
            server,
        }
    }

    fn token_file(&self) -> String {
        self.pod.path("/rrsa/token").display().to_string()
    }

    fn oidc_role(&self) -> OidcRole {
        OidcRole {
            role_arn: ROLE_ARN.into(),
            provider_arn: PROVIDER_ARN.into(),
            token_file: self.pod.path("/rrsa/token"),
        }
    }

    /// The environment ACK's pod-identity webhook gives a pod, with STS on loopback.
    fn rrsa_env(&self, sts: &CredentialServer) -> Vec<(&'static str, String)> {
        vec![
            (credentials::ENV_ROLE_ARN, ROLE_ARN.into()),
            (credentials::ENV_OIDC_PROVIDER_ARN, PROVIDER_ARN.into()),
            (credentials::ENV_OIDC_TOKEN_FILE, self.token_file()),
            (credentials::ENV_STS_ENDPOINT, sts.url()),
        ]
    }

    fn location(&self, key: &str) -> Value {
        json!({"endpoint": self.s3_addr.to_string(), "bucket": BUCKET, "useSDKCreds": true,
            "key": key})
    }

    async fn driver(&self, key: &str, env: &[(&'static str, String)]) -> OssDriver {
        let loc: argoexec::model::OssArtifact =
            serde_json::from_value(self.location(key)).expect("loc");
        let env: std::collections::HashMap<&str, String> = env.iter().cloned().collect();
        let env = AlibabaEnv::from_lookup(|k| env.get(k).cloned());
        let config = StorageConfig::default().with_oss_credentials(env);
        OssDriver::new(&loc, &Secrets::new(self.pod.roots()), &config)
            .await
            .expect("oss driver")
    }

    fn object(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.data.path().join(BUCKET).join(key)).ok()
    }
}

fn assert_all_accepted(server: &CredentialServer) {
    for call in server.calls() {
        assert!(call.problems.is_empty(), "{call:?}");
    }
}

/// RRSA: the pod's OIDC token is exchanged at STS for keys that live 12 s; one driver (one
/// client, as an upload uses) keeps writing past their lifetime, because the keys are assumed
/// again before they expire (the S3 server refuses expired keys, so a driver that kept the
/// first ones fails). The token file is read again at each exchange (ACK rotates it). (Two
/// puts rather than one multipart upload spanning the expiry: s3s-fs ties an upload id to the
/// key that created it, which OSS and S3 do not.)
#[tokio::test(flavor = "multi_thread")]
async fn rrsa_keys_are_assumed_at_sts_and_renewed_before_they_expire() {
    let cloud = AlibabaCloud::new().await;
    let lifetime = std::time::Duration::from_secs(12);
    let sts = CredentialServer::sts(cloud.oidc_role(), cloud.keys.clone(), lifetime).await;
    let driver = cloud.driver("first.bin", &cloud.rrsa_env(&sts)).await;
    let first = pseudo_random(1 << 20, 1);
    driver
        .put(
            "first.bin",
            bytes::Bytes::from(first.clone()),
            &Default::default(),
        )
        .await
        .expect("first put");
    std::fs::write(cloud.pod.path("/rrsa/token"), "oidc-token-2\n").expect("rotate");
    tokio::time::sleep(lifetime + std::time::Duration::from_secs(1)).await;
    let second = pseudo_random(1 << 20, 2);
    driver
        .put(
            "second.bin",
            bytes::Bytes::from(second.clone()),
            &Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("signed with renewed keys: {e}; STS: {:?}", sts.calls()));
    assert_eq!(cloud.object("first.bin"), Some(first));
    assert_eq!(cloud.object("second.bin"), Some(second));
    assert_eq!(
        sts.calls().len(),
        2,
        "keys assumed again: {:?}",
        sts.calls()
    );
    assert_all_accepted(&sts);
}

/// As a pod runs it: `wait` with ACK's RRSA environment saves an OSS output with
/// `useSDKCreds`, and sets the location's `lifecycleRule` on the bucket first (IA after 30
/// days, deletion after 90, for the objects below the key).
#[tokio::test(flavor = "multi_thread")]
async fn wait_saves_with_rrsa_and_sets_the_lifecycle_rule() {
    let cloud = AlibabaCloud::new().await;
    let sts = CredentialServer::sts(
        cloud.oidc_role(),
        cloud.keys.clone(),
        std::time::Duration::from_secs(3600),
    )
    .await;
    std::fs::create_dir_all(cloud.pod.path("/mainctrfs/work")).expect("dir");
    std::fs::write(cloud.pod.path("/mainctrfs/work/report.txt"), b"quarterly\n").expect("out");
    let mut loc = cloud.location("wf/report.txt");
    loc["lifecycleRule"] = json!({"markInfrequentAccessAfterDays": 30,
        "markDeletionAfterDays": 90});
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "report", "path": "/work/report.txt",
            "archive": {"none": {}}, "oss": loc}]},
    });
    let env = cloud.rrsa_env(&sts);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_ok(&cloud.pod.wait(&template, &env).await);
    assert_eq!(
        cloud.object("wf/report.txt").as_deref(),
        Some(&b"quarterly\n"[..])
    );
    assert_all_accepted(&sts);
    assert!(!sts.calls().is_empty());

    let (id, secret, _) = cloud.keys.issue(1000, std::time::Duration::from_secs(60));
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(format!("http://{}", cloud.s3_addr))
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                id, secret, None, None, "test",
            ))
            .build(),
    );
    let lifecycle = client
        .get_bucket_lifecycle_configuration()
        .bucket(BUCKET)
        .send()
        .await
        .expect("lifecycle set");
    let rules = lifecycle.rules();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0];
    #[allow(deprecated)]
    let prefix = rule.prefix();
    assert_eq!(prefix, Some("wf/report.txt"));
    assert_eq!(rule.status().as_str(), "Enabled");
    assert_eq!(rule.transitions()[0].days(), Some(30));
    assert_eq!(
        rule.transitions()[0].storage_class().map(|c| c.as_str()),
        Some("IA")
    );
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(90));
}

/// Argo's own check of a `lifecycleRule`, with its words, before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_lifecycle_rule_moving_to_ia_after_deletion_is_refused_with_argos_words() {
    let pod = TestPod::new().await;
    let mut loc = oss(&pod, "k");
    loc["lifecycleRule"] = json!({"markInfrequentAccessAfterDays": 10,
        "markDeletionAfterDays": 5});
    let loc: ArtifactLocation = serde_json::from_value(json!({ "oss": loc })).expect("loc");
    let e = storage::open(&loc, &Secrets::new(pod.roots()), &StorageConfig::default())
        .await
        .expect_err("refused");
    assert_eq!(
        e.to_string(),
        "markInfrequentAccessAfterDays cannot be large than markDeletionAfterDays"
    );
}

/// The node's RAM role through the ECS metadata service: an IMDSv2 session token first, then
/// the role's keys with it.
#[tokio::test(flavor = "multi_thread")]
async fn the_ecs_ram_role_is_read_from_the_metadata_service_with_a_session_token() {
    let cloud = AlibabaCloud::new().await;
    let metadata = CredentialServer::metadata(
        "argo-node-role",
        cloud.keys.clone(),
        std::time::Duration::from_secs(3600),
    )
    .await;
    let env = vec![
        (credentials::ENV_ECS_ROLE, "argo-node-role".to_string()),
        (credentials::ENV_ECS_METADATA_ENDPOINT, metadata.url()),
    ];
    let driver = cloud.driver("from-node.txt", &env).await;
    driver
        .put(
            "from-node.txt",
            bytes::Bytes::from_static(b"node"),
            &Default::default(),
        )
        .await
        .expect("put with the node's keys");
    assert_eq!(cloud.object("from-node.txt").as_deref(), Some(&b"node"[..]));
    assert_all_accepted(&metadata);
    let paths: Vec<String> = metadata
        .calls()
        .into_iter()
        .map(|c| c.path_and_query)
        .collect();
    assert_eq!(
        paths,
        vec![
            "/latest/api/token",
            "/latest/meta-data/ram/security-credentials/argo-node-role"
        ]
    );
}
