//! No secret is ever printed. Every secret of these runs is a unique marker string; `wait`
//! saves and `init` loads artifacts with them (S3 keys, HTTP basic auth, a password in a URL),
//! at `--loglevel debug`, successes and failures, and the test scans everything the runs
//! produced: stdout, stderr, the termination log and every request body the Kubernetes API
//! received (the WorkflowTaskResult). A marker found anywhere, as itself, base64-encoded
//! (standard or URL-safe, padded or not, at any offset) or percent-encoded, fails the test.
//! The same runs are scanned again with every client library logging at trace level
//! (`ARGOEXEC_LOG=trace`), where signatures and headers are most likely to show.

mod support;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use support::http_server::{HttpServer, Rules};
use support::kube_server::PodWithApi;
use support::s3_server::{MARKER_ACCESS_KEY, MARKER_SECRET_KEY};
use support::{TestPod, assert_ok};

const HTTP_USER: &str = "marker-http-user-3a7c";
const HTTP_PASSWORD: &str = "marker-http-password-b91e";
const URL_PASSWORD: &str = "marker-url-password-5d02";
const WRONG_SECRET: &str = "marker-wrong-secret-e6f4";
const MARKERS: [&str; 6] = [
    MARKER_ACCESS_KEY,
    MARKER_SECRET_KEY,
    HTTP_USER,
    HTTP_PASSWORD,
    URL_PASSWORD,
    WRONG_SECRET,
];

/// Debug logs of our own code, in both formats over the runs.
const DEBUG_TEXT: [&str; 4] = ["--loglevel", "debug", "--log-format", "text"];
const DEBUG_JSON: [&str; 4] = ["--loglevel", "debug", "--log-format", "json"];

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!("Basic {}", STANDARD.encode(pair))
}

