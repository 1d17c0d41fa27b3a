//! Network faults the transfer tests (tests/transfer.rs) do not cover: stalled sockets (connect
//! and read timeouts), slow links, server-error bursts on ranged reads, the step deadline
//! bounding retries end to end, and the error left when retries run out. Each runs the real
//! binary against the loopback S3 server through the fault-injecting proxy.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::fault_proxy::{BlackHole, Fault, FaultProxy};
use support::{TestPod, assert_ok};

/// A template that loads `key` through `via` as the input `name`.
fn consume(pod: &TestPod, via: std::net::SocketAddr, name: &str, key: &str) -> Value {
    json!({
        "name": "consume",
        "inputs": {"artifacts": [{"name": name, "path": format!("/in/{name}"), "s3": pod.s3_via(via, key)}]},
    })
}

/// 4 MiB ranges, so a 12 MiB object is read as three ranged GETs.
const RANGES: (&str, &str) = ("ARGOEXEC_DOWNLOAD_CHUNK_MIB", "4");

async fn put_blob(pod: &TestPod, key: &str, mib: usize) -> Vec<u8> {
    let data = support::pseudo_random(mib << 20, mib as u32);
    pod.put(key, data.clone()).await;
    data
}

fn loaded(pod: &TestPod, name: &str) -> Vec<u8> {
    std::fs::read(pod.roots().input_artifact(name)).expect("the artifact was placed")
}

fn gets(proxy: &FaultProxy) -> usize {
    proxy.seen().iter().filter(|s| s.method == "GET").count()
}

