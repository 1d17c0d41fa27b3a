//! Property tests (proptest) of the code that handles untrusted input: the safe unpack (tar and
//! zip) never panics and never writes outside its destination whatever the archive, a tree
//! survives archive -> unpack exactly, Go-style key cleaning keeps its invariants, key
//! templates render what they parse, and template JSON never panics the decoder.

mod support;

use std::io::Write;
use std::path::Path;

use argoexec::archive::{self, ArchiveError};
use argoexec::keys::{self, template::KeyTemplate, template::KeyVariables};
use argoexec::model::Template;
use proptest::prelude::*;
use support::archives::{RawEntry, raw_tar};
use tar::EntryType;

/// A scratch directory holding the destination `out` and a sibling `outside`, which nothing
/// may ever touch.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("out")).expect("out");
        std::fs::create_dir(dir.path().join("outside")).expect("outside");
        std::fs::write(dir.path().join("outside/victim"), b"safe").expect("victim");
        Self { dir }
    }

    fn out(&self) -> std::path::PathBuf {
        self.dir.path().join("out")
    }

    /// Nothing appeared or changed outside `out`, and every link inside `out` that resolves
    /// resolves inside it.
    fn assert_contained(&self) {
        let all = support::paths_below(self.dir.path());
        let stray: Vec<&String> = all
            .iter()
            .filter(|p| *p != "out" && !p.starts_with("out/"))
            .filter(|p| *p != "outside" && *p != "outside/victim")
            .collect();
        assert!(stray.is_empty(), "written outside: {stray:?}");
        assert_eq!(
            std::fs::read(self.dir.path().join("outside/victim")).expect("victim"),
            b"safe"
        );
        let out = self.out().canonicalize().expect("out");
        for rel in all.iter().filter(|p| p.starts_with("out/")) {
            let p = self.dir.path().join(rel);
            if p.is_symlink()
                && let Ok(real) = p.canonicalize()
            {
                assert!(real.starts_with(&out), "{rel} reaches {}", real.display());
            }
        }
    }
}

/// Path segments that make escapes likely: climbing, the current directory, empty segments
/// (`//`), and few names, so that links and entries meet.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("..".to_string()),
        2 => Just(".".to_string()),
        1 => Just(String::new()),
        4 => "[ab]",
    ]
}

/// A random path from [`segment`]s, sometimes absolute.
fn random_path() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.1),
        proptest::collection::vec(segment(), 1..4),
    )
        .prop_map(|(rooted, segs)| {
            let joined = segs.join("/");
            if rooted { format!("/{joined}") } else { joined }
        })
        .prop_filter("fits a tar name field", |p| !p.is_empty() && p.len() < 100)
}

/// A path that is mostly one of `known`, so that entries and links meet: `a -> .` then
/// `b -> a/..` reaches the parent while its text stays inside.
fn path_among(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        1 => random_path(),
        3 => prop::sample::select(known).prop_map(str::to_string),
    ]
}

const NAMES: &[&str] = &["a", "b", "c", "a/b", "b/c", "a/b/c"];
const TARGETS: &[&str] = &[".", "..", "a", "b", "a/..", "b/..", "c/..", "a/b/.."];

fn entry_path() -> impl Strategy<Value = String> {
    path_among(NAMES)
}

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    HardLink(String),
}

fn entry() -> impl Strategy<Value = (String, Kind)> {
    let kind = prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Kind::File),
        1 => Just(Kind::Dir),
        4 => path_among(TARGETS).prop_map(Kind::Symlink),
        1 => path_among(TARGETS).prop_map(Kind::HardLink),
    ];
    (entry_path(), kind)
}

/// A tar with these entries, names and link targets written raw into the headers.
fn raw_tar_of(entries: &[(String, Kind)]) -> Vec<u8> {
    let raw: Vec<RawEntry> = entries
        .iter()
        .map(|(name, kind)| match kind {
            Kind::File(d) => (name.as_str(), EntryType::Regular, &d[..], None),
            Kind::Dir => (name.as_str(), EntryType::Directory, &[][..], None),
            Kind::Symlink(l) => (name.as_str(), EntryType::Symlink, &[][..], Some(l.as_str())),
            Kind::HardLink(l) => (name.as_str(), EntryType::Link, &[][..], Some(l.as_str())),
        })
        .collect();
    raw_tar(&raw)
}

