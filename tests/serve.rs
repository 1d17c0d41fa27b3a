//! `argoexec serve` as the real process over the loopback S3 server: ranges (206, 416),
//! conditional requests, listing, refusal of keys outside the repository, no secrets in logs,
//! a 2 GiB object streamed with flat memory, and its exposure: bearer tokens, stalled clients
//! (their share of the budget, the idle timeout), the connection limit.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::s3_server::{ACCESS_KEY, SECRET_KEY};
use support::{BUCKET, SECRET_NAME, TestPod, pseudo_random};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A running `argoexec serve`, stopped (SIGKILL) when dropped.
struct Served {
    addr: SocketAddr,
    child: tokio::process::Child,
    /// Everything it logged so far, drained as it comes so the pipe never fills and blocks it.
    log: Arc<Mutex<String>>,
    drained: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn start(pod: &TestPod, extra: &[&str]) -> Self {
        Self::start_with(pod, &write_repository(pod), extra).await
    }

    async fn start_with(pod: &TestPod, repository: &std::path::Path, extra: &[&str]) -> Self {
        Self::launch(pod, repository, extra, &[]).await
    }

    async fn launch(
        pod: &TestPod,
        repository: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let repo = repository.to_string_lossy().into_owned();
        let mut args = vec![
            "serve",
            "--repository",
            repo.as_str(),
            "--listen",
            "127.0.0.1:0",
            "--loglevel",
            "debug",
        ];
        args.extend_from_slice(extra);
        let mut child = pod
            .command(&args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        tokio::time::timeout(
            Duration::from_secs(60),
            BufReader::new(stdout).read_line(&mut first),
        )
        .await
        .expect("serve announced its address in time")
        .expect("read stdout");
        let addr = first
            .trim()
            .rsplit("http://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        assert!(first.starts_with("serving s3://argo-artifacts/"), "{first}");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let drained = tokio::spawn(async move {
            let mut line = String::new();
            while matches!(stderr.read_line(&mut line).await, Ok(n) if n > 0) {
                sink.lock().expect("log").push_str(&line);
                line.clear();
            }
        });
        Self {
            addr,
            child,
            log,
            drained,
        }
    }

    /// Waits (at most a minute) until the server has logged a line holding `needle`.
    async fn wait_for_log(&self, needle: &str) {
        for _ in 0..600 {
            if self.log.lock().expect("log").contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the server never logged {needle:?}:\n{}",
            self.log.lock().expect("log")
        );
    }

    /// Stops the server (SIGTERM) and returns what it logged.
    async fn stop(mut self) -> String {
        let pid = self.child.id().expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("serve stopped in time")
            .expect("wait");
        assert!(status.success(), "serve exits 0 on SIGTERM: {status:?}");
        self.drained.await.expect("log drained");
        self.log.lock().expect("log").clone()
    }
}

/// An `s3:` repository on the test server, as YAML, with the given key settings.
fn s3_repository(pod: &TestPod, keys: &str) -> String {
    format!(
        "s3:\n  bucket: {BUCKET}\n  endpoint: {}\n  insecure: true\n  accessKeySecret: {{name: {SECRET_NAME}, key: accessKey}}\n  secretKeySecret: {{name: {SECRET_NAME}, key: secretKey}}\n  {keys}\n",
        pod.s3_addr
    )
}

/// The repository file: the shape of an `artifact-repositories` entry, as YAML.
fn write_repository(pod: &TestPod) -> PathBuf {
    let path = pod.root.path().join("repository.yaml");
    let yaml = s3_repository(pod, "keyFormat: \"art/{{workflow.name}}/{{pod.name}}\"");
    std::fs::write(&path, yaml).expect("repository file");
    path
}

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(name, *value);
    }
    let req = req
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    tokio::time::timeout(Duration::from_secs(60), sender.send_request(req))
        .await
        .unwrap_or_else(|_| panic!("{path} was not answered in time"))
        .expect("response")
}

