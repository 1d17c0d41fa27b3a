//! A loopback S3 server for the demo and the benchmarks:
//! `s3-server <data-dir> [port] [--part-checksums]`. Prints `listening on 127.0.0.1:<port>`
//! once ready. Stop it with SIGTERM. `--part-checksums` checks and echoes each part's CRC32C
//! as S3 does ([`s3_server::Checks`]).

use argoexec_s3_server as s3_server;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let checks = s3_server::Checks {
        part_crc32c: args.iter().any(|a| a == "--part-checksums"),
    };
    let mut positional = args.iter().filter(|a| !a.starts_with("--"));
    let root = positional.next().ok_or_else(|| {
        std::io::Error::other("usage: s3-server <data-dir> [port] [--part-checksums]")
    })?;
    let port: u16 = positional
        .next()
        .map(|p| p.parse().unwrap_or(0))
        .unwrap_or(0);
    std::fs::create_dir_all(root)?;
    let (addr, task) = s3_server::spawn_checking(std::path::Path::new(root), port, checks).await?;
    println!("listening on {addr}");
    let _ = task.await;
    Ok(())
}
