//! The memory limit of the container this process runs in, from its cgroup (v2 `memory.max`,
//! v1 `memory.limit_in_bytes`), so the transfer defaults fit a pod whose `podSpecPatch` sets a
//! small limit ([`TransferConfig::from_lookup_within`](argoexec::transfer::TransferConfig)).

use std::path::{Path, PathBuf};

/// v1 reports "no limit" as a page-rounded `i64::MAX`; anything this large is no limit.
const UNLIMITED: u64 = 1 << 62;

/// The limit in bytes, or `None` when there is none or it cannot be read.
pub fn current() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    read_limit(Path::new("/sys/fs/cgroup"), &membership)
}

/// The limit for a process whose `/proc/self/cgroup` is `membership`, cgroups mounted at `root`.
fn read_limit(root: &Path, membership: &str) -> Option<u64> {
    membership.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let file: PathBuf = if controllers.is_empty() {
            below(root, path).join("memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            below(&root.join("memory"), path).join("memory.limit_in_bytes")
        } else {
            return None;
        };
        let text = std::fs::read_to_string(file).ok()?;
        text.trim().parse::<u64>().ok().filter(|&n| n < UNLIMITED)
    })
}

/// `path` (absolute in the cgroup hierarchy) below the mount `root`.
fn below(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_read_from_the_processs_own_cgroup_in_v2_and_v1() {
        let root = tempfile::tempdir().expect("tmp");
        let v2 = root.path().join("kubepods/pod1/ctr");
        std::fs::create_dir_all(&v2).expect("mkdir");
        std::fs::write(v2.join("memory.max"), "67108864\n").expect("write");
        assert_eq!(
            read_limit(root.path(), "0::/kubepods/pod1/ctr\n"),
            Some(64 << 20)
        );
        std::fs::write(v2.join("memory.max"), "max\n").expect("write");
        assert_eq!(read_limit(root.path(), "0::/kubepods/pod1/ctr\n"), None);

        let v1 = root.path().join("memory/ctr");
        std::fs::create_dir_all(&v1).expect("mkdir");
        std::fs::write(v1.join("memory.limit_in_bytes"), "134217728\n").expect("write");
        let membership = "12:cpu,cpuacct:/ctr\n11:memory:/ctr\n";
        assert_eq!(read_limit(root.path(), membership), Some(128 << 20));
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").expect("write");
        assert_eq!(read_limit(root.path(), membership), None);
        // A namespaced container sees its own cgroup as the root.
        std::fs::write(root.path().join("memory.max"), "100663296").expect("write");
        assert_eq!(read_limit(root.path(), "0::/\n"), Some(96 << 20));
    }
}
