//! The spine, end to end against a real S3 protocol server on loopback: `wait` saves outputs,
//! `init` loads them back, in every archive mode, as real processes.

mod support;

use serde_json::json;
use support::{TestPod, assert_ok, make_tree, snapshot};

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_round_trips_through_wait_and_init_as_tgz() {
    let pod = TestPod::new().await;
    let src = pod.path("/mainctrfs/work/out");
    make_tree(&src);
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "out", "path": "/work/out"}]},
        "archiveLocation": pod.archive_location("wf-1/wf-1-main-123"),
    });
    let out = pod.wait(&template, &[]).await;
    assert_ok(&out);
    assert_eq!(pod.keys("wf-1/").await, vec!["wf-1/wf-1-main-123/out.tgz"]);

    let consume = json!({
        "name": "consume",
        "inputs": {"artifacts": [{"name": "in", "path": "/in", "s3": {"key": "wf-1/wf-1-main-123/out.tgz"}}]},
        "archiveLocation": pod.archive_location("wf-1/wf-1-consume-456"),
    });
    let out = pod.init(&consume).await;
    assert_ok(&out);
    let loaded = pod.roots().input_artifact("in");
    assert_eq!(snapshot(&loaded), snapshot(&src));
}

/// Runs the emissary as main would: `sh -c script`, with the template already written by init.
async fn run_main(pod: &TestPod, template: &serde_json::Value, script: &str) {
    std::fs::write(pod.roots().template_file(), template.to_string()).expect("template");
    let out = pod
        .argoexec(
            &[
                "emissary",
                "--loglevel",
                "info",
                "--log-format",
                "text",
                "--gloglevel",
                "0",
                "--",
                "sh",
                "-c",
                script,
            ],
            &[("ARGO_CONTAINER_NAME", "main")],
        )
        .await;
    assert_ok(&out);
}

