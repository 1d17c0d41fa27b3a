//! Hostile archives through the real `init`: each is refused with Argo's text (docs/contract.md#inputs)
//! or neutralised as Argo does, and in every case nothing is written outside the
//! artifact's destination and nothing is left half-placed at it.

mod support;

use std::io::Write;

use serde_json::{Value, json};
use support::archives::{RawEntry, gzip, raw_tar};
use support::{TestPod, assert_ok};
use tar::EntryType;

fn tgz(entries: &[RawEntry]) -> Vec<u8> {
    gzip(&raw_tar(entries))
}

/// A zip with one entry per `(name, data)`, names as they are.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        z.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        z.write_all(data).expect("zip data");
    }
    z.finish().expect("zip").into_inner()
}

/// What `init` may create besides the artifact: the binary copy, the template, the
/// termination log.
fn expected_extra(path: &str) -> bool {
    path.starts_with("var/run/argo") || path == "dev/termination-log"
}

/// Stores `object` under `key`, runs init loading it as the input `in` (with `archive` and
/// `env`), and checks that nothing appeared outside the artifact's destination.
async fn load(
    pod: &TestPod,
    object: Vec<u8>,
    archive: Option<Value>,
    env: &[(&str, &str)],
) -> std::process::Output {
    pod.put("hostile", object).await;
    let mut art = json!({"name": "in", "path": "/in/data", "s3": pod.s3("hostile")});
    if let Some(a) = archive {
        art["archive"] = a;
    }
    let template = json!({"name": "consume", "inputs": {"artifacts": [art]}});
    let before = support::paths_below(pod.root.path());
    let out = pod.init_with(&template, env).await;
    let appeared: Vec<String> = support::paths_below(pod.root.path())
        .difference(&before)
        .filter(|p| !expected_extra(p) && !p.starts_with("argo/inputs/artifacts/in/"))
        .filter(|p| *p != "argo/inputs/artifacts/in")
        .cloned()
        .collect();
    assert!(
        appeared.is_empty(),
        "written outside the destination: {appeared:?}"
    );
    out
}

