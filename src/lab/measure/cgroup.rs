//! Memory charged by the kernel, the one yardstick for every path: each
//! launched instance (a VMM, or a container runtime and its container)
//! runs in a memory cgroup of its own, and its figure is that cgroup's peak
//! charge: process memory, tmpfs files and page cache alike. A container's
//! 8 MiB written to its tmpfs is in no process's RSS but is in its cgroup.
//!
//! cgroup v2: `memory.peak` (Linux 5.19+). cgroup v1 (hybrid hosts):
//! `memory.max_usage_in_bytes` of the memory hierarchy; hierarchical
//! accounting (`memory.use_hierarchy` = 1, the only mode since Linux 6.x)
//! charges a child cgroup's pages to its parents, so the container's own
//! cgroup, created by the runtime under ours, counts in our peak.
//! Kernel docs: admin-guide/cgroup-v2.rst, admin-guide/cgroup-v1/memory.rst.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup hierarchy carries the memory controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryHierarchy {
    /// cgroup v2 mounted at the root, with the memory controller.
    V2(PathBuf),
    /// cgroup v1's memory hierarchy.
    V1(PathBuf),
}

impl MemoryHierarchy {
    /// This host's memory hierarchy, or why there is none to use.
    pub fn detect() -> Result<MemoryHierarchy, String> {
        let root = Path::new(CGROUP_ROOT);
        let controllers = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            return Ok(MemoryHierarchy::V2(root.to_path_buf()));
        }
        let v1 = root.join("memory");
        if v1.join("memory.max_usage_in_bytes").is_file() {
            return Ok(MemoryHierarchy::V1(v1));
        }
        Err(format!("no memory cgroup controller under {CGROUP_ROOT}"))
    }

    fn root(&self) -> &Path {
        match self {
            MemoryHierarchy::V2(p) | MemoryHierarchy::V1(p) => p,
        }
    }

    fn peak_file(&self) -> &'static str {
        match self {
            MemoryHierarchy::V2(_) => "memory.peak",
            MemoryHierarchy::V1(_) => "memory.max_usage_in_bytes",
        }
    }
}

/// One instance's memory cgroup, created before its launch and removed
/// after it was read.
#[derive(Debug)]
pub struct MemoryCgroup {
    hierarchy: MemoryHierarchy,
    name: String,
    /// `<dir>/cgroup.procs`, ready for the child between fork and exec.
    procs: CString,
}

impl MemoryCgroup {
    /// Creates the cgroup `name` (one path component) in `hierarchy`.
    pub fn create(hierarchy: &MemoryHierarchy, name: &str) -> io::Result<MemoryCgroup> {
        let dir = hierarchy.root().join(name);
        fs::create_dir(&dir)?;
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(MemoryCgroup {
            hierarchy: hierarchy.clone(),
            name: name.to_string(),
            procs,
        })
    }

    /// The `linux.cgroupsPath` that puts a container inside this cgroup.
    pub fn child_path(&self) -> String {
        format!("/{}/ctr", self.name)
    }

    /// Moves the calling process into the cgroup. Only system calls: safe
    /// in a forked child before exec.
    pub fn join_self(&self) -> io::Result<()> {
        // SAFETY: `procs` is a NUL-terminated path we own; open, write and
        // close are async-signal-safe system calls on a local buffer.
        unsafe {
            let fd = libc::open(self.procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let written = libc::write(fd, c"0".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// The peak memory charged to the cgroup so far, KiB.
    pub fn peak_kib(&self) -> Option<u64> {
        let file = self
            .hierarchy
            .root()
            .join(&self.name)
            .join(self.hierarchy.peak_file());
        let bytes: u64 = fs::read_to_string(file).ok()?.trim().parse().ok()?;
        Some(bytes / 1024)
    }

    /// Removes the cgroup and whatever a runtime left below it in any
    /// hierarchy (a v1 runtime creates `/<name>/ctr` in every controller).
    pub fn remove(&self) {
        let roots: Vec<PathBuf> = match &self.hierarchy {
            MemoryHierarchy::V2(root) => vec![root.clone()],
            MemoryHierarchy::V1(_) => fs::read_dir(CGROUP_ROOT)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default(),
        };
        for root in roots {
            let dir = root.join(&self.name);
            let _ = fs::remove_dir(dir.join("ctr"));
            let _ = fs::remove_dir(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_process_is_charged_to_its_cgroup() {
        // SAFETY: geteuid has no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "SKIP a_child_process_is_charged_to_its_cgroup: needs root to create cgroups"
            );
            return;
        }
        let hierarchy = match MemoryHierarchy::detect() {
            Ok(h) => h,
            Err(why) => {
                eprintln!("SKIP a_child_process_is_charged_to_its_cgroup: {why}");
                return;
            }
        };
        let cg = MemoryCgroup::create(&hierarchy, &format!("tinyvmm-test-{}", std::process::id()))
            .unwrap();
        let mut cmd = std::process::Command::new("sh");
        // 16 MiB written to a file in a fresh tmpfs-backed /dev/shm: charged
        // to the cgroup although no process keeps it resident.
        cmd.args(["-c", "head -c 16777216 /dev/zero > /dev/shm/tinyvmm-cg-test.$$; rm /dev/shm/tinyvmm-cg-test.$$"]);
        let cgp: &'static MemoryCgroup = Box::leak(Box::new(cg));
        // SAFETY: join_self makes only system calls.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || cgp.join_self());
        }
        assert!(cmd.status().unwrap().success());
        let peak = cgp.peak_kib().unwrap();
        cgp.remove();
        assert!(peak >= 16 * 1024, "peak {peak} KiB");
        assert_eq!(
            cgp.child_path(),
            format!("/tinyvmm-test-{}/ctr", std::process::id())
        );
    }
}
