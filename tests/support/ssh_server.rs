//! OpenSSH's `sshd` on loopback, serving the git fixtures to the SSH clients of the tests.
//!
//! Each server has its own configuration, host key and `authorized_keys` in a temporary
//! directory, listens on one loopback address, and is killed by its PID when dropped. Keys are
//! made with `ssh-keygen`. The `sshd` is `ARGOEXEC_TEST_SSHD` (set by
//! scripts/setup-test-tools.sh), else `/usr/sbin/sshd` (Debian's openssh-server).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn sshd_program() -> PathBuf {
    std::env::var_os("ARGOEXEC_TEST_SSHD")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/sshd"))
}

/// A key pair made by `ssh-keygen` in `dir`: `(private key file text, public key line)`.
/// `kind` is `ed25519` (OpenSSH format) or `rsa` (PEM, PKCS#1).
pub fn keygen(dir: &Path, name: &str, kind: &str) -> (String, String) {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-C", name, "-t", kind, "-f"])
        .arg(&path);
    if kind == "rsa" {
        cmd.args(["-b", "2048", "-m", "PEM"]);
    }
    let out = cmd
        .output()
        .expect("ssh-keygen (openssh-client) is needed: run scripts/test.sh");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |p: &Path| std::fs::read_to_string(p).expect("key file");
    (
        read(&path),
        read(&path.with_extension("pub")).trim().to_string(),
    )
}

/// A free loopback address on `port` (0: any port), on 127.0.0.1 or, for port 22 that the
/// scp-like URLs (`user@host:path`) imply, on another address of 127.0.0.0/8. It is free when
/// chosen: another process may take it before sshd binds it (see [`SshServer::start`]).
fn free_address(port: u16) -> SocketAddr {
    let pid = std::process::id();
    for n in 0..64u32 {
        let ip = if port == 0 {
            std::net::Ipv4Addr::LOCALHOST
        } else {
            let seed = pid.wrapping_mul(64).wrapping_add(n);
            std::net::Ipv4Addr::new(
                127,
                1 + (seed >> 16) as u8 % 250,
                (seed >> 8) as u8,
                seed as u8 | 1,
            )
        };
        if let Ok(l) = TcpListener::bind((ip, port)) {
            return l.local_addr().expect("addr");
        }
    }
    panic!("no free loopback address for port {port}");
}

/// `sshd` serving as the current user; stops when dropped.
pub struct SshServer {
    pub addr: SocketAddr,
    /// The server's public host key, `type base64 comment`.
    pub host_key: String,
    /// The server's user: the one the tests run as (sshd needs a real account).
    pub user: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl SshServer {
    /// Starts `sshd` on a free loopback address with `port` (see [`free_address`]), accepting
    /// the given public keys. The address is free when chosen, not reserved: when another
    /// process binds it first, sshd exits and starts again on another one, three times at most.
    pub fn start(port: u16, authorized_keys: &[&str]) -> Self {
        let mut last_log = String::new();
        for _ in 0..3 {
            match Self::start_on(free_address(port), authorized_keys) {
                Ok(server) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("sshd exited before listening, three times; the last log: {last_log}");
    }

    /// Starts `sshd` on `addr`; its log when it exits before it listens.
    fn start_on(addr: SocketAddr, authorized_keys: &[&str]) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("sshd dir");
        let d = dir.path();
        let (_, host_key) = keygen(d, "host_key", "ed25519");
        std::fs::write(d.join("authorized_keys"), authorized_keys.join("\n") + "\n")
            .expect("authorized_keys");
        let config = format!(
            "ListenAddress {addr}\n\
             HostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\n\
             StrictModes no\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n\
             AcceptEnv GIT_PROTOCOL\n\
             LogLevel VERBOSE\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        // sshd insists on its privilege-separation directory, compiled in as /run/sshd.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd (the tests run as root)");
        let log = std::fs::File::create(d.join("sshd.log")).expect("log");
        let child = Command::new(sshd_program())
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd (openssh-server) is needed: run scripts/test.sh");
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .expect("the test user has a passwd entry")
            .name;
        let mut server = Self {
            addr,
            host_key,
            user,
            child,
            dir,
        };
        server.await_listening()?;
        Ok(server)
    }

    /// Waits (10 s at most) for sshd to say it listens: its own line, not a connection, which
    /// a server of another process on the same address would accept as well.
    fn await_listening(&mut self) -> Result<(), String> {
        let listening = format!(
            "Server listening on {} port {}.",
            self.addr.ip(),
            self.addr.port()
        );
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log());
            }
            if self.log().contains(&listening) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sshd did not listen on {}: {}", self.addr, self.log());
    }

    /// What sshd logged, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The `known_hosts` line for this server, as `ssh-keyscan` would write it.
    pub fn known_hosts_line(&self) -> String {
        let host = if self.addr.port() == 22 {
            self.addr.ip().to_string()
        } else {
            format!("[{}]:{}", self.addr.ip(), self.addr.port())
        };
        format!("{host} {}", self.host_key)
    }

    /// `ssh://user@ip:port/<abs path>`.
    pub fn url(&self, repo: &Path) -> String {
        format!("ssh://{}@{}{}", self.user, self.addr, repo.display())
    }

    /// scp-like `user@ip:<abs path>` (port 22 only).
    pub fn scp_url(&self, repo: &Path) -> String {
        assert_eq!(self.addr.port(), 22, "scp-like URLs have no port");
        format!("{}@{}:{}", self.user, self.addr.ip(), repo.display())
    }
}
