//! Names from a server are untrusted input (issue 15, item 1): a directory input's listing can
//! hold any key a shared bucket's other writers chose. Through the real `init` against
//! fake-gcs-server, which keeps object names as plain strings as GCS does (the S3 test server,
//! s3s-fs, maps keys to files and cannot hold `..` or `//` keys: its listings never show them),
//! a key that would leave the destination is skipped with a warning naming it, and nothing is
//! ever written outside; and the one checked constructor every such name goes through
//! (`archive::SafePath`) keeps any name below any destination.
#![cfg(feature = "gcs")]

mod support;

use std::collections::BTreeSet;
use std::path::{Component, Path};

use argoexec::archive::SafePath;
use argoexec::keys;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use support::gcs_server::FakeGcs;
use support::{TestPod, assert_ok};

const BUCKET: &str = "shared-bucket";

/// What init may create besides the input `set`: the binary copy, the template, the
/// termination log.
fn expected_extra(path: &str) -> bool {
    path.starts_with("var/run/argo") || path == "dev/termination-log"
}

/// Runs init loading `<prefix>` from `gcs` as the input `set`; returns its output, stdout and
/// stderr together, and every path that appeared outside the input's destination.
async fn load_dir(
    pod: &TestPod,
    gcs: &FakeGcs,
    prefix: &str,
) -> (std::process::Output, String, Vec<String>) {
    let template = json!({
        "name": "consume",
        "inputs": {"artifacts": [
            {"name": "set", "path": "/in/set", "gcs": {"bucket": BUCKET, "key": prefix}},
        ]},
    });
    let before = support::paths_below(pod.root.path());
    let out = pod
        .init_with(
            &template,
            &[("STORAGE_EMULATOR_HOST", &gcs.emulator_host())],
        )
        .await;
    let appeared = support::paths_below(pod.root.path())
        .difference(&before)
        .filter(|p| !expected_extra(p))
        .filter(|p| {
            *p != "argo/inputs/artifacts/set" && !p.starts_with("argo/inputs/artifacts/set/")
        })
        .cloned()
        .collect();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, log, appeared)
}

/// The files below `dir`: relative path and content, sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = support::snapshot(dir)
        .into_iter()
        .filter(|(_, kind, _)| kind == "file")
        .map(|(rel, _, data)| (rel, data))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_keys_that_would_leave_the_destination_are_skipped_naming_them() {
    let pod = TestPod::new().await;
    let gcs = FakeGcs::start().await;
    gcs.create_bucket(BUCKET).await;
    // An absolute name inside the pod's root, so a failure cannot write anywhere else.
    let absolute = pod.root.path().join("absolute-escape.txt");
    let hostile = [
        "data/set/../../escape.txt".to_string(),
        format!("data/set/{}", absolute.display()),
        "data/set/a/../../b.txt".to_string(),
        "data/set/sub/./dot.txt".to_string(),
    ];
    // The GCS driver fetches a name cleaned, as Argo's does: whoever writes the hostile keys
    // can write their cleaned twins too, so that every listed key can be fetched.
    for key in &hostile {
        gcs.put(BUCKET, key, b"hostile".to_vec()).await;
        gcs.put(BUCKET, &keys::clean(key), b"twin".to_vec()).await;
    }
    gcs.put(BUCKET, "data/set/", Vec::new()).await;
    gcs.put(BUCKET, "data/set/ok.txt", b"ok".to_vec()).await;
    gcs.put(BUCKET, "data/set/ünïcödé/日本.txt", "こんにちは".into())
        .await;
    // Every one of them is in the listing the executor gets, with the twins that are clean
    // names below the prefix (`sub/dot.txt` and the absolute name's).
    assert_eq!(
        gcs.names(BUCKET, "data/set/").await.len(),
        hostile.len() + 2 + 3
    );

    let (out, log, appeared) = load_dir(&pod, &gcs, "data/set").await;
    assert!(appeared.is_empty(), "written outside: {appeared:?}\n{log}");
    assert!(!absolute.exists());
    assert_ok(&out);
    let mut want = vec![
        ("ok.txt".to_string(), b"ok".to_vec()),
        ("sub/dot.txt".to_string(), b"twin".to_vec()),
        (
            absolute
                .to_string_lossy()
                .trim_start_matches('/')
                .to_string(),
            b"twin".to_vec(),
        ),
        ("ünïcödé/日本.txt".to_string(), "こんにちは".into()),
    ];
    want.sort();
    assert_eq!(files(&pod.roots().input_artifact("set")), want);
    for key in &hostile {
        assert!(
            log.lines()
                .any(|l| l.contains("listed key skipped") && l.contains(&format!(" key={key} "))),
            "no warning naming {key}:\n{log}"
        );
    }
    assert!(!log.contains("panicked"), "{log}");
}

