//! The SSH host-key check of Argo's go-git: OpenSSH `known_hosts` files, read the way
//! `golang.org/x/crypto/ssh/knownhosts` reads them.
//!
//! Which files: the `SSH_KNOWN_HOSTS` list (`:`-separated) if set, else `~/.ssh/known_hosts`
//! and `/etc/ssh/ssh_known_hosts`; those that do not exist are skipped, and none left is an
//! error. What matches: plain, wildcard (`*`, `?`), negated (`!`) and hashed (`|1|salt|hash`)
//! host patterns, as `host` on port 22 and `[host]:port` elsewhere; `@revoked` keys are
//! refused; `@cert-authority` lines are skipped (go-git offers no certificates either). As in
//! x/crypto, only the first key of each type recorded for a host counts, and a server showing
//! a type the file does not record for it is a mismatch.

use std::path::{Path, PathBuf};

use russh::keys::{Algorithm, PublicKey};

/// Why a server's host key is refused; the texts are go-git's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostKeyError {
    #[error("unable to find any valid known_hosts file, set SSH_KNOWN_HOSTS env variable")]
    NoFile,
    #[error("knownhosts: key is unknown")]
    Unknown,
    #[error("knownhosts: key mismatch")]
    Mismatch,
    #[error("knownhosts: key is revoked")]
    Revoked,
}

/// Where the known hosts are read from. `Default`: the system's file only (no home directory
/// is known without the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHostsFiles(Vec<PathBuf>);

impl Default for KnownHostsFiles {
    fn default() -> Self {
        Self::new(None, None)
    }
}

impl KnownHostsFiles {
    /// go-git's list: `ssh_known_hosts` (the value of `SSH_KNOWN_HOSTS`) if set and not
    /// empty, else the user's file under `home` and the system's.
    pub fn new(ssh_known_hosts: Option<&str>, home: Option<&Path>) -> Self {
        match ssh_known_hosts.filter(|v| !v.is_empty()) {
            Some(list) => Self(std::env::split_paths(list).collect()),
            None => Self(
                home.map(|h| h.join(".ssh/known_hosts"))
                    .into_iter()
                    .chain([PathBuf::from("/etc/ssh/ssh_known_hosts")])
                    .collect(),
            ),
        }
    }

    /// Reads the files that exist; a line that does not parse is skipped.
    pub fn load(&self) -> Result<KnownHosts, HostKeyError> {
        let mut lines = Vec::new();
        let mut found = false;
        for path in &self.0 {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            found = true;
            lines.extend(text.lines().filter_map(Line::parse));
        }
        if !found {
            return Err(HostKeyError::NoFile);
        }
        Ok(KnownHosts(lines))
    }
}

/// The entries of the known-hosts files.
#[derive(Debug)]
pub struct KnownHosts(Vec<Line>);

#[derive(Debug)]
struct Line {
    revoked: bool,
    patterns: Vec<String>,
    key: PublicKey,
}

impl Line {
    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace();
        let mut first = fields.next()?;
        if first.starts_with('#') {
            return None;
        }
        let revoked = match first {
            "@revoked" => true,
            "@cert-authority" => return None,
            _ => false,
        };
        if first.starts_with('@') {
            first = fields.next()?;
        }
        let _key_type = fields.next()?;
        let key = russh::keys::parse_public_key_base64(fields.next()?).ok()?;
        Some(Self {
            revoked,
            patterns: first.split(',').map(str::to_string).collect(),
            key,
        })
    }

    /// x/crypto's rule: some pattern matches and no negated pattern does.
    fn matches(&self, address: &str) -> bool {
        let mut matched = false;
        for pattern in &self.patterns {
            let (negated, pattern) = match pattern.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, pattern.as_str()),
            };
            if pattern_matches(pattern, address) {
                if negated {
                    return false;
                }
                matched = true;
            }
        }
        matched
    }
}

impl KnownHosts {
    /// Whether `key` is the one recorded for `host` on `port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Result<(), HostKeyError> {
        if self.0.iter().any(|l| l.revoked && l.key == *key) {
            return Err(HostKeyError::Revoked);
        }
        let known = self.keys_of(host, port);
        if known.is_empty() {
            return Err(HostKeyError::Unknown);
        }
        match known
            .iter()
            .find(|k| same_type(&k.algorithm(), &key.algorithm()))
        {
            Some(recorded) if *recorded == key => Ok(()),
            _ => Err(HostKeyError::Mismatch),
        }
    }

    /// The first recorded key of each type for `host` on `port`.
    fn keys_of(&self, host: &str, port: u16) -> Vec<&PublicKey> {
        let address = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        let mut keys: Vec<&PublicKey> = Vec::new();
        for line in self.0.iter().filter(|l| !l.revoked && l.matches(&address)) {
            if !keys
                .iter()
                .any(|k| same_type(&k.algorithm(), &line.key.algorithm()))
            {
                keys.push(&line.key);
            }
        }
        keys
    }

    /// The host-key algorithms to offer for `host`: those of `offered` whose type the files
    /// record for it (go-git asks the server for a known type), all of them if none.
    pub fn algorithms_for(&self, host: &str, port: u16, offered: &[Algorithm]) -> Vec<Algorithm> {
        let known = self.keys_of(host, port);
        let usable: Vec<Algorithm> = offered
            .iter()
            .filter(|a| known.iter().any(|k| same_type(&k.algorithm(), a)))
            .cloned()
            .collect();
        if usable.is_empty() {
            offered.to_vec()
        } else {
            usable
        }
    }
}

