//! Object keys: Go's `path.Join`/`path.Clean` semantics, Argo's key templates ([`template`]),
//! and the key of each output artifact ([`output_key`]).

pub mod output;
pub mod template;

pub use output::{InvalidArtifact, output_location, validate_path};

use crate::model::{Artifact, ArtifactLocation};

/// The key an output artifact is stored under (docs/contract.md#keys): its own key when it has
/// one (used verbatim), else `<archive key>/<file name>` with the file name Argo derives from
/// the archive strategy (`<name>.tgz`, `<name>.zip`, or the path's base name for `none`).
///
/// ```
/// use argoexec::keys::output_key;
/// use argoexec::model::{Artifact, ArtifactLocation, S3Artifact};
///
/// let archive = ArtifactLocation {
///     s3: Some(S3Artifact { bucket: "b".into(), endpoint: "e".into(),
///                           key: "art/wf-abc/wf-abc-main-1234".into(), ..Default::default() }),
///     ..Default::default()
/// };
/// let out = Artifact { name: "result".into(), path: "/tmp/r.txt".into(), ..Default::default() };
/// assert_eq!(output_key(&out, Some(&archive))?, "art/wf-abc/wf-abc-main-1234/result.tgz");
/// # Ok::<(), argoexec::keys::InvalidArtifact>(())
/// ```
pub fn output_key(
    art: &Artifact,
    archive: Option<&ArtifactLocation>,
) -> Result<String, InvalidArtifact> {
    let path = validate_path(&art.name, &art.path)?;
    let (_, location) = output_location(art, &path, archive)?;
    Ok(location.key().unwrap_or_default())
}

/// Go's `path.Clean` for slash-separated keys: collapses `//`, drops `.`, resolves `..`, removes
/// a trailing `/`, keeps a leading one; an empty result is `.`.
pub fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's `path.Join`: joins the non-empty elements with `/` and cleans the result.
pub fn join(elems: &[&str]) -> String {
    let non_empty: Vec<&str> = elems.iter().copied().filter(|e| !e.is_empty()).collect();
    if non_empty.is_empty() {
        return String::new();
    }
    clean(&non_empty.join("/"))
}

/// The last element of a slash path, as Go's `path.Base`.
pub fn base(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return if p.is_empty() { ".".into() } else { "/".into() };
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go_path_clean() {
        for (input, want) in [
            ("", "."),
            ("a//b/", "a/b"),
            ("/a/./b/../c", "/a/c"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/b/../..", "."),
            ("my-wf/pod-1/", "my-wf/pod-1"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn join_skips_empty_elements() {
        assert_eq!(join(&["my-wf/pod", "out.tgz"]), "my-wf/pod/out.tgz");
        assert_eq!(join(&["/art//x/", "r.txt"]), "/art/x/r.txt");
        assert_eq!(join(&["", "r.txt"]), "r.txt");
        assert_eq!(join(&["", ""]), "");
    }

    #[test]
    fn base_of_paths() {
        assert_eq!(base("/tmp/out/"), "out");
        assert_eq!(base("/tmp/r.txt"), "r.txt");
        assert_eq!(base("/"), "/");
    }
}