/// `init` failed as the executor fails (one line, Argo's text, in the termination log), with
/// log lines naming every one of `parts` (our context).
fn assert_failed_naming(pod: &TestPod, out: &std::process::Output, parts: &[&str]) {
    support::failure(pod, out);
    let log = String::from_utf8_lossy(&out.stderr);
    for p in parts {
        assert!(log.contains(p), "{p:?} missing from the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_that_stalls_mid_body_times_out_and_only_it_is_read_again() {
    let pod = TestPod::new().await;
    let data = put_blob(&pod, "s/blob.bin", 12).await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "GET",
        "s/blob.bin",
        Fault::StallResponse {
            after: 100_000,
            hold: Duration::from_secs(60),
        },
        1,
    );
    let env = [RANGES, ("ARGOEXEC_READ_TIMEOUT", "3s")];
    let out = pod
        .init_with(&consume(&pod, proxy.addr, "s", "s/blob.bin"), &env)
        .await;
    assert_ok(&out);
    assert!(loaded(&pod, "s") == data, "content intact");
    assert_eq!(gets(&proxy), 3 + 1, "three ranges, the stalled one twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_left_unanswered_times_out_and_is_sent_again() {
    let pod = TestPod::new().await;
    let data = support::pseudo_random(12 << 20, 3);
    std::fs::create_dir_all(pod.path("/mainctrfs/work")).expect("mkdir");
    std::fs::write(pod.path("/mainctrfs/work/big.bin"), &data).expect("write");
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "PUT",
        "partNumber=2&",
        Fault::Stall(Duration::from_secs(60)),
        1,
    );
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "big", "path": "/work/big.bin", "archive": {"none": {}}}]},
        "archiveLocation": {"s3": pod.s3_via(proxy.addr, "u")},
    });
    let env = [
        ("ARGOEXEC_PART_SIZE_MIB", "5"),
        ("ARGOEXEC_READ_TIMEOUT", "3s"),
    ];
    assert_ok(&pod.wait(&template, &env).await);
    let sent = proxy.sent_parts();
    assert_eq!(
        sent.iter().filter(|&&n| n == 2).count(),
        2,
        "part 2 twice: {sent:?}"
    );
    assert!(pod.get("u/big.bin").await == Some(data), "content intact");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_that_never_accepts_fails_on_the_connect_timeout_naming_it() {
    let pod = TestPod::new().await;
    let hole = BlackHole::start();
    let env = [
        ("ARGOEXEC_CONNECT_TIMEOUT", "300ms"),
        ("EXECUTOR_RETRY_BACKOFF_STEPS", "2"),
    ];
    let out = pod
        .init_with(&consume(&pod, hole.addr, "c", "c/key.bin"), &env)
        .await;
    assert_failed_naming(
        &pod,
        &out,
        &[
            "artifact c",
            "c/key.bin",
            &hole.addr.to_string(),
            "timeout",
            "gave up after 2 attempts",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_link_delivers_every_range_intact_without_retries() {
    let pod = TestPod::new().await;
    let data = put_blob(&pod, "l/blob.bin", 12).await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "GET",
        "l/blob.bin",
        Fault::SlowResponse {
            chunk: 256 << 10,
            every: Duration::from_millis(20),
        },
        100,
    );
    let env = [RANGES, ("ARGOEXEC_READ_TIMEOUT", "5s")];
    let out = pod
        .init_with(&consume(&pod, proxy.addr, "l", "l/blob.bin"), &env)
        .await;
    assert_ok(&out);
    assert!(loaded(&pod, "l") == data, "content intact");
    assert_eq!(gets(&proxy), 3, "no range was read twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_error_bursts_on_ranged_reads_are_retried_per_range() {
    let pod = TestPod::new().await;
    let data = put_blob(&pod, "b/blob.bin", 12).await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    // The HEAD passes, and the first range (read alone: it tells a plain file from a
    // tarball); then three 503s and two 500s land on whichever ranges come next.
    proxy.add_after(
        "GET",
        "b/blob.bin",
        1,
        Fault::Respond {
            status: 503,
            code: "SlowDown",
        },
        3,
    );
    proxy.add(
        "GET",
        "b/blob.bin",
        Fault::Respond {
            status: 500,
            code: "InternalError",
        },
        2,
    );
    let out = pod
        .init_with(&consume(&pod, proxy.addr, "b", "b/blob.bin"), &[RANGES])
        .await;
    assert_ok(&out);
    assert!(loaded(&pod, "b") == data, "content intact");
    assert_eq!(gets(&proxy), 3 + 5, "each failed range read again alone");
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_on_a_read_run_out_with_artifact_key_endpoint_and_cause() {
    let pod = TestPod::new().await;
    put_blob(&pod, "x/blob.bin", 12).await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "GET",
        "x/blob.bin",
        Fault::Respond {
            status: 503,
            code: "SlowDown",
        },
        1000,
    );
    let env = [RANGES, ("EXECUTOR_RETRY_BACKOFF_STEPS", "3")];
    let out = pod
        .init_with(&consume(&pod, proxy.addr, "x", "x/blob.bin"), &env)
        .await;
    assert_failed_naming(
        &pod,
        &out,
        &[
            "artifact x",
            "x/blob.bin",
            &proxy.addr.to_string(),
            "SlowDown",
            "gave up after 3 attempts",
        ],
    );
    assert!(!pod.roots().input_artifact("x").exists(), "nothing placed");
}

/// `ARGO_DEADLINE` as the controller writes it: RFC 3339, `seconds` from now.
fn deadline_in(seconds: u64) -> String {
    let at = SystemTime::now() + Duration::from_secs(seconds);
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_step_deadline_stops_retrying_long_before_the_attempts_run_out() {
    let pod = TestPod::new().await;
    put_blob(&pod, "d/blob.bin", 1).await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "HEAD",
        "d/blob.bin",
        Fault::Respond {
            status: 503,
            code: "SlowDown",
        },
        1000,
    );
    // Whole seconds, as the controller writes it: 5-6 s away, so even a slow start on a loaded
    // machine leaves time for more than one attempt.
    let deadline = deadline_in(6);
    // 1,000 attempts 500 ms apart would take over eight minutes.
    let env = [
        ("ARGO_DEADLINE", deadline.as_str()),
        ("EXECUTOR_RETRY_BACKOFF_STEPS", "1000"),
        ("EXECUTOR_RETRY_BACKOFF_DURATION", "500ms"),
        ("EXECUTOR_RETRY_BACKOFF_FACTOR", "1"),
        ("EXECUTOR_RETRY_BACKOFF_JITTER", "0"),
    ];
    let template = consume(&pod, proxy.addr, "d", "d/blob.bin");
    let mut args = vec!["init"];
    args.extend(support::LOG_OPTS);
    let t = template.to_string();
    let mut env = env.to_vec();
    env.push(("ARGO_TEMPLATE", &t));
    let out = pod
        .argoexec_with(&args, &env, Duration::from_secs(60))
        .await;
    assert_failed_naming(
        &pod,
        &out,
        &["artifact d", "d/blob.bin", "stopped by the step deadline"],
    );
    let heads = proxy.seen().iter().filter(|s| s.method == "HEAD").count();
    assert!(
        (2..=13).contains(&heads),
        "a few attempts 500 ms apart within 6 s, not 1,000: {heads}"
    );
}

/// Stores `data` under `key` with its whole-object CRC32C in the metadata, as our own
/// single-request uploads record it.
async fn put_with_crc(pod: &TestPod, key: &str, data: Vec<u8>) {
    let crc = format!("{:08x}", crc32c::crc32c(&data));
    pod.client()
        .await
        .put_object()
        .bucket(support::BUCKET)
        .key(key)
        .metadata(argoexec::storage::CRC32C_METADATA, crc)
        .body(data.into())
        .send()
        .await
        .expect("put");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_corrupted_in_flight_is_fetched_again_and_placed_intact() {
    let pod = TestPod::new().await;
    // A raw file, corrupted in its second range: found by the whole-object check at the end.
    let raw = support::pseudo_random(12 << 20, 8);
    put_with_crc(&pod, "c/raw.bin", raw.clone()).await;
    // A tgz of three ranges, stored without compression, corrupted in its first tar header and
    // loaded as `archive: tar` (detection would take it for a plain file): the unpacker fails
    // first (header checksum), and the rest of the download says why.
    let tree = pod.root.path().join("tree");
    support::make_tree(&tree);
    std::fs::write(tree.join("big.bin"), support::pseudo_random(9 << 20, 9)).expect("big");
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::none(),
    ));
    tar.append_dir_all("tree", &tree).expect("tar");
    let tgz = tar.into_inner().expect("tar").finish().expect("gz");
    put_with_crc(&pod, "c/tree.tgz", tgz).await;

    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add_after(
        "GET",
        "c/raw.bin",
        1,
        Fault::CorruptResponse { offset: 1000 },
        1,
    );
    proxy.add(
        "GET",
        "c/tree.tgz",
        Fault::CorruptResponse { offset: 30 },
        1,
    );
    let template = json!({
        "name": "consume",
        "inputs": {"artifacts": [
            {"name": "raw", "path": "/in/raw", "archive": {"none": {}}, "s3": pod.s3_via(proxy.addr, "c/raw.bin")},
            {"name": "tree", "path": "/in/tree", "archive": {"tar": {}}, "s3": pod.s3_via(proxy.addr, "c/tree.tgz")},
        ]},
    });
    // One range at a time, so the first GET of each object is its first range.
    let out = pod
        .init_with(&template, &[RANGES, ("ARGOEXEC_CONCURRENCY", "1")])
        .await;
    assert_ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("corrupt download, fetching the object again")
            .count(),
        2,
        "{log}"
    );
    assert!(loaded(&pod, "raw") == raw, "content intact");
    let placed = pod.roots().input_artifact("tree");
    for file in ["big.bin", "a.txt", "sub/b.bin"] {
        assert!(
            std::fs::read(placed.join(file)).ok() == std::fs::read(tree.join(file)).ok(),
            "{file} intact"
        );
    }
}
