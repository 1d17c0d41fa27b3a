//! The executor image, without a container runtime.
//!
//! `scripts/rootfs.sh` assembles the image's root filesystem in a directory; the Dockerfile's
//! final stage is that directory and nothing else (checked here), so the directory *is* the
//! image. A whole pod then runs in it through `chroot`, with the pod paths at their real
//! absolute places (`/var/run/argo`, `/argo/secret`, `/mainctrfs`, `/tmp`, no `ARGOEXEC_ROOT`),
//! as the user and with the `PATH` the Dockerfile sets, against the loopback S3 server and a
//! recording Kubernetes API server (chroot keeps the network namespace): `init` loads an input,
//! the user's `main` runs through `/var/run/argo/argoexec emissary` as another uid, and `wait`
//! saves the outputs and reports them.

mod support;

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use support::kube_server::KubeServer;
use support::{TestPod, assert_ok, eventually, finish};

const DOCKERFILE: &str = include_str!("../Dockerfile");
/// The uid:gid main runs as: a user image's own user, not the executor's.
const MAIN_USER: &str = "1000:1000";
const NS: &str = "argo";

/// What the Dockerfile's final stage declares.
#[derive(Debug)]
struct FinalStage {
    from: String,
    instructions: Vec<(String, String)>,
}

impl FinalStage {
    fn parse() -> Self {
        // Continuation lines joined, comments and blank lines dropped.
        let joined = DOCKERFILE
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("\\\n", " ");
        let mut stages: Vec<FinalStage> = Vec::new();
        for line in joined.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let (word, rest) = (word.to_ascii_uppercase(), rest.trim().to_string());
            if word == "FROM" {
                stages.push(FinalStage {
                    from: rest,
                    instructions: Vec::new(),
                });
            } else if let Some(stage) = stages.last_mut() {
                stage.instructions.push((word, rest));
            }
        }
        stages.pop().expect("the Dockerfile has a stage")
    }

    fn all(&self, word: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|(w, _)| w == word)
            .map(|(_, r)| r.as_str())
            .collect()
    }

    fn one(&self, word: &str) -> &str {
        match self.all(word).as_slice() {
            [one] => one,
            other => panic!("the final stage needs exactly one {word}, has {other:?}"),
        }
    }

    /// `USER uid:gid`.
    fn user(&self) -> String {
        let user = self.one("USER").to_string();
        assert!(
            user.split(':')
                .all(|id| id.parse::<u32>().is_ok_and(|n| n != 0)),
            "USER must be a numeric non-root uid:gid (Kubernetes runAsNonRoot checks it): {user}"
        );
        user
    }

    /// `ENV PATH=...`.
    fn path(&self) -> String {
        self.one("ENV")
            .strip_prefix("PATH=")
            .expect("the final stage sets PATH")
            .to_string()
    }

    /// `ENTRYPOINT [...]` in exec form.
    fn entrypoint(&self) -> Vec<String> {
        serde_json::from_str(self.one("ENTRYPOINT")).expect("ENTRYPOINT in exec (JSON) form")
    }
}

#[test]
fn the_final_stage_is_the_rootfs_directory_and_nothing_else() {
    let stage = FinalStage::parse();
    assert_eq!(stage.from, "scratch");
    assert_eq!(stage.all("COPY"), ["--from=build /rootfs/ /"]);
    for (word, rest) in &stage.instructions {
        assert!(
            ["ARG", "COPY", "ENV", "USER", "ENTRYPOINT", "LABEL"].contains(&word.as_str()),
            "the final stage may not add files or run anything: {word} {rest}"
        );
    }
    assert!(
        DOCKERFILE.contains("scripts/rootfs.sh /rootfs "),
        "the build stage assembles /rootfs with scripts/rootfs.sh"
    );
    assert_eq!(stage.entrypoint(), ["argoexec"]);
    assert_eq!(stage.user(), "8737:8737", "Argo's executor uid");
    assert_eq!(stage.path(), "/bin");
    assert!(
        stage
            .one("LABEL")
            .contains("org.opencontainers.image.licenses=")
    );
}

