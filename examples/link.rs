//! A cloud-like link on loopback for the benchmarks (the kernel here has no netem): a TCP
//! proxy that caps each connection's rate, caps the total, and delays the first byte of every
//! request and every response.
//!
//! `link <upstream host:port> [--per-conn-mibps 40] [--total-mibps 400] [--latency-ms 20]`
//! listens on 127.0.0.1 (any port), prints `listening on 127.0.0.1:<port>` and the limits once
//! ready, and forwards every connection to the upstream until it is stopped (SIGTERM).
//!
//! Each direction of a connection is its own pipe (a link is full duplex): the per-connection
//! cap applies to each direction, and the total cap to the sum over connections, per direction.
//! A turn of the conversation (the client starts a request, or the server starts its answer
//! after the client spoke) waits `latency` before its first byte, so a request and its answer
//! cost two one-way delays, as on a real path.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Bytes moved per pacing step: small enough that pacing is smooth at tens of MiB/s.
const CHUNK: usize = 64 << 10;
/// How far a rate limiter may lag behind now and then catch up (the burst it allows).
const BURST: Duration = Duration::from_millis(5);

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A rate limit by virtual time: each send books its share of the rate after the previous
/// one, and waits until its booking starts. Shared limiters serve their callers in booking
/// order.
struct Pace {
    bytes_per_sec: f64,
    next: Mutex<Instant>,
}

impl Pace {
    fn new(mib_per_sec: f64) -> Self {
        Self {
            bytes_per_sec: mib_per_sec * (1u64 << 20) as f64,
            next: Mutex::new(Instant::now()),
        }
    }

    /// When `bytes` may be sent under this limit.
    fn book(&self, bytes: usize) -> Instant {
        let now = Instant::now();
        let mut next = self.next.lock().expect("pace");
        let start = (*next).max(now.checked_sub(BURST).unwrap_or(now));
        *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec);
        start
    }
}

/// What each connection shares with the others.
struct Link {
    per_conn_mibps: f64,
    total: [Pace; 2],
    latency: Duration,
}

/// Which side spoke last on a connection (`NOBODY` before the first byte).
const NOBODY: u8 = 2;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let upstream = args.next().ok_or(
        "usage: link <upstream host:port> [--per-conn-mibps N] [--total-mibps N] [--latency-ms N]",
    )?;
    let (mut per_conn, mut total, mut latency_ms) = (40.0, 400.0, 20.0);
    while let Some(flag) = args.next() {
        let value: f64 = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .parse()?;
        match flag.as_str() {
            "--per-conn-mibps" => per_conn = value,
            "--total-mibps" => total = value,
            "--latency-ms" => latency_ms = value,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let link = Arc::new(Link {
        per_conn_mibps: per_conn,
        total: [Pace::new(total), Pace::new(total)],
        latency: Duration::from_secs_f64(latency_ms / 1000.0),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    println!(
        "link: {per_conn} MiB/s per connection, {total} MiB/s total (each direction), {latency_ms} ms before each request and each answer"
    );
    loop {
        let (client, _) = listener.accept().await?;
        let link = Arc::clone(&link);
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_rx, client_tx) = client.into_split();
            let (server_rx, server_tx) = server.into_split();
            let last_speaker = Arc::new(AtomicU8::new(NOBODY));
            let up = pipe(client_rx, server_tx, 0, &link, &last_speaker);
            let down = pipe(server_rx, client_tx, 1, &link, &last_speaker);
            let _ = tokio::join!(up, down);
        });
    }
}

/// Forwards one direction (`side` 0: client to server, 1: server to client) until its reader
/// closes, paced by this pipe's cap and the link's total, each turn delayed by the latency.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    side: u8,
    link: &Link,
    last_speaker: &AtomicU8,
) -> std::io::Result<()> {
    let own = Pace::new(link.per_conn_mibps);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        if last_speaker.swap(side, Ordering::AcqRel) != side {
            tokio::time::sleep(link.latency).await;
        }
        let at = own.book(n).max(link.total[usize::from(side)].book(n));
        tokio::time::sleep_until(at).await;
        to.write_all(&buf[..n]).await?;
    }
}
