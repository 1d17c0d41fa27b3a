//! Where an output artifact goes: its local path checked as Argo checks it, and the location
//! (with its key) it is stored under.

use crate::contract::{NO_ARCHIVE_LOCATION, STORAGE_NOT_CONFIGURED};
use crate::model::{ArchiveStrategy, Artifact, ArtifactLocation, LocationKind};

/// An artifact Argo refuses as it is described (no path, `..`, no archive location for a
/// keyless output...); the message is Argo's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidArtifact(pub String);

/// Checks and cleans an artifact path as Argo does before using it (`Artifact.CleanPath`).
///
/// A path that climbs with `..` must stay strictly below what precedes its first `/../` (or
/// its final `/` plus two characters, which is how Argo's check reads a trailing `/..`): the
/// path is refused when its cleaned form leaves that prefix. A relative path that starts with
/// `..` has no such prefix and passes, as in Argo.
pub fn validate_path(name: &str, path: &str) -> Result<String, InvalidArtifact> {
    if path.is_empty() {
        return Err(InvalidArtifact(format!(
            "Artifact '{name}' did not specify a path"
        )));
    }
    let safe_dir: &[u8] = match path.find("/../") {
        Some(i) => &path.as_bytes()[..i],
        None if ends_with_slash_and_two_chars(path) => &path.as_bytes()[..path.len() - 3],
        None => b"",
    };
    let cleaned = super::clean(path);
    let mut safe_with_slash = safe_dir.to_vec();
    safe_with_slash.push(b'/');
    if !safe_dir.is_empty()
        && (!cleaned.as_bytes().starts_with(&safe_with_slash)
            || cleaned.len() <= safe_with_slash.len())
    {
        return Err(InvalidArtifact(format!(
            "Artifact '{name}' attempted to use a path containing '..'. Directory traversal is not permitted"
        )));
    }
    Ok(cleaned)
}

/// Whether `path` ends in `/` and two more characters other than newlines: Argo's regular
/// expression `/..$`, whose dots match any character.
fn ends_with_slash_and_two_chars(path: &str) -> bool {
    let mut tail = path.chars().rev();
    let (Some(last), Some(before), Some(slash)) = (tail.next(), tail.next(), tail.next()) else {
        return false;
    };
    slash == '/' && last != '\n' && before != '\n'
}

/// The file name Argo gives an output stored under the archive key.
pub fn output_file_name(art: &Artifact, path: &str) -> String {
    match art.archive_strategy() {
        ArchiveStrategy::Tar { .. } => format!("{}.tgz", art.name),
        ArchiveStrategy::Zip => format!("{}.zip", art.name),
        ArchiveStrategy::None => super::base(path),
    }
}

/// The artifact to report and the full location to upload to (docs/contract.md#keys): an
/// artifact without a key gets `<archive key>/<file name>` under the archive location.
pub fn output_location(
    art: &Artifact,
    path: &str,
    archive: Option<&ArtifactLocation>,
) -> Result<(Artifact, ArtifactLocation), InvalidArtifact> {
    let mut reported = art.clone();
    if !art.location.has_key() {
        let archive = usable_archive(archive)?;
        refuse_keyless_kind(&art.location, archive)?;
        let archive_key = archive.key().unwrap_or_default();
        let key = super::join(&[&archive_key, &output_file_name(art, path)]);
        reported.location = archive.key_only(key);
    }
    let location = reported.relocated(archive).map_err(InvalidArtifact)?;
    Ok((reported, location))
}

/// Argo gives a keyless output the archive's type, then sets the key on the type in effect,
/// the first in its order: a git or raw location of the artifact's own that comes first takes
/// no key.
fn refuse_keyless_kind(
    own: &ArtifactLocation,
    archive: &ArtifactLocation,
) -> Result<(), InvalidArtifact> {
    let in_effect = own.kind().into_iter().chain(archive.kind()).min();
    match in_effect {
        Some(LocationKind::Git) => Err(InvalidArtifact(
            "key unsupported: cannot set key on git artifact".to_string(),
        )),
        Some(LocationKind::Raw) => Err(InvalidArtifact(
            "key unsupported: cannot set key for raw artifact".to_string(),
        )),
        _ => Ok(()),
    }
}

/// The archive location an output without a key goes to; Argo's text when there is none (no
/// `archiveLocation`) or it names no storage.
pub fn usable_archive(
    archive: Option<&ArtifactLocation>,
) -> Result<&ArtifactLocation, InvalidArtifact> {
    match archive {
        None => Err(InvalidArtifact(NO_ARCHIVE_LOCATION.to_string())),
        Some(a) if a.kind().is_none() => Err(InvalidArtifact(STORAGE_NOT_CONFIGURED.to_string())),
        Some(a) => Ok(a),
    }
}

#[cfg(test)]
mod tests {
    use super::validate_path;

    /// Argo's own cases (`TestArtifact_ValidatePath`).
    #[test]
    fn paths_are_checked_as_argo_checks_them() {
        for refused in [
            "/tmp/..",
            "/tmp/../",
            "/tmp/../../etc/passwd",
            "/tmp/../tmp",
            "/tmp/../tmp/",
            "/tmp/subdir/../../tmp/subdir/",
            "/tmp/../tmp-imposter",
        ] {
            let e = validate_path("a1", refused).expect_err(refused);
            assert_eq!(
                e.to_string(),
                "Artifact 'a1' attempted to use a path containing '..'. Directory traversal is not permitted",
                "{refused}"
            );
        }
        for (given, cleaned) in [
            ("..", ".."),
            ("../", ".."),
            ("../..", "../.."),
            ("../etc/passwd", "../etc/passwd"),
            ("/tmp/../tmp/abcd", "/tmp/abcd"),
            ("/tmp/subdir/../../tmp/subdir/abcd", "/tmp/subdir/abcd"),
            ("/tmp/..artifact.txt", "/tmp/..artifact.txt"),
            ("/tmp/artif..t.txt", "/tmp/artif..t.txt"),
            ("/tmp/ab", "/tmp/ab"),
            ("/tmp", "/tmp"),
        ] {
            assert_eq!(validate_path("a1", given).expect(given), cleaned);
        }
        assert_eq!(
            validate_path("a1", "").expect_err("empty").to_string(),
            "Artifact 'a1' did not specify a path"
        );
    }
}