/// The paths `.dockerignore` lets into the build context (it excludes everything, `*`, then
/// lets named paths back in with `!path`).
fn build_context() -> Vec<String> {
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .expect(".dockerignore");
    let mut lines = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    assert_eq!(lines.next(), Some("*"), "the context starts from nothing");
    lines
        .map(|l| {
            let path = l.strip_prefix('!').expect("only `!path` lines follow `*`");
            path.trim_end_matches('/').to_string()
        })
        .collect()
}

/// The image's `cargo build` sees only the build context: it must hold the whole workspace
/// (every member's manifest and sources), or the build fails before compiling anything, as it
/// did when the library moved to crates/ and the context still named src/ alone. Cargo loads
/// the copied workspace with the lock file, offline, as the build stage's first step does.
#[test]
fn the_build_context_holds_the_whole_workspace() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let context = tempfile::tempdir().expect("tempdir");
    for path in build_context() {
        let status = std::process::Command::new("cp")
            .args(["-r", "--parents", &path])
            .arg(context.path())
            .current_dir(manifest_dir)
            .status()
            .expect("cp ran");
        assert!(status.success(), "{path} named in .dockerignore is missing");
    }
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", "x86_64-unknown-linux-gnu"])
        .current_dir(context.path())
        .output()
        .expect("cargo metadata ran");
    assert!(
        out.status.success(),
        "the build context is not a loadable workspace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The binary the suite built and tested: what the image ships.
fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_argoexec"))
}

#[test]
fn the_suite_tests_a_static_binary() {
    let out = std::process::Command::new("ldd")
        .arg(binary())
        .env("LC_ALL", "C")
        .output()
        .expect("ldd is needed by this test; run scripts/test.sh on a glibc system");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "the test build must be static (.cargo/config.toml, crt-static): ldd says {said}"
    );
}

/// Runs `scripts/rootfs.sh root binary()`.
fn assemble_rootfs(root: &Path) {
    let out = std::process::Command::new("scripts/rootfs.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg(root)
        .arg(binary())
        .output()
        .expect("run scripts/rootfs.sh");
    assert_ok(&out);
}

/// `(path, mode)` of everything below `root`, sorted; directories end with `/`.
fn tree(root: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .display()
                .to_string();
            if meta.is_dir() {
                out.push((format!("{rel}/"), meta.mode() & 0o7777));
                pending.push(path);
            } else {
                out.push((rel, meta.mode() & 0o7777));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_rootfs_holds_the_binary_certificates_and_users_only() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("rootfs");
    assemble_rootfs(&root);
    let expected: Vec<(String, u32)> = [
        ("bin/", 0o755),
        ("bin/argoexec", 0o755),
        ("etc/", 0o755),
        ("etc/group", 0o644),
        ("etc/nsswitch.conf", 0o644),
        ("etc/passwd", 0o644),
        ("etc/ssl/", 0o755),
        ("etc/ssl/certs/", 0o755),
        ("etc/ssl/certs/ca-certificates.crt", 0o644),
        ("tmp/", 0o1777),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_string(), m))
    .collect();
    assert_eq!(tree(&root), expected);
    assert_eq!(
        std::fs::read(root.join("bin/argoexec")).expect("binary"),
        std::fs::read(binary()).expect("built binary"),
        "the image ships the binary the suite tested"
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    let user = FinalStage::parse().user();
    let uid = user.split(':').next().expect("uid");
    assert!(
        passwd.lines().any(|l| l.split(':').nth(2) == Some(uid)),
        "the image's USER {uid} has a passwd entry:\n{passwd}"
    );
    let certs =
        std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).expect("CA bundle");
    assert!(certs.contains("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn rootfs_refuses_a_dynamic_binary() {
    let dir = tempfile::tempdir().expect("dir");
    // Any dynamically linked program of the host will do.
    let dynamic = which("sh").expect("sh on PATH");
    let out = std::process::Command::new("scripts/rootfs.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg(dir.path().join("rootfs"))
        .arg(std::fs::canonicalize(dynamic).expect("real path"))
        .output()
        .expect("run scripts/rootfs.sh");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dynamically linked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("rootfs/bin/argoexec").exists());
}

/// `name` on the host's PATH.
fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The shared libraries `ldd` lists for `program`.
fn shared_libraries(program: &Path) -> Vec<PathBuf> {
    let out = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .expect("ldd is needed by this test; run scripts/test.sh on a glibc system");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Copies a host file to the same absolute path below `root`.
fn copy_into(root: &Path, host: &Path, inside: &str) {
    let dest = root.join(inside.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    std::fs::copy(host, &dest).expect("copy into the root");
}

fn mkdir(root: &Path, inside: &str, mode: u32) -> PathBuf {
    let dir = root.join(inside.trim_start_matches('/'));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, PermissionsExt::from_mode(mode)).expect("chmod");
    dir
}

/// `args` run in `root` through chroot as `user`, with only `env` and `PATH` set.
fn in_root(
    root: &Path,
    user: &str,
    path: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> tokio::process::Command {
    let chroot = which("chroot").expect("chroot (coreutils) is needed; run scripts/test.sh");
    let mut cmd = tokio::process::Command::new(chroot);
    cmd.arg(format!("--userspec={user}"))
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", path)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn bounded(cmd: &mut tokio::process::Command) -> Output {
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("finished in time")
        .expect("ran")
}

/// Every stderr line as JSON, each checked for Argo's keys.
fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            for key in ["time", "level", "msg"] {
                assert!(v[key].is_string(), "no {key}: {line}");
            }
            assert_eq!(v["argo"], true, "{line}");
            v
        })
        .collect()
}

fn line_about<'a>(lines: &'a [Value], msg: &str, artifact: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["msg"] == msg && l["artifact"] == artifact)
        .unwrap_or_else(|| panic!("no '{msg}' line for {artifact} in {lines:#?}"))
}

