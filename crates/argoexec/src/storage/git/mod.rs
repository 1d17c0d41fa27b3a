//! Git input artifacts: a clone, checked out, with its `.git`, on gitoxide (`gix`).
//!
//! Why gitoxide: init runs in our `FROM scratch` image, which has no `git` binary; `git2` would
//! bring libgit2 and OpenSSL. gitoxide is pure Rust and speaks HTTP(S) through the same reqwest
//! and rustls as the HTTP driver, plus `git://` and `file://`, from the static binary. With an
//! SSH key, `ssh://` and `user@host:path` URLs go through an SSH client in-process (the `ssh` module),
//! as Argo's go-git does: no `ssh` program is needed.
//!
//! Git is not a key-value store, so it is not a [`super::Driver`]: [`clone_into`] is the hook
//! the input loader calls. Saving is refused by [`super::input_only::InputOnly::GIT`].

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use gix::protocol::transport::client::blocking_io::Transport;
use gix::remote::Direction;
use gix::remote::fetch::Shallow;

use super::timeouts::Timeouts;
use super::{Error, ErrorKind, Result, Secrets, StorageConfig};
use crate::model::GitArtifact;

mod config;
mod error;
pub mod known_hosts;
mod ssh;

use config::Auth;
use error::failed;

/// Submodules are followed this deep, as go-git's `DefaultSubmoduleRecursionDepth`.
const SUBMODULE_DEPTH: usize = 10;

/// Clones the location into `dest` (which must not exist or be empty); returns the bytes
/// written to the work tree.
///
/// Over HTTP(S) and SSH every request is bounded by `settings`' timeouts (the HTTP driver's
/// defaults); every protocol is bounded by its deadline, which interrupts the clone and fails it
/// at once (a `git://` server that stops answering is stopped only by the deadline: gitoxide
/// sets no timeout on it). SSH host keys are checked against `settings.ssh_known_hosts` (the
/// files go-git reads).
pub async fn clone_into(
    loc: &GitArtifact,
    secrets: &Secrets,
    settings: &StorageConfig,
    dest: &Path,
) -> Result<u64> {
    let auth = config::auth(loc, secrets, settings.ssh_known_hosts.clone())?;
    if loc.single_branch && loc.branch.is_empty() {
        return Err(Error::config(
            "single branch mode without a branch specified",
        ));
    }
    let timeouts = settings.timeouts.over(Timeouts::HTTP);
    let left = settings.deadline.map(|d| {
        d.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    });
    let repo = loc.repo.clone();
    let interrupt = Arc::new(AtomicBool::new(false));
    let clone = {
        let (loc, dest) = (loc.clone(), dest.to_path_buf());
        let interrupt = Arc::clone(&interrupt);
        tokio::task::spawn_blocking(move || {
            Clone::new(&loc, auth, timeouts, interrupt).run(&dest, 0)
        })
    };
    let Some(left) = left else {
        return joined(clone.await);
    };
    match tokio::time::timeout(left, clone).await {
        Ok(outcome) => joined(outcome),
        Err(_) => {
            // gitoxide stops at its next check of the flag; a read blocked on a silent server
            // may never get there, so the clone fails now and its thread ends with the process.
            interrupt.store(true, Ordering::Relaxed);
            Err(Error::backend(
                "git",
                ErrorKind::Timeout,
                format!("failed to clone {repo:?}: stopped by the step deadline (ARGO_DEADLINE)"),
            ))
        }
    }
}

/// The outcome of the clone's blocking task.
fn joined(outcome: Result<Result<u64>, tokio::task::JoinError>) -> Result<u64> {
    outcome.map_err(|e| Error::io("cloning", std::io::Error::other(e.to_string())))?
}

/// One clone, and those of its submodules.
struct Clone<'a> {
    loc: &'a GitArtifact,
    auth: Arc<Auth>,
    timeouts: Timeouts,
    /// Set when the step's deadline passes: gitoxide checks it between its steps.
    interrupt: Arc<AtomicBool>,
}

impl<'a> Clone<'a> {
    fn new(
        loc: &'a GitArtifact,
        auth: Auth,
        timeouts: Timeouts,
        interrupt: Arc<AtomicBool>,
    ) -> Self {
        Self {
            loc,
            auth: Arc::new(auth),
            timeouts,
            interrupt,
        }
    }

    fn url(&self) -> Result<gix::Url> {
        let mut url = gix::url::parse(gix::bstr::BStr::new(self.loc.repo.as_bytes()))
            .map_err(|e| failed(format!("failed to clone {:?}", self.loc.repo), &e))?;
        if url.scheme == gix::url::Scheme::Ssh && url.user().is_none() {
            url.set_user(Some(config::ssh_user(&self.loc.repo)));
        }
        Ok(url)
    }

