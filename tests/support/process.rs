//! Protocol servers run as child processes on 127.0.0.1: found where
//! `scripts/setup-test-tools.sh` installed them, started on a free port, waited for (bounded),
//! and killed by PID when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The path of a tool installed by `scripts/setup-test-tools.sh`: from the environment (as
/// `scripts/test.sh` exports it), else from `.work/tools/env.sh`. A missing tool fails the
/// test: it never silently passes.
pub fn tool(var: &str) -> PathBuf {
    let from_env = std::env::var(var).ok().filter(|v| !v.is_empty());
    let from_file = || {
        let env_sh = Path::new(env!("CARGO_MANIFEST_DIR")).join(".work/tools/env.sh");
        let text = std::fs::read_to_string(env_sh).ok()?;
        let prefix = format!("export {var}=");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    };
    let path = from_env.or_else(from_file).map(PathBuf::from);
    match path {
        Some(p) if p.exists() => p,
        _ => {
            panic!("{var} is not installed: run scripts/setup-test-tools.sh (scripts/test.sh does)")
        }
    }
}

/// A free port on 127.0.0.1 (the listener is closed again, so a server can take it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A loopback address that refuses connections. A socket stays bound to it, not listening,
/// for the life of the test process, so no server the tests start meanwhile can take the port;
/// a port bound and closed again can be taken, which once made an "unreachable" endpoint answer.
pub fn refused_addr() -> SocketAddr {
    static HELD: OnceLock<(socket2::Socket, SocketAddr)> = OnceLock::new();
    HELD.get_or_init(|| {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        let any_port: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        socket.bind(&any_port.into()).expect("a loopback port");
        let addr = socket.local_addr().ok().and_then(|a| a.as_socket());
        (socket, addr.expect("the bound address"))
    })
    .1
}

/// A server process; killed by its PID when dropped.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `program` with `args(port)` on a free port and waits until `GET ready_path`
    /// answers with any HTTP response, for at most 60 s. A server that exits at once (another
    /// process took the port first) is started again on another port, three times at most; one
    /// that never answers fails the test with its log.
    pub async fn start(
        name: &str,
        program: &Path,
        args: impl Fn(u16) -> Vec<String>,
        ready_path: &str,
    ) -> Self {
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("server dir");
            let log = dir.path().join(format!("{name}.log"));
            let port = free_port();
            let out = std::fs::File::create(&log).expect("server log");
            let err = out.try_clone().expect("server log");
            let child = Command::new(program)
                .args(args(port))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
            let mut server = Self {
                child,
                port,
                log,
                _dir: dir,
            };
            match server.wait_ready(name, ready_path).await {
                Ready::Answering => return server,
                Ready::Exited(log) => last_log = log,
            }
        }
        panic!("{name} exited at start three times:\n{last_log}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text[text.floor_char_boundary(start)..].to_string()
    }

    async fn wait_ready(&mut self, name: &str, path: &str) -> Ready {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let url = format!("{}{path}", self.url());
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ready::Exited(format!("exit {status}\n{}", self.log_tail()));
            }
            // Answering, and ours: not another process that took the port first.
            if client.get(&url).send().await.is_ok() && listens_on(self.child.id(), self.port) {
                return Ready::Answering;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{name} did not answer on {url} within 60 s:\n{}",
            self.log_tail()
        );
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (or on every
/// address): the LISTEN entries of `/proc/net/tcp` for the port, matched by inode against the
/// process's open files.
fn listens_on(pid: u32, port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        // local_address, rem_address, st (0A: LISTEN), ..., inode (the tenth column).
        .filter(|f| f.len() > 9 && local.iter().any(|l| l == f[1]) && f[3] == "0A")
        .map(|f| format!("socket:[{}]", f[9]))
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
}

/// How a started server turned out.
enum Ready {
    Answering,
    /// It exited; its log.
    Exited(String),
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // `kill` sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