/// Init failed with exit 64 and exactly `<text>` (Argo says an unpacking failure bare, without
/// the `artifact <name> failed to load` of a download failure), and left nothing at the
/// artifact path or its temporary names.
fn refused(pod: &TestPod, out: &std::process::Output, text: &str) {
    assert_eq!(support::failure(pod, out), text);
    let dest = pod.roots().input_artifact("in");
    for p in [
        dest.clone(),
        dest.with_extension("tmp"),
        dest.with_extension("tmpdir"),
    ] {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

fn placed(pod: &TestPod) -> std::path::PathBuf {
    pod.roots().input_artifact("in")
}

#[tokio::test(flavor = "multi_thread")]
async fn names_that_climb_out_are_refused_with_argos_text() {
    let pod = TestPod::new().await;
    for name in ["../../escape.txt", "ok/../../../escape.txt"] {
        let out = load(
            &pod,
            tgz(&[
                ("ok", EntryType::Directory, b"", None),
                (name, EntryType::Regular, b"x", None),
            ]),
            None,
            &[],
        )
        .await;
        refused(&pod, &out, &format!("illegal file path: {name}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_names_are_kept_inside_as_argo_joins_them() {
    let pod = TestPod::new().await;
    let outside = pod.root.path().join("abs-target.txt");
    let name = outside.to_string_lossy().into_owned();
    let out = load(
        &pod,
        tgz(&[
            (&name, EntryType::Regular, b"contained", None),
            ("second.txt", EntryType::Regular, b"2", None),
        ]),
        None,
        &[],
    )
    .await;
    assert_ok(&out);
    assert!(!outside.exists(), "the absolute path itself is not written");
    let inside = placed(&pod).join(name.trim_start_matches('/'));
    assert_eq!(std::fs::read(inside).expect("inside"), b"contained");
}

#[tokio::test(flavor = "multi_thread")]
async fn symlinks_that_escape_are_refused_by_text_and_by_what_they_reach() {
    let pod = TestPod::new().await;
    let cases: [(&[RawEntry], &str); 3] = [
        (
            &[("link", EntryType::Symlink, b"", Some("/etc"))],
            "illegal symlink target: link -> /etc",
        ),
        (
            &[("link", EntryType::Symlink, b"", Some("../../.."))],
            "illegal symlink target: link -> ../../..",
        ),
        (
            // `a` is the destination itself, so `c -> a/..` reaches its parent, and `c/evil`
            // would be written there.
            &[
                ("a", EntryType::Symlink, b"", Some(".")),
                ("c", EntryType::Symlink, b"", Some("a/..")),
                ("c/evil", EntryType::Regular, b"x", None),
            ],
            "illegal symlink target: c -> a/..",
        ),
    ];
    for (entries, text) in cases {
        let out = load(&pod, tgz(entries), None, &[]).await;
        refused(&pod, &out, text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hard_links_devices_and_fifos_are_not_created_as_argo_ignores_them() {
    let pod = TestPod::new().await;
    let out = load(
        &pod,
        tgz(&[
            ("dir", EntryType::Directory, b"", None),
            ("dir/file", EntryType::Regular, b"kept", None),
            ("dir/passwd", EntryType::Link, b"", Some("/etc/passwd")),
            ("dir/null", EntryType::Char, b"", None),
            ("dir/disk", EntryType::Block, b"", None),
            ("dir/pipe", EntryType::Fifo, b"", None),
        ]),
        None,
        &[],
    )
    .await;
    assert_ok(&out);
    let names: Vec<String> = std::fs::read_dir(placed(&pod))
        .expect("placed dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["file"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_entry_replaces_a_link_instead_of_writing_through_it() {
    let pod = TestPod::new().await;
    let out = load(
        &pod,
        tgz(&[
            ("d", EntryType::Directory, b"", None),
            ("d/target", EntryType::Regular, b"original", None),
            ("d/name", EntryType::Symlink, b"", Some("target")),
            ("d/name", EntryType::Regular, b"replacement", None),
        ]),
        None,
        &[],
    )
    .await;
    assert_ok(&out);
    let dir = placed(&pod);
    assert_eq!(std::fs::read(dir.join("target")).expect("t"), b"original");
    assert_eq!(std::fs::read(dir.join("name")).expect("n"), b"replacement");
    assert!(!dir.join("name").is_symlink());
}

const ONE_MIB: (&str, &str) = ("ARGOEXEC_MAX_UNPACKED_BYTES", "1048576");
const TOO_LARGE: &str =
    "the archive unpacks to more than the limit of 1048576 bytes (ARGOEXEC_MAX_UNPACKED_BYTES)";

#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_bomb_stops_at_the_configured_limit() {
    let pod = TestPod::new().await;
    let zeros = vec![0u8; 64 << 20];
    let bomb = tgz(&[("zeros", EntryType::Regular, &zeros, None)]);
    assert!(bomb.len() < 200 << 10, "64 MiB in {} bytes", bomb.len());
    let out = load(&pod, bomb, None, &[ONE_MIB]).await;
    refused(&pod, &out, TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_declared_size_is_refused_before_anything_is_written() {
    let pod = TestPod::new().await;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(1 << 40);
    h.as_old_mut().name[..4].copy_from_slice(b"huge");
    h.set_cksum();
    let mut archive = h.as_bytes().to_vec();
    archive.extend_from_slice(&[1u8; 4096]);
    let out = load(&pod, gzip(&archive), None, &[ONE_MIB]).await;
    refused(&pod, &out, TOO_LARGE);
    // Without a limit, the entry is cut short by the end of the archive: an error, not a
    // short file.
    let out = load(&pod, gzip(&archive), None, &[]).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        pod.termination_log()
            .contains("write huge: the archive ends 4096 bytes into an entry of 1099511627776"),
        "{}",
        pod.termination_log()
    );
    assert!(!placed(&pod).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn zip_slip_is_refused_and_zip_bombs_stop_at_the_limit() {
    let pod = TestPod::new().await;
    let zip = Some(json!({"zip": {}}));
    let out = load(
        &pod,
        zip_of(&[("ok.txt", b"ok"), ("../../slip.txt", b"x")]),
        zip.clone(),
        &[],
    )
    .await;
    let tmpdir = pod
        .roots()
        .input_artifact("in")
        .with_extension("tmpdir")
        .to_string_lossy()
        .into_owned();
    let escaped = tmpdir.rsplit_once('/').map(|(p, _)| p).expect("parent");
    let escaped = escaped
        .rsplit_once('/')
        .map(|(p, _)| p)
        .expect("grandparent");
    refused(
        &pod,
        &out,
        &format!("{escaped}/slip.txt: Illegal file path"),
    );

    let zeros = vec![0u8; 16 << 20];
    let out = load(&pod, zip_of(&[("zeros", &zeros)]), zip, &[ONE_MIB]).await;
    refused(&pod, &out, TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_or_corrupt_gzip_is_refused_and_nothing_is_placed() {
    let pod = TestPod::new().await;
    let data = support::pseudo_random(300_000, 9);
    let good = tgz(&[("f", EntryType::Regular, &data, None)]);
    let out = load(&pod, good[..good.len() / 2].to_vec(), None, &[]).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(!placed(&pod).exists());

    let mut corrupt = good.clone();
    let at = corrupt.len() - 6;
    corrupt[at] ^= 0xff; // inside the gzip trailer's CRC
    let out = load(&pod, corrupt, None, &[]).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        pod.termination_log().contains("corrupt"),
        "{}",
        pod.termination_log()
    );
    assert!(!placed(&pod).exists());
}
