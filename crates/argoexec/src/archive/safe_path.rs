//! Names that came from a server (listed keys, tar and zip entries), placed below a destination
//! directory: the one rule every such path goes through.
//!
//! `Path::join` trusts its argument: an absolute name replaces the base, and `..` climbs out of
//! it. A [`SafePath`] is a name checked to stay strictly below any directory it is joined to:
//! relative, no NUL byte, not empty, and no `..` that leaves the destination (even to come back
//! in: the destination's own name is not the archive's to know).

use std::path::{Path, PathBuf};

/// Why a name cannot be placed below a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeName {
    #[error("the name is empty")]
    Empty,
    #[error("the name holds a NUL byte")]
    Nul,
    #[error("the name is absolute")]
    Absolute,
    #[error("the name climbs out of the destination with '..'")]
    Climbs,
    /// Empty, `.` or `..` segments: the name would land where another name lands.
    #[error("the name is not in clean form (empty, '.' or '..' segments)")]
    NotClean,
}

/// A relative name in clean form (`a/b/c`: no empty, `.` or `..` segment), not empty: joined
/// to any directory, it is strictly below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath(String);

impl SafePath {
    /// `name` in clean form, as Go's `path.Clean` makes it: `//` and `.` segments dropped, `..`
    /// resolved against the segment before it. Archives: Argo cleans entry names the same way.
    pub fn cleaned(name: &str) -> Result<Self, UnsafeName> {
        if name.contains('\0') {
            return Err(UnsafeName::Nul);
        }
        if name.starts_with('/') {
            return Err(UnsafeName::Absolute);
        }
        let mut segments: Vec<&str> = Vec::new();
        for segment in name.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop().ok_or(UnsafeName::Climbs)?;
                }
                s => segments.push(s),
            }
        }
        if segments.is_empty() {
            return Err(UnsafeName::Empty);
        }
        Ok(Self(segments.join("/")))
    }

    /// `name` only when it is already in clean form. Listings: distinct keys must be distinct
    /// files, and `a//b` or `a/./b` would land on `a/b`, another key's file.
    pub fn exact(name: &str) -> Result<Self, UnsafeName> {
        let safe = Self::cleaned(name)?;
        if safe.0 != name {
            return Err(UnsafeName::NotClean);
        }
        Ok(safe)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The directory part (`""` at the top) and the last segment.
    pub fn split_last(&self) -> (&str, &str) {
        self.0.rsplit_once('/').unwrap_or(("", &self.0))
    }

    /// `dest/<name>`, strictly below `dest`.
    pub fn below(&self, dest: &Path) -> PathBuf {
        dest.join(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_relative_names_pass_as_they_are() {
        for name in ["a", "a/b/c.txt", "ünïcödé/日本.txt", "..a/b..", "a/.hidden"] {
            assert_eq!(SafePath::exact(name).expect(name).as_str(), name);
        }
    }

    #[test]
    fn names_that_leave_are_refused_by_both_rules() {
        for (name, why) in [
            ("", UnsafeName::Empty),
            (".", UnsafeName::Empty),
            ("./", UnsafeName::Empty),
            ("a/..", UnsafeName::Empty),
            ("..", UnsafeName::Climbs),
            ("../x", UnsafeName::Climbs),
            ("a/../../x", UnsafeName::Climbs),
            ("/abs/path", UnsafeName::Absolute),
            ("a\0b", UnsafeName::Nul),
        ] {
            assert_eq!(SafePath::cleaned(name), Err(why), "{name:?}");
            assert_eq!(SafePath::exact(name), Err(why), "{name:?}");
        }
    }

    #[test]
    fn cleaning_normalises_what_exact_refuses() {
        for (name, clean) in [("a//b", "a/b"), ("a/./b/", "a/b"), ("a/../b", "b")] {
            assert_eq!(SafePath::cleaned(name).expect(name).as_str(), clean);
            assert_eq!(SafePath::exact(name), Err(UnsafeName::NotClean), "{name}");
        }
    }

    #[test]
    fn joined_names_stay_below_the_destination() {
        let safe = SafePath::cleaned("a//b/./c").expect("clean");
        assert_eq!(safe.below(Path::new("/d")), Path::new("/d/a/b/c"));
        assert_eq!(safe.split_last(), ("a/b", "c"));
        assert_eq!(SafePath::exact("c").expect("c").split_last(), ("", "c"));
    }
}
