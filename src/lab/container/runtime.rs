//! Running a bundle with crun or runc, as `<runtime> run --bundle DIR ID`:
//! the runtime creates the container, starts the workload with the
//! runtime's own stdout, waits for it and deletes the container, so the
//! runtime process lives exactly as long as the container.
//!
//! The cgroup workaround: crun 1.8 refuses a host with a *hybrid* cgroup
//! layout (v1 controllers on /sys/fs/cgroup, cgroup2 on
//! /sys/fs/cgroup/unified: "cgroups in hybrid mode not supported, drop all
//! controllers from cgroupv2"). It works when it does not see the v2
//! mount, so on such a host crun is started in a private mount namespace
//! of its own (`unshare(CLONE_NEWNS)`, all mounts made private) in which
//! /sys/fs/cgroup/unified is unmounted. The host's mounts are untouched;
//! crun then manages the container's cgroups as plain cgroup v1. runc
//! handles the hybrid layout itself and needs nothing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Bundle, ContainerError};
use crate::lab::measure::LaunchSpec;

/// The two OCI runtimes we compare against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// crun (C; Debian package `crun`).
    Crun,
    /// runc (Go; Debian package `runc`).
    Runc,
}

impl RuntimeKind {
    /// The program name, which is also the Debian package name.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Crun => "crun",
            RuntimeKind::Runc => "runc",
        }
    }

    /// The runtime's default state directory (one subdirectory per container).
    fn state_root(self) -> &'static str {
        match self {
            RuntimeKind::Crun => "/run/crun",
            RuntimeKind::Runc => "/run/runc",
        }
    }
}

/// A runtime found on this host.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// Which one.
    pub kind: RuntimeKind,
    /// Its executable.
    pub path: PathBuf,
    /// The first line of `--version`.
    pub version: String,
    /// Whether it runs in a private mount namespace without the cgroup2 mount.
    pub private_cgroup_view: bool,
}

/// Whether `mounts` (the text of /proc/self/mounts) shows the hybrid
/// layout: cgroup2 mounted on /sys/fs/cgroup/unified, and /sys/fs/cgroup
/// itself not a cgroup2 mount.
pub fn is_hybrid_cgroup_layout(mounts: &str) -> bool {
    let mut unified_v2 = false;
    let mut root_v2 = false;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_), Some(target), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        match (target, fstype) {
            ("/sys/fs/cgroup/unified", "cgroup2") => unified_v2 = true,
            ("/sys/fs/cgroup", "cgroup2") => root_v2 = true,
            _ => {}
        }
    }
    unified_v2 && !root_v2
}

/// Run in crun's child before exec: a private mount namespace without the
/// cgroup2 mount (see the module docs). Only system calls: safe after fork.
fn private_cgroup_view() -> io::Result<()> {
    let check = |r: libc::c_int| {
        if r == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: unshare takes a flag word; it gives this (single-threaded,
    // forked) process its own copy of the mount table.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    // SAFETY: the path is a NUL-terminated literal; null source, type and
    // data are allowed for a propagation change. MS_PRIVATE|MS_REC stops
    // anything below from propagating back to the host's namespace.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })?;
    // SAFETY: NUL-terminated literal path; affects only the private namespace.
    check(unsafe { libc::umount2(c"/sys/fs/cgroup/unified".as_ptr(), libc::MNT_DETACH) })
}

impl Runtime {
    /// Finds and checks a runtime; the error says why it is unusable.
    pub fn find(kind: RuntimeKind) -> Result<Runtime, ContainerError> {
        let path = crate::lab::which(kind.name()).ok_or(ContainerError::Missing(kind.name()))?;
        let out = Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ContainerError::Unusable(kind.name(), e.to_string()))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(ContainerError::Unusable(kind.name(), why));
        }
        // SAFETY: geteuid has no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(ContainerError::NotRoot(kind.name()));
        }
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        Ok(Runtime {
            kind,
            version: String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            path,
            private_cgroup_view: kind == RuntimeKind::Crun && is_hybrid_cgroup_layout(&mounts),
        })
    }

    /// The arguments of `run` for container `id` of `bundle`.
    pub fn run_args(&self, bundle: &Bundle, id: &str) -> Vec<String> {
        vec![
            "run".into(),
            "--bundle".into(),
            bundle.dir.to_string_lossy().into_owned(),
            id.into(),
        ]
    }

    /// How to launch container `id` of `bundle` for a measurement. With
    /// `cgroup`, the runtime runs in that fresh memory cgroup and the
    /// container in `/<cgroup>/ctr` below it (an instance bundle whose
    /// `linux.cgroupsPath` says so), so the cgroup's peak charge counts the
    /// runtime, the workload and its tmpfs files, as a VM's counts the VMM
    /// and guest RAM.
    pub fn launch_spec(
        &self,
        bundle: &Bundle,
        id: &str,
        trace: bool,
        cgroup: Option<&str>,
    ) -> LaunchSpec {
        let instance = cgroup.and_then(|name| {
            bundle
                .instance(id, &format!("/{name}/ctr"))
                .map_err(|e| eprintln!("tinyvmm compare: {e}"))
                .ok()
        });
        LaunchSpec {
            program: self.path.clone(),
            args: self.run_args(instance.as_ref().unwrap_or(bundle), id),
            cgroup: instance
                .is_some()
                .then(|| cgroup.unwrap_or_default().to_string()),
            marker: crate::lab::MARKER.into(),
            guest_memory: None,
            pre_exec: self
                .private_cgroup_view
                .then_some(private_cgroup_view as fn() -> _),
            trace,
            trace_threads: trace,
            timeout: Duration::from_secs(30),
        }
    }

    /// Removes container `id` if a failed or killed run left it behind.
    pub fn cleanup(&self, id: &str) {
        if !Path::new(self.kind.state_root()).join(id).exists() {
            return;
        }
        let mut cmd = Command::new(&self.path);
        cmd.args(["delete", "--force", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.private_cgroup_view {
            // SAFETY: only system calls run between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, private_cgroup_view);
            }
        }
        let _ = cmd.status();
    }

    /// A one-line description of how the runtime is started.
    pub fn describe(&self) -> String {
        let mut s = format!("{} ({})", self.path.display(), self.version);
        if self.private_cgroup_view {
            s.push_str(", in a private mount namespace without /sys/fs/cgroup/unified");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
        cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n\
        cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";

    #[test]
    fn hybrid_layout_is_recognised() {
        assert!(is_hybrid_cgroup_layout(HYBRID));
        assert!(!is_hybrid_cgroup_layout(
            "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"
        ));
        assert!(!is_hybrid_cgroup_layout(
            "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
        ));
        assert!(!is_hybrid_cgroup_layout(""));
    }

    #[test]
    fn run_arguments_name_bundle_and_id() {
        let rt = Runtime {
            kind: RuntimeKind::Runc,
            path: "/usr/sbin/runc".into(),
            version: "runc version 1.1.5".into(),
            private_cgroup_view: false,
        };
        let b = Bundle {
            dir: "/tmp/b".into(),
            rootfs: "/r".into(),
        };
        assert_eq!(rt.run_args(&b, "x1"), ["run", "--bundle", "/tmp/b", "x1"]);
        let spec = rt.launch_spec(&b, "x1", true, None);
        assert!(spec.trace && spec.pre_exec.is_none() && spec.guest_memory.is_none());
        assert!(rt.describe().contains("1.1.5"));
    }
}