    fn depth(&self) -> Option<NonZeroU32> {
        self.loc
            .depth
            .and_then(|d| u32::try_from(d).ok())
            .and_then(NonZeroU32::new)
    }

    /// Applies credentials, timeouts and TLS settings to a connection; with an SSH key and an
    /// SSH URL, replaces gitoxide's transport (which would run the `ssh` program before its
    /// first request) with our in-process session.
    fn configure(
        auth: &Arc<Auth>,
        http: HttpSettings,
        conn: &mut gix::remote::Connection<'_, '_, '_, Box<dyn Transport + Send>>,
    ) -> std::result::Result<(), ssh::SshError> {
        if let Auth::Ssh(ssh_auth) = auth.as_ref()
            && let Some(url) = conn.remote().url(Direction::Fetch)
            && url.scheme == gix::url::Scheme::Ssh
        {
            *conn.transport_mut() = ssh::upload_pack(url, ssh_auth, http.timeouts)?;
        }
        if let Auth::Basic { username, password } = auth.as_ref() {
            let (user, pass) = (
                username
                    .as_ref()
                    .map(|s| s.expose().to_string())
                    .unwrap_or_default(),
                password
                    .as_ref()
                    .map(|s| s.expose().to_string())
                    .unwrap_or_default(),
            );
            conn.set_credentials(move |action| match action {
                gix::credentials::helper::Action::Get(ctx) => {
                    Ok(Some(gix::credentials::protocol::Outcome {
                        identity: gix::sec::identity::Account {
                            username: user.clone(),
                            password: pass.clone(),
                            oauth_refresh_token: None,
                        },
                        next: ctx.into(),
                    }))
                }
                _ => Ok(None),
            });
        }
        conn.set_transport_options(Box::new(http.options()));
        Ok(())
    }

    fn http_settings(&self) -> HttpSettings {
        HttpSettings {
            timeouts: self.timeouts,
            skip_tls: self.loc.insecure_skip_tls,
        }
    }

    fn run(&self, dest: &Path, level: usize) -> Result<u64> {
        let repo_name = &self.loc.repo;
        let clone_err = |e: &(dyn std::error::Error + 'static)| {
            failed(format!("failed to clone {repo_name:?}"), e)
        };
        let interrupt = self.interrupt.as_ref();
        let mut prepare = gix::clone::PrepareFetch::new(
            self.url()?,
            dest,
            gix::create::Kind::WithWorktree,
            gix::create::Options::default(),
            gix::open::Options::isolated(),
        )
        .map_err(|e| clone_err(&e))?;
        if let Some(depth) = self.depth() {
            prepare = prepare.with_shallow(Shallow::DepthAtRemote(depth));
        }
        if self.loc.single_branch {
            let branch = self.loc.branch.clone();
            let spec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
            prepare = prepare
                .with_ref_name(Some(branch.as_str()))
                .map_err(|e| clone_err(&e))?
                .configure_remote(move |mut remote| {
                    remote.replace_refspecs([spec.as_str()], Direction::Fetch)?;
                    Ok(remote)
                });
        }
        let auth = Arc::clone(&self.auth);
        let http = self.http_settings();
        prepare = prepare.configure_connection(move |conn| {
            Self::configure(&auth, http, conn).map_err(gix::Error::from_error)
        });
        let (mut checkout, _) = prepare
            .fetch_then_checkout(gix::progress::Discard, interrupt)
            .map_err(|e| clone_err(&e))?;

        if !self.loc.fetch.is_empty() {
            self.fetch(checkout.repo(), &self.loc.fetch, self.depth())?;
        }
        if !self.loc.revision.is_empty() {
            self.check_out_revision(checkout.repo())?;
        }
        let (repo, outcome) = checkout
            .main_worktree(gix::progress::Discard, interrupt)
            .map_err(|e| clone_err(&e))?;
        let mut bytes = outcome.bytes_written;
        if !self.loc.disable_submodules && level < SUBMODULE_DEPTH {
            bytes += self.update_submodules(&repo, level)?;
        }
        Ok(bytes)
    }

    /// Fetches `specs` from `origin` into the repository.
    fn fetch(
        &self,
        repo: &gix::Repository,
        specs: &[String],
        depth: Option<NonZeroU32>,
    ) -> Result<()> {
        let fetch_err =
            |e: &(dyn std::error::Error + 'static)| failed(format!("failed to fetch {specs:?}"), e);
        let mut remote = repo.find_remote("origin").map_err(|e| fetch_err(&e))?;
        remote
            .replace_refspecs(specs.iter().map(String::as_str), Direction::Fetch)
            .map_err(|e| fetch_err(&e))?;
        let mut conn = remote
            .connect(Direction::Fetch)
            .map_err(|e| fetch_err(&e))?;
        Self::configure(&self.auth, self.http_settings(), &mut conn).map_err(|e| fetch_err(&e))?;
        let mut prepared = conn
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| fetch_err(&e))?;
        if let Some(depth) = depth {
            prepared = prepared.with_shallow(Shallow::DepthAtRemote(depth));
        }
        prepared
            .receive(gix::progress::Discard, &self.interrupt)
            .map_err(|e| fetch_err(&e))?;
        Ok(())
    }