async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let response = send(addr, Method::GET, path, headers).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(120), response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

/// No log line carries a credential (the server logs at debug level in these tests).
fn assert_no_secrets(log: &str) {
    assert!(log.contains("request"), "the server logged its requests");
    let leaks: Vec<&str> = log
        .lines()
        .filter(|l| {
            [SECRET_KEY, ACCESS_KEY, TOKEN]
                .iter()
                .any(|s| l.contains(s))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "credentials in the log:\n{}",
        leaks.join("\n")
    );
}

fn header_of(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_and_conditional_requests() {
    let pod = TestPod::new().await;
    // Larger than one read chunk (4 MiB), so ranged reads run concurrently and in order.
    let data = pseudo_random(10 * (1 << 20) + 3, 11);
    let size = data.len();
    pod.put("art/wf/pod/data.bin", data.clone()).await;
    pod.put("art/wf/pod/empty", Vec::new()).await;
    let served = Served::start(&pod, &[]).await;
    let addr = served.addr;
    let at = "/artifacts/art/wf/pod/data.bin";

    let (status, headers, body) = get(addr, at, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, data);
    assert_eq!(
        header_of(&headers, header::CONTENT_LENGTH),
        size.to_string()
    );
    assert_eq!(header_of(&headers, header::ACCEPT_RANGES), "bytes");
    let etag = header_of(&headers, header::ETAG).to_string();
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");

    for (range, want) in [
        ("bytes=0-9", 0..10),
        ("bytes=4194300-8388700", 4_194_300..8_388_701),
        ("bytes=-100", size - 100..size),
        ("bytes=10485000-", 10_485_000..size),
        ("bytes=10485000-99999999", 10_485_000..size),
    ] {
        let (status, headers, body) = get(addr, at, &[(header::RANGE, range)]).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(body, &data[want.clone()], "{range}");
        assert_eq!(
            header_of(&headers, header::CONTENT_RANGE),
            format!("bytes {}-{}/{size}", want.start, want.end - 1),
            "{range}"
        );
        assert_eq!(
            header_of(&headers, header::CONTENT_LENGTH),
            want.len().to_string()
        );
    }

    let (status, headers, _) = get(addr, at, &[(header::RANGE, &format!("bytes={size}-"))]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header_of(&headers, header::CONTENT_RANGE),
        format!("bytes */{size}")
    );
    // Several ranges are not served as multipart: the whole object, as RFC 9110 allows.
    let (status, _, body) = get(addr, at, &[(header::RANGE, "bytes=0-1,5-6")]).await;
    assert_eq!((status, body.len()), (StatusCode::OK, size));

    let (status, headers, body) = get(addr, at, &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(header_of(&headers, header::ETAG), etag);
    // If-Range with another entity tag: the range is dropped, the whole object served.
    let (status, _, body) = get(
        addr,
        at,
        &[
            (header::RANGE, "bytes=0-9"),
            (header::IF_RANGE, "\"other\""),
        ],
    )
    .await;
    assert_eq!((status, body.len()), (StatusCode::OK, size));
    let (status, _, body) = get(
        addr,
        at,
        &[(header::RANGE, "bytes=0-9"), (header::IF_RANGE, &etag)],
    )
    .await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &data[..10])
    );

    let head = send(addr, Method::HEAD, at, &[(header::RANGE, "bytes=1-2")]).await;
    assert_eq!(head.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_of(head.headers(), header::CONTENT_LENGTH), "2");
    assert_eq!(
        header_of(head.headers(), header::CONTENT_RANGE),
        format!("bytes 1-2/{size}")
    );

    let (status, headers, body) = get(addr, "/artifacts/art/wf/pod/empty", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header_of(&headers, header::CONTENT_LENGTH), "0");
    assert!(body.is_empty());
    let (status, _, _) = get(
        addr,
        "/artifacts/art/wf/pod/empty",
        &[(header::RANGE, "bytes=0-")],
    )
    .await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);

    let (status, _, body) = get(addr, "/artifacts/art/wf/pod/absent", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error: Value = serde_json::from_slice(&body).expect("json error");
    assert_eq!(error["error"], "no such object");

    assert_no_secrets(&served.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outside_the_repository_are_refused() {
    let pod = TestPod::new().await;
    pod.put("outside/secret.txt", b"not served".to_vec()).await;
    pod.put("art/wf/pod/ok.txt", b"served".to_vec()).await;
    let served = Served::start(&pod, &[]).await;
    let addr = served.addr;

    let (status, _, body) = get(addr, "/artifacts/art/wf/pod/ok.txt", &[]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"served"[..]));
    for (path, want) in [
        (
            "/artifacts/art/../outside/secret.txt",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/artifacts/art/%2e%2e/outside/secret.txt",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/artifacts/art%2F..%2Foutside%2Fsecret.txt",
            StatusCode::BAD_REQUEST,
        ),
        ("/artifacts/./art/wf/pod/ok.txt", StatusCode::BAD_REQUEST),
        ("/artifacts//outside/secret.txt", StatusCode::BAD_REQUEST),
        ("/artifacts/art//wf/pod/ok.txt", StatusCode::BAD_REQUEST),
        ("/artifacts/art/wf/%00", StatusCode::BAD_REQUEST),
        ("/artifacts/", StatusCode::BAD_REQUEST),
        ("/artifacts/outside/secret.txt", StatusCode::FORBIDDEN),
        ("/artifacts/ar", StatusCode::FORBIDDEN),
        ("/list/outside/", StatusCode::FORBIDDEN),
        ("/list/art/../outside/", StatusCode::BAD_REQUEST),
        ("/nothing-here", StatusCode::NOT_FOUND),
    ] {
        let (status, _, body) = get(addr, path, &[]).await;
        assert_eq!(status, want, "{path}");
        assert!(
            !String::from_utf8_lossy(&body).contains("not served"),
            "{path} leaked the object"
        );
    }
    let post = send(addr, Method::POST, "/artifacts/art/wf/pod/ok.txt", &[]).await;
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_no_secrets(&served.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_are_listed_as_json_pages() {
    let pod = TestPod::new().await;
    let dir = pod.data.path().join(BUCKET).join("art/many");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for i in 0..1005 {
        std::fs::write(dir.join(format!("f{i:04}")), b"x").expect("object");
    }
    pod.put("art/wf/pod/out.tgz", b"tgz".to_vec()).await;
    let served = Served::start(&pod, &[]).await;
    let addr = served.addr;

    let (status, _, body) = get(addr, "/list/art/wf/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let page: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(page["prefix"], "art/wf/");
    assert_eq!(page["objects"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["objects"][0]["key"], "art/wf/pod/out.tgz");
    assert_eq!(page["objects"][0]["size"], 3);
    assert!(page["continue"].is_null());

    // A large prefix comes in pages, each with the token of the next.
    let (_, _, body) = get(addr, "/list/art/many/", &[]).await;
    let first: Value = serde_json::from_slice(&body).expect("json");
    let n1 = first["objects"].as_array().map_or(0, Vec::len);
    let token = first["continue"].as_str().expect("a next page").to_string();
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("continue", &token)
        .finish();
    let (_, _, body) = get(addr, &format!("/list/art/many/?{query}"), &[]).await;
    let second: Value = serde_json::from_slice(&body).expect("json");
    let n2 = second["objects"].as_array().map_or(0, Vec::len);
    assert_eq!(n1 + n2, 1005);
    assert!(second["continue"].is_null());

    // An empty prefix lists the repository's own.
    let (_, _, body) = get(addr, "/list/", &[]).await;
    let root: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(root["prefix"], "art/");
    let (_, _, body) = get(addr, "/", &[]).await;
    let info: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(info["repository"], format!("s3://{BUCKET}"));
    assert_eq!(info["prefix"], "art/");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrower_prefix_must_lie_inside_the_repository() {
    let pod = TestPod::new().await;
    pod.put("art/wf/pod/ok.txt", b"served".to_vec()).await;
    pod.put("art/other/pod/no.txt", b"no".to_vec()).await;
    let served = Served::start(&pod, &["--prefix", "art/wf/"]).await;
    let (status, _, _) = get(served.addr, "/artifacts/art/wf/pod/ok.txt", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(served.addr, "/artifacts/art/other/pod/no.txt", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    served.stop().await;

    let repo = write_repository(&pod);
    let out = pod
        .argoexec(
            &[
                "serve",
                "--repository",
                &repo.to_string_lossy(),
                "--listen",
                "127.0.0.1:0",
                "--prefix",
                "elsewhere/",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        pod.termination_log().contains("not a key prefix below"),
        "{}",
        pod.termination_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_repositories_config_map_can_be_served() {
    let pod = TestPod::new().await;
    pod.put("team/wf/pod/a.txt", b"team".to_vec()).await;
    pod.put("legacy/wf/pod/b.txt", b"legacy".to_vec()).await;
    // `kubectl get configmap artifact-repositories -o yaml`, as a file: entries are YAML text.
    let entry = |keys: &str| {
        s3_repository(&pod, keys)
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: artifact-repositories\n  annotations:\n    workflows.argoproj.io/default-artifact-repository: team\ndata:\n  team: |\n{}\n  legacy: |\n{}\n",
        entry("keyFormat: \"team/{{workflow.name}}/{{pod.name}}\""),
        entry("keyPrefix: legacy"),
    );
    let path = pod.root.path().join("artifact-repositories.yaml");
    std::fs::write(&path, manifest).expect("manifest");

    // The annotated default entry.
    let served = Served::start_with(&pod, &path, &[]).await;
    let (status, _, body) = get(served.addr, "/artifacts/team/wf/pod/a.txt", &[]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"team"[..]));
    let (status, _, _) = get(served.addr, "/artifacts/legacy/wf/pod/b.txt", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    served.stop().await;

    // Another entry by `--key`: `keyPrefix` makes `legacy/` the served prefix.
    let served = Served::start_with(&pod, &path, &["--key", "legacy"]).await;
    let (status, _, body) = get(served.addr, "/artifacts/legacy/wf/pod/b.txt", &[]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"legacy"[..]));
    served.stop().await;

    let out = pod
        .argoexec(
            &[
                "serve",
                "--repository",
                &path.to_string_lossy(),
                "--key",
                "missing",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        pod.termination_log()
            .contains("failed to find any artifact repository"),
        "{}",
        pod.termination_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_gib_object_streams_with_flat_memory() {
    use std::io::Write;
    const SIZE: u64 = 2 << 30;
    const BLOCK: usize = 1 << 20;
    let pod = TestPod::new().await;
    let path = pod.data.path().join(BUCKET).join("art/wf/pod/big.bin");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    // 1 MiB blocks, each filled with its own index: a misplaced block changes the CRC.
    let mut expected_crc = 0u32;
    {
        let mut f = std::fs::File::create(&path).expect("create");
        let mut block = vec![0u8; BLOCK];
        for b in 0..SIZE / BLOCK as u64 {
            block.fill((b % 251) as u8);
            expected_crc = crc32c::crc32c_append(expected_crc, &block);
            f.write_all(&block).expect("write");
        }
    }
    pod.record_etag("art/wf/pod/big.bin", "2-gib-of-blocks");
    let served = Served::start(&pod, &[]).await;
    let pid = served.child.id().expect("pid");
    let idle_kib = vm_hwm_kib(pid);
    let response = send(
        served.addr,
        Method::GET,
        "/artifacts/art/wf/pod/big.bin",
        &[],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(response.headers(), header::CONTENT_LENGTH),
        SIZE.to_string()
    );
    let mut body = response.into_body();
    let (mut received, mut crc, mut peak_kib) = (0u64, 0u32, 0u64);
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(60), body.frame())
        .await
        .expect("the stream kept moving")
    {
        let frame = frame.expect("frame");
        let Some(data) = frame.data_ref() else {
            continue;
        };
        crc = crc32c::crc32c_append(crc, data);
        received += data.len() as u64;
        if received % (64 << 20) < data.len() as u64 {
            peak_kib = peak_kib.max(vm_hwm_kib(pid));
        }
    }
    peak_kib = peak_kib.max(vm_hwm_kib(pid));
    assert_eq!(received, SIZE);
    assert_eq!(crc, expected_crc, "the bytes arrived intact and in order");
    eprintln!(
        "serve streamed 2 GiB: peak RSS (VmHWM) {:.1} MiB, {:.1} MiB before the request",
        peak_kib as f64 / 1024.0,
        idle_kib as f64 / 1024.0
    );
    // The streaming budget is 24 MiB by default: memory must not follow the object's size.
    assert!(peak_kib > 0);
    assert!(
        peak_kib < 80 * 1024,
        "serve held {peak_kib} KiB for a 2 GiB object"
    );
    served.stop().await;
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The bearer token of the tests that set one.
const TOKEN: &str = "serve-token-marker-71c2e9";

/// A 32 MiB object read in 1 MiB chunks, 4 in flight: a 6 MiB budget.
const SMALL_CHUNKS: [(&str, &str); 2] = [
    ("ARGOEXEC_DOWNLOAD_CHUNK_MIB", "1"),
    ("ARGOEXEC_CONCURRENCY", "4"),
];
const BIG_KEY: &str = "art/wf/pod/big.bin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_is_required_when_one_is_set() {
    let pod = TestPod::new().await;
    pod.put("art/wf/pod/ok.txt", b"served".to_vec()).await;
    let token_file = pod.root.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let token_file = token_file.to_string_lossy().into_owned();
    let served = Served::start(&pod, &["--token-file", &token_file]).await;
    let at = "/artifacts/art/wf/pod/ok.txt";
    let bearer = format!("Bearer {TOKEN}");

    for path in [at, "/", "/list/art/", "/artifacts/outside/x"] {
        let (status, headers, body) = get(served.addr, path, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            header_of(&headers, header::WWW_AUTHENTICATE),
            "Bearer realm=\"argoexec serve\"",
            "{path}"
        );
        assert!(!String::from_utf8_lossy(&body).contains("served"), "{path}");
    }
    for wrong in [
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[1..]),
        format!("Basic {TOKEN}"),
    ] {
        let (status, headers, _) = get(served.addr, at, &[(header::AUTHORIZATION, &wrong)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert!(
            header_of(&headers, header::WWW_AUTHENTICATE).contains("error=\"invalid_token\""),
            "{wrong}"
        );
    }
    let (status, _, body) = get(served.addr, at, &[(header::AUTHORIZATION, &bearer)]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"served"[..]));
    assert_no_secrets(&served.stop().await);

    // The same token from an environment variable the flag names.
    let served = Served::launch(
        &pod,
        &write_repository(&pod),
        &["--token-env", "SERVE_TOKEN"],
        &[("SERVE_TOKEN", TOKEN)],
    )
    .await;
    let (status, _, _) = get(served.addr, at, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = get(served.addr, at, &[(header::AUTHORIZATION, &bearer)]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"served"[..]));
    assert_no_secrets(&served.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_loopback_addresses_are_served() {
    let pod = TestPod::new().await;
    let repo = write_repository(&pod);
    let repo = repo.to_string_lossy();
    // A documentation address (RFC 5737): refused before anything binds.
    let out = pod
        .argoexec(
            &["serve", "--repository", &repo, "--listen", "192.0.2.1:2747"],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(64));
    let log = pod.termination_log();
    assert!(
        log.contains("--listen 192.0.2.1:2747 is not a loopback address")
            && log.contains("--token-file"),
        "{log}"
    );
    assert!(out.stdout.is_empty(), "nothing was served");

    // An empty token is no token.
    let out = pod
        .argoexec(
            &["serve", "--repository", &repo, "--token-env", "SERVE_TOKEN"],
            &[("SERVE_TOKEN", " ")],
        )
        .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        pod.termination_log().contains("--token-env SERVE_TOKEN"),
        "{}",
        pod.termination_log()
    );
}

/// A client that asks for `path` and, once the body has started, reads nothing more: its
/// small receive buffer fills and the server's writes stall. Returns the socket and the body
/// bytes it received.
async fn stalled_reader(addr: SocketAddr, path: &str) -> (tokio::net::TcpStream, usize) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let mut stream = socket.connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let body_start = tokio::time::timeout(Duration::from_secs(60), async {
        while seen.len() < 1 << 16 {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before the body started");
            seen.extend_from_slice(&buf[..n]);
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n")
                && seen.len() > end + 4
            {
                return end + 4;
            }
        }
        panic!("no body after 64 KiB");
    })
    .await
    .expect("the body started in time");
    assert!(seen.starts_with(b"HTTP/1.1 200"), "{:?}", &seen[..12]);
    (stream, seen.len() - body_start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_do_not_starve_a_fresh_reader() {
    let pod = TestPod::new().await;
    let data = pseudo_random(32 << 20, 5);
    pod.put(BIG_KEY, data.clone()).await;
    // Each connection may hold one chunk of the 6 MiB budget; neither timeout may free the
    // stalled clients' memory during the test.
    let served = Served::launch(
        &pod,
        &write_repository(&pod),
        &[
            "--connection-budget-mib",
            "1",
            "--idle-timeout",
            "10m",
            "--connection-timeout",
            "1h",
        ],
        &SMALL_CHUNKS,
    )
    .await;
    let at = format!("/artifacts/{BIG_KEY}");
    // Without a share each, three stalled clients hold the whole budget: the third body
    // never starts, nor does the fresh reader's.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(stalled_reader(served.addr, &at).await.0);
    }
    let (status, _, body) = get(served.addr, &at, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == data, "the fresh reader got the whole object");
    // The stalled clients are still connected, their bodies still pending.
    for mut client in stalled {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(60), client.read(&mut buf))
            .await
            .expect("read in time")
            .expect("read");
        assert!(n > 0, "the stalled connection was still open");
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_where_nothing_moves_is_closed_after_the_idle_timeout() {
    let pod = TestPod::new().await;
    let data = pseudo_random(32 << 20, 6);
    pod.put(BIG_KEY, data).await;
    let served = Served::launch(
        &pod,
        &write_repository(&pod),
        &["--idle-timeout", "3s"],
        &SMALL_CHUNKS,
    )
    .await;
    let (mut client, mut received) =
        stalled_reader(served.addr, &format!("/artifacts/{BIG_KEY}")).await;
    served.wait_for_log("closed a connection idle").await;
    // What was already on its way arrives, then the connection ends short of the object.
    let mut buf = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        for _ in 0..(32 << 20) / 1024 {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection was closed");
    assert!(
        received < 32 << 20,
        "closed before the whole body: {received} bytes"
    );
    served.stop().await;
}

/// A kept-alive connection that has been answered once, held open until dropped.
async fn held_connection(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get("/")
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(60), sender.send_request(req))
        .await
        .expect("answered in time")
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_answered_503() {
    let pod = TestPod::new().await;
    let served = Served::start(&pod, &["--max-connections", "2", "--idle-timeout", "10m"]).await;
    let first = held_connection(served.addr).await;
    let _second = held_connection(served.addr).await;
    let (status, headers, _) = get(served.addr, "/", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header_of(&headers, header::RETRY_AFTER), "1");
    // A closed connection frees its place (once the server has seen it close).
    drop(first);
    let mut answered = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..300 {
        answered = get(served.addr, "/", &[]).await.0;
        if answered == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answered, StatusCode::OK);
    served.stop().await;
}
