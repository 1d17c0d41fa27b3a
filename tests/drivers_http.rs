//! The HTTP and Artifactory drivers against a real HTTP server on 127.0.0.1 (tests/support/
//! http_server.rs). Cases are grouped as a generic driver suite would group them: round trip,
//! NotFound versus other failures, streaming and ranged reads, unsupported operations as typed
//! errors; then what is HTTP's own: headers, basic auth, OAuth2, redirects, and mutual TLS
//! through the real binary.

#![cfg(feature = "http")]

mod support;

use std::sync::Arc;

use argoexec::model::ArtifactLocation;
use argoexec::storage::{self, Driver, Secrets, StorageConfig};
use argoexec::transfer::{TransferConfig, Uploader, download};
use base64::Engine;
use futures::TryStreamExt;
use serde_json::{Value, json};
use support::http_server::{HttpServer, OAuth2Rules, Rules, TOKEN_PATH, TestPki};
use support::{TestPod, assert_ok, pseudo_random};

fn location(v: Value) -> ArtifactLocation {
    serde_json::from_value(v).expect("location json")
}

async fn open(pod: &TestPod, v: Value) -> Arc<dyn Driver> {
    storage::open(
        &location(v),
        &Secrets::new(pod.roots()),
        &StorageConfig::default(),
    )
    .await
    .expect("driver opens")
}

fn key_of(v: &Value) -> String {
    location(v.clone()).key().expect("http key")
}

/// Small ranges and parts, so a few hundred KiB exercise the concurrent paths.
fn small_chunks() -> TransferConfig {
    TransferConfig {
        part_size: 64 << 10,
        download_chunk: 64 << 10,
        concurrency: 4,
        ..TransferConfig::default()
    }
}

