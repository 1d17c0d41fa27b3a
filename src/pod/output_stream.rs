//! Outputs in main's own filesystem, streamed from the emissary to `wait` instead of staged.
//!
//! `wait` offers a Unix socket on the `/var/run/argo` emptyDir (`outputs.sock`, 0666) and a
//! per-pod token beside it (`outputs.token`, 0444, random, written before the socket exists).
//! After its child exits, main's emissary sends each output artifact of main's own filesystem
//! over a connection of its own, one after another:
//!
//! ```text
//! emissary -> wait   "ARGOOUT1", token (64 hex digits), name length (u16 BE), artifact name
//! wait -> emissary   'A' accepted | 'R' refused
//! emissary -> wait   the uncompressed tar stream in frames: length (u32 BE) + bytes; 0 ends it
//! wait -> emissary   'S' stored (the upload completed) | 'F' failed
//! ```
//!
//! `wait` encodes the tar stream with the artifact's own archive settings as it arrives and
//! uploads it through its budgeted engine. Anything but 'S' (no socket, no token, refused, a
//! broken connection, a failed upload) makes the emissary stage that output as before, and
//! `wait` saves the staged file: an output is never lost, and an upload whose stream was cut
//! short is never completed (the frames say where the stream ends).
//!
//! Who may send: the socket is reachable only by the pod's containers (it lives on the pod's
//! emptyDir); the token proves the sender reads this pod's `/var/run/argo` as it is now (a
//! socket reached another way, or a wait restarted since, is refused); a stream may only name
//! an output the template declares in main's own filesystem, and each at most once, so nothing
//! can add an artifact or replace one already stored.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::future::Future;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use subtle::ConstantTimeEq;
use tokio::net::UnixListener;

use super::write_atomic;
use argoexec::archive::tarball::write_tree;
use argoexec::contract::Roots;
use argoexec::model::{Artifact, Template};
use argoexec::transfer::save::{Saved, Saver};

const MAGIC: &[u8; 8] = b"ARGOOUT1";
const ACCEPTED: u8 = b'A';
const REFUSED: u8 = b'R';
const STORED: u8 = b'S';
const FAILED: u8 = b'F';
/// The token's length on the wire: 32 random bytes as hex.
const TOKEN_LEN: usize = 64;
/// A frame the emissary sends (the gzip block size): small enough to bound wait's reads.
const FRAME_SIZE: usize = 256 << 10;
/// The largest frame wait accepts.
const MAX_FRAME: usize = 1 << 20;
/// How long the header may take to arrive once connected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long either side waits for the other to move a byte (a store that is slow or retrying
/// holds the stream back): past it the emissary stages the output, wait fails the stream.
const STALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Whether an output is one the emissary hands over (main's own filesystem, not a volume wait
/// reads directly).
pub fn in_main_filesystem(template: &Template, art: &Artifact) -> bool {
    !art.path.is_empty()
        && !template.is_output_on_shared_mount(&art.path, crate::pod::initless_pod_from_env())
}

/// Why an output was not streamed (the emissary then stages it).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// No wait offers a socket (an older wait, or one that is gone).
    #[error("no output socket is offered: {0}")]
    NotOffered(#[source] io::Error),
    #[error("wait refused the stream")]
    Refused,
    #[error("wait could not store the stream")]
    NotStored,
    #[error("the stream broke: {0}")]
    Broken(#[source] io::Error),
}

/// Emissary side: sends the output at `src` (file or directory) as the artifact `name`.
/// `Ok` only once wait said the upload completed.
pub fn send_output(roots: &Roots, name: &str, src: &Path) -> Result<(), StreamError> {
    let token = fs::read_to_string(roots.output_token()).map_err(StreamError::NotOffered)?;
    let stream = UnixStream::connect(roots.output_socket()).map_err(StreamError::NotOffered)?;
    let broken = StreamError::Broken;
    stream
        .set_read_timeout(Some(STALL_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(STALL_TIMEOUT)))
        .map_err(broken)?;
    let name_len = u16::try_from(name.len())
        .map_err(|_| broken(io::Error::other("artifact name too long")))?;
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(token.trim().as_bytes());
    header.extend_from_slice(&name_len.to_be_bytes());
    header.extend_from_slice(name.as_bytes());
    (&stream).write_all(&header).map_err(broken)?;
    if read_reply(&stream).map_err(broken)? != ACCEPTED {
        return Err(StreamError::Refused);
    }
    let (frames, _) = write_tree(src, FrameWriter::new(&stream)).map_err(broken)?;
    frames.finish().map_err(broken)?;
    match read_reply(&stream).map_err(broken)? {
        STORED => Ok(()),
        _ => Err(StreamError::NotStored),
    }
}

fn read_reply(mut stream: &UnixStream) -> io::Result<u8> {
    let mut reply = [0u8; 1];
    stream.read_exact(&mut reply)?;
    Ok(reply[0])
}

/// Cuts what is written into frames of [`FRAME_SIZE`]; [`FrameWriter::finish`] sends the rest
/// and the end frame.
struct FrameWriter<'a> {
    stream: &'a UnixStream,
    buf: Vec<u8>,
}

impl<'a> FrameWriter<'a> {
    fn new(stream: &'a UnixStream) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(FRAME_SIZE),
        }
    }

    fn send_frame(&mut self) -> io::Result<()> {
        let len = u32::try_from(self.buf.len()).map_err(io::Error::other)?;
        let mut out = self.stream;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send_frame()?;
        }
        self.send_frame()
    }
}