/// `cases` cases; failures are printed with their minimal input, not saved to files.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Whatever the entries (climbing names, absolute names, links anywhere, links through
    /// links, duplicates), unpacking either refuses or succeeds, and nothing lands outside.
    #[test]
    fn untar_never_writes_outside_the_destination(
        entries in proptest::collection::vec(entry(), 1..8)
    ) {
        let s = Scratch::new();
        let result = archive::untar(&raw_tar_of(&entries)[..], &s.out(), Some(1 << 20));
        if let Err(e) = &result {
            // Refusals carry Argo's texts; other failures are I/O (a file where a directory
            // is needed, a dangling parent link...).
            prop_assert!(
                matches!(
                    e,
                    ArchiveError::IllegalPath { .. }
                        | ArchiveError::IllegalSymlink { .. }
                        | ArchiveError::IllegalAfterSymlink { .. }
                        | ArchiveError::Io { .. }
                ),
                "{e}"
            );
        }
        s.assert_contained();
    }

    /// A valid archive with random bytes flipped never panics the unpacker nor escapes.
    #[test]
    fn damaged_tars_never_panic_or_escape(
        entries in proptest::collection::vec(entry(), 1..6),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
    ) {
        let mut bytes = raw_tar_of(&entries);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let s = Scratch::new();
        let _ = archive::untar(&bytes[..], &s.out(), Some(1 << 20));
        s.assert_contained();
    }

    /// Arbitrary bytes through gunzip and untar, as init reads them, never panic.
    #[test]
    fn arbitrary_bytes_never_panic_the_tgz_reader(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let s = Scratch::new();
        let _ = archive::untar(flate2::read::MultiGzDecoder::new(&bytes[..]), &s.out(), Some(1 << 20));
        let _ = archive::unpack::detect_tgz(&bytes, true);
        s.assert_contained();
    }

    /// Arbitrary and damaged zips never panic the unzipper nor escape.
    #[test]
    fn damaged_zips_never_panic_or_escape(
        names in proptest::collection::btree_set(entry_path(), 1..5),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for n in &names {
            z.start_file(n.as_str(), zip::write::SimpleFileOptions::default()).expect("entry");
            z.write_all(n.as_bytes()).expect("data");
        }
        let mut bytes = z.finish().expect("zip").into_inner();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let s = Scratch::new();
        let file = s.dir.path().join("outside/archive.zip");
        std::fs::write(&file, &bytes).expect("zip file");
        let _ = archive::zip::unzip(&file, &s.out(), Some(1 << 20));
        std::fs::remove_file(&file).expect("rm");
        s.assert_contained();
    }
}

/// Files of a tree: path components and content.
type Files = Vec<(Vec<String>, Vec<u8>)>;
/// Directories of a tree (possibly empty): path components.
type Dirs = Vec<Vec<String>>;

/// A tree to archive: files and directories.
fn tree_spec() -> impl Strategy<Value = (Files, Dirs)> {
    let name = "[a-z0-9._-]{1,8}".prop_filter("not . or ..", |n| n != "." && n != "..");
    let path = proptest::collection::vec(name, 1..4);
    (
        proptest::collection::vec(
            (
                path.clone(),
                proptest::collection::vec(any::<u8>(), 0..3000),
            ),
            0..12,
        ),
        proptest::collection::vec(path, 0..4),
    )
}

/// Builds the tree under `root`, skipping any entry that clashes with an earlier one.
fn build(root: &Path, files: &Files, dirs: &Dirs) {
    std::fs::create_dir_all(root).expect("root");
    for d in dirs {
        let _ = std::fs::create_dir_all(root.join(d.join("/")));
    }
    for (p, data) in files {
        let path = root.join(p.join("/"));
        if let Some(parent) = path.parent()
            && std::fs::create_dir_all(parent).is_ok()
            && !path.exists()
        {
            std::fs::write(&path, data).expect("file");
        }
    }
}

/// `(path, kind, content)` of every entry below `dir`, sorted.
fn contents(dir: &Path) -> Vec<(String, bool, Vec<u8>)> {
    support::paths_below(dir)
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let data = if p.is_file() {
                std::fs::read(&p).expect("read")
            } else {
                Vec::new()
            };
            (rel, p.is_dir(), data)
        })
        .collect()
}

