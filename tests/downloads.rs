//! The download engine with lowered limits, through the real binary, the loopback S3 server
//! and the fault-injecting proxy: every file of a directory is read as a single artifact is
//! (ranged, retried per range, checked, budgeted), and the ranges in flight adapt to the store.
//! Concurrency is counted at the proxy, never timed.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::fault_proxy::{Fault, FaultProxy, is_throttled};
use support::{TestPod, assert_ok};

/// Files for a directory: `big.bin` (5 MiB, five 1 MiB ranges) and two `small-<i>.txt`
/// (100 KiB each).
fn mixed_files() -> Vec<(String, Vec<u8>)> {
    let mut files = vec![("big.bin".to_string(), support::pseudo_random(5 << 20, 3))];
    files.extend(files_of(2, 100_000));
    files
}

/// A pod whose store holds `files` as the directory `d/out/`, saved by `wait` (one object per
/// file, each small one with its CRC32C), and a proxy in front of the store.
async fn directory_behind_proxy(
    files: Vec<(String, Vec<u8>)>,
) -> (TestPod, Vec<(String, Vec<u8>)>, FaultProxy) {
    let pod = TestPod::new().await;
    let files = save_directory(&pod, files).await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    (pod, files, proxy)
}

/// `count` files `small-<i>.txt` of `len` bytes.
fn files_of(count: u32, len: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            (
                format!("small-{i}.txt"),
                support::pseudo_random(len, 10 + i),
            )
        })
        .collect()
}

async fn save_directory(pod: &TestPod, files: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    save_directory_to(pod, &files, pod.s3("d/out"), &[]).await;
    files
}

/// `wait` saves `files` as an `archive: none` directory output to the S3 location `s3`.
async fn save_directory_to(
    pod: &TestPod,
    files: &[(String, Vec<u8>)],
    s3: Value,
    env: &[(&str, &str)],
) {
    let src = pod.path("/mainctrfs/work/out");
    std::fs::create_dir_all(&src).expect("mkdir");
    for (name, data) in files {
        std::fs::write(src.join(name), data).expect("write");
    }
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "out", "path": "/work/out",
            "archive": {"none": {}}, "s3": s3}]},
    });
    assert_ok(&pod.wait(&template, env).await);
}

/// `init` loading the directory `d/out` through `via`.
fn consume_directory(pod: &TestPod, via: std::net::SocketAddr) -> Value {
    json!({"name": "consume", "inputs": {"artifacts": [
        {"name": "in", "path": "/in", "s3": pod.s3_via(via, "d/out")}]}})
}

async fn init(pod: &TestPod, template: &Value, env: &[(&str, &str)]) -> std::process::Output {
    let template = template.to_string();
    let mut all = vec![("ARGO_TEMPLATE", template.as_str())];
    all.extend_from_slice(env);
    pod.argoexec(&["init"], &all).await
}

fn assert_loaded(pod: &TestPod, files: &[(String, Vec<u8>)]) {
    let dir = pod.roots().input_artifact("in");
    for (name, data) in files {
        let got = std::fs::read(dir.join(name)).expect("loaded file");
        assert!(&got == data, "{name} differs from what was saved");
    }
}