/// Directory segments that make hostile keys likely: climbing, `.`, empty (`//`, a leading
/// `/`), a few names so that keys meet, and a non-ASCII one.
fn dir_segment() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        2 => Just(".."),
        1 => Just("."),
        2 => Just(""),
        3 => Just("a"),
        2 => Just("b"),
        1 => Just("é"),
    ]
}

/// Keys below `set/`, as a shared bucket's other writers could name them. File names are
/// never directory names, so every set of placeable keys fits on a filesystem.
fn key_set() -> impl Strategy<Value = BTreeSet<String>> {
    let last = prop_oneof![
        3 => Just("f"),
        2 => Just("g"),
        1 => Just(".."),
        1 => Just("."),
        1 => Just(""),
    ];
    let key =
        (proptest::collection::vec(dir_segment(), 0..3), last).prop_map(|(mut segs, last)| {
            segs.push(last);
            segs.join("/")
        });
    proptest::collection::btree_set(key, 1..6)
}

/// Any set of keys: init never panics and never writes outside the destination; it places
/// exactly the keys whose remainder is a clean relative name, each with its own bytes, and
/// names every other key in a warning.
#[test]
fn any_listing_is_placed_inside_or_skipped_never_outside() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gcs = rt.block_on(async {
        let gcs = FakeGcs::start().await;
        gcs.create_bucket(BUCKET).await;
        gcs
    });
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&key_set(), |rels| {
        let prefix = format!(
            "case-{}/set",
            case.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        rt.block_on(async {
            let pod = TestPod::new().await;
            for rel in &rels {
                let key = format!("{prefix}/{rel}");
                gcs.put(BUCKET, &key, key.clone().into_bytes()).await;
            }
            let (out, log, appeared) = load_dir(&pod, &gcs, &prefix).await;
            prop_assert!(appeared.is_empty(), "written outside: {appeared:?}");
            prop_assert!(out.status.success(), "exit {:?}:\n{log}", out.status.code());
            let placeable: BTreeSet<&String> = rels
                .iter()
                .filter(|rel| SafePath::exact(rel).is_ok())
                .collect();
            let want: Vec<(String, Vec<u8>)> = placeable
                .iter()
                .map(|rel| (rel.to_string(), format!("{prefix}/{rel}").into_bytes()))
                .collect();
            prop_assert_eq!(files(&pod.roots().input_artifact("set")), want);
            for rel in rels.iter().filter(|rel| !placeable.contains(rel)) {
                let key = format!("{prefix}/{rel}");
                // Directory markers (`.../`) are skipped silently, as Argo does.
                prop_assert!(
                    key.ends_with('/') || log.contains(&format!(" key={key} ")),
                    "no warning naming {key}:\n{log}"
                );
            }
            Ok(())
        })
    });
    drop(gcs);
    if let Err(e) = result {
        panic!("{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the name, both rules either refuse it or give a name that, joined to a
    /// destination, is strictly below it through plain components only; `exact` accepts a
    /// name only as it is.
    #[test]
    fn a_safe_path_is_always_strictly_below_its_destination(
        segs in proptest::collection::vec(prop_oneof![dir_segment().prop_map(str::to_string), any::<String>()], 0..6),
    ) {
        let name = segs.join("/");
        let dest = Path::new("/dest/dir");
        for safe in [SafePath::cleaned(&name), SafePath::exact(&name)].into_iter().flatten() {
            let joined = safe.below(dest);
            let rel = joined.strip_prefix(dest).expect("below the destination");
            prop_assert!(rel.components().count() > 0);
            prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))), "{joined:?}");
        }
        if let Ok(exact) = SafePath::exact(&name) {
            prop_assert_eq!(exact.as_str(), name.as_str());
        }
    }
}
