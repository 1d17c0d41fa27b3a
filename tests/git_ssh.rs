//! Git inputs over SSH against OpenSSH's `sshd` on loopback (tests/support/ssh_server.rs),
//! through `init` as the pod runs it, with no `ssh` program on the PATH, as in our image:
//! `ssh://` and scp-like URLs, ed25519 (OpenSSH format) and RSA (PEM) keys, revision, depth,
//! single branch and submodules over SSH; host keys checked against known_hosts as go-git
//! checks them, or ignored with `insecureIgnoreHostKey`; a key the server refuses.

#![cfg(feature = "git")]

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::git_server::{GitFixture, git};
use support::ssh_server::{SshServer, keygen};
use support::{TestPod, assert_ok, failure};

/// A pod whose secret `git/key` holds a private key the server accepts, a server with the
/// fixtures, and an empty directory for PATH and HOME (no `ssh`, no `~/.ssh`).
struct Setup {
    pod: TestPod,
    fx: GitFixture,
    server: SshServer,
    keys: tempfile::TempDir,
    empty: tempfile::TempDir,
}

impl Setup {
    /// `kind` of client key (`ed25519` or `rsa`), the server on `port` (0: any).
    async fn new(kind: &str, port: u16) -> Self {
        let pod = TestPod::new().await;
        let fx = GitFixture::new();
        let keys = tempfile::tempdir().expect("keys");
        let (private, public) = keygen(keys.path(), "client", kind);
        pod.write_secret("git", "key", &private);
        let server = SshServer::start(port, &[&public]);
        Self {
            pod,
            fx,
            server,
            keys,
            empty: tempfile::tempdir().expect("empty dir"),
        }
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.fx.root.path().join(name)
    }

    /// A known_hosts file with `lines`.
    fn known_hosts(&self, lines: &[String]) -> String {
        let path = self.keys.path().join("known_hosts");
        std::fs::write(&path, lines.join("\n") + "\n").expect("known_hosts");
        path.display().to_string()
    }

    /// `init` with one git input `src` at `git` (the key secret added), `SSH_KNOWN_HOSTS`
    /// set to `known_hosts` if given.
    async fn init(&self, mut git: Value, known_hosts: Option<&str>) -> std::process::Output {
        git["sshPrivateKeySecret"] = json!({"name": "git", "key": "key"});
        let template = json!({"name": "consume", "inputs": {"artifacts": [
            {"name": "src", "path": "/src", "git": git}]}});
        let empty = self.empty.path().to_str().expect("utf8");
        let mut env = vec![("PATH", empty), ("HOME", empty)];
        if let Some(file) = known_hosts {
            env.push(("SSH_KNOWN_HOSTS", file));
        }
        let out = self.pod.init_with(&template, &env).await;
        if !out.status.success() {
            eprintln!("sshd log:\n{}", self.server.log());
        }
        out
    }

    fn clone_dir(&self) -> PathBuf {
        self.pod.path("/argo/inputs/artifacts/src")
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ssh_url_clones_with_an_ed25519_key_and_the_host_in_known_hosts() {
    let s = Setup::new("ed25519", 0).await;
    let known = s.known_hosts(&[s.server.known_hosts_line()]);
    let out = s
        .init(
            json!({"repo": s.server.url(&s.repo("main.git"))}),
            Some(&known),
        )
        .await;
    assert_ok(&out);
    let dest = s.clone_dir();
    assert_eq!(read(&dest.join("a.txt")), "two\n");
    assert_eq!(git(&dest, &["rev-parse", "HEAD"]), s.fx.second);
    // The submodule's relative URL resolves to the same server, over SSH too.
    assert_eq!(read(&dest.join("libs/sub/lib.txt")), "library\n");
    assert_eq!(
        git(&dest, &["config", "remote.origin.url"]),
        s.server.url(&s.repo("main.git"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_scp_like_url_clones_with_an_rsa_pem_key_at_a_revision() {
    let s = Setup::new("rsa", 22).await;
    let out = s
        .init(
            json!({"repo": s.server.scp_url(&s.repo("main.git")), "revision": "v1",
                   "insecureIgnoreHostKey": true, "disableSubmodules": true}),
            None,
        )
        .await;
    assert_ok(&out);
    let dest = s.clone_dir();
    assert_eq!(git(&dest, &["rev-parse", "HEAD"]), s.fx.first);
    assert_eq!(read(&dest.join("a.txt")), "one\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_and_single_branch_over_ssh() {
    let s = Setup::new("ed25519", 0).await;
    let out = s
        .init(
            json!({"repo": s.server.url(&s.repo("main.git")), "depth": 1,
                   "singleBranch": true, "branch": "feature",
                   "insecureIgnoreHostKey": true}),
            None,
        )
        .await;
    assert_ok(&out);
    let dest = s.clone_dir();
    assert_eq!(git(&dest, &["rev-parse", "HEAD"]), s.fx.feature);
    assert_eq!(git(&dest, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(read(&dest.join("feature.txt")), "feature\n");
}

/// A host whose key is not the recorded one, or not recorded at all, or no known_hosts file:
/// the clone fails with go-git's words and the host's address, and clones nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_key_not_in_known_hosts_fails_naming_the_host() {
    let s = Setup::new("ed25519", 0).await;
    let (_, other_key) = keygen(s.keys.path(), "impostor", "ed25519");
    let host = format!("[{}]:{}", s.server.addr.ip(), s.server.addr.port());
    let repo = s.server.url(&s.repo("main.git"));
    let changed = s.known_hosts(&[format!("{host} {other_key}")]);
    let unknown = s.keys.path().join("unknown_hosts");
    std::fs::write(&unknown, format!("[127.0.0.1]:1 {}\n", s.server.host_key)).expect("write");
    for (known_hosts, want) in [
        (changed.as_str(), "knownhosts: key mismatch"),
        (
            unknown.to_str().expect("utf8"),
            "knownhosts: key is unknown",
        ),
        (
            "/nonexistent/known_hosts",
            "unable to find any valid known_hosts file, set SSH_KNOWN_HOSTS env variable",
        ),
    ] {
        let out = s
            .init(
                json!({"repo": repo, "disableSubmodules": true}),
                Some(known_hosts),
            )
            .await;
        let message = failure(&s.pod, &out);
        assert!(
            message.contains(want) && message.contains(&s.server.addr.ip().to_string()),
            "{want}: {message}"
        );
        assert!(!s.clone_dir().exists(), "{want}: nothing cloned");
    }
    // insecureIgnoreHostKey takes any key.
    let out = s
        .init(
            json!({"repo": repo, "disableSubmodules": true, "insecureIgnoreHostKey": true}),
            Some(&changed),
        )
        .await;
    assert_ok(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_key_the_server_refuses_fails_clearly() {
    let s = Setup::new("ed25519", 0).await;
    let (stranger, _) = keygen(s.keys.path(), "stranger", "ed25519");
    let repo = json!({"repo": s.server.url(&s.repo("main.git")), "insecureIgnoreHostKey": true});
    for (key, want) in [
        (stranger.as_str(), "ssh: unable to authenticate"),
        ("not a key", "ssh: no key found"),
    ] {
        s.pod.write_secret("git", "key", key);
        let out = s.init(repo.clone(), None).await;
        let message = failure(&s.pod, &out);
        assert!(message.contains(want), "{want}: {message}");
    }
}
