//! `optional: true` on an output forgives a path main did not produce, and nothing else
//! (issue 15, item 4): a NotFound from the store is a failed upload, through the real `wait`.

mod support;

use serde_json::json;
use support::TestPod;
use support::fault_proxy::{Fault, FaultProxy};

#[tokio::test(flavor = "multi_thread")]
async fn a_store_not_found_fails_an_optional_output_and_only_a_missing_path_skips_it() {
    let pod = TestPod::new().await;
    std::fs::create_dir_all(pod.path("/mainctrfs/work")).expect("mkdir");
    std::fs::write(
        pod.path("/mainctrfs/work/big.bin"),
        support::pseudo_random(6 << 20, 15),
    )
    .expect("write");
    // The multipart upload vanishes under us (aborted by a bucket rule or another client):
    // every part is answered 404 NoSuchUpload, a NotFound-class storage error.
    let proxy = FaultProxy::start(pod.s3_addr).await;
    proxy.add(
        "PUT",
        "partNumber=",
        Fault::Respond {
            status: 404,
            code: "NoSuchUpload",
        },
        10,
    );
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [
            {"name": "maybe", "path": "/work/big.bin", "optional": true, "archive": {"none": {}}},
            {"name": "absent", "path": "/work/never-written.txt", "optional": true},
        ]},
        "archiveLocation": {"s3": pod.s3_via(proxy.addr, "u")},
    });
    let out = pod
        .wait(&template, &[("ARGOEXEC_PART_SIZE_MIB", "5")])
        .await;
    let message = support::failure(&pod, &out);
    assert!(
        message == "failed to put file: injected by the test proxy; ",
        "{message}"
    );
    assert!(
        !message.contains("absent"),
        "the missing path is skipped: {message}"
    );
    assert!(
        proxy
            .seen()
            .iter()
            .any(|s| s.target.contains("partNumber=")),
        "the upload reached the store"
    );
    assert_eq!(pod.get("u/big.bin").await, None);
}