async fn read_all(driver: Arc<dyn Driver>, key: &str, cfg: &TransferConfig) -> Vec<u8> {
    let budget = argoexec::transfer::budget::Budget::new(cfg.download_budget());
    let (_, body) = download::open(driver, key, cfg, &budget)
        .await
        .expect("download");
    // Each chunk holds download budget until dropped: copy and drop, never collect chunks.
    body.try_fold(Vec::new(), |mut all, chunk| async move {
        all.extend_from_slice(&chunk.bytes);
        Ok(all)
    })
    .await
    .expect("body")
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

// ---- round trip -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_streams_the_upload_and_reads_back_in_concurrent_ranges() {
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules {
        ranges: true,
        ..Rules::default()
    })
    .await;
    let loc = json!({"http": {"url": server.url("/files/data.bin")}});
    let driver = open(&pod, loc.clone()).await;
    let key = key_of(&loc);
    assert_eq!(key, "files/data.bin");
    let data = pseudo_random(300_000, 11);
    let cfg = small_chunks();
    let up = data.clone();
    let stats = Uploader::new(cfg.clone())
        .upload(
            Arc::clone(&driver),
            &key,
            Default::default(),
            None,
            move |w| {
                std::io::Write::write_all(w, &up)?;
                Ok(())
            },
        )
        .await
        .expect("upload");
    assert_eq!(stats.bytes, data.len() as u64);
    assert_eq!(server.file("/files/data.bin").as_deref(), Some(&data[..]));
    let put = server
        .seen()
        .into_iter()
        .find(|s| s.method == "PUT")
        .expect("a PUT");
    assert!(put.chunked, "a stream of unknown length goes up chunked");

    assert_eq!(read_all(Arc::clone(&driver), &key, &cfg).await, data);
    let ranges: Vec<String> = server
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .filter_map(|s| s.range)
        .collect();
    // The one-byte probe, then 64 KiB ranges covering 300,000 bytes.
    assert_eq!(ranges.first().map(String::as_str), Some("bytes=0-0"));
    assert_eq!(
        ranges.len(),
        1 + 300_000usize.div_ceil(64 << 10),
        "{ranges:?}"
    );
    assert!(
        ranges.contains(&"bytes=262144-299999".to_string()),
        "{ranges:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_ranges_is_read_with_a_single_get() {
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules::default()).await;
    let data = pseudo_random(300_000, 12);
    server.put_file("/plain/data.bin", data.clone());
    let loc = json!({"http": {"url": server.url("/plain/data.bin")}});
    let driver = open(&pod, loc.clone()).await;
    assert_eq!(read_all(driver, &key_of(&loc), &small_chunks()).await, data);
    let gets = server
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .count();
    assert_eq!(gets, 1, "the probe's full answer is the body");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_file_reads_as_empty() {
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules {
        ranges: true,
        ..Rules::default()
    })
    .await;
    server.put_file("/empty", Vec::new());
    let loc = json!({"http": {"url": server.url("/empty")}});
    let driver = open(&pod, loc.clone()).await;
    let meta = driver.head("empty").await.expect("head");
    assert_eq!(meta.size, 0);
    assert!(read_all(driver, "empty", &small_chunks()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn ranged_get_returns_exactly_the_range() {
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules {
        ranges: true,
        ..Rules::default()
    })
    .await;
    let data = pseudo_random(10_000, 13);
    server.put_file("/r.bin", data.clone());
    let driver = open(&pod, json!({"http": {"url": server.url("/r.bin")}})).await;
    let got = driver.get_bytes("r.bin", 100..1_100).await.expect("range");
    assert_eq!(&got[..], &data[100..1_100]);
    let stream = driver
        .get("r.bin", Some(9_990..10_000))
        .await
        .expect("tail");
    assert_eq!(stream.meta.size, 10_000);
}

// ---- NotFound versus other failures -------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn not_found_is_typed_and_other_statuses_carry_argos_text() {
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules::default()).await;
    let driver = open(&pod, json!({"http": {"url": server.url("/missing.tgz")}})).await;
    let e = driver.head("missing.tgz").await.expect_err("404");
    assert!(e.is_not_found());
    assert_eq!(e.to_string(), "404 Not Found");

    server.force_status("/broken.tgz", 403);
    let url = server.url("/broken.tgz");
    let driver = open(&pod, json!({"http": {"url": url}})).await;
    let e = driver.head("broken.tgz").await.expect_err("403");
    assert!(!e.is_not_found() && !e.is_transient());
    assert_eq!(
        e.to_string(),
        format!("loading content from {url} failed with reason: 403 Forbidden")
    );
    let e = driver
        .put(
            "broken.tgz",
            bytes::Bytes::from_static(b"x"),
            &Default::default(),
        )
        .await
        .expect_err("403");
    assert!(
        e.to_string().starts_with(&format!(
            "saving file broken.tgz to {url} failed with reason: 403 Forbidden"
        )),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_streamed_upload_reports_the_server_answer() {
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules::default()).await;
    server.force_status("/up/big.bin", 500);
    let loc = json!({"http": {"url": server.url("/up/big.bin")}});
    let driver = open(&pod, loc).await;
    let data = pseudo_random(1_000_000, 14);
    let e = Uploader::new(small_chunks())
        .upload(driver, "up/big.bin", Default::default(), None, move |w| {
            std::io::Write::write_all(w, &data)
        })
        .await
        .expect_err("500");
    assert!(
        e.to_string()
            .contains("failed with reason: 500 Internal Server Error"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_a_transient_network_error() {
    let pod = TestPod::new().await;
    let refused = support::process::refused_addr();
    let loc = location(json!({"http": {"url": format!("http://{refused}/x")}}));
    // Through the whole stack: transient, so retried with the executor backoff, then reported.
    let driver = storage::open(&loc, &Secrets::new(pod.roots()), &StorageConfig::default())
        .await
        .expect("open");
    let e = driver.head("x").await.expect_err("refused");
    assert_eq!(e.kind(), Some(storage::ErrorKind::Network), "{e}");
    assert!(e.to_string().starts_with("GET http://127.0.0.1:"), "{e}");
    assert!(e.to_string().contains("gave up after 5 attempts"), "{e}");
}

// ---- unsupported operations ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn delete_and_list_are_not_supported_as_in_argo() {
    let pod = TestPod::new().await;
    for loc in [
        json!({"http": {"url": "http://127.0.0.1:9/a"}}),
        json!({"artifactory": {"url": "http://127.0.0.1:9/a",
            "usernameSecret": {"name": "art", "key": "user"},
            "passwordSecret": {"name": "art", "key": "pass"}}}),
    ] {
        pod.write_secret("art", "user", "u");
        pod.write_secret("art", "pass", "p");
        let driver = open(&pod, loc).await;
        let e = driver.delete("a").await.expect_err("delete");
        assert!(matches!(e, storage::Error::NotSupported { .. }));
        assert_eq!(e.to_string(), storage::DELETE_NOT_SUPPORTED);
        assert!(
            e.to_string()
                .contains("https://github.com/argoproj/argo-workflows/issues/3102")
        );
        let e = driver.list("a", None).await.expect_err("list");
        assert!(matches!(e, storage::Error::NotSupported { .. }));
    }
}

// ---- headers and credentials --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn headers_and_basic_auth_are_sent_only_when_both_secrets_are_set() {
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules {
        authorization: Some(basic("alice", "s3cret")),
        header: Some(("x-api-key".into(), "k1".into())),
        ..Rules::default()
    })
    .await;
    server.put_file("/a.txt", b"hello".to_vec());
    pod.write_secret("web", "user", "alice");
    pod.write_secret("web", "pass", "s3cret");
    pod.write_secret("web", "empty", "");
    let with = |pass_key: &str| {
        json!({"http": {
            "url": server.url("/a.txt"),
            "headers": [{"name": "X-Api-Key", "value": "k0"}, {"name": "X-Api-Key", "value": "k1"}],
            "auth": {"basicAuth": {
                "usernameSecret": {"name": "web", "key": "user"},
                "passwordSecret": {"name": "web", "key": pass_key}}}}})
    };
    let driver = open(&pod, with("pass")).await;
    assert_eq!(
        read_all(driver, "a.txt", &small_chunks()).await,
        b"hello".to_vec()
    );
    let last = server.seen().pop().expect("seen");
    assert_eq!(
        last.header_values,
        vec!["k0", "k1"],
        "headers are added, not set"
    );

    // Argo sends basic auth for `http:` only when both values are non-empty.
    let driver = open(&pod, with("empty")).await;
    let e = driver.head("a.txt").await.expect_err("no credentials");
    assert!(e.to_string().contains("401 Unauthorized"), "{e}");
    assert_eq!(server.seen().pop().expect("seen").authorization, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn artifactory_always_sends_basic_auth() {
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules {
        authorization: Some(basic("deployer", "")),
        ..Rules::default()
    })
    .await;
    pod.write_secret("art", "user", "deployer");
    pod.write_secret("art", "pass", "");
    let loc = json!({"artifactory": {
        "url": server.url("/repo/out.tgz"),
        "usernameSecret": {"name": "art", "key": "user"},
        "passwordSecret": {"name": "art", "key": "pass"}}});
    let driver = open(&pod, loc).await;
    assert_eq!(driver.name(), "artifactory");
    driver
        .put(
            "repo/out.tgz",
            bytes::Bytes::from_static(b"tgz"),
            &Default::default(),
        )
        .await
        .expect("put");
    assert_eq!(server.file("/repo/out.tgz").as_deref(), Some(&b"tgz"[..]));
    let put = server.seen().pop().expect("seen");
    assert_eq!(put.content_length.as_deref(), Some("3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_client_credentials_fetch_one_token_and_send_it_as_bearer() {
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules {
        authorization: Some("Bearer tok-123".into()),
        ranges: true,
        oauth2: Some(OAuth2Rules {
            client_id: "client id".into(),
            client_secret: "se:cret&".into(),
            scope: "read write".into(),
            param: ("audience".into(), "artifacts".into()),
            token: "tok-123".into(),
        }),
        ..Rules::default()
    })
    .await;
    let data = pseudo_random(200_000, 15);
    server.put_file("/secure.bin", data.clone());
    pod.write_secret("oauth", "id", "client id");
    pod.write_secret("oauth", "secret", "se:cret&");
    pod.write_secret("oauth", "url", &server.url(TOKEN_PATH));
    let loc = json!({"http": {
        "url": server.url("/secure.bin"),
        "auth": {"oauth2": {
            "clientIDSecret": {"name": "oauth", "key": "id"},
            "clientSecretSecret": {"name": "oauth", "key": "secret"},
            "tokenURLSecret": {"name": "oauth", "key": "url"},
            "scopes": ["read", "write"],
            "endpointParams": [{"key": "audience", "value": "artifacts"}]}}}});
    let driver = open(&pod, loc).await;
    assert_eq!(read_all(driver, "secure.bin", &small_chunks()).await, data);
    let seen = server.seen();
    let token_posts = seen.iter().filter(|s| s.path == TOKEN_PATH).count();
    let gets = seen.iter().filter(|s| s.method == "GET").count();
    assert_eq!(token_posts, 1, "the token is cached for the driver's life");
    assert!(gets > 2, "several ranged GETs used it");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_oauth2_client_is_an_auth_error_without_secrets_in_it() {
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules {
        oauth2: Some(OAuth2Rules {
            client_id: "id".into(),
            client_secret: "right".into(),
            scope: String::new(),
            param: ("a".into(), "b".into()),
            token: "t".into(),
        }),
        ..Rules::default()
    })
    .await;
    pod.write_secret("oauth", "id", "id");
    pod.write_secret("oauth", "secret", "wrong-secret-value");
    pod.write_secret("oauth", "url", &server.url(TOKEN_PATH));
    let loc = json!({"http": {"url": server.url("/x"), "auth": {"oauth2": {
        "clientIDSecret": {"name": "oauth", "key": "id"},
        "clientSecretSecret": {"name": "oauth", "key": "secret"},
        "tokenURLSecret": {"name": "oauth", "key": "url"}}}}});
    let driver = open(&pod, loc).await;
    let e = driver.head("x").await.expect_err("refused");
    assert_eq!(e.kind(), Some(storage::ErrorKind::Auth), "{e}");
    assert!(
        e.to_string().starts_with("oauth2: cannot fetch token"),
        "{e}"
    );
    assert!(!e.to_string().contains("wrong-secret-value"));
}

// ---- saveStreamViaFile and redirects ------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn save_stream_via_file_sends_a_length_and_follows_a_redirect() {
    let pod = TestPod::new().await;
    let server = HttpServer::start(Rules::default()).await;
    server.redirect("/webhdfs/out.tgz", "/datanode/out.tgz");
    let loc = json!({"http": {"url": server.url("/webhdfs/out.tgz"), "saveStreamViaFile": true}});
    let driver = open(&pod, loc).await;
    let data = pseudo_random(200_000, 16);
    let up = data.clone();
    Uploader::new(small_chunks())
        .upload(
            driver,
            "webhdfs/out.tgz",
            Default::default(),
            None,
            move |w| std::io::Write::write_all(w, &up),
        )
        .await
        .expect("upload");
    assert_eq!(server.file("/datanode/out.tgz"), Some(data));
    let puts: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2, "redirected once");
    assert!(
        puts.iter()
            .all(|p| p.content_length.as_deref() == Some("200000"))
    );
    assert!(puts.iter().all(|p| !p.chunked));
}

