//! Git over SSH in-process, as Argo's go-git speaks it: our image has no `ssh` program.
//!
//! russh opens the session (the private key from `sshPrivateKeySecret`, the host key checked
//! against known_hosts unless `insecureIgnoreHostKey`), runs `git-upload-pack '<path>'` on an
//! exec channel, and gitoxide talks to the channel as it would to the `ssh` program's
//! stdin/stdout ([`ConnectMode::Process`]). Connecting and the handshake are bounded by the
//! connect timeout, every later read and write by the read timeout.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use gix::protocol::transport::Protocol;
use gix::protocol::transport::client::blocking_io::Transport;
use gix::protocol::transport::client::git::{ConnectMode, blocking_io::Connection};
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::runtime;

use super::known_hosts::{HostKeyError, KnownHosts, KnownHostsFiles};
use crate::storage::timeouts::Timeouts;

/// Why a git SSH session could not be opened; worded as go-git words them.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("ssh: no host in {0:?}")]
    NoHost(String),
    #[error("dial tcp {address}: {source}")]
    Dial {
        address: String,
        source: std::io::Error,
    },
    #[error("dial tcp {address}: i/o timeout")]
    DialTimeout { address: String },
    /// The server's host key is not the one known for `host`.
    #[error("ssh: handshake failed: {source} (host {host})")]
    HostKey { host: String, source: HostKeyError },
    #[error("ssh: handshake failed: {0}")]
    Handshake(russh::Error),
    #[error(
        "ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain"
    )]
    Unauthenticated,
    #[error("ssh: {what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("ssh: {what}: {source}")]
    Session {
        what: &'static str,
        source: russh::Error,
    },
}

/// The check of the server's host key (`insecureIgnoreHostKey` or known_hosts).
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    AcceptAny,
    KnownHosts(KnownHostsFiles),
}

/// A private key and how to trust servers: what every SSH connection of a clone uses.
pub struct SshAuth {
    pub key: Arc<PrivateKey>,
    pub host_keys: HostKeyPolicy,
}

/// Names the key's type, never its secret part.
impl std::fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshAuth")
            .field("key", &self.key.algorithm())
            .field("host_keys", &self.host_keys)
            .finish()
    }
}

/// russh's callbacks: the host-key check.
struct Checker {
    host: String,
    port: u16,
    known: Option<KnownHosts>,
}

/// A handshake failure: russh's, or our refusal of the host key.
#[derive(Debug)]
enum HandshakeError {
    Ssh(russh::Error),
    HostKey(HostKeyError),
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        Self::Ssh(e)
    }
}

impl client::Handler for Checker {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let Some(known) = &self.known else {
            return Ok(true);
        };
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(cert) => &cert.public_key().clone().into(),
        };
        known
            .check(&self.host, self.port, key)
            .map(|()| true)
            .map_err(HandshakeError::HostKey)
    }
}

/// Opens `git-upload-pack` for `url` over SSH and returns gitoxide's transport over it.
///
/// Runs on a blocking thread of the tokio runtime, as the clone does.
pub fn upload_pack(
    url: &gix::Url,
    auth: &SshAuth,
    timeouts: Timeouts,
) -> Result<Box<dyn Transport + Send>, SshError> {
    let rt = runtime::Handle::current();
    let host = url
        .host()
        .ok_or_else(|| SshError::NoHost(url.to_bstring().to_string()))?
        .to_string();
    let port = url.port_or_default().unwrap_or(22);
    let user = url.user().unwrap_or("git").to_string();
    let path = gix::url::expand_path::for_shell(url.path.clone());
    let command = format!("git-upload-pack {}", gix::quote::single(path.as_ref()));
    let (session, channel) = rt.block_on(open(&host, port, &user, &command, auth, timeouts))?;
    let (read, write) = tokio::io::split(channel.into_stream());
    let bound = Bound {
        rt,
        timeout: timeouts.read,
    };
    let reader = SessionReader {
        read: Blocking {
            half: read,
            bound: bound.clone(),
        },
        _session: session,
    };
    Ok(Box::new(Connection::new(
        reader,
        Blocking { half: write, bound },
        Protocol::V2,
        path,
        None::<(String, Option<u16>)>,
        ConnectMode::Process,
        false,
    )))
}

