//! The transfer engine under faults, against the real S3 server through a fault-injecting
//! proxy: per-part retries, corruption detection, resume after a kill, whole-object checks.

mod support;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use support::fault_proxy::{Fault, FaultProxy};
use support::{TestPod, assert_ok};

/// A template whose one output, a 60 MiB random file on a shared volume, goes through `via`
/// as a stored tgz (level 0 keeps the bytes as they are: 13 parts of 5 MiB).
fn big_output(pod: &TestPod, via: std::net::SocketAddr, prefix: &str) -> serde_json::Value {
    json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "big", "path": "/work/big.bin", "archive": {"tar": {"compressionLevel": 0}}}]},
        "archiveLocation": {"s3": pod.s3_via(via, prefix)},
    })
}

const SMALL_PARTS: [(&str, &str); 2] = [
    ("ARGOEXEC_PART_SIZE_MIB", "5"),
    ("ARGOEXEC_CONCURRENCY", "2"),
];

fn write_big(pod: &TestPod) -> Vec<u8> {
    let data = support::pseudo_random(60 << 20, 5);
    std::fs::create_dir_all(pod.path("/mainctrfs/work")).expect("mkdir");
    std::fs::write(pod.path("/mainctrfs/work/big.bin"), &data).expect("write");
    data
}

/// Loads `key` back through init (directly from the server) and compares it with `data`.
async fn assert_round_trip(pod: &TestPod, key: &str, data: &[u8]) {
    let consume = json!({
        "name": "consume",
        "inputs": {"artifacts": [{"name": "back", "path": "/in/back", "s3": pod.s3(key)}]},
    });
    assert_ok(&pod.init(&consume).await);
    let back = std::fs::read(pod.roots().input_artifact("back")).expect("loaded");
    assert!(back == data, "the object's content differs from the source");
}