/// One key type whatever the signature hash (`ssh-rsa`, `rsa-sha2-256`, `rsa-sha2-512`).
fn same_type(a: &Algorithm, b: &Algorithm) -> bool {
    matches!((a, b), (Algorithm::Rsa { .. }, Algorithm::Rsa { .. })) || a == b
}

/// One host pattern against `host` or `[host]:port`: hashed, or with `*` and `?` wildcards.
fn pattern_matches(pattern: &str, address: &str) -> bool {
    if let Some(hashed) = pattern.strip_prefix("|1|") {
        return hashed_matches(hashed, address);
    }
    wildcard_matches(pattern.as_bytes(), address.as_bytes())
}

/// `salt|hash` (base64): the HMAC-SHA1 of the address keyed by the salt.
fn hashed_matches(salt_and_hash: &str, address: &str) -> bool {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    aws_lc_rs::hmac::verify(&key, address.as_bytes(), &hash).is_ok()
}

/// Glob matching of `*` (any run) and `?` (one byte), case-insensitive as host names are.
fn wildcard_matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| wildcard_matches(rest, &text[skip..])),
        Some((&p, rest)) => match text.split_first() {
            Some((&t, text_rest)) if p == b'?' || p.eq_ignore_ascii_case(&t) => {
                wildcard_matches(rest, text_rest)
            }
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAMwWqavFyTFLnU4fOu31Ph2asv2nszm55LZFCdfZjkh";
    const ED25519_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPaNgVMIfx5TzyhYgrFmGjCHFKSaBk/WzC0IE5IHfMyd";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).expect("key")
    }

    fn hosts(text: &str) -> KnownHosts {
        KnownHosts(text.lines().filter_map(Line::parse).collect())
    }

    #[test]
    fn a_host_is_known_unknown_or_changed_by_its_pattern_and_port() {
        let db = hosts(&format!(
            "# comment\n\
             git.example.com,10.0.0.1 ssh-ed25519 {ED25519_A}\n\
             [git.example.com]:2222\tssh-ed25519 {ED25519_B} on another port\n\
             *.corp.example,!bad.corp.example ssh-ed25519 {ED25519_A}\n"
        ));
        let (a, b) = (key(ED25519_A), key(ED25519_B));
        assert_eq!(db.check("git.example.com", 22, &a), Ok(()));
        assert_eq!(db.check("GIT.example.com", 22, &a), Ok(()));
        assert_eq!(db.check("10.0.0.1", 22, &a), Ok(()));
        assert_eq!(
            db.check("git.example.com", 22, &b),
            Err(HostKeyError::Mismatch)
        );
        assert_eq!(db.check("git.example.com", 2222, &b), Ok(()));
        assert_eq!(
            db.check("git.example.com", 2223, &b),
            Err(HostKeyError::Unknown)
        );
        assert_eq!(db.check("x.corp.example", 22, &a), Ok(()));
        assert_eq!(
            db.check("bad.corp.example", 22, &a),
            Err(HostKeyError::Unknown)
        );
        assert_eq!(
            db.check("other.example", 22, &a),
            Err(HostKeyError::Unknown)
        );
    }

    #[test]
    fn hashed_hosts_match_and_revoked_keys_are_refused() {
        // `ssh-keygen -H` of "[127.0.0.1]:2222" with this salt.
        let salt = [7u8; 20];
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt),
            b"[127.0.0.1]:2222",
        );
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let db = hosts(&format!(
            "|1|{}|{} ssh-ed25519 {ED25519_A}\n@revoked * ssh-ed25519 {ED25519_B}\n",
            b64(&salt),
            b64(tag.as_ref())
        ));
        assert_eq!(db.check("127.0.0.1", 2222, &key(ED25519_A)), Ok(()));
        assert_eq!(
            db.check("127.0.0.2", 2222, &key(ED25519_A)),
            Err(HostKeyError::Unknown)
        );
        assert_eq!(
            db.check("127.0.0.1", 2222, &key(ED25519_B)),
            Err(HostKeyError::Revoked)
        );
    }

    #[test]
    fn the_files_are_ssh_known_hosts_else_the_home_and_system_ones() {
        let listed = KnownHostsFiles::new(Some("/a/hosts:/b/hosts"), Some(Path::new("/root")));
        assert_eq!(
            listed.0,
            [PathBuf::from("/a/hosts"), PathBuf::from("/b/hosts")]
        );
        let default = KnownHostsFiles::new(None, Some(Path::new("/root")));
        assert_eq!(
            default.0,
            [
                PathBuf::from("/root/.ssh/known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts")
            ]
        );
        let none = KnownHostsFiles(vec![PathBuf::from("/nonexistent/known_hosts")]);
        assert_eq!(none.load().map(|_| ()), Err(HostKeyError::NoFile));
    }
}