/// What main does, with shell built-ins only: copy the input, count its lines.
const MAIN_SCRIPT: &str = r#"n=0
while IFS= read -r line; do n=$((n+1)); printf '%s\n' "$line"; done < /in/data > /work/result.txt
printf '%s lines\n' "$n" > /out/report.txt
printf '%s' "$n" > /out/lines
echo "main saw $n lines""#;

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_runs_init_emissary_and_wait_in_the_image_as_its_user() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test chroots and switches users, so it needs root (the CI container runs as root)"
    );
    let stage = FinalStage::parse();
    let (user, image_path, entrypoint) = (stage.user(), stage.path(), stage.entrypoint());
    let entrypoint: Vec<&str> = entrypoint.iter().map(String::as_str).collect();
    let executor_uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("uid");

    // The pod root is the image; the kubelet's mounts are added to it.
    let pod = TestPod::new().await;
    let root = pod.root.path();
    std::fs::set_permissions(root, PermissionsExt::from_mode(0o755)).expect("chmod root");
    assemble_rootfs(root);
    for (dir, mode) in [
        ("/var/run/argo", 0o777),          // emptyDir var-run-argo
        ("/argo/inputs/artifacts", 0o777), // emptyDir input-artifacts
        ("/work", 0o777),                  // the user's volume, mounted at /work in main
        ("/out", 0o777),                   // main's own filesystem
        ("/in", 0o755),
        ("/kube", 0o755),
    ] {
        mkdir(root, dir, mode);
    }
    // One filesystem stands for the pod's: main's mounts point where init and wait see them.
    std::os::unix::fs::symlink("/argo/inputs/artifacts/data", root.join("in/data"))
        .expect("input subPath mount");
    std::os::unix::fs::symlink("/work", root.join("mainctrfs/work")).expect("/mainctrfs mirror");
    let termination_log = root.join("dev/termination-log");
    std::fs::write(&termination_log, "").expect("termination log");
    std::fs::set_permissions(&termination_log, PermissionsExt::from_mode(0o666)).expect("chmod");
    // Main's image: a shell and its C library (ours needs none).
    let sh = std::fs::canonicalize(which("sh").expect("sh")).expect("sh path");
    copy_into(root, &sh, "/usr/bin/sh");
    for lib in shared_libraries(&sh) {
        copy_into(root, &lib, &lib.display().to_string());
    }
    let kube = KubeServer::start().await;
    kube.kubeconfig(&root.join("kube"), NS);

    let lines: String = (0..500).map(|i| format!("line {i}\n")).collect();
    pod.put("input/data.txt", lines.clone().into_bytes()).await;
    let template = json!({
        "name": "step",
        "container": {
            "image": "user/image",
            "command": ["sh", "-c", MAIN_SCRIPT],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        },
        "inputs": {"artifacts": [{"name": "data", "path": "/in/data", "s3": pod.s3("input/data.txt")}]},
        "outputs": {
            "parameters": [{"name": "lines", "valueFrom": {"path": "/out/lines"}}],
            "artifacts": [
                {"name": "result", "path": "/work/result.txt"},
                {"name": "report", "path": "/out/report.txt", "archive": {"none": {}}},
            ],
        },
        "archiveLocation": {"archiveLogs": true, "s3": pod.s3("wf/step")},
    })
    .to_string();
    let log_opts = [
        "--loglevel",
        "info",
        "--log-format",
        "json",
        "--gloglevel",
        "0",
    ];
    let pod_env = [
        ("ARGO_POD_NAME", "wf-step-1"),
        ("ARGO_POD_UID", "pod-uid-1"),
        ("ARGO_WORKFLOW_NAME", "wf"),
        ("ARGO_WORKFLOW_UID", "wf-uid-1"),
        ("ARGO_NODE_ID", "wf-1"),
        ("ARGO_DEADLINE", "0001-01-01T00:00:00Z"),
        ("ARGO_INCLUDE_SCRIPT_OUTPUT", "true"),
    ];
    let with = |name: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut env = pod_env.to_vec();
        env.push(("ARGO_CONTAINER_NAME", name));
        env.extend_from_slice(extra);
        env
    };

    // init: the image's entrypoint with the controller's arguments.
    let mut init_env = with("init", &[]);
    init_env.push(("ARGO_TEMPLATE", &template));
    let mut args = entrypoint.clone();
    args.push("init");
    args.extend(log_opts);
    let init = bounded(&mut in_root(root, &user, &image_path, &args, &init_env)).await;
    assert_ok(&init);
    let init_lines = json_lines(&init);
    let loaded = line_about(&init_lines, "loaded input artifact", "data");
    assert_eq!(loaded["key"], "input/data.txt");
    assert_eq!(loaded["bytes"], lines.len());
    assert_eq!(loaded["retries"], 0);
    let copy = root.join("var/run/argo/argoexec");
    assert_eq!(
        std::fs::metadata(&copy).expect("binary copy").mode() & 0o777,
        0o555
    );
    assert_eq!(std::fs::metadata(&copy).expect("meta").uid(), executor_uid);

    // wait starts with main and waits for it, as in the pod.
    let mut args = entrypoint.clone();
    args.push("wait");
    args.extend(log_opts);
    args.push("--kubeconfig=/kube/kubeconfig");
    let wait_env = with("wait", &[("ARGOEXEC_METRICS_FILE", "/tmp/argoexec.prom")]);
    let wait = in_root(root, &user, &image_path, &args, &wait_env)
        .spawn()
        .expect("start wait");
    // main's own-filesystem output goes to wait over its socket, across the two uids.
    let socket = root.join("var/run/argo/outputs.sock");
    eventually("wait to offer the output socket", || socket.exists()).await;

    // main: the user's image and user, the binary init copied, the user's command.
    let mut args = vec!["/var/run/argo/argoexec", "emissary"];
    args.extend([
        "--loglevel",
        "info",
        "--log-format",
        "text",
        "--gloglevel",
        "0",
    ]);
    args.extend(["--", "sh", "-c", MAIN_SCRIPT]);
    let main = bounded(&mut in_root(
        root,
        MAIN_USER,
        "/usr/local/bin:/usr/bin:/bin",
        &args,
        &with("main", &[]),
    ))
    .await;
    assert_ok(&main);
    assert_eq!(
        String::from_utf8_lossy(&main.stdout),
        "main saw 500 lines\n"
    );
    assert!(
        String::from_utf8_lossy(&main.stderr).contains("streamed the output to wait"),
        "{}",
        String::from_utf8_lossy(&main.stderr)
    );
    assert!(
        !root.join("var/run/argo/outputs/artifacts").exists(),
        "nothing staged"
    );
    let wait = finish(wait).await;
    assert_ok(&wait);

    // The outputs, where Argo's keys put them.
    assert_eq!(
        pod.keys("wf/step/").await,
        [
            "wf/step/main.log",
            "wf/step/report.txt",
            "wf/step/result.tgz"
        ]
    );
    let tgz = pod.get("wf/step/result.tgz").await.expect("result.tgz");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
    let mut entries = archive.entries().expect("tar");
    let mut entry = entries.next().expect("one entry").expect("entry");
    assert_eq!(entry.path().expect("path").to_str(), Some("result.txt"));
    let mut copied = String::new();
    entry.read_to_string(&mut copied).expect("read");
    assert_eq!(copied, lines);
    assert_eq!(
        pod.get("wf/step/report.txt").await.as_deref(),
        Some(&b"500 lines\n"[..])
    );
    assert_eq!(
        pod.get("wf/step/main.log").await.as_deref(),
        Some(&b"main saw 500 lines\n"[..])
    );

    // The report, through the API server, from inside the image.
    let result = kube
        .object("argoproj.io/v1alpha1", NS, "workflowtaskresults", "wf-1")
        .expect("the WorkflowTaskResult");
    let outputs = &result["outputs"];
    assert_eq!(outputs["result"], "main saw 500 lines");
    assert_eq!(outputs["parameters"][0]["value"], "500");
    let names: Vec<&str> = outputs["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["result", "report", "main-logs"]);
    assert_eq!(outputs["artifacts"][0]["s3"]["key"], "wf/step/result.tgz");

    // Wait's lines name each artifact with its figures; the metrics file has them too.
    let wait_lines = json_lines(&wait);
    let saved = line_about(&wait_lines, "saved output artifact", "result");
    assert_eq!(saved["key"], "wf/step/result.tgz");
    assert_eq!(saved["bytes"], tgz.len());
    assert_eq!(saved["retries"], 0);
    assert_eq!(saved["parts"], 0);
    let metrics = std::fs::read_to_string(root.join("tmp/argoexec.prom")).expect("metrics file");
    for artifact in ["result", "report", "main-logs"] {
        let sample = format!(
            "argoexec_artifact_bytes{{workflow=\"wf\",pod=\"wf-step-1\",artifact=\"{artifact}\",direction=\"output\"}}"
        );
        assert!(metrics.contains(&sample), "{sample}\n{metrics}");
    }

    // Files each container wrote belong to its user.
    let ctr = root.join("var/run/argo/ctr/main");
    assert_eq!(
        std::fs::read_to_string(ctr.join("exitcode")).expect("exit code"),
        "0"
    );
    assert_eq!(
        std::fs::metadata(ctr.join("exitcode")).expect("meta").uid(),
        1000
    );
    assert_eq!(
        std::fs::metadata(root.join("argo/inputs/artifacts/data"))
            .expect("input")
            .uid(),
        executor_uid
    );
    assert_eq!(std::fs::read_to_string(&termination_log).expect("log"), "");
}

