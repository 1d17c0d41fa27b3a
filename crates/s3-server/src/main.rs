//! A loopback S3 server for the demo and the benchmarks: `s3-server <data-dir> [port]`.
//! Prints `listening on 127.0.0.1:<port>` once ready. Stop it with SIGTERM.

use argoexec_s3_server as s3_server;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let root = args
        .next()
        .ok_or_else(|| std::io::Error::other("usage: s3-server <data-dir> [port]"))?;
    let port: u16 = args.next().map(|p| p.parse().unwrap_or(0)).unwrap_or(0);
    std::fs::create_dir_all(&root)?;
    let (addr, task) = s3_server::spawn(std::path::Path::new(&root), port).await?;
    println!("listening on {addr}");
    let _ = task.await;
    Ok(())
}
