//! From an Argo `git:` location and its mounted secrets to what a clone needs: the URL, the
//! credentials, and for SSH the `ssh` command line.
//!
//! Argo's rules: an SSH private key wins over a username/password; HTTP basic auth is used
//! when either of username or password is set; the SSH user is the `user@` of the repo URL,
//! `git` when there is none.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::model::GitArtifact;
use crate::storage::secrets::Secret;
use crate::storage::{Error, Result, Secrets};

/// How to authenticate to the remote.
#[derive(Debug)]
pub enum Auth {
    None,
    /// HTTP(S) basic auth (tokens go in the password); an absent one is empty.
    Basic {
        username: Option<Secret>,
        password: Option<Secret>,
    },
    /// An SSH key, written to a private temporary file for the `ssh` program.
    Ssh(SshKey),
}

/// A private key file that exists as long as this value.
#[derive(Debug)]
pub struct SshKey {
    dir: tempfile::TempDir,
    pub ignore_host_key: bool,
}

impl SshKey {
    fn write(key: &Secret, ignore_host_key: bool) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("argoexec-git-ssh-")
            .tempdir()
            .map_err(|e| Error::io("creating a directory for the SSH key", e))?;
        let path = dir.path().join("id");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let mut bytes = key.expose().as_bytes().to_vec();
        // OpenSSH refuses a key file whose last line has no newline.
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        f.write_all(&bytes)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(Self {
            dir,
            ignore_host_key,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    /// The `core.sshCommand` that uses this key and nothing else, never prompts, and with
    /// `insecureIgnoreHostKey` accepts any host key.
    pub fn ssh_command(&self) -> String {
        let mut cmd = format!(
            "ssh -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes",
            self.path().display()
        );
        if self.ignore_host_key {
            cmd.push_str(" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null");
        }
        cmd
    }
}

/// The credentials of a location.
pub fn auth(loc: &GitArtifact, secrets: &Secrets) -> Result<Auth> {
    if let Some(key) = secrets.read_opt(loc.ssh_private_key_secret.as_ref())?
        && !key.expose().is_empty()
    {
        return Ok(Auth::Ssh(SshKey::write(
            &key,
            loc.insecure_ignore_host_key,
        )?));
    }
    let username = secrets.read_opt(loc.username_secret.as_ref())?;
    let password = secrets.read_opt(loc.password_secret.as_ref())?;
    let empty = |s: &Option<Secret>| s.as_ref().is_none_or(|s| s.expose().is_empty());
    if empty(&username) && empty(&password) {
        return Ok(Auth::None);
    }
    Ok(Auth::Basic { username, password })
}

/// Argo's `GetUser`: the user of an SSH URL (`user@host:path`, `ssh://user@host/path`), else `git`.
pub fn ssh_user(repo: &str) -> String {
    let rest = repo.strip_prefix("ssh://").unwrap_or(repo);
    match rest.split_once('@') {
        Some((user, host_and_path))
            if !user.contains(['/', ':']) && !host_and_path.contains('@') =>
        {
            user.to_string()
        }
        _ => "git".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_user_as_argo_parses_it() {
        assert_eq!(
            ssh_user("git@github.com:argoproj/argo-workflows.git"),
            "git"
        );
        assert_eq!(ssh_user("ssh://deploy@example.com/repo.git"), "deploy");
        assert_eq!(ssh_user("ssh://example.com/repo.git"), "git");
        assert_eq!(ssh_user("https://github.com/argoproj/argo.git"), "git");
        assert_eq!(ssh_user("bob@host:path/repo"), "bob");
    }
}