/// The image has no `ssh` program, yet `init` clones a git input over SSH, checking the host
/// key against a known_hosts file named by `SSH_KNOWN_HOSTS`, as Argo's go-git does
/// in-process: against OpenSSH's sshd on loopback (chroot keeps the network).
#[cfg(feature = "git")]
#[tokio::test(flavor = "multi_thread")]
async fn init_clones_a_git_input_over_ssh_in_the_image() {
    use support::git_server::GitFixture;
    use support::ssh_server::{SshServer, keygen};
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test chroots and switches users, so it needs root (the CI container runs as root)"
    );
    let stage = FinalStage::parse();
    let (user, image_path, entrypoint) = (stage.user(), stage.path(), stage.entrypoint());
    let pod = TestPod::new().await;
    let root = pod.root.path();
    std::fs::set_permissions(root, PermissionsExt::from_mode(0o755)).expect("chmod root");
    assemble_rootfs(root);
    for bin in ["bin", "usr/bin", "usr/local/bin"] {
        assert!(!root.join(bin).join("ssh").exists(), "no ssh in the image");
    }
    mkdir(root, "/argo/inputs/artifacts", 0o777);
    mkdir(root, "/var/run/argo", 0o777);
    let termination_log = root.join("dev/termination-log");
    mkdir(root, "/dev", 0o755);
    // Every container runtime provides /dev/random and /dev/urandom (OCI runtime spec): the
    // SSH client's random numbers come from them in a static binary (getrandom's fallback).
    for (name, minor) in [("random", 8), ("urandom", 9)] {
        let dev = root.join("dev").join(name);
        nix::sys::stat::mknod(
            &dev,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, minor),
        )
        .expect("mknod");
        std::fs::set_permissions(&dev, PermissionsExt::from_mode(0o666)).expect("chmod");
    }

    let fx = GitFixture::new();
    let keys = tempfile::tempdir().expect("keys");
    let (private, public) = keygen(keys.path(), "client", "ed25519");
    let server = SshServer::start(0, &[&public]);
    pod.write_secret("git", "key", &private);
    let secret = root.join("argo/secret");
    for dir in [secret.clone(), secret.join("git")] {
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    std::fs::set_permissions(secret.join("git/key"), PermissionsExt::from_mode(0o644))
        .expect("chmod secret");
    std::fs::write(
        root.join("argo/known_hosts"),
        server.known_hosts_line() + "\n",
    )
    .expect("known_hosts");

    let repo = server.url(&fx.root.path().join("main.git"));
    let template = json!({"name": "consume", "inputs": {"artifacts": [
        {"name": "src", "path": "/src", "git": {"repo": repo, "revision": "v1",
         "disableSubmodules": true,
         "sshPrivateKeySecret": {"name": "git", "key": "key"}}}]}})
    .to_string();
    let mut args = entrypoint.iter().map(String::as_str).collect::<Vec<_>>();
    args.extend(["init", "--loglevel", "info", "--log-format", "json"]);
    let env = [
        ("ARGO_POD_NAME", "wf-step-1"),
        ("ARGO_POD_UID", "pod-uid-1"),
        ("ARGO_WORKFLOW_NAME", "wf"),
        ("ARGO_NODE_ID", "wf-1"),
        ("ARGO_CONTAINER_NAME", "init"),
        ("ARGO_DEADLINE", "0001-01-01T00:00:00Z"),
        ("ARGO_TEMPLATE", template.as_str()),
        ("SSH_KNOWN_HOSTS", "/argo/known_hosts"),
    ];
    let init = bounded(&mut in_root(root, &user, &image_path, &args, &env)).await;
    if !init.status.success() {
        eprintln!("sshd log:\n{}", server.log());
        eprintln!(
            "termination log: {}",
            std::fs::read_to_string(&termination_log).unwrap_or_default()
        );
    }
    assert_ok(&init);
    let dest = root.join("argo/inputs/artifacts/src");
    // Detached at the revision (read directly: git refuses a repository of another user).
    assert_eq!(
        std::fs::read_to_string(dest.join(".git/HEAD"))
            .expect("HEAD")
            .trim(),
        fx.first
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("a.txt")).expect("a.txt"),
        "one\n"
    );
}