    /// Argo's revision checkout: fetch the branches, resolve the revision, detach HEAD at it.
    fn check_out_revision(&self, repo: &gix::Repository) -> Result<()> {
        let spec = if self.loc.single_branch {
            let b = &self.loc.branch;
            format!("refs/heads/{b}:refs/heads/{b}")
        } else {
            "refs/heads/*:refs/heads/*".to_string()
        };
        self.fetch(repo, &[spec], None)?;
        let revision = self.loc.revision.as_str();
        let id = repo
            .rev_parse_single(revision)
            .and_then(|id| Ok(id.object()?.peel_to_commit()?.id))
            .map_err(|e| failed("failed to get resolve revision", &e))?;
        use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
        repo.edit_reference(RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: format!("checkout: moving to {revision}").into(),
                },
                expected: PreviousValue::Any,
                new: gix::refs::Target::Object(id),
            },
            name: "HEAD"
                .try_into()
                .map_err(|e| failed("invalid reference", &e))?,
            deref: false,
        })
        .map_err(|e| failed(format!("failed to checkout {id}"), &e))?;
        Ok(())
    }

    /// Clones each submodule at its path and checks out the commit the superproject records.
    fn update_submodules(&self, repo: &gix::Repository, level: usize) -> Result<u64> {
        let sub_err =
            |e: &(dyn std::error::Error + 'static)| failed("failed to update submodules", e);
        let Some(workdir) = repo.workdir() else {
            return Ok(0);
        };
        let Some(submodules) = repo.submodules().map_err(|e| sub_err(&e))? else {
            return Ok(0);
        };
        let parent_url = self.url()?;
        let mut bytes = 0;
        for sm in submodules {
            let Some(commit) = sm.index_id().map_err(|e| sub_err(&e))? else {
                continue;
            };
            let rel = sm.path().map_err(|e| sub_err(&e))?;
            let rel = gix::path::from_bstr(&rel).map_err(|e| sub_err(&e))?;
            let path = workdir.join(rel);
            let url = resolve_relative(&parent_url, sm.url().map_err(|e| sub_err(&e))?);
            let _ = std::fs::remove_dir(&path);
            let child = GitArtifact {
                repo: url.to_bstring().to_string(),
                revision: commit.to_string(),
                insecure_skip_tls: self.loc.insecure_skip_tls,
                ..Default::default()
            };
            let clone = Clone {
                loc: &child,
                auth: Arc::clone(&self.auth),
                timeouts: self.timeouts,
                interrupt: Arc::clone(&self.interrupt),
            };
            bytes += clone.run(&path, level + 1)?;
        }
        Ok(bytes)
    }
}

/// A submodule URL relative to its superproject (`../other.git`) made absolute.
fn resolve_relative(parent: &gix::Url, url: gix::Url) -> gix::Url {
    let raw = url.to_bstring().to_string();
    if !(raw.starts_with("./") || raw.starts_with("../")) {
        return url;
    }
    let mut base = parent.path.to_string();
    let mut rel = raw.as_str();
    loop {
        base = base.trim_end_matches('/').to_string();
        if let Some(rest) = rel.strip_prefix("./") {
            rel = rest;
        } else if let Some(rest) = rel.strip_prefix("../") {
            base = base
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .unwrap_or_default();
            rel = rest;
        } else {
            break;
        }
    }
    let mut out = parent.clone();
    out.path = format!("{base}/{rel}").into();
    out
}

/// How the HTTP(S) transport's client is built.
#[derive(Debug, Clone, Copy)]
struct HttpSettings {
    timeouts: Timeouts,
    /// `insecureSkipTLS`: accept any server certificate.
    skip_tls: bool,
}

impl HttpSettings {
    /// Transport options with the connect timeout, and the read timeout as the blocking
    /// client's timeout (it bounds the wait for the answer, then each read of its body).
    fn options(self) -> gix::protocol::transport::client::blocking_io::http::Options {
        use gix::protocol::transport::client::blocking_io::http;
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(
                move |builder: reqwest::blocking::ClientBuilder| {
                    Ok(builder
                        .connect_timeout(self.timeouts.connect)
                        .timeout(self.timeouts.read)
                        .danger_accept_invalid_certs(self.skip_tls))
                },
            )),
            configure_request: None,
        };
        http::Options {
            ssl_verify: !self.skip_tls,
            connect_timeout: Some(self.timeouts.connect),
            backend: Some(Arc::new(std::sync::Mutex::new(backend))),
            ..Default::default()
        }
    }
}
