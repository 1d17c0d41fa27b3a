//! `examples/controller.rs`, the library used as a controller would use it, run against the S3
//! server on loopback: the repository it resolves, the keys it predicts, the GC pods it plans
//! and the range it streams back are checked against what the store holds.

#[path = "../examples/controller.rs"]
mod controller;
mod support;

use support::{BUCKET, TestPod, pseudo_random};

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_example_resolves_plans_and_streams_with_the_library_alone() {
    let pod = TestPod::new().await;
    assert_eq!(controller::SECRET_NAME, support::SECRET_NAME);
    // The `report` output as `wait` would have stored it, under the key the example predicts.
    let report_key = "runs/wf-1/wf-1-train-42/report.txt";
    let body = pseudo_random(64, 7);
    pod.put(report_key, body.clone()).await;

    let outcome = controller::run(&pod.s3_addr.to_string(), BUCKET, pod.root.path())
        .await
        .expect("the example runs");

    assert_eq!(outcome.repository, "team-a/artifact-repositories#main");
    assert_eq!(
        outcome.output_keys,
        [
            (
                "model".to_string(),
                "runs/wf-1/wf-1-train-42/model.tgz".to_string()
            ),
            ("report".to_string(), report_key.to_string()),
        ]
    );
    assert_eq!(outcome.gc_pods.len(), 1, "{:?}", outcome.gc_pods);
    let (gc_pod, artifacts) = &outcome.gc_pods[0];
    assert!(gc_pod.starts_with("wf-1-artgc-wfcomp-"), "{gc_pod}");
    assert_eq!(*artifacts, 2);
    let range = controller::RANGE;
    assert_eq!(
        outcome.range,
        body[range.start as usize..range.end as usize]
    );
}
