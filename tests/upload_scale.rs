//! The upload engine's memory and concurrency invariants at scale, shown with lowered limits
//! (5 MiB parts, a part limit of a few, a budget of a few parts) against the real S3 server
//! through the fault proxy, which counts UploadPart requests in flight and holds each answer
//! a moment so parts overlap.

mod support;

use std::sync::Arc;
use std::time::Duration;

use argoexec::model::ArtifactLocation;
use argoexec::storage::{self, Driver, Secrets, StorageConfig};
use argoexec::transfer::save::upload_tgz;
use argoexec::transfer::{TransferConfig, Uploader};
use serde_json::json;
use support::fault_proxy::{Fault, FaultProxy};
use support::{TestPod, pseudo_random};

const MIB: u64 = 1 << 20;

/// 5 MiB parts, three in flight, one gzip thread: a budget of 4 parts and one gzip pipeline.
fn lowered(max_parts: u32) -> TransferConfig {
    TransferConfig {
        part_size: 5 * MIB,
        concurrency: 3,
        adaptive_ceiling: None,
        gzip_threads: 1,
        max_parts_override: Some(max_parts),
        ..TransferConfig::default()
    }
}

/// A driver for the pod's bucket through `proxy`, whose every part answer is held 300 ms so
/// the parts the engine allows in flight are all seen in flight.
async fn through_slow_parts(pod: &TestPod, proxy: &FaultProxy) -> Arc<dyn Driver> {
    proxy.add(
        "PUT",
        "partNumber=",
        Fault::DelayResponse(Duration::from_millis(300)),
        1000,
    );
    through(pod, proxy).await
}

/// A driver for the pod's bucket through `proxy`.
async fn through(pod: &TestPod, proxy: &FaultProxy) -> Arc<dyn Driver> {
    let loc: ArtifactLocation =
        serde_json::from_value(json!({"s3": pod.s3_via(proxy.addr, "unused")})).expect("loc");
    storage::open(&loc, &Secrets::new(pod.roots()), &StorageConfig::default())
        .await
        .expect("s3 driver")
}

