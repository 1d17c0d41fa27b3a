//! Git over smart HTTP on loopback: bare repositories made with the `git` program, served by
//! `git http-backend` behind a small CGI bridge (hyper), optionally requiring basic auth.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::io::AsyncWriteExt;

/// The `git` program the fixtures and the CGI bridge use: `ARGOEXEC_TEST_GIT` (set by
/// scripts/setup-test-tools.sh), else the first on the PATH.
pub fn git_program() -> PathBuf {
    if let Some(p) = std::env::var_os("ARGOEXEC_TEST_GIT").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("git"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("the `git` program is needed to build git test fixtures: run scripts/test.sh")
    })
}

/// Runs `git args` in `dir`, panicking with its output on failure; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(git_program())
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Bare repositories `main.git` (with a submodule), `sub.git` and `empty.git`.
pub struct GitFixture {
    pub root: tempfile::TempDir,
    /// `main`: first commit (tag `v1`), `a.txt` = "one".
    pub first: String,
    /// `main`: second commit, `a.txt` = "two", `dir/b.txt`, submodule `libs/sub`.
    pub second: String,
    /// Branch `feature`, off the first commit, adds `feature.txt`.
    pub feature: String,
    /// The commit of `sub.git` the second commit records.
    pub sub_commit: String,
}

impl GitFixture {
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("git root");
        let work = tempfile::tempdir().expect("git work");
        let w = work.path();

        let sub = w.join("sub");
        std::fs::create_dir_all(&sub).expect("sub");
        git(&sub, &["init", "-q", "-b", "main"]);
        std::fs::write(sub.join("lib.txt"), "library\n").expect("lib");
        git(&sub, &["add", "."]);
        git(&sub, &["commit", "-q", "-m", "lib"]);
        let sub_commit = git(&sub, &["rev-parse", "HEAD"]);
        git(
            root.path(),
            &[
                "clone",
                "-q",
                "--bare",
                sub.to_str().expect("utf8"),
                "sub.git",
            ],
        );

        let main = w.join("main");
        std::fs::create_dir_all(&main).expect("main");
        git(&main, &["init", "-q", "-b", "main"]);
        std::fs::write(main.join("a.txt"), "one\n").expect("a");
        git(&main, &["add", "."]);
        git(&main, &["commit", "-q", "-m", "first"]);
        git(&main, &["tag", "v1"]);
        let first = git(&main, &["rev-parse", "HEAD"]);

        git(&main, &["checkout", "-q", "-b", "feature"]);
        std::fs::write(main.join("feature.txt"), "feature\n").expect("feature");
        git(&main, &["add", "."]);
        git(&main, &["commit", "-q", "-m", "feature"]);
        let feature = git(&main, &["rev-parse", "HEAD"]);
        git(&main, &["checkout", "-q", "main"]);

        std::fs::write(main.join("a.txt"), "two\n").expect("a");
        std::fs::create_dir_all(main.join("dir")).expect("dir");
        std::fs::write(main.join("dir/b.txt"), "bee\n").expect("b");
        let sub_bare = root.path().join("sub.git");
        git(
            &main,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                sub_bare.to_str().expect("utf8"),
                "libs/sub",
            ],
        );
        // Relative to the superproject's URL, as real projects write it.
        git(
            &main,
            &[
                "config",
                "-f",
                ".gitmodules",
                "submodule.libs/sub.url",
                "../sub.git",
            ],
        );
        git(&main, &["add", "."]);
        git(&main, &["commit", "-q", "-m", "second"]);
        let second = git(&main, &["rev-parse", "HEAD"]);
        git(
            root.path(),
            &[
                "clone",
                "-q",
                "--bare",
                main.to_str().expect("utf8"),
                "main.git",
            ],
        );
        git(
            &root.path().join("main.git"),
            &["fetch", "-q", "origin", "feature:feature"],
        );

        git(root.path(), &["init", "-q", "--bare", "empty.git"]);
        for repo in ["main.git", "sub.git", "empty.git"] {
            git(
                &root.path().join(repo),
                &["config", "http.receivepack", "false"],
            );
        }
        Self {
            root,
            first,
            second,
            feature,
            sub_commit,
        }
    }
}

/// `git http-backend` served on 127.0.0.1; stops when dropped.
pub struct GitHttpServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Bridge {
    root: PathBuf,
    /// `Authorization` value required, if any.
    authorization: Option<String>,
}

impl GitHttpServer {
    /// Serves the repositories below `root`; with `basic`, requests need those credentials.
    pub async fn start(root: &Path, basic: Option<(&str, &str)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let bridge = Arc::new(Bridge {
            root: root.to_path_buf(),
            authorization: basic.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let bridge = Arc::clone(&bridge);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let bridge = Arc::clone(&bridge);
                        async move { Ok::<_, Infallible>(cgi(&bridge, req).await) }
                    });
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }
}

fn status(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = code;
    res
}

/// Runs `git http-backend` for one request (RFC 3875 CGI).
async fn cgi(bridge: &Bridge, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Some(want) = &bridge.authorization
        && header("authorization").as_ref() != Some(want)
    {
        let mut res = status(StatusCode::UNAUTHORIZED, "auth required");
        res.headers_mut().insert(
            "www-authenticate",
            "Basic realm=\"git\"".parse().expect("header"),
        );
        return res;
    }
    let mut env: BTreeMap<&str, String> = BTreeMap::new();
    env.insert("GIT_PROJECT_ROOT", bridge.root.display().to_string());
    env.insert("GIT_HTTP_EXPORT_ALL", "1".into());
    env.insert("REQUEST_METHOD", req.method().to_string());
    env.insert("PATH_INFO", req.uri().path().to_string());
    env.insert("QUERY_STRING", req.uri().query().unwrap_or_default().into());
    env.insert("CONTENT_TYPE", header("content-type").unwrap_or_default());
    env.insert("REMOTE_ADDR", "127.0.0.1".into());
    if let Some(v) = header("git-protocol") {
        env.insert("GIT_PROTOCOL", v);
    }
    if let Some(v) = header("content-encoding") {
        env.insert("HTTP_CONTENT_ENCODING", v);
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(StatusCode::BAD_REQUEST, "body"),
    };
    let mut child = tokio::process::Command::new(super::git_server::git_program())
        .arg("http-backend")
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("git http-backend starts");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let out =
        match tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
            .await
        {
            Ok(Ok(out)) => out.stdout,
            _ => return status(StatusCode::INTERNAL_SERVER_ERROR, "backend failed"),
        };
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, sep)) = split else {
        return status(StatusCode::INTERNAL_SERVER_ERROR, "no CGI headers");
    };
    let mut res = Response::new(Full::new(Bytes::copy_from_slice(&out[at + sep..])));
    for line in String::from_utf8_lossy(&out[..at]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().and_then(|c| c.parse().ok());
            *res.status_mut() = code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::OK);
        } else if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()),
            value.parse(),
        ) {
            res.headers_mut().insert(n, v);
        }
    }
    res
}
