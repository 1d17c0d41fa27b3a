//! Git input artifacts against `git http-backend` on 127.0.0.1 (tests/support/git_server.rs):
//! clone with its `.git`, depth, single branch, revision checkout, fetch refspecs, submodules,
//! basic auth, and the typed errors (save, delete, single branch without a branch).

#![cfg(feature = "git")]

mod support;

use std::path::Path;

use argoexec::model::{ArtifactLocation, GitArtifact};
use argoexec::storage::{self, Secrets, StorageConfig};
use serde_json::{Value, json};
use support::git_server::{GitFixture, GitHttpServer, git};
use support::{LOG_OPTS, TestPod, failure};

fn git_loc(v: Value) -> GitArtifact {
    serde_json::from_value(v).expect("git location")
}

async fn clone(pod: &TestPod, loc: Value, dest: &Path) -> storage::Result<u64> {
    storage::git::clone_into(
        &git_loc(loc),
        &Secrets::new(pod.roots()),
        &StorageConfig::default(),
        dest,
    )
    .await
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clone_is_the_default_branch_with_its_git_dir_and_submodules() {
    let pod = TestPod::new().await;
    let fx = GitFixture::new();
    let server = GitHttpServer::start(fx.root.path(), None).await;
    let dest = pod.path("/clone");
    clone(&pod, json!({"repo": server.url("main.git")}), &dest)
        .await
        .expect("clone");
    assert_eq!(read(&dest.join("a.txt")), "two\n");
    assert_eq!(read(&dest.join("dir/b.txt")), "bee\n");
    assert!(dest.join(".git").is_dir());
    assert_eq!(git(&dest, &["rev-parse", "HEAD"]), fx.second);
    // The submodule, at the commit the superproject records (relative URL resolved).
    assert_eq!(read(&dest.join("libs/sub/lib.txt")), "library\n");
    assert_eq!(
        git(&dest.join("libs/sub"), &["rev-parse", "HEAD"]),
        fx.sub_commit
    );
    // A real repository: git itself sees a clean work tree.
    assert_eq!(
        git(&dest, &["status", "--porcelain", "--ignore-submodules"]),
        ""
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disable_submodules_leaves_the_submodule_empty() {
    let pod = TestPod::new().await;
    let fx = GitFixture::new();
    let server = GitHttpServer::start(fx.root.path(), None).await;
    let dest = pod.path("/clone");
    clone(
        &pod,
        json!({"repo": server.url("main.git"), "disableSubmodules": true}),
        &dest,
    )
    .await
    .expect("clone");
    assert!(!dest.join("libs/sub/lib.txt").exists());
    assert_eq!(read(&dest.join("a.txt")), "two\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_one_is_a_shallow_clone() {
    let pod = TestPod::new().await;
    let fx = GitFixture::new();
    let server = GitHttpServer::start(fx.root.path(), None).await;
    let dest = pod.path("/clone");
    clone(
        &pod,
        json!({"repo": server.url("main.git"), "depth": 1, "disableSubmodules": true}),
        &dest,
    )
    .await
    .expect("clone");
    assert_eq!(git(&dest, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(
        git(&dest, &["rev-parse", "--is-shallow-repository"]),
        "true"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn single_branch_clones_only_that_branch_and_needs_one() {
    let pod = TestPod::new().await;
    let fx = GitFixture::new();
    let server = GitHttpServer::start(fx.root.path(), None).await;
    let dest = pod.path("/clone");
    clone(
        &pod,
        json!({"repo": server.url("main.git"), "singleBranch": true, "branch": "feature"}),
        &dest,
    )
    .await
    .expect("clone");
    assert_eq!(git(&dest, &["rev-parse", "HEAD"]), fx.feature);
    assert_eq!(read(&dest.join("feature.txt")), "feature\n");
    let remote_branches = git(&dest, &["branch", "-r"]);
    assert!(
        !remote_branches.contains("origin/main"),
        "{remote_branches}"
    );

    let e = clone(
        &pod,
        json!({"repo": server.url("main.git"), "singleBranch": true}),
        &pod.path("/other"),
    )
    .await
    .expect_err("no branch");
    assert_eq!(
        e.to_string(),
        "single branch mode without a branch specified"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revision_is_checked_out_detached() {
    let pod = TestPod::new().await;
    let fx = GitFixture::new();
    let server = GitHttpServer::start(fx.root.path(), None).await;
    for (revision, want, a) in [
        (fx.first.as_str(), fx.first.as_str(), "one\n"),
        ("v1", fx.first.as_str(), "one\n"),
        ("feature", fx.feature.as_str(), "one\n"),
    ] {
        let dest = pod.path(&format!("/clone-{revision}"));
        clone(
            &pod,
            json!({"repo": server.url("main.git"), "revision": revision, "disableSubmodules": true}),
            &dest,
        )
        .await
        .unwrap_or_else(|e| panic!("revision {revision}: {e}"));
        assert_eq!(git(&dest, &["rev-parse", "HEAD"]), want, "{revision}");
        assert_eq!(read(&dest.join("a.txt")), a, "{revision}");
        assert!(
            !dest.join("dir").exists(),
            "{revision}: the second commit's files are gone"
        );
        // Detached, as Argo leaves it.
        assert_eq!(git(&dest, &["rev-parse", "--abbrev-ref", "HEAD"]), "HEAD");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_refspecs_bring_extra_refs() {
    let pod = TestPod::new().await;
    let fx = GitFixture::new();
    let server = GitHttpServer::start(fx.root.path(), None).await;
    let dest = pod.path("/clone");
    clone(
        &pod,
        json!({"repo": server.url("main.git"), "disableSubmodules": true,
               "fetch": ["+refs/heads/feature:refs/pulled/feature"]}),
        &dest,
    )
    .await
    .expect("clone");
    assert_eq!(
        git(&dest, &["rev-parse", "refs/pulled/feature"]),
        fx.feature
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_comes_from_the_secrets_and_stays_out_of_the_clone() {
    let pod = TestPod::new().await;
    let fx = GitFixture::new();
    let server = GitHttpServer::start(fx.root.path(), Some(("bot", "tok3n"))).await;
    pod.write_secret("git", "user", "bot");
    pod.write_secret("git", "pass", "tok3n");
    let dest = pod.path("/clone");
    clone(
        &pod,
        json!({"repo": server.url("main.git"), "disableSubmodules": true,
               "usernameSecret": {"name": "git", "key": "user"},
               "passwordSecret": {"name": "git", "key": "pass"}}),
        &dest,
    )
    .await
    .expect("clone with credentials");
    let config = read(&dest.join(".git/config"));
    assert!(!config.contains("tok3n"), "{config}");

    let e = clone(
        &pod,
        json!({"repo": server.url("main.git"), "disableSubmodules": true}),
        &pod.path("/anonymous"),
    )
    .await
    .expect_err("needs credentials");
    assert!(e.to_string().starts_with("failed to clone"), "{e}");
    assert!(!e.is_not_found());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_repository_clones_to_an_empty_repository() {
    let pod = TestPod::new().await;
    let fx = GitFixture::new();
    let server = GitHttpServer::start(fx.root.path(), None).await;
    let dest = pod.path("/clone");
    clone(&pod, json!({"repo": server.url("empty.git")}), &dest)
        .await
        .expect("clone of an empty repository");
    assert!(dest.join(".git").is_dir());
}

#[tokio::test(flavor = "multi_thread")]
async fn save_and_delete_are_refused_with_argos_errors() {
    let pod = TestPod::new().await;
    let loc: ArtifactLocation =
        serde_json::from_value(json!({"git": {"repo": "https://example.com/r.git"}})).expect("loc");
    let driver = storage::open(&loc, &Secrets::new(pod.roots()), &StorageConfig::default())
        .await
        .expect("open");
    let e = driver
        .put("", bytes::Bytes::new(), &Default::default())
        .await
        .expect_err("save");
    assert!(matches!(e, storage::Error::NotSupported { .. }));
    assert_eq!(e.to_string(), "git output artifacts unsupported");
    let e = driver.delete("").await.expect_err("delete");
    assert_eq!(e.to_string(), storage::DELETE_NOT_SUPPORTED);
}

/// `wait` refuses a git output through the driver layer, and says so in the termination log.
#[tokio::test(flavor = "multi_thread")]
async fn wait_reports_a_git_output_as_unsupported() {
    let pod = TestPod::new().await;
    let src = pod.path("/mainctrfs/work/out.txt");
    std::fs::create_dir_all(src.parent().expect("parent")).expect("mkdir");
    std::fs::write(&src, "x").expect("write");
    let template = json!({
        "name": "produce",
        "container": {"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        "outputs": {"artifacts": [{"name": "out", "path": "/work/out.txt",
            "git": {"repo": "https://example.com/r.git"}}]},
    });
    let out = pod.wait(&template, &[]).await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        pod.termination_log(),
        // Argo joins artifact failures as "<err1>; <err2>; " (docs/contract.md#outputs). A git
        // location has no key, so Argo looks for the archive location's, and there is none.
        "key unsupported: cannot get key for artifact location, because it is invalid; "
    );
}

/// A TCP server on 127.0.0.1 that accepts connections and never sends a byte.
async fn silent_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        // A clone opens a few connections; the task ends with the test's runtime.
        let mut held = Vec::new();
        while held.len() < 16 {
            let Ok((conn, _)) = listener.accept().await else {
                break;
            };
            held.push(conn);
        }
        std::future::pending::<()>().await;
    });
    addr
}

/// `init` with one git input from `repo`, killed (and the test failed) after `bound`.
async fn init_git(
    pod: &TestPod,
    repo: &str,
    env: &[(&str, &str)],
    bound: std::time::Duration,
) -> std::process::Output {
    let template = json!({"name": "consume", "inputs": {"artifacts": [
        {"name": "src", "path": "/src", "git": {"repo": repo}}]}})
    .to_string();
    let mut env = env.to_vec();
    env.push(("ARGO_TEMPLATE", &template));
    let mut args = vec!["init"];
    args.extend(LOG_OPTS);
    pod.argoexec_with(&args, &env, bound).await
}

/// gitoxide sets no timeout on `git://`: only the step's deadline can stop a clone from a
/// server that never answers, and it does, with exit 64 and a clear message.
#[tokio::test(flavor = "multi_thread")]
async fn a_clone_from_a_silent_git_server_stops_at_the_deadline() {
    let pod = TestPod::new().await;
    let addr = silent_server().await;
    let deadline = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let out = init_git(
        &pod,
        &format!("git://{addr}/r.git"),
        &[("ARGO_DEADLINE", &deadline)],
        std::time::Duration::from_secs(60),
    )
    .await;
    let message = failure(&pod, &out);
    assert!(
        message.contains("stopped by the step deadline")
            && message.contains(&format!("git://{addr}/r.git")),
        "{message}"
    );
}

/// Over HTTP the clone's requests get `ARGOEXEC_READ_TIMEOUT`: a server that accepts and
/// never answers fails the clone without a deadline. (Before, gitoxide's HTTP client waited
/// 30 s whatever the setting: the 20 s bound kills such a run.)
#[tokio::test(flavor = "multi_thread")]
async fn a_clone_from_a_silent_http_server_stops_at_the_read_timeout() {
    let pod = TestPod::new().await;
    let addr = silent_server().await;
    let repo = format!("http://{addr}/r.git");
    let out = init_git(
        &pod,
        &repo,
        &[("ARGOEXEC_READ_TIMEOUT", "1s")],
        std::time::Duration::from_secs(20),
    )
    .await;
    let message = failure(&pod, &out);
    assert!(message.contains(&repo), "{message}");
}
