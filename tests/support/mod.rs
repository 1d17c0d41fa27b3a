//! Shared test harness: a loopback S3 server, a relocatable pod root, and a runner for the
//! real `argoexec` binary as a child process.
#![allow(dead_code)]

pub mod alibaba;
pub mod archives;
pub mod artifact_plugin;
#[cfg(feature = "azure")]
pub mod azure_server;
pub mod conformance;
pub mod echo_server;
pub mod fault_proxy;
#[cfg(feature = "gcs")]
pub mod gcs_server;
pub mod git_server;
pub mod http_server;
pub mod kube_server;
pub mod otlp;
pub mod process;
pub use argoexec_s3_server as s3_server;
pub mod ssh_server;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use argoexec::contract::Roots;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use serde_json::{Value, json};

pub const BUCKET: &str = "argo-artifacts";
pub const SECRET_NAME: &str = "s3-creds";

/// One simulated pod: a root holding the contract paths, an S3 server with a bucket, and the
/// secrets mounted where the controller would mount them.
pub struct TestPod {
    pub root: tempfile::TempDir,
    pub data: tempfile::TempDir,
    pub s3_addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestPod {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestPod {
    /// Runs `argoexec ARGS` in a private mount namespace where `dir` is a tmpfs of `size_mib`
    /// MiB: a disk that fills. `then` is shell run inside after it (`$DIR` is the tmpfs), while
    /// the tmpfs is still there. Returns the output and the tmpfs's listing at the end.
    pub async fn argoexec_on_tmpfs(
        &self,
        dir: &Path,
        size_mib: u64,
        args: &[&str],
        then: &str,
        env: &[(&str, &str)],
    ) -> (Output, String) {
        let listing = self.root.path().join("left-on-tmpfs.txt");
        // Exit 97 says the namespace or the mount could not be made: a setup failure, not ours.
        let script = format!(
            r#"mount -t tmpfs -o size="$TMPFS" tmpfs "$DIR" || exit 97
"$@"; rc=$?
find "$DIR" -mindepth 1 > "$LISTING"
{then}
exit $rc"#
        );
        let size = format!("{size_mib}m");
        let mut env = env.to_vec();
        env.extend([
            ("TMPFS", size.as_str()),
            ("DIR", dir.to_str().expect("utf8")),
            ("LISTING", listing.to_str().expect("utf8")),
        ]);
        let mut argv = vec!["--mount", "--propagation", "private", "sh", "-c", &script];
        argv.extend(["sh", env!("CARGO_BIN_EXE_argoexec")]);
        argv.extend(args);
        let mut cmd = self.command_for(Path::new("unshare"), &argv, &env);
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("finished in time")
            .expect("unshare ran (the disk-full tests need util-linux and root)");
        assert_ne!(
            out.status.code(),
            Some(97),
            "could not mount a tmpfs in a private mount namespace (the tests need root and \
             CAP_SYS_ADMIN; run scripts/test.sh as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let left = std::fs::read_to_string(&listing).unwrap_or_else(|e| {
            panic!(
                "the namespace did not run argoexec ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, left)
    }

    pub async fn new() -> Self {
        Self::with_checks(s3_server::Checks::default()).await
    }

    /// A pod whose S3 server makes `checks` beyond s3s-fs's own.
    pub async fn with_checks(checks: s3_server::Checks) -> Self {
        let data = tempfile::tempdir().expect("data dir");
        std::fs::create_dir_all(data.path().join(BUCKET)).expect("bucket");
        let (s3_addr, server) = s3_server::spawn_checking(data.path(), 0, checks)
            .await
            .expect("s3 server");
        let root = tempfile::tempdir().expect("pod root");
        let pod = Self {
            root,
            data,
            s3_addr,
            server,
        };
        pod.write_secret(SECRET_NAME, "accessKey", s3_server::ACCESS_KEY);
        pod.write_secret(
            SECRET_NAME,
            "secretKey",
            &format!("{}\n", s3_server::SECRET_KEY),
        );
        for dir in [
            "var/run/argo",
            "argo/inputs/artifacts",
            "mainctrfs",
            "dev",
            "tmp",
        ] {
            std::fs::create_dir_all(pod.root.path().join(dir)).expect("pod dirs");
        }
        pod
    }

    pub fn roots(&self) -> Roots {
        Roots::at(self.root.path())
    }

    pub fn path(&self, absolute: &str) -> PathBuf {
        self.roots().path(absolute)
    }

    pub fn write_secret(&self, name: &str, key: &str, value: &str) {
        let p = self.roots().secret(name, key);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("secret dir");
        std::fs::write(p, value).expect("secret");
    }

    /// A full `s3:` location on the test server.
    pub fn s3(&self, key: &str) -> Value {
        json!({
            "endpoint": self.s3_addr.to_string(),
            "bucket": BUCKET,
            "insecure": true,
            "accessKeySecret": {"name": SECRET_NAME, "key": "accessKey"},
            "secretKeySecret": {"name": SECRET_NAME, "key": "secretKey"},
            "key": key,
        })
    }

    /// A full `s3:` location reached through a proxy at `via` instead of the server itself.
    pub fn s3_via(&self, via: std::net::SocketAddr, key: &str) -> Value {
        let mut loc = self.s3(key);
        loc["endpoint"] = json!(via.to_string());
        loc
    }

    /// An `archiveLocation` on the test server with the given key prefix.
    pub fn archive_location(&self, key: &str) -> Value {
        json!({"archiveLogs": false, "s3": self.s3(key)})
    }

    pub async fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!("http://{}", self.s3_addr))
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                s3_server::ACCESS_KEY,
                s3_server::SECRET_KEY,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub async fn put(&self, key: &str, body: Vec<u8>) {
        self.client()
            .await
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("put object");
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let out = self
            .client()
            .await
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(out.body.collect().await.expect("body").to_vec())
    }

    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .client()
            .await
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .send()
            .await
            .expect("list");
        let mut keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        keys.sort();
        keys
    }

    /// `argoexec <args>` as a process of this pod: the pod's root and identity, no template in
    /// the environment, and no Kubernetes API unless the test configures one.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        self.command_for(Path::new(env!("CARGO_BIN_EXE_argoexec")), args, env)
    }

    /// Like [`TestPod::command`] for another copy of the binary (the one `init` placed in
    /// `/var/run/argo`, as the main container runs it).
    pub fn command_for(
        &self,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env("ARGOEXEC_ROOT", self.root.path())
            .env("ARGO_POD_NAME", "wf-1-main-123")
            .env("ARGO_POD_UID", "pod-uid-1")
            .env("ARGO_WORKFLOW_NAME", "wf-1")
            .env("ARGO_WORKFLOW_UID", "wf-uid-1")
            .env("ARGO_NODE_ID", "wf-1-123")
            .env("ARGO_DEADLINE", "0001-01-01T00:00:00Z")
            .env("EXECUTOR_RETRY_BACKOFF_DURATION", "10ms")
            .env("ARGOEXEC_API_RETRY_DURATION", "10ms")
            .env_remove("ARGO_TEMPLATE")
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `argoexec <args>` as a child process of this pod, bounded to `timeout`.
    pub async fn argoexec_with(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Output {
        let mut cmd = self.command(args, env);
        tokio::time::timeout(timeout, cmd.output())
            .await
            .expect("argoexec finished in time")
            .expect("argoexec ran")
    }

    pub async fn argoexec(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.argoexec_with(args, env, Duration::from_secs(120))
            .await
    }

    /// Runs `init` with `template` in ARGO_TEMPLATE.
    pub async fn init(&self, template: &Value) -> Output {
        self.init_with(template, &[]).await
    }

    /// Runs `init` with `template` in ARGO_TEMPLATE and more environment.
    pub async fn init_with(&self, template: &Value, env: &[(&str, &str)]) -> Output {
        let t = template.to_string();
        let mut env = env.to_vec();
        env.push(("ARGO_TEMPLATE", &t));
        let mut args = vec!["init"];
        args.extend(LOG_OPTS);
        self.argoexec(&args, &env).await
    }

    /// Writes `/var/run/argo/template` and, unless one is there, main's exit code 0: what
    /// `wait` finds once init ran and main finished.
    pub fn stage_wait(&self, template: &Value) {
        std::fs::write(self.roots().template_file(), template.to_string()).expect("template");
        let ctr = self.roots().container_dir("main");
        std::fs::create_dir_all(&ctr).expect("ctr dir");
        if !ctr.join("exitcode").exists() {
            std::fs::write(ctr.join("exitcode"), "0").expect("exitcode");
        }
    }

    /// [`TestPod::stage_wait`], then runs `wait`.
    pub async fn wait(&self, template: &Value, env: &[(&str, &str)]) -> Output {
        self.stage_wait(template);
        let mut args = vec!["wait"];
        args.extend(LOG_OPTS);
        self.argoexec(&args, env).await
    }

    /// Records an entity tag for an object written straight into the server's data directory:
    /// without one, s3s-fs computes the MD5 of the whole object on every read of it (ranged
    /// reads included), which makes multi-GiB objects quadratic to stream.
    pub fn record_etag(&self, key: &str, etag: &str) {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let info = self.data.path().join(format!(
            ".bucket-{}.object-{}.internal.json",
            b64(BUCKET),
            b64(key)
        ));
        std::fs::write(info, json!({"e_tag": etag}).to_string()).expect("internal info");
    }

    pub fn termination_log(&self) -> String {
        std::fs::read_to_string(self.roots().termination_log()).unwrap_or_default()
    }
}

/// A request's whole body, for the test servers; empty when the client broke off.
pub async fn body_bytes(body: hyper::body::Incoming) -> bytes::Bytes {
    use http_body_util::BodyExt;
    body.collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// Waits until `check` holds, polling for at most 30 s; panics naming `what` otherwise.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Collects a spawned process's output, bounded to 120 s.
pub async fn finish(child: tokio::process::Child) -> Output {
    tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the process finished in time")
        .expect("the process ran")
}

/// The log arguments the controller passes to every executor command.
pub const LOG_OPTS: [&str; 6] = [
    "--loglevel",
    "info",
    "--log-format",
    "text",
    "--gloglevel",
    "0",
];

/// Asserts a command failed as the executor fails (exit 64, one line in the termination log)
/// and returns that line.
pub fn failure(pod: &TestPod, out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(64),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let message = pod.termination_log();
    assert!(
        !message.trim().is_empty() && !message.trim().contains('\n'),
        "one line: {message:?}"
    );
    message
}

/// Asserts a process succeeded, printing its output otherwise.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A directory tree with files of several sizes, an empty dir, a nested dir and a symlink.
pub fn make_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub/deeper")).expect("dirs");
    std::fs::create_dir_all(dir.join("empty")).expect("empty dir");
    std::fs::write(dir.join("a.txt"), b"alpha\n").expect("a");
    std::fs::write(dir.join("sub/b.bin"), pseudo_random(300_000, 7)).expect("b");
    std::fs::write(dir.join("sub/deeper/c.txt"), b"gamma").expect("c");
    std::os::unix::fs::symlink("a.txt", dir.join("link-to-a")).expect("symlink");
}

/// Deterministic bytes that compress a little, like real data.
pub fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 3 == 0 {
                b'a' + (i % 26) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

/// `(relative path, kind, content or link target)` of every entry below `dir`, sorted.
pub fn snapshot(dir: &Path) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry"))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(base)
                .expect("rel")
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&p).expect("meta");
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("link");
                out.push((rel, "link".into(), t.to_string_lossy().as_bytes().to_vec()));
            } else if meta.is_dir() {
                out.push((rel, "dir".into(), Vec::new()));
                walk(base, &p, out);
            } else {
                out.push((rel, "file".into(), std::fs::read(&p).expect("read")));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Every path below `root`, relative to it (links are listed, not followed).
pub fn paths_below(root: &Path) -> std::collections::BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeSet<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(root).expect("below").display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &p, out);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// [`snapshot`] of a directory, or one `("", "file", content)` entry for a file.
pub fn snapshot_or_file(path: &Path) -> Vec<(String, String, Vec<u8>)> {
    if path.is_dir() {
        snapshot(path)
    } else {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        vec![(String::new(), "file".into(), data)]
    }
}