/// What `marker` looks like wherever it may be printed: itself; base64-encoded in the four
/// alphabets, whole and, at each of the three byte offsets it can start at inside a longer
/// value (`user:password`), the characters that depend on its bytes alone; percent-encoded,
/// with upper- and lower-case hex digits.
fn forms(marker: &str) -> Vec<(String, String)> {
    let mut forms = vec![("literal".to_string(), marker.to_string())];
    for (alphabet, engine) in [
        ("base64", STANDARD),
        ("base64 unpadded", STANDARD_NO_PAD),
        ("base64url", URL_SAFE),
        ("base64url unpadded", URL_SAFE_NO_PAD),
    ] {
        forms.push((alphabet.to_string(), engine.encode(marker)));
        for offset in 0..3 {
            let mut shifted = vec![b'.'; offset];
            shifted.extend_from_slice(marker.as_bytes());
            let encoded = engine.encode(&shifted);
            // Skip the group holding the bytes before the marker, and the last, partial
            // group, which depends on what follows it.
            let start = if offset == 0 { 0 } else { 4 };
            let end = shifted.len() / 3 * 4;
            forms.push((
                format!("{alphabet} at offset {offset}"),
                encoded[start..end].to_string(),
            ));
        }
    }
    let percent = percent_encoding::utf8_percent_encode(marker, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    forms.push((
        "percent-encoded, lower-case hex".into(),
        percent.to_lowercase(),
    ));
    forms.push(("percent-encoded".into(), percent));
    forms
}

/// An S3 location on the pod's server signed with the marker identity.
fn s3_marked(pod: &TestPod, key: &str, secret_key: &str) -> Value {
    let mut loc = pod.s3(key);
    loc["accessKeySecret"] = json!({"name": "marked", "key": "access"});
    loc["secretKeySecret"] = json!({"name": "marked", "key": secret_key});
    loc
}

fn http_marked(server: &HttpServer, path: &str) -> Value {
    json!({
        "url": server.url(path),
        "auth": {"basicAuth": {
            "usernameSecret": {"name": "web", "key": "user"},
            "passwordSecret": {"name": "web", "key": "password"}}},
    })
}

/// Everything a run left where people or the controller read it.
#[derive(Default)]
struct Seen(String);

impl Seen {
    fn run(&mut self, what: &str, out: &std::process::Output, pod: &TestPod) {
        self.0.push_str(&format!(
            "== {what}\n{}\n{}\n{}\n",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pod.termination_log()
        ));
    }

    fn assert_clean(&self, markers: &[&str]) {
        for marker in markers {
            for (form, needle) in forms(marker) {
                if let Some(at) = self.0.find(&needle) {
                    let from = self.0.floor_char_boundary(at.saturating_sub(300));
                    let to = self.0.ceil_char_boundary((at + 100).min(self.0.len()));
                    panic!(
                        "secret {marker:?} leaked ({form}: {needle}):\n...{}",
                        &self.0[from..to]
                    );
                }
            }
        }
    }
}

#[test]
fn every_form_of_a_marker_is_found_where_it_is_encoded() {
    let marker = "marker-probe-3c1d";
    for prefix in ["", "u", "us", "use"] {
        let pair = format!("{prefix}:{marker}:tail");
        for encoded in [STANDARD.encode(&pair), URL_SAFE_NO_PAD.encode(&pair)] {
            let seen = Seen(format!("Authorization: Basic {encoded}"));
            let caught = std::panic::catch_unwind(|| seen.assert_clean(&[marker]));
            assert!(caught.is_err(), "{pair:?} as {encoded}");
        }
    }
    let query = format!(
        "?password={}",
        percent_encoding::utf8_percent_encode(marker, percent_encoding::NON_ALPHANUMERIC)
    );
    assert!(std::panic::catch_unwind(|| Seen(query.clone()).assert_clean(&[marker])).is_err());
    Seen("nothing to see".into()).assert_clean(&[marker]);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_any_output_at_debug_level_in_success_or_failure() {
    run_every_scenario(&[]).await.assert_clean(&MARKERS);
}

/// With every library at trace level the S3 access key id may be printed: it is an
/// identifier (it travels in every signed request's `Authorization` header and in CloudTrail
/// records), not a secret; the secret key, the passwords and the signatures never are.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_any_output_with_every_library_logging_at_trace_level() {
    let seen = run_every_scenario(&[("ARGOEXEC_LOG", "trace")]).await;
    // The libraries did log at trace level: aws_sigv4 signing, aws_smithy_runtime sending.
    for library_line in ["msg=\"signing request\"", "msg=\"transmitting request\""] {
        assert!(
            seen.0.contains(library_line),
            "no {library_line:?} in the logs"
        );
    }
    seen.assert_clean(&MARKERS[1..]);
}

/// `wait` saves and `init` loads artifacts with marker secrets, successes and failures, with
/// `log_env` added to every run; returns everything the runs left behind.
async fn run_every_scenario(log_env: &[(&str, &str)]) -> Seen {
    let s = PodWithApi::start("argo").await;
    let pod = &s.pod;
    pod.write_secret("marked", "access", MARKER_ACCESS_KEY);
    pod.write_secret("marked", "secret", MARKER_SECRET_KEY);
    pod.write_secret("marked", "wrong", WRONG_SECRET);
    pod.write_secret("web", "user", HTTP_USER);
    pod.write_secret("web", "password", HTTP_PASSWORD);
    let server = HttpServer::start(Rules {
        authorization: Some(basic(HTTP_USER, HTTP_PASSWORD)),
        ..Rules::default()
    })
    .await;
    server.put_file("/in/web.txt", b"from the web".to_vec());
    let mut seen = Seen::default();
    let kube = [("KUBECONFIG", s.kubeconfig.as_str())];

    // wait saves: a multipart object, a tgz, and an HTTP upload, all with marker secrets.
    let work = pod.path("/mainctrfs/work");
    std::fs::create_dir_all(work.join("dir")).expect("mkdir");
    let big = support::pseudo_random(11 << 20, 3);
    std::fs::write(work.join("big.bin"), &big).expect("big");
    std::fs::write(work.join("dir/a.txt"), b"a").expect("a");
    std::fs::write(work.join("web.txt"), b"to the web").expect("web");
    let produce = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [
            {"name": "big", "path": "/work/big.bin", "archive": {"none": {}},
             "s3": s3_marked(pod, "scan/big.bin", "secret")},
            {"name": "dir", "path": "/work/dir", "s3": s3_marked(pod, "scan/dir.tgz", "secret")},
            {"name": "web", "path": "/work/web.txt", "archive": {"none": {}},
             "http": http_marked(&server, "/out/web.txt")},
        ]},
    });
    let env = [kube[0], ("ARGOEXEC_PART_SIZE_MIB", "5")];
    pod.stage_wait(&produce);
    let mut args = vec!["wait"];
    args.extend(DEBUG_TEXT);
    let out = pod.argoexec(&args, &[&env[..], log_env].concat()).await;
    assert_ok(&out);
    seen.run("wait", &out, pod);
    assert!(pod.get("scan/big.bin").await == Some(big.clone()), "saved");
    assert_eq!(
        server.file("/out/web.txt").as_deref(),
        Some(&b"to the web"[..])
    );

    // init loads them back, and an HTTP input whose URL carries a password.
    server.put_file("/in/url.txt", b"via url".to_vec());
    let mut url_with_password = url::Url::parse(&server.url("/in/url.txt")).expect("url");
    // The user name of a URL is in the template for all to read; its password is masked.
    url_with_password
        .set_username("url-user")
        .and_then(|()| url_with_password.set_password(Some(URL_PASSWORD)))
        .expect("userinfo");
    let consume = json!({
        "name": "consume",
        "inputs": {"artifacts": [
            {"name": "big", "path": "/in/big", "s3": s3_marked(pod, "scan/big.bin", "secret")},
            {"name": "dir", "path": "/in/dir", "s3": s3_marked(pod, "scan/dir.tgz", "secret")},
            {"name": "web", "path": "/in/web", "http": http_marked(&server, "/in/web.txt")},
        ]},
    });
    let t = consume.to_string();
    let mut args = vec!["init"];
    args.extend(DEBUG_JSON);
    let out = pod
        .argoexec(
            &args,
            &[&[("ARGO_TEMPLATE", t.as_str())][..], log_env].concat(),
        )
        .await;
    assert_ok(&out);
    seen.run("init", &out, pod);
    assert!(std::fs::read(pod.roots().input_artifact("big")).expect("big") == big);

    // Failures: a wrong S3 secret key, and a URL whose password the server refuses.
    let failing = [
        json!({"name": "wrong", "path": "/in/wrong", "s3": s3_marked(pod, "scan/big.bin", "wrong")}),
        json!({"name": "url", "path": "/in/url", "http": {"url": url_with_password.to_string()}}),
    ];
    for (i, art) in failing.into_iter().enumerate() {
        let t = json!({"name": "fail", "inputs": {"artifacts": [art]}}).to_string();
        let log = if i == 0 { DEBUG_TEXT } else { DEBUG_JSON };
        let mut args = vec!["init"];
        args.extend(log);
        let out = pod
            .argoexec(
                &args,
                &[
                    &[
                        ("ARGO_TEMPLATE", t.as_str()),
                        ("EXECUTOR_RETRY_BACKOFF_STEPS", "2"),
                    ][..],
                    log_env,
                ]
                .concat(),
            )
            .await;
        assert_eq!(out.status.code(), Some(64), "the failure happened");
        assert!(!pod.termination_log().is_empty());
        seen.run("failing init", &out, pod);
    }
    assert!(
        seen.0.contains("401 Unauthorized") && seen.0.contains("HTTP 403"),
        "both failures are in what was scanned"
    );

    // Everything the Kubernetes API received: the task result and its patches.
    let api: Vec<String> = s
        .kube
        .requests()
        .iter()
        .map(|r| format!("{} {} {:?}", r.method, r.path, r.body))
        .collect();
    assert!(
        api.iter().any(|r| r.contains("scan/big.bin")),
        "the outputs were reported: {api:?}"
    );
    seen.0.push_str(&api.join("\n"));
    seen
}
