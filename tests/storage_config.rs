//! The library takes its configuration as values, never from the process environment: two
//! drivers opened in one process with different settings each keep their own, as a controller
//! serving several repositories needs. Shown on the wire (the fault proxy's record) and in
//! what the loopback S3 server stored.

mod support;

use std::sync::Arc;
use std::time::Duration;

use argoexec::model::ArtifactLocation;
use argoexec::storage::retry::Backoff;
use argoexec::storage::{self, Driver, ErrorKind, PutOptions, Secrets, StorageConfig};
use argoexec::transfer::{TransferConfig, Uploader};
use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
use bytes::Bytes;
use serde_json::json;
use support::fault_proxy::{Fault, FaultProxy};
use support::{TestPod, pseudo_random};

const MIB: u64 = 1 << 20;

/// The pod's bucket, reached through `via` (the server itself, or a proxy in front of it).
fn location(pod: &TestPod, via: std::net::SocketAddr) -> ArtifactLocation {
    serde_json::from_value(json!({"s3": pod.s3_via(via, "unused")})).expect("location")
}

async fn open(
    pod: &TestPod,
    location: &ArtifactLocation,
    config: StorageConfig,
) -> Arc<dyn Driver> {
    storage::open(location, &Secrets::new(pod.roots()), &config)
        .await
        .expect("s3 driver")
}

/// One driver asks for S3's full-object CRC32C, the other not; both are opened before either
/// uploads, so neither can take the other's setting. The server keeps a `FULL_OBJECT` checksum
/// for the first object only.
#[tokio::test(flavor = "multi_thread")]
async fn two_s3_drivers_keep_their_own_full_object_checksum_setting() {
    let pod = TestPod::new().await;
    let loc = location(&pod, pod.s3_addr);
    let checked = open(
        &pod,
        &loc,
        StorageConfig::default().with_s3_full_object_checksum(true),
    )
    .await;
    let unchecked = open(
        &pod,
        &loc,
        StorageConfig::default().with_s3_full_object_checksum(false),
    )
    .await;

    let data = pseudo_random(11 * MIB as usize, 18);
    let file = pod.path("/multipart.bin");
    std::fs::write(&file, &data).expect("write");
    let uploader = Uploader::new(TransferConfig {
        part_size: 5 * MIB,
        ..TransferConfig::default()
    });
    for (driver, key) in [(&checked, "checked.bin"), (&unchecked, "unchecked.bin")] {
        let stats = uploader
            .upload_file(Arc::clone(driver), key, &file)
            .await
            .expect("upload");
        assert_eq!(stats.parts, 3, "{key}: a multipart upload");
    }

    let client = pod.client().await;
    let stored = |key: &'static str| {
        let client = client.clone();
        async move {
            client
                .head_object()
                .bucket(support::BUCKET)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .expect("head")
        }
    };
    let full = stored("checked.bin").await;
    assert_eq!(full.checksum_type(), Some(&ChecksumType::FullObject));
    assert_eq!(
        full.checksum_crc32_c(),
        Some(base64_crc(crc32c::crc32c(&data)).as_str()),
        "the whole object's CRC32C, checked by the server"
    );
    let plain = stored("unchecked.bin").await;
    assert_eq!(
        (plain.checksum_type(), plain.checksum_crc32_c()),
        (None, None),
        "no full-object checksum asked for"
    );
}

/// Two drivers with different retry policies behind the same flaky link: the one allowed a
/// single attempt fails on the first 503, the one allowed three rides over it.
#[tokio::test(flavor = "multi_thread")]
async fn two_s3_drivers_keep_their_own_retry_policy() {
    let pod = TestPod::new().await;
    let proxy = FaultProxy::start(pod.s3_addr).await;
    let loc = location(&pod, proxy.addr);
    let policy = |steps| Backoff {
        steps,
        initial: Duration::from_millis(10),
        factor: 1.0,
        jitter: 0.0,
        cap: Duration::from_millis(10),
        deadline: None,
    };
    let once = open(&pod, &loc, StorageConfig::default().with_backoff(policy(1))).await;
    let thrice = open(&pod, &loc, StorageConfig::default().with_backoff(policy(3))).await;
    let unavailable = Fault::Respond {
        status: 503,
        code: "ServiceUnavailable",
    };
    let body = Bytes::from_static(b"the same bytes through both drivers");

    proxy.add("PUT", "once.txt", unavailable.clone(), 2);
    let e = once
        .put("once.txt", body.clone(), &PutOptions::default())
        .await
        .expect_err("one attempt only");
    assert_eq!(e.kind(), Some(ErrorKind::Server), "{e}");

    proxy.add("PUT", "thrice.txt", unavailable, 2);
    thrice
        .put("thrice.txt", body, &PutOptions::default())
        .await
        .expect("retried past two 503s");

    let puts = |key: &str| {
        proxy
            .seen()
            .iter()
            .filter(|s| s.method == "PUT" && s.target.contains(key))
            .count()
    };
    assert_eq!((puts("once.txt"), puts("thrice.txt")), (1, 3));
}

fn base64_crc(crc: u32) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        crc.to_be_bytes(),
    )
}
