//! Secret values, read from where the controller mounts them: `/argo/secret/<name>/<key>`.
//!
//! A [`Secret`] never prints its value: `Debug` and `Display` show only which secret it is, so a
//! secret cannot reach a log line or an error text by accident.

use std::fmt;

use crate::contract::Roots;
use crate::model::SecretKeySelector;

use super::{Error, Result, go_error_text};

/// Reads mounted secrets.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    roots: Roots,
}

impl Secrets {
    pub fn new(roots: Roots) -> Self {
        Self { roots }
    }

    /// The pod's path roots these secrets are read under; the other mounts a driver reaches
    /// (a plugin's socket) are under the same roots.
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// The raw bytes of a secret key, as Argo reads them (no trimming).
    pub fn read(&self, selector: &SecretKeySelector) -> Result<Secret> {
        if !selector.is_set() {
            return Err(Error::config("secret selector has an empty name or key"));
        }
        let path = self.roots.secret(&selector.name, &selector.key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Secret {
                name: format!("{}/{}", selector.name, selector.key),
                value: String::from_utf8_lossy(&bytes).into_owned(),
            }),
            // Argo's text is Go's `os.ReadFile` error; ours names the secret and key.
            Err(e) => Err(
                Error::config(format!("open {}: {}", path.display(), go_error_text(&e))).detail(
                    format!(
                        "secret {:?} key {:?} is not available",
                        selector.name, selector.key
                    ),
                ),
            ),
        }
    }

    /// Reads an optional selector: `None` when it is absent or unset.
    pub fn read_opt(&self, selector: Option<&SecretKeySelector>) -> Result<Option<Secret>> {
        match selector {
            Some(s) if s.is_set() => self.read(s).map(Some),
            _ => Ok(None),
        }
    }
}

/// A secret value that does not print itself.
#[derive(Clone)]
pub struct Secret {
    name: String,
    value: String,
}

impl Secret {
    /// The value, for handing to a client library. Do not format it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The value with surrounding whitespace removed (S3 keys are trimmed by Argo).
    pub fn expose_trimmed(&self) -> &str {
        self.value.trim()
    }

    pub fn is_empty(&self) -> bool {
        self.value.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}: <redacted>)", self.name)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret {}>", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_raw_bytes_and_never_prints_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let roots = Roots::at(dir.path());
        let p = roots.secret("creds", "key");
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, "s3cr3t-value\n").expect("write");
        let secrets = Secrets::new(roots);
        let sel = SecretKeySelector {
            name: "creds".into(),
            key: "key".into(),
            optional: None,
        };
        let s = secrets.read(&sel).expect("read");
        assert_eq!(s.expose(), "s3cr3t-value\n");
        assert_eq!(s.expose_trimmed(), "s3cr3t-value");
        assert!(!format!("{s:?} {s}").contains("s3cr3t"));
    }

    #[test]
    fn missing_secret_names_the_secret_not_a_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = Secrets::new(Roots::at(dir.path()));
        let sel = SecretKeySelector {
            name: "creds".into(),
            key: "accessKey".into(),
            optional: None,
        };
        let e = secrets.read(&sel).expect_err("missing");
        let text = e.to_string();
        assert!(
            text.contains("\"creds\"") && text.contains("accessKey"),
            "{text}"
        );
    }
}
