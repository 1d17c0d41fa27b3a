//! Bad configuration through the real `init`: each mistake ends in exit 64 with one clear line
//! in the termination log, and the mistakes no retry can fix (a missing or empty secret, a
//! malformed endpoint, wrong credentials, a missing bucket, an untrusted certificate) are
//! tried once, not until the attempts run out. An unreachable endpoint is a network failure:
//! retried, but a bounded number of times.

mod support;

use serde_json::{Value, json};
use support::fault_proxy::{FaultProxy, TlsFront};
use support::http_server::TestPki;
use support::{TestPod, assert_ok};

/// Enough attempts that "tried once" cannot happen by running out of them.
const MANY_ATTEMPTS: (&str, &str) = ("EXECUTOR_RETRY_BACKOFF_STEPS", "4");

/// A template loading `key` from `location` as the input `in`.
fn consume(location: Value) -> Value {
    json!({
        "name": "consume",
        "inputs": {"artifacts": [{"name": "in", "path": "/in/data", "s3": location}]},
    })
}

/// Runs init, expects exit 64, and returns the termination log (one line, Argo's text) after
/// checking that the log lines, where our context goes, name the artifact and every one of
/// `parts`.
async fn init_fails(pod: &TestPod, template: &Value, parts: &[&str]) -> String {
    let out = pod.init_with(template, &[MANY_ATTEMPTS]).await;
    let message = support::failure(pod, &out);
    // Log lines quote their fields: read them unquoted.
    let log = String::from_utf8_lossy(&out.stderr).replace("\\\"", "\"");
    for p in ["input artifact in"].iter().chain(parts) {
        assert!(log.contains(p), "{p:?} missing from the log:\n{log}");
    }
    assert!(
        !pod.roots().input_artifact("in").exists(),
        "nothing placed on failure"
    );
    message
}

fn requests(proxy: &FaultProxy) -> usize {
    proxy.seen().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_is_named_and_nothing_is_sent() {
    let pod = TestPod::new().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let mut loc = pod.s3_via(proxy.addr, "k");
    loc["secretKeySecret"]["key"] = json!("no-such-key");
    let message = init_fails(
        &pod,
        &consume(loc),
        &["secret \"s3-creds\" key \"no-such-key\" is not available"],
    )
    .await;
    let path = pod.roots().secret("s3-creds", "no-such-key");
    assert_eq!(
        message,
        format!("open {}: no such file or directory", path.display())
    );
    assert_eq!(requests(&proxy), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_secret_is_refused_before_any_request() {
    let pod = TestPod::new().await;
    pod.write_secret("empty", "accessKey", "\n");
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let mut loc = pod.s3_via(proxy.addr, "k");
    loc["accessKeySecret"] = json!({"name": "empty", "key": "accessKey"});
    init_fails(&pod, &consume(loc), &["secret is empty"]).await;
    assert_eq!(requests(&proxy), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_endpoint_is_a_configuration_error() {
    let pod = TestPod::new().await;
    let mut loc = pod.s3("k");
    loc["endpoint"] = json!("http://127.0.0.1:not-a-port");
    init_fails(
        &pod,
        &consume(loc),
        &["the S3 endpoint \"http://127.0.0.1:not-a-port\" is not valid: invalid port"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_endpoint_is_retried_a_bounded_number_of_times() {
    let pod = TestPod::new().await;
    let closed = support::process::refused_addr();
    let message = init_fails(
        &pod,
        &consume(pod.s3_via(closed, "k")),
        &[&closed.to_string(), "gave up after 4 attempts"],
    )
    .await;
    assert!(
        message.starts_with(
            "artifact in failed to load: timed out waiting for the condition: failed to get file: "
        ),
        "{message}"
    );
    assert!(message.contains("onnection refused"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_permanent() {
    let pod = TestPod::new().await;
    pod.put("k", b"data".to_vec()).await;
    pod.write_secret("wrong", "secretKey", "not-the-secret-key");
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let mut loc = pod.s3_via(proxy.addr, "k");
    loc["secretKeySecret"] = json!({"name": "wrong", "key": "secretKey"});
    // The first request is a HEAD, whose answer has no body: the status is all there is.
    init_fails(&pod, &consume(loc), &["head", "HTTP 403 Forbidden"]).await;
    assert_eq!(requests(&proxy), 1, "tried once: {:?}", proxy.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_is_permanent_even_for_an_optional_artifact() {
    let pod = TestPod::new().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let mut loc = pod.s3_via(proxy.addr, "k");
    loc["bucket"] = json!("no-such-bucket");
    let mut template = consume(loc);
    template["inputs"]["artifacts"][0]["optional"] = json!(true);
    let message = init_fails(&pod, &template, &["NoSuchBucket", "no-such-bucket"]).await;
    assert_eq!(
        message,
        "artifact in failed to load: failed to test if k is a directory: The specified bucket does not exist"
    );
    // A HEAD (404 without a body: maybe a key-as-directory), then the listing that names the
    // missing bucket; neither is retried.
    let seen: Vec<_> = proxy.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(seen, ["HEAD", "GET"], "each tried once");
}

/// An S3 location served over TLS by `front`, trusting the CA in the secret `ca/pem`.
fn over_tls(pod: &TestPod, front: &TlsFront, trusted: &TestPki) -> Value {
    pod.write_secret("ca", "pem", &trusted.ca_pem);
    let mut loc = pod.s3("k");
    loc["endpoint"] = json!(format!("https://{}", front.addr));
    loc["insecure"] = json!(false);
    loc["caSecret"] = json!({"name": "ca", "key": "pem"});
    loc
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_certificate_from_another_ca_is_refused_once_and_the_right_ca_works() {
    let pod = TestPod::new().await;
    pod.put("k", b"over tls".to_vec()).await;
    let server_pki = TestPki::new();
    let front = TlsFront::start(pod.s3_addr, &server_pki).await;

    let other_ca = TestPki::new();
    let message = init_fails(
        &pod,
        &consume(over_tls(&pod, &front, &other_ca)),
        &[&front.addr.to_string(), "certificate"],
    )
    .await;
    assert!(!message.contains("gave up"), "not retried: {message}");
    assert_eq!(front.accepted(), 1, "one attempt");

    // The same endpoint with the CA that signed it: the setup itself is sound.
    let out = pod
        .init(&consume(over_tls(&pod, &front, &server_pki)))
        .await;
    assert_ok(&out);
    let placed = std::fs::read(pod.roots().input_artifact("in")).expect("placed");
    assert_eq!(placed, b"over tls");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_archive_strategy_loads_by_content_as_argo_does() {
    let pod = TestPod::new().await;
    pod.put("plain", b"not an archive".to_vec()).await;
    let mut template = consume(pod.s3("plain"));
    template["inputs"]["artifacts"][0]["archive"] = json!({"rar": {}});
    assert_ok(&pod.init(&template).await);
    let placed = std::fs::read(pod.roots().input_artifact("in")).expect("placed");
    assert_eq!(placed, b"not an archive", "placed as it is, not untarred");
}