/// Saves `path` (a file or a tree made by `make`) as an output in every archive mode, from a
/// shared volume and from main's own filesystem, then loads each back and compares.
async fn round_trip(single_file: bool) {
    let pod = TestPod::new().await;
    let own_fs = tempfile::tempdir().expect("main's own filesystem");
    let shared = pod.path("/mainctrfs/work/out");
    let private = own_fs.path().join("priv");
    let write = |dest: &std::path::Path| {
        if single_file {
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
            std::fs::write(dest, support::pseudo_random(2_000_000, 3)).expect("file");
        } else {
            make_tree(dest);
        }
    };
    write(&shared);
    write(&private);
    let modes = [
        ("tgz", json!(null)),
        ("tgz0", json!({"tar": {"compressionLevel": 0}})),
        ("tgz9", json!({"tar": {"compressionLevel": 9}})),
        ("none", json!({"none": {}})),
        ("zip", json!({"zip": {}})),
    ];
    let mut outputs = Vec::new();
    for (mode, archive) in &modes {
        for (place, path) in [
            ("shared", "/work/out".to_string()),
            ("private", private.display().to_string()),
        ] {
            let mut art = json!({"name": format!("{mode}-{place}"), "path": path});
            if !archive.is_null() {
                art["archive"] = archive.clone();
            }
            outputs.push(art);
        }
    }
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": outputs},
        "archiveLocation": pod.archive_location("wf-1/wf-1-main-123"),
    });
    run_main(&pod, &template, "true").await;
    let out = pod.wait(&template, &[]).await;
    assert_ok(&out);

    for (mode, archive) in &modes {
        for place in ["shared", "private"] {
            let name = format!("{mode}-{place}");
            let base = if place == "shared" { "out" } else { "priv" };
            let key = match *mode {
                "none" => format!("wf-1/wf-1-main-123/{base}"),
                "zip" => format!("wf-1/wf-1-main-123/{name}.zip"),
                _ => format!("wf-1/wf-1-main-123/{name}.tgz"),
            };
            let mut input =
                json!({"name": name, "path": format!("/in/{name}"), "s3": {"key": key}});
            if *mode == "zip" {
                input["archive"] = archive.clone();
            }
            let consume = json!({
                "name": "consume",
                "inputs": {"artifacts": [input]},
                "archiveLocation": pod.archive_location("wf-1/wf-1-consume-456"),
            });
            let out = pod.init(&consume).await;
            assert_ok(&out);
            let loaded = pod.roots().input_artifact(&name);
            let src = if place == "shared" { &shared } else { &private };
            if single_file {
                assert_eq!(
                    std::fs::read(&loaded).expect("loaded file"),
                    std::fs::read(src).expect("src"),
                    "{name}"
                );
            } else if *mode == "none" || *mode == "zip" {
                // none and zip store regular files only (no symlinks, no empty directories).
                let files = |d: &std::path::Path| {
                    snapshot(d)
                        .into_iter()
                        .filter(|(_, k, _)| k == "file")
                        .collect::<Vec<_>>()
                };
                let want: Vec<_> = files(src)
                    .into_iter()
                    .filter(|(p, _, _)| p != "link-to-a")
                    .collect();
                assert_eq!(files(&loaded), want, "{name}");
            } else {
                assert_eq!(snapshot(&loaded), snapshot(src), "{name}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_round_trips_in_every_archive_mode_from_both_sources() {
    round_trip(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_round_trips_in_every_archive_mode_from_both_sources() {
    round_trip(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_follow_argos_layout_and_reports_are_key_only() {
    let pod = TestPod::new().await;
    std::fs::create_dir_all(pod.path("/mainctrfs/work")).expect("mkdir");
    std::fs::write(pod.path("/mainctrfs/work/r.txt"), b"result").expect("write");
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [
            {"name": "result", "path": "/work/r.txt"},
            {"name": "plain", "path": "/work/r.txt", "archive": {"none": {}}},
            {"name": "zipped", "path": "/work/r.txt", "archive": {"zip": {}}},
            {"name": "keyed", "path": "/work/r.txt", "s3": {"key": "custom/my-file"}},
        ]},
        "archiveLocation": pod.archive_location("art/wf-abc/wf-abc-main-1234"),
    });
    let out = pod.wait(&template, &[]).await;
    assert_ok(&out);
    assert_eq!(
        pod.keys("").await,
        vec![
            "art/wf-abc/wf-abc-main-1234/r.txt",
            "art/wf-abc/wf-abc-main-1234/result.tgz",
            "art/wf-abc/wf-abc-main-1234/zipped.zip",
            "custom/my-file",
        ]
    );
    // The key-only artifact is still archived per its (default) strategy.
    let keyed = pod.get("custom/my-file").await.expect("keyed object");
    assert_eq!(&keyed[..2], &[0x1f, 0x8b]);
    // With no Kubernetes API configured, wait prints the task result on stdout.
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains(r#"{"name":"result","path":"/work/r.txt","s3":{"key":"art/wf-abc/wf-abc-main-1234/result.tgz"}}"#),
        "reported artifact is key-only: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_beyond_the_part_limit_grows_its_parts_and_stays_intact() {
    // A 6 GiB-class upload, honestly simulated: S3 allows 10,000 parts; lowering the limit to
    // 10 makes a 120 MiB stream need the same part growth a 50+ GiB one needs at full scale.
    let pod = TestPod::new().await;
    let data = support::pseudo_random(120 << 20, 11);
    std::fs::create_dir_all(pod.path("/mainctrfs/work")).expect("mkdir");
    std::fs::write(pod.path("/mainctrfs/work/big.bin"), &data).expect("write");
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "big", "path": "/work/big.bin", "archive": {"tar": {"compressionLevel": 0}}}]},
        "archiveLocation": pod.archive_location("wf-1/p"),
    });
    let knobs = [
        ("ARGOEXEC_MAX_PARTS", "10"),
        ("ARGOEXEC_PART_SIZE_MIB", "5"),
    ];
    let out = pod.wait(&template, &knobs).await;
    assert_ok(&out);
    let head = pod
        .client()
        .await
        .head_object()
        .bucket(support::BUCKET)
        .key("wf-1/p/big.tgz")
        .send()
        .await
        .expect("head");
    // The tgz's size is bounded before it starts (the tree's exact tar size through gzip's
    // stored-block worst case), so its parts are planned from that bound: the 10 allowed parts,
    // each grown past the 5 MiB base to hold a tenth of it.
    assert!(
        head.e_tag().unwrap_or_default().ends_with("-10\""),
        "etag {:?}",
        head.e_tag()
    );
    let consume = json!({
        "name": "consume",
        "inputs": {"artifacts": [{"name": "big", "path": "/in/big.bin", "s3": {"key": "wf-1/p/big.tgz"}}]},
        "archiveLocation": pod.archive_location("wf-1/c"),
    });
    assert_ok(&pod.init(&consume).await);
    assert!(
        std::fs::read(pod.roots().input_artifact("big")).expect("loaded") == data,
        "content differs"
    );

    // With only 2 parts allowed, each would have to be half the stream, more than the whole
    // upload budget: refused before any request, with a clear error, and nothing under the key.
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "big", "path": "/work/big.bin", "archive": {"tar": {"compressionLevel": 0}}}]},
        "archiveLocation": pod.archive_location("wf-1/q"),
    });
    let out = pod
        .wait(
            &template,
            &[("ARGOEXEC_MAX_PARTS", "2"), ("ARGOEXEC_PART_SIZE_MIB", "5")],
        )
        .await;
    assert_eq!(out.status.code(), Some(64));
    let msg = pod.termination_log();
    assert!(msg.contains("more than the upload memory budget"), "{msg}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("output artifact big"), "{log}");
    assert!(pod.keys("wf-1/q").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_is_a_prefix_loads_as_a_directory() {
    let pod = TestPod::new().await;
    pod.put("data/set/a.csv", b"1,2\n".to_vec()).await;
    pod.put("data/set/nested/b.csv", b"3,4\n".to_vec()).await;
    pod.put("data/setx/other", b"not mine".to_vec()).await;
    let template = json!({
        "name": "consume",
        "inputs": {"artifacts": [{"name": "ds", "path": "/data", "s3": pod.s3("data/set")}]},
    });
    assert_ok(&pod.init(&template).await);
    let dir = pod.roots().input_artifact("ds");
    assert_eq!(std::fs::read(dir.join("a.csv")).expect("a"), b"1,2\n");
    assert_eq!(
        std::fs::read(dir.join("nested/b.csv")).expect("b"),
        b"3,4\n"
    );
    assert!(!dir.join("x").exists() && !dir.join("other").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_optional_input_is_skipped_and_a_required_one_fails() {
    let pod = TestPod::new().await;
    let template = json!({
        "name": "consume",
        "inputs": {"artifacts": [
            {"name": "maybe", "path": "/m", "optional": true, "s3": pod.s3("nope/missing.tgz")},
            {"name": "unsupplied", "path": "/u", "optional": true},
        ]},
    });
    assert_ok(&pod.init(&template).await);
    assert!(!pod.roots().input_artifact("maybe").exists());

    let template = json!({
        "name": "consume",
        "inputs": {"artifacts": [{"name": "needed", "path": "/n", "s3": pod.s3("nope/missing.tgz")}]},
    });
    let out = pod.init(&template).await;
    assert_eq!(out.status.code(), Some(64));
    let msg = pod.termination_log();
    assert!(msg.starts_with("artifact needed failed to load:"), "{msg}");
    assert!(!pod.roots().input_artifact("needed").exists());

    let template = json!({"name": "c", "inputs": {"artifacts": [{"name": "x", "path": "/x"}]}});
    let out = pod.init(&template).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        pod.termination_log()
            .contains("required artifact 'x' not supplied")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_template_json_exits_64_with_the_cause_in_the_termination_log() {
    let pod = TestPod::new().await;
    for bad in [
        r#"{"name": "x", "inputs": "#,
        "not json",
        r#"{"inputs": {"artifacts": 7}}"#,
    ] {
        let out = pod.argoexec(&["init"], &[("ARGO_TEMPLATE", bad)]).await;
        assert_eq!(out.status.code(), Some(64), "{bad}");
        let msg = pod.termination_log();
        assert!(
            msg.contains("cannot parse the template from ARGO_TEMPLATE"),
            "{msg}"
        );
    }
    // An offloaded template that is missing.
    let out = pod
        .argoexec(&["init"], &[("ARGO_TEMPLATE", "offloaded")])
        .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(pod.termination_log().contains("ARGO_TEMPLATE"));
}

#[tokio::test(flavor = "multi_thread")]
async fn init_reads_an_offloaded_template_and_writes_binary_and_template() {
    let pod = TestPod::new().await;
    let template = json!({"name": "t", "script": {"source": "echo hi"}});
    std::fs::create_dir_all(pod.path("/argo/config")).expect("mkdir");
    std::fs::write(pod.path("/argo/config/ARGO_TEMPLATE"), template.to_string()).expect("write");
    assert_ok(
        &pod.argoexec(&["init"], &[("ARGO_TEMPLATE", "offloaded")])
            .await,
    );
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&pod.roots().binary_copy()), 0o555);
    assert_eq!(mode(&pod.roots().template_file()), 0o444);
    assert_eq!(
        std::fs::read_to_string(pod.roots().template_file()).expect("t"),
        template.to_string()
    );
    assert_eq!(
        std::fs::read_to_string(pod.roots().staging_script()).expect("script"),
        "echo hi"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn waits_tgz_unpacks_with_gnu_tar_to_exactly_the_source_tree() {
    let pod = TestPod::new().await;
    let src = pod.path("/mainctrfs/work/out");
    make_tree(&src);
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "out", "path": "/work/out"}]},
        "archiveLocation": pod.archive_location("k"),
    });
    assert_ok(&pod.wait(&template, &[]).await);
    let tgz = pod.get("k/out.tgz").await.expect("tgz");
    let scratch = tempfile::tempdir().expect("scratch");
    std::fs::write(scratch.path().join("out.tgz"), &tgz).expect("write");
    let status = std::process::Command::new("tar")
        .args(["xzf", "out.tgz"])
        .current_dir(scratch.path())
        .status()
        .expect("GNU tar");
    assert!(status.success());
    assert_eq!(snapshot(&scratch.path().join("out")), snapshot(&src));
    // The listing shows Argo's layout: the root entry first, directories without a slash.
    let list = std::process::Command::new("tar")
        .args(["tzf", "out.tgz"])
        .current_dir(scratch.path())
        .output()
        .expect("tar");
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(names[0], "out");
    assert!(names.contains(&"out/sub/deeper".to_string()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn init_unpacks_tgzs_made_by_gnu_tar() {
    let pod = TestPod::new().await;
    let scratch = tempfile::tempdir().expect("scratch");
    let tree = scratch.path().join("made-by-gnu");
    make_tree(&tree);
    std::fs::write(scratch.path().join("single.txt"), b"one file").expect("write");
    let tar = |args: &[&str]| {
        let s = std::process::Command::new("tar")
            .args(args)
            .current_dir(scratch.path())
            .status()
            .expect("tar");
        assert!(s.success());
    };
    tar(&["czf", "dir.tgz", "made-by-gnu"]);
    tar(&["czf", "file.tgz", "single.txt"]);
    tar(&["czf", "dot.tgz", "-C", "made-by-gnu", "."]);
    for name in ["dir", "file", "dot"] {
        pod.put(
            &format!("gnu/{name}.tgz"),
            std::fs::read(scratch.path().join(format!("{name}.tgz"))).expect("read"),
        )
        .await;
    }
    let template = json!({
        "name": "consume",
        "inputs": {"artifacts": [
            {"name": "dir", "path": "/in/dir", "s3": pod.s3("gnu/dir.tgz")},
            {"name": "file", "path": "/in/file", "s3": pod.s3("gnu/file.tgz")},
            {"name": "dot", "path": "/in/dot", "s3": pod.s3("gnu/dot.tgz")},
        ]},
    });
    assert_ok(&pod.init(&template).await);
    assert_eq!(
        snapshot(&pod.roots().input_artifact("dir")),
        snapshot(&tree)
    );
    assert_eq!(
        std::fs::read(pod.roots().input_artifact("file")).expect("file"),
        b"one file"
    );
    assert_eq!(
        snapshot(&pod.roots().input_artifact("dot")),
        snapshot(&tree)
    );
}