/// GETs the proxy saw whose target contains `needle`: a key's reads, or `list-type=2` for
/// listings.
fn gets_of(proxy: &FaultProxy, needle: &str) -> usize {
    let seen = proxy.seen();
    seen.iter()
        .filter(|s| s.method == "GET" && s.target.contains(needle))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_file_cut_short_is_retried_for_that_range_only() {
    let (pod, files, proxy) = directory_behind_proxy(mixed_files()).await;
    proxy.add_after(
        "GET",
        "d/out/big.bin",
        2,
        Fault::TruncateResponse { after: 1000 },
        1,
    );
    let out = init(
        &pod,
        &consume_directory(&pod, proxy.addr),
        &[("ARGOEXEC_DOWNLOAD_CHUNK_MIB", "1")],
    )
    .await;
    assert_ok(&out);
    assert_loaded(&pod, &files);
    assert_eq!(
        gets_of(&proxy, "d/out/big.bin"),
        5 + 1,
        "five ranges of 1 MiB, the cut one once more"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_file_corrupted_on_the_way_is_fetched_again_and_a_corrupt_one_is_named() {
    let (pod, files, proxy) = directory_behind_proxy(mixed_files()).await;
    proxy.add(
        "GET",
        "d/out/small-1.txt",
        Fault::CorruptResponse { offset: 500 },
        1,
    );
    let template = consume_directory(&pod, proxy.addr);
    assert_ok(&init(&pod, &template, &[]).await);
    assert_loaded(&pod, &files);
    assert_eq!(
        gets_of(&proxy, "d/out/small-1.txt"),
        2,
        "fetched again once"
    );

    // Corrupt on every read: the load fails, naming the object, and places nothing.
    std::fs::remove_dir_all(pod.roots().input_artifact("in")).expect("clear");
    proxy.add(
        "GET",
        "d/out/small-1.txt",
        Fault::CorruptResponse { offset: 500 },
        100,
    );
    let out = init(&pod, &template, &[]).await;
    assert_eq!(out.status.code(), Some(64));
    let msg = pod.termination_log();
    assert!(
        msg.contains("d/out/small-1.txt") && msg.contains("is corrupt"),
        "{msg}"
    );
    assert!(!pod.roots().input_artifact("in").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_download_stays_within_its_budget() {
    let (pod, files, proxy) = directory_behind_proxy(files_of(12, 1 << 20)).await;
    // Each answer held a while, so requests the engine allows at once overlap at the proxy.
    proxy.add(
        "GET",
        "d/out/",
        Fault::DelayResponse(Duration::from_millis(50)),
        1000,
    );
    // A budget of (1 + 2) x 1 MiB: three 1 MiB reads held at once at most, whatever
    // ARGOEXEC_FILE_CONCURRENCY (16) allows.
    let out = init(
        &pod,
        &consume_directory(&pod, proxy.addr),
        &[
            ("ARGOEXEC_DOWNLOAD_CHUNK_MIB", "1"),
            ("ARGOEXEC_CONCURRENCY", "1"),
        ],
    )
    .await;
    assert_ok(&out);
    assert_loaded(&pod, &files);
    let most = proxy.max_concurrent();
    assert!(most <= 3, "{most} reads in flight, the budget holds 3");
    // The page listed to learn that `d/out` is a directory is the listing's first.
    assert_eq!(
        gets_of(&proxy, "list-type=2"),
        1,
        "a directory of one page is listed once"
    );
}

/// Loads a 48 MiB object in 1 MiB ranges through a proxy that holds every answer `delay` (a
/// link where only more requests in flight give speed) and, when `throttle_above` is set,
/// answers 503 SlowDown above that many requests in flight; checks the placed bytes and
/// returns the proxy, with its record of every request.
async fn load_over_a_slow_link(
    delay: Duration,
    throttle_above: Option<usize>,
    env: &[(&str, &str)],
) -> FaultProxy {
    let pod = TestPod::new().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let data = support::pseudo_random(48 << 20, 4);
    pod.put("d/blob.bin", data.clone()).await;
    let template = json!({"name": "consume", "inputs": {"artifacts": [
        {"name": "b", "path": "/in/b", "s3": pod.s3_via(proxy.addr, "d/blob.bin")}]}});
    proxy.add("GET", "d/blob.bin", Fault::DelayResponse(delay), 1000);
    if let Some(n) = throttle_above {
        proxy.throttle_above(n);
    }
    let mut env = env.to_vec();
    env.push(("ARGOEXEC_DOWNLOAD_CHUNK_MIB", "1"));
    assert_ok(&init(&pod, &template, &env).await);
    assert!(std::fs::read(pod.roots().input_artifact("b")).expect("b") == data);
    proxy
}

#[tokio::test(flavor = "multi_thread")]
async fn under_throttling_ranges_in_flight_settle_at_what_the_store_accepts() {
    let env = [
        ("ARGOEXEC_CONCURRENCY_MAX", "8"),
        // A throttled read is tried again once the reads around it were answered.
        ("EXECUTOR_RETRY_BACKOFF_DURATION", "200ms"),
    ];
    let proxy = load_over_a_slow_link(Duration::from_millis(20), Some(3), &env).await;
    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    let throttled = gets.iter().filter(|s| is_throttled(s)).count();
    assert!(
        throttled <= 3,
        "{throttled} reads throttled: it did not settle"
    );
    let late = &gets[gets.len() / 2..];
    assert!(
        !late.iter().any(is_throttled),
        "throttled again in the second half of the download"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_throttling_ranges_in_flight_grow_past_the_floor() {
    let env = [("ARGOEXEC_CONCURRENCY_MAX", "16")];
    let proxy = load_over_a_slow_link(Duration::from_millis(30), None, &env).await;
    let most = proxy.max_concurrent();
    assert!(
        most > 4,
        "{most} reads in flight at most: never above the floor of 4"
    );
    assert!(most <= 16, "{most} reads in flight: above the ceiling");
}

/// Loads a directory of 160 small files whose every answer the proxy holds 30 ms (a link
/// where a small file costs a round trip), with `env`; returns the most files read at once.
async fn small_files_over_a_slow_link(env: &[(&str, &str)]) -> usize {
    let (pod, files, proxy) = directory_behind_proxy(files_of(160, 1024)).await;
    proxy.add(
        "GET",
        "d/out/small-",
        Fault::DelayResponse(Duration::from_millis(30)),
        1000,
    );
    let out = init(&pod, &consume_directory(&pod, proxy.addr), env).await;
    assert_ok(&out);
    assert_loaded(&pod, &files);
    proxy.max_concurrent()
}

/// The adaptive files in flight left the default floor (16) and stayed within a ceiling of 32.
fn assert_grew_past_16_within_32(most: usize) {
    assert!(
        most > 16,
        "{most} files in flight at most: never above the floor of 16"
    );
    assert!(
        most <= 32,
        "{most} files in flight: above the ceiling of 32"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unset_file_concurrency_grows_past_its_floor_up_to_the_ceiling() {
    let most = small_files_over_a_slow_link(&[("ARGOEXEC_FILE_CONCURRENCY_MAX", "32")]).await;
    assert_grew_past_16_within_32(most);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_file_concurrency_is_a_hard_cap() {
    let most = small_files_over_a_slow_link(&[
        ("ARGOEXEC_FILE_CONCURRENCY", "5"),
        ("ARGOEXEC_FILE_CONCURRENCY_MAX", "32"),
    ])
    .await;
    assert_eq!(most, 5, "the configured 5 files, all in flight");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_upload_grows_its_files_in_flight_past_the_floor() {
    let pod = TestPod::new().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "PUT",
        "d/up/",
        Fault::DelayResponse(Duration::from_millis(30)),
        1000,
    );
    let files = files_of(160, 1024);
    save_directory_to(
        &pod,
        &files,
        pod.s3_via(proxy.addr, "d/up"),
        &[("ARGOEXEC_FILE_CONCURRENCY_MAX", "32")],
    )
    .await;
    for (name, data) in &files {
        assert_eq!(
            pod.get(&format!("d/up/{name}")).await.as_deref(),
            Some(&data[..])
        );
    }
    let most = proxy.max_concurrent();
    assert_grew_past_16_within_32(most);
}

/// An input with no declared archive is told by its first range, read alone and never again: a
/// raw file and a gzip that is not a tarball, of three ranges each, are placed as they are
/// (their ranges written where they belong as they arrive), a tgz of three ranges is unpacked.
#[tokio::test(flavor = "multi_thread")]
async fn an_input_with_no_declared_archive_is_told_by_its_first_range_read_once() {
    use std::io::Write;
    let pod = TestPod::new().await;
    let raw = support::pseudo_random(12 << 20, 21);
    pod.put("a/raw.bin", raw.clone()).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gz.write_all(&raw[..10 << 20]).expect("gzip");
    let gz = gz.finish().expect("gzip");
    pod.put("a/data.gz", gz.clone()).await;
    let tree = pod.root.path().join("tree");
    support::make_tree(&tree);
    let big = support::pseudo_random(9 << 20, 22);
    std::fs::write(tree.join("big.bin"), &big).expect("big");
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::none(),
    ));
    tar.append_dir_all("tree", &tree).expect("tar");
    let tgz = tar.into_inner().expect("tar").finish().expect("gzip");
    let tgz_ranges = tgz.len().div_ceil(4 << 20);
    assert_eq!(tgz_ranges, 3, "the tgz spans three ranges");
    pod.put("a/tree.tgz", tgz).await;

    let proxy = FaultProxy::start(pod.s3_addr).await;
    let input = |name: &str, key: &str| json!({"name": name, "path": format!("/in/{name}"), "s3": pod.s3_via(proxy.addr, key)});
    let template = json!({"name": "consume", "inputs": {"artifacts": [
        input("raw", "a/raw.bin"), input("gz", "a/data.gz"), input("tree", "a/tree.tgz")]}});
    let out = init(&pod, &template, &[("ARGOEXEC_DOWNLOAD_CHUNK_MIB", "4")]).await;
    assert_ok(&out);

    let loaded = |path: &str| std::fs::read(pod.roots().input_artifact(path)).expect("placed");
    assert!(loaded("raw") == raw, "the raw file is placed as it is");
    assert!(
        loaded("gz") == gz,
        "a gzip that is not a tarball is placed as it is"
    );
    assert!(loaded("tree/big.bin") == big, "the tgz is unpacked");
    assert_eq!(loaded("tree/a.txt"), b"alpha\n");
    assert_eq!(gets_of(&proxy, "a/raw.bin"), 3, "no range read twice");
    assert_eq!(gets_of(&proxy, "a/data.gz"), 3, "no range read twice");
    assert_eq!(
        gets_of(&proxy, "a/tree.tgz"),
        tgz_ranges,
        "no range read twice"
    );
}
