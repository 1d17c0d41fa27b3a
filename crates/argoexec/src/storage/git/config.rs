//! From an Argo `git:` location and its mounted secrets to what a clone needs: the URL and
//! the credentials.
//!
//! Argo's rules: an SSH private key wins over a username/password; HTTP basic auth is used
//! when either of username or password is set; the SSH user is the `user@` of the repo URL,
//! `git` when there is none.

use std::sync::Arc;

use super::known_hosts::KnownHostsFiles;
use super::ssh::{HostKeyPolicy, SshAuth};
use crate::model::GitArtifact;
use crate::storage::secrets::Secret;
use crate::storage::{Error, ErrorKind, Result, Secrets};

/// How to authenticate to the remote.
#[derive(Debug)]
pub enum Auth {
    None,
    /// HTTP(S) basic auth (tokens go in the password); an absent one is empty.
    Basic {
        username: Option<Secret>,
        password: Option<Secret>,
    },
    /// An SSH key, and the host keys to trust.
    Ssh(SshAuth),
}

/// The private key of `sshPrivateKeySecret`, in the formats go-git reads (OpenSSH, PEM
/// PKCS#1 and PKCS#8, unencrypted); its failures are worded as go-git's.
fn private_key(key: &Secret) -> Result<russh::keys::PrivateKey> {
    let text = key.expose();
    russh::keys::decode_secret_key(text, None).map_err(|e| {
        let message = match e {
            russh::keys::Error::KeyIsEncrypted => {
                "ssh: this private key is passphrase protected".to_string()
            }
            _ if !text.contains("-----BEGIN") => "ssh: no key found".to_string(),
            e => format!("ssh: cannot decode the private key: {e}"),
        };
        Error::backend("git", ErrorKind::Request, message)
    })
}

/// The credentials of a location; `known_hosts` are the files that vouch for SSH servers
/// unless the location sets `insecureIgnoreHostKey`.
pub fn auth(loc: &GitArtifact, secrets: &Secrets, known_hosts: KnownHostsFiles) -> Result<Auth> {
    if let Some(key) = secrets.read_opt(loc.ssh_private_key_secret.as_ref())?
        && !key.expose().is_empty()
    {
        return Ok(Auth::Ssh(SshAuth {
            key: Arc::new(private_key(&key)?),
            host_keys: if loc.insecure_ignore_host_key {
                HostKeyPolicy::AcceptAny
            } else {
                HostKeyPolicy::KnownHosts(known_hosts)
            },
        }));
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