proptest! {
    #![proptest_config(config(64))]

    /// write_tgz (parallel gzip) then untar gives back exactly the tree, empty dirs included.
    #[test]
    fn tgz_round_trips_any_tree((files, dirs) in tree_spec(), threads in 1usize..4) {
        let scratch = tempfile::tempdir().expect("tempdir");
        let src = scratch.path().join("src");
        build(&src, &files, &dirs);
        let (tgz, _) = archive::write_tgz(&src, Vec::new(), 1, threads).expect("tgz");
        let out = scratch.path().join("out");
        std::fs::create_dir(&out).expect("out");
        archive::untar(flate2::read::MultiGzDecoder::new(&tgz[..]), &out, None).expect("untar");
        prop_assert_eq!(contents(&out.join("src")), contents(&src));
    }

    /// The tar size computed from a tree is the length of the stream written for it, and the
    /// tgz bound holds at every level: what parts are planned from before the stream starts.
    #[test]
    fn tar_size_and_tgz_bound_hold_for_any_tree((files, dirs) in tree_spec(), level in 0u32..10) {
        let scratch = tempfile::tempdir().expect("tempdir");
        let src = scratch.path().join("src");
        build(&src, &files, &dirs);
        let (tar, _) = archive::write_tree(&src, Vec::new()).expect("tar");
        prop_assert_eq!(archive::tar_size(&src).expect("size"), tar.len() as u64);
        let (tgz, _) = archive::write_tgz(&src, Vec::new(), level, 2).expect("tgz");
        prop_assert!(tgz.len() as u64 <= archive::tgz_bound(&src, level).expect("bound"));
    }

    /// write_zip then unzip gives back every file (zip stores no directories, as Argo's).
    #[test]
    fn zip_round_trips_the_files_of_any_tree((files, dirs) in tree_spec()) {
        let scratch = tempfile::tempdir().expect("tempdir");
        let src = scratch.path().join("src");
        build(&src, &files, &dirs);
        let zipped = archive::zip::write_zip(&src, Vec::new()).expect("zip");
        let file = scratch.path().join("a.zip");
        std::fs::write(&file, zipped).expect("write");
        let out = scratch.path().join("out");
        std::fs::create_dir(&out).expect("out");
        archive::zip::unzip(&file, &out, None).expect("unzip");
        let only_files = |v: Vec<(String, bool, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
            v.into_iter().filter(|e| !e.1).map(|e| (e.0, e.2)).collect()
        };
        prop_assert_eq!(only_files(contents(&out.join("src"))), only_files(contents(&src)));
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Go's `path.Clean`: idempotent; no empty or `.` segments; `..` only leading, and never
    /// in a rooted path; a trailing `/` only on the root itself.
    #[test]
    fn cleaning_keys_keeps_gos_invariants(segs in proptest::collection::vec(segment(), 0..8), rooted in any::<bool>()) {
        let raw = format!("{}{}", if rooted { "/" } else { "" }, segs.join("/"));
        let rooted = raw.starts_with('/');
        let c = keys::clean(&raw);
        prop_assert_eq!(keys::clean(&c), c.clone());
        prop_assert_eq!(c.starts_with('/'), rooted);
        if c != "/" {
            prop_assert!(!c.ends_with('/'), "{}", c);
        }
        if c != "." && c != "/" {
            let parts: Vec<&str> = c.trim_start_matches('/').split('/').collect();
            prop_assert!(parts.iter().all(|p| !p.is_empty() && *p != "."), "{}", c);
            let climbs = parts.iter().take_while(|p| **p == "..").count();
            prop_assert!(parts[climbs..].iter().all(|p| *p != ".."), "{}", c);
            prop_assert!(!rooted || climbs == 0, "{}", c);
        }
    }

    /// Joining keys is cleaning their concatenation; an artifact path that passes validation
    /// stays below what precedes its first `/../`, as Argo's check asks.
    #[test]
    fn joined_keys_and_valid_paths_never_climb(a in "[a-z/.]{0,12}", b in "[a-z/.]{0,12}") {
        let j = keys::join(&[a.as_str(), b.as_str()]);
        let non_empty: Vec<&str> = [a.as_str(), b.as_str()].into_iter().filter(|s| !s.is_empty()).collect();
        if non_empty.is_empty() {
            prop_assert_eq!(j, "");
        } else {
            prop_assert_eq!(j, keys::clean(&non_empty.join("/")));
        }
        let given = format!("{a}/{b}");
        if let (Ok(path), Some(i)) = (argoexec::keys::validate_path("art", &given), given.find("/../")) {
            let safe = format!("{}/", &given[..i]);
            prop_assert!(i == 0 || (path.starts_with(&safe) && path.len() > safe.len()), "{} -> {}", given, path);
        }
    }

    /// A key template renders its text as written and each known variable as its value;
    /// parsing arbitrary text never panics.
    #[test]
    fn key_templates_render_what_they_parse(
        pieces in proptest::collection::vec(("[^{}]{0,6}", prop::option::of(0usize..3)), 0..6),
        junk in ".{0,40}",
    ) {
        let _ = KeyTemplate::parse(&junk).map(|t| t.render(&KeyVariables::default()));
        let vars = KeyVariables {
            workflow_name: "wf-1".into(),
            workflow_namespace: "argo".into(),
            pod_name: "wf-1-main-9".into(),
            ..KeyVariables::default()
        };
        let names = ["workflow.name", "workflow.namespace", "pod.name"];
        let values = ["wf-1", "argo", "wf-1-main-9"];
        let mut source = String::new();
        let mut expected = String::new();
        for (text, var) in &pieces {
            source.push_str(text);
            expected.push_str(text);
            if let Some(i) = var {
                source.push_str(&format!("{{{{ {} }}}}", names[*i]));
                expected.push_str(values[*i]);
            }
        }
        let t = KeyTemplate::parse(&source).expect("parses");
        prop_assert!(expected.starts_with(t.literal_prefix()));
        prop_assert_eq!(t.render(&vars).expect("renders"), expected);
    }

    /// The template decoder never panics, on arbitrary bytes or on arbitrary JSON.
    #[test]
    fn template_json_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), value in json_value()) {
        let _ = Template::from_json(&bytes);
        let _ = Template::from_json(value.to_string().as_bytes());
        let artifacts = serde_json::json!({"inputs": {"artifacts": [value.clone()]}, "outputs": {"artifacts": [value]}});
        let _ = Template::from_json(artifacts.to_string().as_bytes());
    }
}

/// Arbitrary JSON, biased towards the template's own field names.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("name".to_string()),
        Just("path".to_string()),
        Just("s3".to_string()),
        Just("archive".to_string()),
        Just("key".to_string()),
        Just("mode".to_string()),
        Just("optional".to_string()),
        "[a-z]{1,6}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