/// Uploads a 60 MiB file of random bytes (`seed`) as `big.bin` with 4 parts allowed: 15 MiB
/// parts, each larger than the budget's share of a part. Returns the bytes and the uploader.
async fn upload_big_file(pod: &TestPod, driver: Arc<dyn Driver>, seed: u32) -> (Vec<u8>, Uploader) {
    let data = pseudo_random(60 << 20, seed);
    let file = pod.path("/big.bin");
    std::fs::write(&file, &data).expect("write");
    let uploader = Uploader::new(lowered(4));
    let stats = uploader
        .upload_file(driver, "big.bin", &file)
        .await
        .expect("upload");
    assert_eq!(stats.parts, 4);
    (data, uploader)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_needing_large_parts_streams_them_from_the_file_with_every_part_in_flight() {
    let pod = TestPod::new().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let driver = through_slow_parts(&pod, &proxy).await;
    let (data, uploader) = upload_big_file(&pod, driver, 3).await;
    assert_eq!(
        proxy.most_parts_in_flight(),
        3,
        "the configured concurrency"
    );
    let budget = uploader.budget();
    assert!(
        budget.high_water() < 5 * MIB,
        "parts are read from the file, not buffered: {} bytes held at most",
        budget.high_water()
    );
    assert!(budget.high_water() > 0, "the blocks in flight are paid for");
    assert_eq!(pod.get("big.bin").await.as_deref(), Some(&data[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_part_reset_or_corrupted_in_flight_is_read_from_the_file_again() {
    let pod = TestPod::new().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "PUT",
        "partNumber=2&",
        Fault::ResetMidBody { after: 1 << 20 },
        1,
    );
    proxy.add(
        "PUT",
        "partNumber=3&",
        Fault::CorruptBody { offset: 5 << 20 },
        1,
    );
    let driver = through(&pod, &proxy).await;
    let (data, uploader) = upload_big_file(&pod, driver, 4).await;
    let sent = proxy.sent_parts();
    for (part, times) in [(1, 1), (2, 2), (3, 2), (4, 1)] {
        let n = sent.iter().filter(|&&p| p == part).count();
        assert_eq!(n, times, "part {part} sent {n} times: {sent:?}");
    }
    assert!(uploader.budget().high_water() < 5 * MIB, "never buffered");
    assert_eq!(pod.get("big.bin").await.as_deref(), Some(&data[..]));
}

/// Unset, the concurrency adapts: parts in flight start at the floor and grow while each round
/// of parts is faster than the one before, up to the ceiling and never past it.
#[tokio::test(flavor = "multi_thread")]
async fn unset_upload_concurrency_grows_past_its_floor_up_to_the_ceiling() {
    let pod = TestPod::new().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let driver = through_slow_parts(&pod, &proxy).await;
    let data = pseudo_random(60 << 20, 5);
    let file = pod.path("/big.bin");
    std::fs::write(&file, &data).expect("write");
    // 12 parts of 5 MiB: rounds of 2, 4 and 6 parts when every round is faster.
    let uploader = Uploader::new(TransferConfig {
        concurrency: 2,
        adaptive_ceiling: Some(6),
        ..lowered(12)
    });
    let stats = uploader
        .upload_file(driver, "big.bin", &file)
        .await
        .expect("upload");
    assert_eq!(stats.parts, 12);
    let most = proxy.most_parts_in_flight();
    assert!(
        most > 2,
        "{most} parts in flight at most: never above the floor of 2"
    );
    assert!(most <= 6, "{most} parts in flight: above the ceiling of 6");
    assert_eq!(pod.get("big.bin").await.as_deref(), Some(&data[..]));
}

/// A directory holding one file of `mib` MiB of random bytes, for a stored (level 0) tgz.
fn random_tree(pod: &TestPod, mib: usize) -> std::path::PathBuf {
    let dir = pod.path("/tree/out");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("data.bin"), pseudo_random(mib << 20, 9)).expect("write");
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tgz_within_base_times_the_part_limit_keeps_base_parts_and_its_buffers_within_the_budget()
{
    let pod = TestPod::new().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let driver = through_slow_parts(&pod, &proxy).await;
    let tree = random_tree(&pod, 60);
    // 20 parts of 5 MiB hold the 60 MiB tgz: parts never grow, whatever their index.
    let uploader = Uploader::new(lowered(20));
    let stats = upload_tgz(&uploader, driver, "out.tgz", tree, 0)
        .await
        .expect("upload");
    assert_eq!(stats.parts, 13, "5 MiB parts: {stats:?}");
    assert_eq!(
        proxy.most_parts_in_flight(),
        3,
        "the configured concurrency"
    );
    let budget = uploader.budget();
    assert!(
        budget.high_water() <= budget.total(),
        "{} bytes held, budget {}",
        budget.high_water(),
        budget.total()
    );
    assert!(
        budget.high_water() > 4 * 5 * MIB,
        "the part buffers and the gzip blocks are all paid for: {}",
        budget.high_water()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tgz_whose_parts_cannot_fit_the_budget_is_refused_before_anything_is_stored() {
    let pod = TestPod::new().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let driver = through_slow_parts(&pod, &proxy).await;
    let tree = random_tree(&pod, 120);
    // 5 parts allowed: 25 MiB each, more than the whole budget (4 x 5 MiB and the gzip blocks).
    // Parts doubling with their index (5, 10, ... 80 MiB) would hold it, past the budget.
    let uploader = Uploader::new(lowered(5));
    let e = upload_tgz(&uploader, driver, "out.tgz", tree, 0)
        .await
        .expect_err("a part above the budget");
    assert!(
        e.to_string().contains("ARGOEXEC_PART_SIZE_MIB"),
        "names the knob: {e}"
    );
    assert!(
        proxy.seen().is_empty(),
        "nothing was sent: {:?}",
        proxy.seen()
    );
    assert!(uploader.budget().high_water() <= uploader.budget().total());
}

/// GCS has no multipart upload: a stream goes up as one resumable session, each chunk held
/// until the service has it. Those chunks are the engine's parts, paid from its budget and
/// sent without a copy; a chunk that cannot fit the budget is refused before anything is sent.
#[cfg(feature = "gcs")]
mod gcs {
    use super::*;
    use argoexec::model::GcsArtifact;
    use argoexec::storage::gcs::{Endpoint, GcsDriver, GcsOptions};
    use support::gcs_server::FakeGcs;

    const BUCKET: &str = "argo-gcs";

    async fn driver(server: &FakeGcs, chunk: u64) -> Arc<dyn Driver> {
        let loc: GcsArtifact =
            serde_json::from_value(json!({"bucket": BUCKET, "key": "k"})).expect("location");
        let settings = StorageConfig::default().with_gcs(GcsOptions {
            endpoint: Endpoint::Emulator(server.emulator_host()),
            upload_chunk: chunk as usize,
            ..GcsOptions::default()
        });
        Arc::new(
            GcsDriver::new(&loc, &Secrets::default(), &settings)
                .await
                .expect("gcs driver"),
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn gcs_chunks_are_parts_paid_from_the_budget_and_one_above_it_is_refused() {
        let server = FakeGcs::start().await;
        server.create_bucket(BUCKET).await;
        let pod = TestPod::new().await;
        let data = pseudo_random((5 * MIB + 12_345) as usize, 31);
        let file = pod.path("/big.bin");
        std::fs::write(&file, &data).expect("write");
        // 2 MiB parts, one in flight: a budget of two parts and one gzip pipeline.
        let cfg = TransferConfig {
            part_size: 2 * MIB,
            concurrency: 1,
            adaptive_ceiling: None,
            gzip_threads: 1,
            ..TransferConfig::default()
        };

        // 1 MiB chunks: six resumable requests, each a paid part.
        let uploader = Uploader::new(cfg.clone());
        let stats = uploader
            .upload_file(driver(&server, MIB).await, "chunked.bin", &file)
            .await
            .expect("upload");
        assert_eq!(stats.bytes, data.len() as u64);
        assert_eq!(server.get(BUCKET, "chunked.bin").await, Some(data.clone()));
        let budget = uploader.budget();
        assert!(
            budget.high_water() >= MIB && budget.high_water() <= budget.total(),
            "the chunks in memory are paid parts: {} of {}",
            budget.high_water(),
            budget.total()
        );

        // A chunk larger than the whole budget would hold memory past the ceiling.
        let uploader = Uploader::new(cfg);
        let too_big = (uploader.budget().total() / MIB + 1) * MIB;
        let e = uploader
            .upload_file(driver(&server, too_big).await, "refused.bin", &file)
            .await
            .expect_err("a chunk above the budget");
        assert!(
            e.to_string().contains(&format!(
                "uploading refused.bin: the gcs driver sends chunks of {too_big} bytes, more than \
                 the upload memory budget"
            )),
            "{e}"
        );
        assert_eq!(
            server.get(BUCKET, "refused.bin").await,
            None,
            "nothing sent"
        );
        assert_eq!(
            uploader.budget().high_water(),
            0,
            "refused before any buffer"
        );
    }
}