/// Connects, checks the host key, authenticates and starts `command` on a session channel.
async fn open(
    host: &str,
    port: u16,
    user: &str,
    command: &str,
    auth: &SshAuth,
    timeouts: Timeouts,
) -> Result<(Handle<Checker>, russh::Channel<client::Msg>), SshError> {
    let known = match &auth.host_keys {
        HostKeyPolicy::AcceptAny => None,
        HostKeyPolicy::KnownHosts(files) => {
            Some(files.load().map_err(|source| SshError::HostKey {
                host: host.to_string(),
                source,
            })?)
        }
    };
    let mut preferred = russh::Preferred::default();
    if let Some(known) = &known {
        preferred.key = known.algorithms_for(host, port, &preferred.key).into();
    }
    let config = Arc::new(client::Config {
        preferred,
        ..Default::default()
    });
    let checker = Checker {
        host: host.to_string(),
        port,
        known,
    };
    let address = format!("{host}:{port}");
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|source| SshError::Dial {
                address: address.clone(),
                source,
            })?;
        client::connect_stream(config, tcp, checker)
            .await
            .map_err(|e| match e {
                HandshakeError::Ssh(e) => SshError::Handshake(e),
                HandshakeError::HostKey(source) => SshError::HostKey {
                    host: host.to_string(),
                    source,
                },
            })
    };
    let mut session = tokio::time::timeout(timeouts.connect, handshake)
        .await
        .map_err(|_| SshError::DialTimeout {
            address: address.clone(),
        })??;
    let requests = async {
        let session_err = |what| move |source| SshError::Session { what, source };
        let hash = session
            .best_supported_rsa_hash()
            .await
            .map_err(session_err("signature algorithms"))?
            .flatten();
        let key = PrivateKeyWithHashAlg::new(Arc::clone(&auth.key), hash);
        let outcome = session
            .authenticate_publickey(user, key)
            .await
            .map_err(SshError::Handshake)?;
        if !outcome.success() {
            return Err(SshError::Unauthenticated);
        }
        let channel = session
            .channel_open_session()
            .await
            .map_err(session_err("opening a session channel"))?;
        // Asks for protocol v2 as git does; a server that does not accept the variable
        // answers in v0, which gitoxide reads as well.
        channel
            .set_env(false, "GIT_PROTOCOL", "version=2")
            .await
            .map_err(session_err("setting GIT_PROTOCOL"))?;
        channel
            .exec(false, command)
            .await
            .map_err(session_err("starting git-upload-pack"))?;
        Ok(channel)
    };
    let channel = tokio::time::timeout(timeouts.read, requests)
        .await
        .map_err(|_| SshError::Timeout {
            what: "authentication",
            after: timeouts.read,
        })??;
    Ok((session, channel))
}

/// Runs the channel's async I/O on the runtime from gitoxide's blocking thread, bounded.
#[derive(Clone)]
struct Bound {
    rt: runtime::Handle,
    timeout: Duration,
}

impl Bound {
    fn run<R>(
        &self,
        what: &str,
        io: impl Future<Output = std::io::Result<R>>,
    ) -> std::io::Result<R> {
        self.rt
            .block_on(tokio::time::timeout(self.timeout, io))
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("ssh: {what} timed out after {:?}", self.timeout),
                )
            })?
    }
}

/// One half of the channel as blocking I/O for gitoxide.
struct Blocking<T> {
    half: T,
    bound: Bound,
}

impl<T: AsyncRead + Unpin> Read for Blocking<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.bound.run("read", self.half.read(buf))
    }
}

impl<T: AsyncWrite + Unpin> Write for Blocking<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bound.run("write", self.half.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.bound.run("write", self.half.flush())
    }
}

type ChannelStream = russh::ChannelStream<client::Msg>;

/// The reading half, which also keeps the session open as long as gitoxide reads.
struct SessionReader {
    read: Blocking<ReadHalf<ChannelStream>>,
    _session: Handle<Checker>,
}

impl Read for SessionReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read.read(buf)
    }
}