// ---- mutual TLS, through the real binary ---------------------------------------------------

/// `init` loads an input over HTTPS with a client certificate: the server (tokio-rustls)
/// refuses any client without a certificate signed by the test CA, and the executor trusts the
/// server through `SSL_CERT_FILE`, as a pod would with a mounted CA bundle.
#[tokio::test(flavor = "multi_thread")]
async fn init_loads_over_mutual_tls_with_the_client_certificate_secrets() {
    let pod = TestPod::new().await;
    let pki = TestPki::new();
    let server = HttpServer::start_mtls(Rules::default(), &pki).await;
    server.put_file("/tls/in.txt", b"over mutual tls\n".to_vec());
    let ca = pod.path("/tmp/test-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("ca file");
    pod.write_secret("tls", "crt", &pki.client_cert_pem);
    pod.write_secret("tls", "key", &pki.client_key_pem);
    let input = |auth: Value| {
        json!({"name": "consume", "inputs": {"artifacts": [{
            "name": "in", "path": "/in.txt",
            "http": {"url": server.url("/tls/in.txt"), "auth": auth}}]}})
    };
    let env = [("SSL_CERT_FILE", ca.to_str().expect("utf8"))];
    let t = input(json!({"clientCert": {
        "clientCertSecret": {"name": "tls", "key": "crt"},
        "clientKeySecret": {"name": "tls", "key": "key"}}}))
    .to_string();
    let out = pod
        .argoexec(
            &["init", "--loglevel", "info"],
            &[env[0], ("ARGO_TEMPLATE", &t)],
        )
        .await;
    assert_ok(&out);
    let loaded = std::fs::read(pod.roots().input_artifact("in")).expect("loaded");
    assert_eq!(loaded, b"over mutual tls\n");

    // Without the certificate the handshake fails, and the message says where.
    let t = input(json!({})).to_string();
    let out = pod
        .argoexec(
            &["init", "--loglevel", "info"],
            &[
                env[0],
                ("ARGO_TEMPLATE", &t),
                ("EXECUTOR_RETRY_BACKOFF_STEPS", "1"),
            ],
        )
        .await;
    assert_eq!(out.status.code(), Some(64));
    let log = pod.termination_log();
    assert!(
        log.starts_with("artifact in failed to load: GET https://127.0.0.1:"),
        "{log}"
    );
}