impl Write for FrameWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(FRAME_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == FRAME_SIZE {
            self.send_frame()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Wait side: the frames' payload; a connection that ends before the end frame is an error.
#[derive(Debug)]
struct FrameReader {
    stream: UnixStream,
    left_in_frame: usize,
    ended: bool,
}

impl Read for FrameReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended || buf.is_empty() {
            return Ok(0);
        }
        if self.left_in_frame == 0 {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).map_err(cut_short)?;
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_FRAME {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("output stream frame of {len} bytes (at most {MAX_FRAME})"),
                ));
            }
            if len == 0 {
                self.ended = true;
                return Ok(0);
            }
            self.left_in_frame = len;
        }
        let want = buf.len().min(self.left_in_frame);
        let n = self.stream.read(&mut buf[..want])?;
        if n == 0 {
            return Err(cut_short(io::ErrorKind::UnexpectedEof.into()));
        }
        self.left_in_frame -= n;
        Ok(n)
    }
}

fn cut_short(e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("the emissary's output stream ended before its end frame: {e}"),
    )
}

/// Wait side: the socket and what a stream must present to be accepted.
#[derive(Debug)]
pub struct OutputServer {
    listener: UnixListener,
    gate: Gate,
}

#[derive(Debug)]
struct Gate {
    socket: PathBuf,
    token_file: PathBuf,
    token: String,
    /// Outputs a stream was accepted for: each at most once.
    claimed: Mutex<HashSet<String>>,
}

impl OutputServer {
    /// Offers the socket when the template has an output in main's own filesystem; `None`
    /// (with a warning when it failed) means the emissary stages everything, as before.
    pub fn offer(roots: &Roots, template: &Template) -> Option<Self> {
        let wanted = template
            .outputs
            .artifacts
            .iter()
            .any(|a| in_main_filesystem(template, a));
        if !wanted {
            return None;
        }
        match Self::bind(roots) {
            Ok(server) => Some(server),
            Err(e) => {
                tracing::warn!(error = %e, "cannot offer the output socket: main's outputs will be staged");
                None
            }
        }
    }

    fn bind(roots: &Roots) -> io::Result<Self> {
        let mut secret = [0u8; 32];
        // AWS-LC's generator, the one TLS uses (rustls is a dependency already).
        rustls::crypto::aws_lc_rs::default_provider()
            .secure_random
            .fill(&mut secret)
            .map_err(|_| io::Error::other("no random bytes for the output socket's token"))?;
        let token = hex::encode(secret);
        let (socket, token_file) = (roots.output_socket(), roots.output_token());
        // What an earlier wait of this pod left behind.
        remove_if_present(&socket)?;
        // Readable by main whatever its uid; the token exists before the socket does.
        write_atomic(&token_file, token.as_bytes(), 0o444)?;
        // Bound under a temporary name and renamed once it is 0666: main (any uid) never
        // finds the socket with the umask's mode.
        let mut binding = socket.clone().into_os_string();
        binding.push(".tmp");
        let binding = std::path::PathBuf::from(binding);
        remove_if_present(&binding)?;
        let listener = UnixListener::bind(&binding)?;
        fs::set_permissions(&binding, fs::Permissions::from_mode(0o666))?;
        fs::rename(&binding, &socket)?;
        tracing::info!(socket = %socket.display(), "offering the output socket");
        Ok(Self {
            listener,
            gate: Gate {
                socket,
                token_file,
                token,
                claimed: Mutex::default(),
            },
        })
    }

