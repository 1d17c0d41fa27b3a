//! No secret is ever printed. Every secret of these runs is a unique marker string; `wait`
//! saves and `init` loads artifacts with them (S3 keys, HTTP basic auth, a password in a URL),
//! at `--loglevel debug`, successes and failures, and the test scans everything the runs
//! produced: stdout, stderr, the termination log and every request body the Kubernetes API
//! received (the WorkflowTaskResult). A marker found anywhere fails the test.

mod support;

use base64::Engine;
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
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
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

    fn assert_clean(&self) {
        for marker in MARKERS {
            if let Some(at) = self.0.find(marker) {
                let from = at.saturating_sub(300);
                panic!(
                    "secret {marker:?} leaked:\n...{}",
                    &self.0[from..(at + 100).min(self.0.len())]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_any_output_at_debug_level_in_success_or_failure() {
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
    let out = pod.argoexec(&args, &env).await;
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
    let out = pod.argoexec(&args, &[("ARGO_TEMPLATE", &t)]).await;
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
                &[("ARGO_TEMPLATE", &t), ("EXECUTOR_RETRY_BACKOFF_STEPS", "2")],
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
    seen.assert_clean();
}
