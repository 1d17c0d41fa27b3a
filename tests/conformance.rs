//! The conformance suite (tests/support/conformance.rs) against every object store driver, each
//! on a real server on 127.0.0.1: S3 on the in-process s3s-fs server, GCS on fake-gcs-server,
//! Azure Blob on Azurite (both started by PID from the tools `scripts/setup-test-tools.sh`
//! installs), OSS on s3s-fs through its own driver, HTTP and Artifactory on the test tree's HTTP
//! server. Then what is particular to each backend. The input-only kinds (raw, git) have no
//! driver to run it on: `tests/drivers_inputs.rs` runs them through `init`.

mod support;

use std::sync::Arc;

use argoexec::storage::{Secrets, StorageConfig, s3::S3Driver};
use support::TestPod;
use support::conformance::{self, Capabilities};

const MIB: u64 = 1 << 20;

/// A location of type `T` from its Argo JSON.
fn location<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> T {
    serde_json::from_value(json).expect("location")
}

/// A loopback URL nothing listens on.
fn closed_port_url() -> String {
    format!("http://{}", support::process::refused_addr())
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_conforms() {
    let pod = TestPod::new().await;
    let secrets = Secrets::new(pod.roots());
    let loc = location(pod.s3(""));
    let driver = S3Driver::new(&loc, &secrets, &StorageConfig::default())
        .await
        .expect("s3 driver")
        .with_list_page_size(2);
    let caps = Capabilities {
        list_page_size: Some(2),
        ..Capabilities::object_store("s3", 5 * MIB)
    };
    conformance::run(Arc::new(driver), caps).await;

    let mut unreachable = pod.s3("");
    unreachable["endpoint"] = closed_port_url().trim_start_matches("http://").into();
    let loc = location(unreachable);
    let driver = S3Driver::new(&loc, &secrets, &StorageConfig::default())
        .await
        .expect("s3 driver");
    conformance::check_unreachable(Arc::new(driver)).await;
}

#[cfg(feature = "gcs")]
mod gcs {
    use super::*;
    use argoexec::model::GcsArtifact;
    use argoexec::storage::gcs::{Endpoint, GcsDriver, GcsOptions};
    use argoexec::storage::retry::Backoff;
    use argoexec::storage::{Driver, ErrorKind};
    use bytes::Bytes;
    use futures::StreamExt;
    use support::fault_proxy::{Fault, FaultProxy};
    use support::gcs_server::FakeGcs;

    const BUCKET: &str = "argo-gcs";

    fn options(endpoint: String) -> StorageConfig {
        StorageConfig::default().with_gcs(GcsOptions {
            endpoint: Endpoint::Emulator(endpoint),
            // The smallest chunk GCS allows: a 1 MiB stream takes 4 resumable requests.
            upload_chunk: 256 * 1024,
            list_page_size: Some(2),
            ..GcsOptions::default()
        })
    }

    fn gcs_location(json: serde_json::Value) -> GcsArtifact {
        location(json)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn gcs_conforms() {
        let server = FakeGcs::start().await;
        server.create_bucket(BUCKET).await;
        let loc = gcs_location(serde_json::json!({"bucket": BUCKET, "key": "k"}));
        let secrets = Secrets::default();
        let driver = GcsDriver::new(&loc, &secrets, &options(server.emulator_host()))
            .await
            .expect("gcs driver");
        let caps = Capabilities {
            multipart: false,
            streaming_put: true,
            verifiable_receipts: false,
            list_page_size: Some(2),
            resume_from_store: false,
            ..Capabilities::object_store("gcs", MIB)
        };
        conformance::run(Arc::new(driver), caps).await;

        let driver = GcsDriver::new(&loc, &secrets, &options(closed_port_url()))
            .await
            .expect("gcs driver");
        conformance::check_unreachable(Arc::new(driver)).await;
    }

    /// Keys are Go-`Clean`ed as Argo's GCS driver does; listing prefixes are not.
    #[tokio::test(flavor = "multi_thread")]
    async fn gcs_cleans_keys_like_argo() {
        let server = FakeGcs::start().await;
        server.create_bucket(BUCKET).await;
        let loc = gcs_location(serde_json::json!({"bucket": BUCKET, "key": "k"}));
        let driver = GcsDriver::new(&loc, &Secrets::default(), &options(server.emulator_host()))
            .await
            .expect("gcs driver");
        driver
            .put(
                "wf//pod/./out.txt/",
                Bytes::from_static(b"x"),
                &Default::default(),
            )
            .await
            .expect("put");
        assert_eq!(server.names(BUCKET, "").await, ["wf/pod/out.txt"]);
        assert_eq!(driver.head("wf/pod/out.txt").await.expect("head").size, 1);
        let e = driver.head("wf/pod/missing").await.expect_err("missing");
        assert_eq!(e.to_string(), "no results for key: wf/pod/missing");
    }

    /// A read's 404 cannot tell a missing bucket from a missing key, but a listing can: so a
    /// key-as-directory load (head, then list) fails on a missing bucket instead of skipping.
    #[tokio::test(flavor = "multi_thread")]
    async fn gcs_a_missing_bucket_is_not_a_missing_key() {
        let server = FakeGcs::start().await;
        let loc = gcs_location(serde_json::json!({"bucket": "no-such-bucket", "key": "k"}));
        let driver = GcsDriver::new(&loc, &Secrets::default(), &options(server.emulator_host()))
            .await
            .expect("gcs driver");
        let e = driver.list("k/", None).await.expect_err("no bucket");
        assert!(!e.is_not_found() && !e.is_transient(), "{e:?}");
        assert_eq!(e.to_string(), "the bucket no-such-bucket does not exist");
    }

    /// A service-account key from the secret is parsed and signs requests (locally, so the
    /// emulator accepts them); a broken key is a configuration error naming the secret only.
    #[tokio::test(flavor = "multi_thread")]
    async fn gcs_service_account_key_from_the_secret() {
        let server = FakeGcs::start().await;
        server.create_bucket(BUCKET).await;
        let pod = TestPod::new().await;
        pod.write_secret("gcs-sa", "key.json", &service_account_key());
        pod.write_secret("gcs-sa", "broken.json", "{\"type\": \"service_account\"}");
        let secrets = Secrets::new(pod.roots());
        let loc = gcs_location(serde_json::json!({
            "bucket": BUCKET,
            "serviceAccountKeySecret": {"name": "gcs-sa", "key": "key.json"},
            "key": "k",
        }));
        let driver = GcsDriver::new(&loc, &secrets, &options(server.emulator_host()))
            .await
            .expect("gcs driver with a key");
        driver
            .put(
                "signed.txt",
                Bytes::from_static(b"signed"),
                &Default::default(),
            )
            .await
            .expect("put with a service account");
        assert_eq!(
            server.get(BUCKET, "signed.txt").await.as_deref(),
            Some(&b"signed"[..])
        );

        let loc = gcs_location(serde_json::json!({
            "bucket": BUCKET,
            "serviceAccountKeySecret": {"name": "gcs-sa", "key": "broken.json"},
            "key": "k",
        }));
        let e = GcsDriver::new(&loc, &secrets, &options(server.emulator_host()))
            .await
            .expect_err("a key without its fields");
        assert!(
            e.kind().is_none() && e.to_string().contains("gcs-sa/broken.json"),
            "{e}"
        );
        assert_ne!(e.kind(), Some(ErrorKind::Network));
    }

    /// A chunk that fails makes the upload ask the session what it has and go on from there.
    /// fake-gcs-server answers that question (`Content-Range: bytes */*`) by finishing the
    /// object with what it has, so here the end-to-end CRC32C must catch the short object: a
    /// failed request never leaves silently corrupt data, and nothing stays under the key.
    #[tokio::test(flavor = "multi_thread")]
    async fn gcs_a_failed_chunk_never_leaves_corrupt_data() {
        let server = FakeGcs::start().await;
        server.create_bucket(BUCKET).await;
        let upstream: std::net::SocketAddr = server
            .emulator_host()
            .trim_start_matches("http://")
            .parse()
            .expect("emulator address");
        let proxy = FaultProxy::start(upstream).await;
        // The second data-carrying request is refused.
        let refused = Fault::Respond {
            status: 503,
            code: "ServiceUnavailable",
        };
        proxy.add_after("PUT", "", 1, refused, 1);
        let mut opts = options(format!("http://{}", proxy.addr));
        opts.gcs.upload_backoff = Backoff {
            steps: 5,
            initial: std::time::Duration::from_millis(10),
            factor: 2.0,
            jitter: 0.0,
            cap: std::time::Duration::from_millis(100),
            deadline: None,
        };
        let loc = gcs_location(serde_json::json!({"bucket": BUCKET, "key": "k"}));
        let driver = GcsDriver::new(&loc, &Secrets::default(), &opts)
            .await
            .expect("gcs driver");
        // Seven chunks of 256 KiB (the last one short).
        let data = support::pseudo_random(6 * 256 * 1024 + 1000, 21);
        let chunks: Vec<argoexec::storage::Result<Bytes>> = data
            .chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let result = driver
            .put_stream(
                "resumed.bin",
                futures::stream::iter(chunks).boxed(),
                &Default::default(),
            )
            .await;
        match result {
            // What GCS itself does: the session resumes and the object is complete.
            Ok(()) => assert_eq!(server.get(BUCKET, "resumed.bin").await, Some(data)),
            Err(e) => {
                assert_eq!(e.kind(), Some(ErrorKind::Integrity), "{e}");
                assert_eq!(server.get(BUCKET, "resumed.bin").await, None, "cleaned up");
            }
        }
        assert!(
            proxy.seen().iter().any(|r| r.fault.is_some()),
            "the failure was injected"
        );
    }

    /// A throwaway service-account key with a fresh RSA key (made by openssl).
    fn service_account_key() -> String {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl genpkey (install openssl)");
        assert!(out.status.success(), "openssl genpkey failed");
        let pem = String::from_utf8(out.stdout).expect("pem");
        serde_json::json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "test-key-id",
            "private_key": pem,
            "client_email": "argoexec-test@test-project.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string()
    }
}

#[cfg(feature = "azure")]
mod azure {
    use super::*;
    use argoexec::model::AzureArtifact;
    use argoexec::storage::azure::{AzureDriver, AzureOptions};
    use argoexec::storage::{Driver, ErrorKind};
    use bytes::Bytes;
    use support::azure_server::{ACCOUNT_KEY, Azurite, account_sas};

    const CONTAINER: &str = "argo-azure";

    /// A pod whose secrets hold the account key, a SAS, and a wrong key.
    async fn pod() -> TestPod {
        let pod = TestPod::new().await;
        pod.write_secret("azure", "accountKey", ACCOUNT_KEY);
        pod.write_secret("azure", "sas", &format!("?{}", account_sas()));
        pod.write_secret(
            "azure",
            "wrongKey",
            "AAAAvdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
        );
        pod
    }

    fn azure_location(endpoint: &str, container: &str, secret_key: &str) -> AzureArtifact {
        location(serde_json::json!({
            "endpoint": endpoint,
            "container": container,
            "accountKeySecret": {"name": "azure", "key": secret_key},
            "blob": "b",
        }))
    }

    fn driver(loc: &AzureArtifact, pod: &TestPod, page: Option<u32>) -> AzureDriver {
        AzureDriver::new(
            loc,
            &Secrets::new(pod.roots()),
            &StorageConfig::default().with_azure(AzureOptions {
                list_page_size: page,
                ..AzureOptions::default()
            }),
        )
        .expect("azure driver")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn azure_conforms() {
        let server = Azurite::start().await;
        server.create_container(CONTAINER).await;
        let pod = pod().await;
        let loc = azure_location(&server.endpoint(), CONTAINER, "accountKey");
        let caps = Capabilities {
            list_page_size: Some(2),
            recursive_delete: true,
            // Azure echoes the Content-MD5 of a staged block; Azurite checks it but echoes
            // nothing, so its receipts prove nothing (see docs/drivers-cloud.md).
            verifiable_receipts: false,
            // Uncommitted blocks carry no checksum to prove them by: uploads start afresh.
            resume_from_store: false,
            ..Capabilities::object_store("azure", MIB)
        };
        conformance::run(Arc::new(driver(&loc, &pod, Some(2))), caps).await;

        let endpoint = format!("{}/devstoreaccount1", closed_port_url());
        let loc = azure_location(&endpoint, CONTAINER, "accountKey");
        conformance::check_unreachable(Arc::new(driver(&loc, &pod, None))).await;
    }

    /// A SAS in the secret is used as it is; a wrong key is refused (Auth, not NotFound); a
    /// missing container is a request error, not a missing key.
    #[tokio::test(flavor = "multi_thread")]
    async fn azure_credentials_and_failures_are_typed() {
        let server = Azurite::start().await;
        server.create_container(CONTAINER).await;
        let pod = pod().await;

        let sas = driver(
            &azure_location(&server.endpoint(), CONTAINER, "sas"),
            &pod,
            None,
        );
        sas.put(
            "via-sas.txt",
            Bytes::from_static(b"sas"),
            &Default::default(),
        )
        .await
        .expect("put with a SAS");
        assert_eq!(
            server.get(CONTAINER, "via-sas.txt").await.as_deref(),
            Some(&b"sas"[..])
        );

        let wrong = driver(
            &azure_location(&server.endpoint(), CONTAINER, "wrongKey"),
            &pod,
            None,
        );
        let e = wrong.head("via-sas.txt").await.expect_err("a wrong key");
        assert_eq!(e.kind(), Some(ErrorKind::Auth), "{e}");

        let nowhere = driver(
            &azure_location(&server.endpoint(), "no-such-container", "accountKey"),
            &pod,
            None,
        );
        let e = nowhere.head("x").await.expect_err("no container");
        assert!(!e.is_not_found() && !e.is_transient(), "{e:?}");
        assert!(e.to_string().contains("ContainerNotFound"), "{e}");

        let missing_secret: AzureArtifact = location(serde_json::json!({
            "endpoint": server.endpoint(), "container": CONTAINER, "blob": "b",
        }));
        let e = AzureDriver::new(
            &missing_secret,
            &Secrets::new(pod.roots()),
            &StorageConfig::default(),
        )
        .expect_err("no key");
        assert_eq!(
            e.to_string(),
            "accountKey secret is required for Azure Blob Storage if useSDKCreds is false"
        );
    }

    /// ADLS Gen2 keeps empty `hdi_isfolder` blobs for directories: they are not files.
    #[tokio::test(flavor = "multi_thread")]
    async fn azure_folder_markers_are_not_listed_and_go_with_their_directory() {
        let server = Azurite::start().await;
        server.create_container(CONTAINER).await;
        let pod = pod().await;
        server
            .put(CONTAINER, "dir", Vec::new(), &[("hdi_isfolder", "true")])
            .await;
        server
            .put(
                CONTAINER,
                "dir/sub",
                Vec::new(),
                &[("hdi_isfolder", "true")],
            )
            .await;
        server
            .put(CONTAINER, "dir/sub/file.txt", b"f".to_vec(), &[])
            .await;
        let d = driver(
            &azure_location(&server.endpoint(), CONTAINER, "accountKey"),
            &pod,
            None,
        );
        let page = d.list("dir/", None).await.expect("list");
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["dir/sub/file.txt"]);
        d.delete("dir").await.expect("delete dir");
        assert!(server.names(CONTAINER, "dir").await.is_empty());
    }
}

/// OSS speaks S3's API: the suite runs against the same in-process s3s-fs server, through the
/// OSS location and driver.
#[tokio::test(flavor = "multi_thread")]
async fn oss_conforms() {
    use argoexec::storage::oss::OssDriver;
    let pod = TestPod::new().await;
    let secrets = Secrets::new(pod.roots());
    let mut json = pod.s3("");
    let loc = location(json.clone());
    let driver = OssDriver::new(&loc, &secrets, &StorageConfig::default())
        .await
        .expect("oss driver");
    conformance::run(Arc::new(driver), Capabilities::object_store("oss", 5 * MIB)).await;

    json["endpoint"] = closed_port_url().trim_start_matches("http://").into();
    let loc = location(json);
    let driver = OssDriver::new(&loc, &secrets, &StorageConfig::default())
        .await
        .expect("oss driver");
    conformance::check_unreachable(Arc::new(driver)).await;
}

/// HTTP and Artifactory: writes are streaming PUTs, reads are ranged when the server serves
/// ranges; no listing, deleting or multipart (each a typed NotSupported).
#[cfg(feature = "http")]
mod http {
    use super::*;
    use argoexec::storage::http::HttpDriver;
    use support::http_server::{HttpServer, Rules};

    fn caps(name: &'static str) -> Capabilities {
        Capabilities {
            multipart: false,
            streaming_put: true,
            list: false,
            delete: false,
            metadata: false,
            verifiable_receipts: false,
            resume_from_store: false,
            ..Capabilities::object_store(name, MIB)
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn http_conforms() {
        let pod = TestPod::new().await;
        let secrets = Secrets::new(pod.roots());
        let server = HttpServer::start(Rules {
            ranges: true,
            ..Rules::default()
        })
        .await;
        let loc = location(serde_json::json!({"url": server.url("/conformance")}));
        let driver =
            HttpDriver::http(&loc, &secrets, &StorageConfig::default()).expect("http driver");
        conformance::run(Arc::new(driver), caps("http")).await;

        let loc = location(serde_json::json!({"url": format!("{}/x", closed_port_url())}));
        let driver =
            HttpDriver::http(&loc, &secrets, &StorageConfig::default()).expect("http driver");
        conformance::check_unreachable(Arc::new(driver)).await;
    }

    /// Artifactory always sends basic auth; the server refuses any request without it. It
    /// serves no ranges, so reads take the single-GET path.
    #[tokio::test(flavor = "multi_thread")]
    async fn artifactory_conforms() {
        use base64::Engine;
        let pod = TestPod::new().await;
        pod.write_secret("art", "user", "conformance");
        pod.write_secret("art", "pass", "p4ss");
        let secrets = Secrets::new(pod.roots());
        let basic = base64::engine::general_purpose::STANDARD.encode("conformance:p4ss");
        let server = HttpServer::start(Rules {
            authorization: Some(format!("Basic {basic}")),
            ..Rules::default()
        })
        .await;
        let loc = location(serde_json::json!({
            "url": server.url("/repo"),
            "usernameSecret": {"name": "art", "key": "user"},
            "passwordSecret": {"name": "art", "key": "pass"},
        }));
        let driver = HttpDriver::artifactory(&loc, &secrets, &StorageConfig::default())
            .expect("artifactory driver");
        conformance::run(
            Arc::new(driver),
            Capabilities {
                ranged_get: false,
                ..caps("artifactory")
            },
        )
        .await;
    }
}