    /// Takes output streams until `main_done` completes, then withdraws the socket and
    /// finishes the streams under way. Returns `main_done`'s output and the outputs saved
    /// from streams, by artifact name.
    pub async fn serve_until<F: Future>(
        self,
        saver: &Saver<'_>,
        main_done: F,
    ) -> (F::Output, HashMap<String, Saved>) {
        let Self { listener, gate } = self;
        let mut receiving = FuturesUnordered::new();
        let mut saved = HashMap::new();
        let mut main_done = std::pin::pin!(main_done);
        let done = loop {
            tokio::select! {
                done = &mut main_done => break done,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => receiving.push(gate.receive(stream, saver)),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot accept an output stream");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(received) = receiving.next(), if !receiving.is_empty() => saved.extend(received),
            }
        };
        drop(listener);
        gate.withdraw();
        while let Some(received) = receiving.next().await {
            saved.extend(received);
        }
        (done, saved)
    }
}

impl Gate {
    /// One connection: checks its header, saves its stream, tells the emissary how it went.
    async fn receive(
        &self,
        stream: tokio::net::UnixStream,
        saver: &Saver<'_>,
    ) -> Option<(String, Saved)> {
        let stream = match blocking(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an output stream");
                return None;
            }
        };
        let (stream, header) = tokio::task::spawn_blocking(move || {
            let header = read_header(&stream);
            (stream, header)
        })
        .await
        .ok()?;
        let art = match header.and_then(|(token, name)| self.admit(&token, &name, saver.template)) {
            Ok(art) => art,
            Err(reason) => {
                tracing::warn!(reason, "refused an output stream");
                let _ = (&stream).write_all(&[REFUSED]);
                return None;
            }
        };
        let body = stream
            .try_clone()
            .and_then(|s| s.set_read_timeout(Some(STALL_TIMEOUT)).map(|()| s))
            .and_then(|s| (&stream).write_all(&[ACCEPTED]).map(|()| s));
        let body = match body {
            Ok(s) => FrameReader {
                stream: s,
                left_in_frame: 0,
                ended: false,
            },
            Err(e) => {
                tracing::warn!(artifact = %art.name, error = %e, "the output stream broke at its start");
                return None;
            }
        };
        tracing::info!(artifact = %art.name, "receiving an output from the emissary");
        match saver.save_streamed(&art, Box::new(body)).await {
            Ok(saved) => {
                if let Err(e) = (&stream).write_all(&[STORED]) {
                    tracing::warn!(artifact = %art.name, error = %e, "stored a streamed output, but cannot tell the emissary");
                }
                Some((art.name, saved))
            }
            Err(e) => {
                tracing::warn!(artifact = %art.name, error = %e, "a streamed output failed: the emissary stages it instead");
                let _ = (&stream).write_all(&[FAILED]);
                None
            }
        }
    }

    /// The declared output a header names, if its token is this pod's and no stream claimed
    /// the output before.
    fn admit(&self, token: &[u8], name: &str, template: &Template) -> Result<Artifact, String> {
        if !bool::from(token.ct_eq(self.token.as_bytes())) {
            return Err(format!("wrong token for output {name:?}"));
        }
        let art = template
            .outputs
            .artifacts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| format!("{name:?} is not an output artifact of this template"))?;
        if !in_main_filesystem(template, art) {
            return Err(format!("output {name:?} is not in main's own filesystem"));
        }
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        if !claimed.insert(name.to_string()) {
            return Err(format!("output {name:?} was streamed already"));
        }
        Ok(art.clone())
    }

    /// No new emissary connects once main is done.
    fn withdraw(&self) {
        for file in [&self.socket, &self.token_file] {
            if let Err(e) = fs::remove_file(file)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %file.display(), error = %e, "cannot remove");
            }
        }
    }
}

/// A std stream in blocking mode: the archive pipelines read it on blocking threads.
fn blocking(stream: tokio::net::UnixStream) -> io::Result<UnixStream> {
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(HEADER_TIMEOUT))?;
    stream.set_write_timeout(Some(STALL_TIMEOUT))?;
    Ok(stream)
}

/// The token and artifact name a connection opens with.
fn read_header(mut stream: &UnixStream) -> Result<(Vec<u8>, String), String> {
    let fail = |e: io::Error| format!("unreadable output stream header: {e}");
    let mut magic = [0u8; MAGIC.len()];
    stream.read_exact(&mut magic).map_err(fail)?;
    if &magic != MAGIC {
        return Err("not an output stream".to_string());
    }
    let mut token = vec![0u8; TOKEN_LEN];
    stream.read_exact(&mut token).map_err(fail)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).map_err(fail)?;
    let mut name = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut name).map_err(fail)?;
    let name = String::from_utf8(name).map_err(|_| "artifact name is not UTF-8".to_string())?;
    Ok((token, name))
}

/// Removes `path`; one that is already gone is fine.
fn remove_if_present(path: &std::path::Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