fn count(parts: &[u32], n: u32) -> usize {
    parts.iter().filter(|&&p| p == n).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_reset_mid_part_retries_that_part_only() {
    let pod = TestPod::new().await;
    let data = write_big(&pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "PUT",
        "partNumber=3&",
        Fault::ResetMidBody { after: 1 << 20 },
        1,
    );
    let out = pod
        .wait(&big_output(&pod, proxy.addr, "r"), &SMALL_PARTS)
        .await;
    assert_ok(&out);
    let sent = proxy.sent_parts();
    assert_eq!(count(&sent, 3), 2, "part 3 sent twice: {sent:?}");
    for n in (1..=13).filter(|&n| n != 3) {
        assert_eq!(count(&sent, n), 1, "part {n} sent once: {sent:?}");
    }
    assert_round_trip(&pod, "r/big.tgz", &data).await;
}

/// Uploads the big tgz under `prefix` with its part 2 corrupted once in flight; checks that
/// the upload succeeded, that part 2 alone was sent again and that the stored object is intact,
/// and returns the log.
async fn upload_with_part_2_corrupted_once(pod: &TestPod, prefix: &str) -> String {
    let data = write_big(pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "PUT",
        "partNumber=2&",
        Fault::CorruptBody { offset: 12345 },
        1,
    );
    let out = pod
        .wait(&big_output(pod, proxy.addr, prefix), &SMALL_PARTS)
        .await;
    assert_ok(&out);
    let sent = proxy.sent_parts();
    assert_eq!(count(&sent, 2), 2, "{sent:?}");
    assert_eq!(count(&sent, 1), 1, "{sent:?}");
    assert_round_trip(pod, &format!("{prefix}/big.tgz"), &data).await;
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Against a store that checks each part's CRC32C as S3 does, the store refuses a part
/// corrupted in flight (`BadDigest`), and that part alone is sent again.
#[tokio::test(flavor = "multi_thread")]
async fn a_part_the_store_finds_corrupt_is_sent_again() {
    let pod = TestPod::with_checks(support::s3_server::Checks { part_crc32c: true }).await;
    let log = upload_with_part_2_corrupted_once(&pod, "k").await;
    assert!(log.contains("BadDigest"), "{log}");
}

/// Against a store that echoes no CRC32C (s3s-fs), our own check of the part's MD5 ETag finds
/// the corruption.
#[tokio::test(flavor = "multi_thread")]
async fn a_part_corrupted_in_flight_is_detected_and_sent_again() {
    let pod = TestPod::new().await;
    let log = upload_with_part_2_corrupted_once(&pod, "c").await;
    assert!(
        log.contains("part 2 of c/big.tgz") && log.contains("corrupt"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_server_errors_are_retried_per_request() {
    let pod = TestPod::new().await;
    let data = write_big(&pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "PUT",
        "partNumber=4&",
        Fault::Respond {
            status: 503,
            code: "SlowDown",
        },
        2,
    );
    proxy.add(
        "PUT",
        "partNumber=5&",
        Fault::Respond {
            status: 500,
            code: "InternalError",
        },
        1,
    );
    proxy.add(
        "POST",
        "uploads",
        Fault::Respond {
            status: 503,
            code: "ServiceUnavailable",
        },
        1,
    );
    let out = pod
        .wait(&big_output(&pod, proxy.addr, "t"), &SMALL_PARTS)
        .await;
    assert_ok(&out);
    let sent = proxy.sent_parts();
    assert_eq!(
        (count(&sent, 4), count(&sent, 5), count(&sent, 6)),
        (3, 2, 1),
        "{sent:?}"
    );
    assert_round_trip(&pod, "t/big.tgz", &data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_run_out_with_a_clear_error_and_nothing_under_the_key() {
    let pod = TestPod::new().await;
    write_big(&pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "PUT",
        "partNumber=2&",
        Fault::Respond {
            status: 503,
            code: "SlowDown",
        },
        100,
    );
    let env = [
        SMALL_PARTS[0],
        SMALL_PARTS[1],
        ("EXECUTOR_RETRY_BACKOFF_STEPS", "3"),
    ];
    let out = pod.wait(&big_output(&pod, proxy.addr, "x"), &env).await;
    assert_eq!(out.status.code(), Some(64));
    // Argo's words in the termination log; the artifact, code and attempts in the log lines.
    assert_eq!(
        pod.termination_log(),
        "timed out waiting for the condition: failed to put file: injected by the test proxy; "
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("output artifact big")
            && log.contains("SlowDown")
            && log.contains("gave up after 3 attempts"),
        "{log}"
    );
    assert!(pod.keys("x/").await.is_empty(), "no object under the key");
    assert!(
        proxy
            .seen()
            .iter()
            .any(|s| s.method == "DELETE" && s.target.contains("uploadId=")),
        "the multipart upload was aborted"
    );
}

/// The unfinished multipart uploads the store holds (what a killed upload leaves behind).
async fn unfinished_uploads(pod: &TestPod) -> Vec<String> {
    let listed = pod
        .client()
        .await
        .list_multipart_uploads()
        .bucket(support::BUCKET)
        .send()
        .await
        .expect("list multipart uploads");
    listed
        .uploads()
        .iter()
        .filter_map(|u| u.key().map(str::to_string))
        .collect()
}

/// What a retried step starts from: a new pod, whose emptyDirs (`/tmp`, `/var/run/argo`) are
/// fresh. Nothing is shared with the killed pod but the store and the step's input.
fn fresh_emptydirs(pod: &TestPod) {
    for dir in ["/tmp", "/var/run/argo"] {
        std::fs::remove_dir_all(pod.path(dir)).expect("remove emptyDir");
        std::fs::create_dir_all(pod.path(dir)).expect("fresh emptyDir");
    }
}

/// Starts `wait` on `template` with parts slowed down by the proxy, sends it `signal` once
/// the server has stored `parts` parts, and returns its output once it has exited.
async fn signal_wait_mid_upload(
    pod: &TestPod,
    proxy: &FaultProxy,
    template: &serde_json::Value,
    signal: Signal,
    parts: usize,
) -> std::process::Output {
    proxy.add(
        "PUT",
        "partNumber=",
        Fault::DelayResponse(Duration::from_millis(300)),
        1000,
    );
    pod.stage_wait(template);
    let wait = pod
        .command(&["wait", "--loglevel", "info"], &SMALL_PARTS)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wait");
    support::eventually("stored parts", || proxy.stored_parts().len() >= parts).await;
    let pid = wait.id().expect("running") as i32;
    kill(Pid::from_raw(pid), signal).expect("signal");
    let out = support::finish(wait).await;
    proxy.clear_rules();
    out
}

/// SIGKILLs `wait` mid-upload (see [`signal_wait_mid_upload`]), then prepares the pod as a
/// retried step finds it ([`fresh_emptydirs`]); returns the part numbers the server had
/// stored.
async fn kill_wait_mid_upload(
    pod: &TestPod,
    proxy: &FaultProxy,
    template: &serde_json::Value,
) -> Vec<u32> {
    signal_wait_mid_upload(pod, proxy, template, Signal::SIGKILL, 4).await;
    let stored = proxy.stored_parts();
    proxy.clear_seen();
    fresh_emptydirs(pod);
    stored
}

/// SIGTERM while saving: the pod is being deleted, and what the step produced is still worth
/// keeping, so the upload finishes (as Argo's does); only a SIGKILL after the grace period
/// interrupts it, and that is resumable (the test below).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_upload_lets_the_upload_finish_intact() {
    let pod = TestPod::new().await;
    let data = write_big(&pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let template = big_output(&pod, proxy.addr, "t");
    let out = signal_wait_mid_upload(&pod, &proxy, &template, Signal::SIGTERM, 2).await;
    assert_ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("SIGTERM while saving and reporting the outputs: finishing first"),
        "{log}"
    );
    let sent = proxy.sent_parts();
    assert_eq!(sent.len(), 13, "each part sent once: {sent:?}");
    assert!(unfinished_uploads(&pod).await.is_empty(), "completed");
    assert_round_trip(&pod, "t/big.tgz", &data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_wait_in_a_fresh_pod_resumes_from_the_store_and_sends_no_stored_part_again() {
    let pod = TestPod::new().await;
    let data = write_big(&pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let template = big_output(&pod, proxy.addr, "k");
    let stored_before = kill_wait_mid_upload(&pod, &proxy, &template).await;
    assert!(stored_before.len() >= 4, "{stored_before:?}");
    assert!(
        pod.keys("k/").await.is_empty(),
        "nothing under the key after the kill"
    );
    assert_eq!(unfinished_uploads(&pod).await, ["k/big.tgz"]);

    let out = pod.wait(&template, &SMALL_PARTS).await;
    assert_ok(&out);
    let resent = proxy.sent_parts();
    for n in &stored_before {
        assert_eq!(
            count(&resent, *n),
            0,
            "part {n} was stored before the kill and sent again: {resent:?}"
        );
    }
    assert_eq!(
        resent.len() + stored_before.len(),
        13,
        "every other part sent once: {resent:?}"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("resuming an interrupted multipart upload"),
        "{log}"
    );
    assert_round_trip(&pod, "k/big.tgz", &data).await;
    assert!(unfinished_uploads(&pod).await.is_empty(), "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_changed_before_the_resume_gets_its_changed_parts_sent_again() {
    let pod = TestPod::new().await;
    let mut data = write_big(&pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let template = big_output(&pod, proxy.addr, "g");
    let stored_before = kill_wait_mid_upload(&pod, &proxy, &template).await;
    assert!(
        stored_before.contains(&1),
        "part 1 was stored: {stored_before:?}"
    );
    // Change a byte in the first part's range (the tar header's mtime changes too).
    data[100] ^= 1;
    std::fs::write(pod.path("/mainctrfs/work/big.bin"), &data).expect("write");
    assert_ok(&pod.wait(&template, &SMALL_PARTS).await);
    let resent = proxy.sent_parts();
    assert_eq!(
        count(&resent, 1),
        1,
        "the changed part is sent again: {resent:?}"
    );
    let skipped = stored_before
        .iter()
        .filter(|n| **n != 1 && count(&resent, **n) == 0)
        .count();
    assert!(
        skipped > 0,
        "unchanged stored parts are still skipped: {stored_before:?} {resent:?}"
    );
    assert_round_trip(&pod, "g/big.tgz", &data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_that_fails_in_process_is_aborted_and_not_resumed() {
    let pod = TestPod::new().await;
    let data = write_big(&pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "POST",
        "uploadId=",
        Fault::Respond {
            status: 400,
            code: "InvalidRequest",
        },
        1,
    );
    let template = big_output(&pod, proxy.addr, "m");
    let env = [
        SMALL_PARTS[0],
        SMALL_PARTS[1],
        ("EXECUTOR_RETRY_BACKOFF_STEPS", "1"),
    ];
    let out = pod.wait(&template, &env).await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        pod.termination_log(),
        "failed to put file: injected by the test proxy; "
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("InvalidRequest"), "{log}");
    assert!(proxy.seen().iter().any(|s| s.method == "DELETE"), "aborted");
    assert!(
        unfinished_uploads(&pod).await.is_empty(),
        "nothing left to resume"
    );
    proxy.clear_rules();
    proxy.clear_seen();
    assert_ok(&pod.wait(&template, &SMALL_PARTS).await);
    assert_eq!(
        proxy.sent_parts().len(),
        13,
        "a fresh upload sends all 13 parts"
    );
    assert_round_trip(&pod, "m/big.tgz", &data).await;
}

/// CompleteMultipartUpload succeeds on the server but its answer is lost: the retried call
/// finds the upload gone (`NoSuchUpload`), and the object in the store, checked against what
/// was sent (the multipart ETag from the parts' MD5s; the full-object CRC32C when the store
/// keeps one), is recognised as done instead of failing the step or sending it all again.
#[tokio::test(flavor = "multi_thread")]
async fn a_completed_upload_whose_answer_was_lost_is_recognised_as_done() {
    let pod = TestPod::new().await;
    let data = write_big(&pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    for (prefix, full_object_crc) in [("l", "false"), ("lc", "true")] {
        proxy.clear_seen();
        proxy.add("POST", "uploadId=", Fault::DropResponse, 1);
        let env = [
            SMALL_PARTS[0],
            SMALL_PARTS[1],
            ("ARGOEXEC_S3_FULL_OBJECT_CHECKSUM", full_object_crc),
        ];
        let out = pod.wait(&big_output(&pod, proxy.addr, prefix), &env).await;
        assert_ok(&out);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("was already completed"), "{log}");
        let completes = proxy
            .seen()
            .iter()
            .filter(|s| s.method == "POST" && s.target.contains("uploadId="))
            .count();
        assert_eq!(completes, 2, "the answer lost, the call retried once");
        assert_eq!(proxy.sent_parts().len(), 13, "no part sent again");
        assert_round_trip(&pod, &format!("{prefix}/big.tgz"), &data).await;
    }
}

/// The other side of the test above: an upload found gone when completing (aborted by a
/// lifecycle rule, say) is not taken for done because an object of the same size is under the
/// key: its checksum must be the one sent, else the step fails naming the cause.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_gone_at_completion_is_not_taken_for_done_when_the_object_differs() {
    let pod = TestPod::new().await;
    let mut data = write_big(&pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    for (prefix, full_object_crc) in [("n", "false"), ("nc", "true")] {
        let env = [
            SMALL_PARTS[0],
            SMALL_PARTS[1],
            ("ARGOEXEC_S3_FULL_OBJECT_CHECKSUM", full_object_crc),
        ];
        let template = big_output(&pod, proxy.addr, prefix);
        assert_ok(&pod.wait(&template, &env).await);
        let stored = data.clone();
        // Same size, other bytes; the upload is then gone before it completes.
        data[100] ^= 1;
        std::fs::write(pod.path("/mainctrfs/work/big.bin"), &data).expect("write");
        proxy.add(
            "POST",
            "uploadId=",
            Fault::Respond {
                status: 404,
                code: "NoSuchUpload",
            },
            1,
        );
        let out = pod.wait(&template, &env).await;
        assert_eq!(out.status.code(), Some(64), "not taken for done");
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!log.contains("was already completed"), "{log}");
        assert_round_trip(&pod, &format!("{prefix}/big.tgz"), &stored).await;
        data = stored;
        std::fs::write(pod.path("/mainctrfs/work/big.bin"), &data).expect("write");
    }
}

/// A store whose answers prove nothing about a part (no CRC32C echo, an ETag that is not an
/// MD5, as with SSE-KMS): the upload succeeds, the log says once for the artifact that its
/// parts went unchecked, and the final figures line counts them.
#[tokio::test(flavor = "multi_thread")]
async fn parts_the_store_cannot_prove_are_reported_once_and_counted() {
    let pod = TestPod::new().await;
    let data = write_big(&pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add("PUT", "partNumber=", Fault::OpaqueEtag, 1000);
    pod.stage_wait(&big_output(&pod, proxy.addr, "u"));
    let out = pod
        .argoexec(&["wait", "--log-format", "json"], &SMALL_PARTS)
        .await;
    assert_ok(&out);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let warnings: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["msg"].as_str().unwrap_or_default().contains("unchecked"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per artifact: {warnings:?}");
    let warning = warnings[0];
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["artifact"], "big", "{warning}");
    assert!(
        warning["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("s3://argo-artifacts/u/big.tgz")),
        "{warning}"
    );
    let figures = lines
        .iter()
        .find(|l| l["msg"] == "saved output artifact")
        .expect("figures line");
    assert_eq!(figures["unchecked_parts"], 13, "{figures}");
    assert_round_trip(&pod, "u/big.tgz", &data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_stored_object_is_refused_on_download_and_nothing_is_placed() {
    let pod = TestPod::new().await;
    std::fs::create_dir_all(pod.path("/mainctrfs/work")).expect("mkdir");
    std::fs::write(pod.path("/mainctrfs/work/small.txt"), vec![b'z'; 100_000]).expect("write");
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "s", "path": "/work/small.txt", "archive": {"none": {}}}]},
        "archiveLocation": {"s3": pod.s3("v")},
    });
    assert_ok(&pod.wait(&template, &[]).await);
    // Flip a byte of the object on the server's disk (bit rot, or a bad proxy).
    let stored = pod.data.path().join(support::BUCKET).join("v/small.txt");
    let mut bytes = std::fs::read(&stored).expect("stored object");
    bytes[500] = b'y';
    std::fs::write(&stored, bytes).expect("corrupt");
    let consume = json!({
        "name": "consume",
        "inputs": {"artifacts": [{"name": "s", "path": "/in/s", "s3": pod.s3("v/small.txt")}]},
    });
    let out = pod.init(&consume).await;
    assert_eq!(out.status.code(), Some(64));
    let msg = pod.termination_log();
    assert!(
        msg.contains("is corrupt") && msg.contains("CRC32C"),
        "{msg}"
    );
    assert!(!pod.roots().input_artifact("s").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_and_stalled_downloads_are_retried_per_range() {
    let pod = TestPod::new().await;
    let data = support::pseudo_random(30 << 20, 9);
    pod.put("d/blob.bin", data.clone()).await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    // Past the first range (read alone: it tells a plain file from a tarball), so the two
    // cuts land on ranges in flight together.
    proxy.add_after(
        "GET",
        "d/blob.bin",
        1,
        Fault::TruncateResponse { after: 1000 },
        2,
    );
    let consume = json!({
        "name": "consume",
        "inputs": {"artifacts": [{"name": "b", "path": "/in/b", "s3": pod.s3_via(proxy.addr, "d/blob.bin")}]},
    });
    let out = pod
        .argoexec(
            &["init"],
            &[
                ("ARGO_TEMPLATE", &consume.to_string()),
                ("ARGOEXEC_DOWNLOAD_CHUNK_MIB", "4"),
            ],
        )
        .await;
    assert_ok(&out);
    assert!(std::fs::read(pod.roots().input_artifact("b")).expect("b") == data);
    let gets = proxy.seen().iter().filter(|s| s.method == "GET").count();
    assert_eq!(gets, 8 + 2, "8 ranges of 4 MiB, two of them once more");
}

#[tokio::test(flavor = "multi_thread")]
async fn full_object_checksums_are_accepted_by_an_s3_compatible_server() {
    let pod = TestPod::new().await;
    let data = write_big(&pod);
    let env = [
        SMALL_PARTS[0],
        SMALL_PARTS[1],
        ("ARGOEXEC_S3_FULL_OBJECT_CHECKSUM", "true"),
    ];
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "big", "path": "/work/big.bin", "archive": {"none": {}}}]},
        "archiveLocation": {"s3": pod.s3("f")},
    });
    assert_ok(&pod.wait(&template, &env).await);
    assert_round_trip(&pod, "f/big.bin", &data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn long_transfers_log_progress_with_rate_and_eta_in_the_chosen_format() {
    let pod = TestPod::new().await;
    write_big(&pod);
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "PUT",
        "partNumber=",
        Fault::DelayResponse(Duration::from_millis(400)),
        1000,
    );
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "big", "path": "/work/big.bin", "archive": {"none": {}}}]},
        "archiveLocation": {"s3": pod.s3_via(proxy.addr, "p")},
    });
    pod.stage_wait(&template);
    let env = [
        SMALL_PARTS[0],
        SMALL_PARTS[1],
        ("ARGOEXEC_PROGRESS_SECONDS", "1"),
    ];
    let out = pod.argoexec(&["wait", "--log-format", "json"], &env).await;
    assert_ok(&out);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["msg"] == "transfer progress")
        .collect();
    assert!(
        !lines.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = &lines[0];
    assert_eq!(line["total"], json!(60u64 << 20));
    assert!(
        line["bytes"].as_u64().is_some() && line["eta_seconds"].is_number(),
        "{line}"
    );
    assert!(
        line["transfer"]
            .as_str()
            .unwrap_or_default()
            .contains("artifact 'big'"),
        "{line}"
    );
    // Argo's slog shape, and the artifact's span names it and its key.
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["argo"], true, "{line}");
    assert_eq!(line["artifact"], "big", "{line}");
    assert_eq!(line["key"], "p/big.bin", "{line}");
}
