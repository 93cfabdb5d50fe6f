//! The ways `tinyvmm compare` runs the workload, and how to launch each
//! (the peer VMMs, Firecracker and Cloud Hypervisor, in `peers.rs`). A
//! path that cannot run here is `Err(reason)`, and that reason goes into
//! the report.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use super::workload::{PVM_QEMU_CPU, Workload};
use crate::lab::MARKER;
use crate::lab::container::{Bundle, Runtime, RuntimeKind};
use crate::lab::measure::LaunchSpec;

/// One way to run the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PathId {
    /// tinyvmm booting its own tiny guest (the lower bound of a VM).
    TinyvmmTiny,
    /// tinyvmm booting the Linux kernel and busybox initramfs.
    TinyvmmLinux,
    /// tinyvmm booting the same kernel with the same tree as an ext4 root
    /// on a virtio disk (`disk.rs`).
    TinyvmmDisk,
    /// QEMU `-M microvm` booting the same kernel and initramfs.
    QemuLinux,
    /// crun running the same rootfs as an OCI container.
    Crun,
    /// runc running the same rootfs as an OCI container.
    Runc,
    /// tinyvmm restoring the tiny guest saved at its marker (restored.rs).
    TinyvmmTinyRestored,
    /// tinyvmm restoring Linux saved at its warm ready point (restored.rs).
    TinyvmmLinuxRestored,
    /// Firecracker booting the same kernel and initramfs (peers.rs).
    Firecracker,
    /// Cloud Hypervisor booting the same kernel and initramfs (peers.rs).
    CloudHypervisor,
    /// `tinyvmm run --bundle`: crun's bundle as a micro-VM (bundle_paths.rs).
    TinyvmmBundle,
    /// QEMU microvm booting what the core makes of crun's bundle.
    QemuBundle,
}

impl PathId {
    /// Every path, in report order.
    pub const ALL: [PathId; 12] = [
        PathId::TinyvmmTiny,
        PathId::TinyvmmLinux,
        PathId::TinyvmmDisk,
        PathId::QemuLinux,
        PathId::Firecracker,
        PathId::CloudHypervisor,
        PathId::Crun,
        PathId::Runc,
        PathId::TinyvmmBundle,
        PathId::QemuBundle,
        PathId::TinyvmmTinyRestored,
        PathId::TinyvmmLinuxRestored,
    ];

    /// The column heading.
    pub fn label(self) -> &'static str {
        match self {
            PathId::TinyvmmTiny => "tinyvmm + tiny guest",
            PathId::TinyvmmLinux => "tinyvmm + Linux",
            PathId::TinyvmmDisk => "tinyvmm + Linux, root on disk",
            PathId::QemuLinux => "QEMU microvm + Linux",
            PathId::Crun => "crun",
            PathId::Runc => "runc",
            PathId::TinyvmmTinyRestored => "tinyvmm + tiny guest (restored)",
            PathId::TinyvmmLinuxRestored => "tinyvmm + Linux (restored)",
            PathId::Firecracker => "Firecracker + Linux",
            PathId::CloudHypervisor => "Cloud Hypervisor + Linux",
            PathId::TinyvmmBundle => "tinyvmm --bundle (crun's bundle)",
            PathId::QemuBundle => "QEMU microvm, crun's bundle",
        }
    }

    /// Whether this path boots a Linux guest (slow where guest kernel mode
    /// is emulated).
    pub fn is_linux(self) -> bool {
        matches!(
            self,
            PathId::TinyvmmLinux
                | PathId::TinyvmmDisk
                | PathId::QemuLinux
                | PathId::Firecracker
                | PathId::CloudHypervisor
                | PathId::TinyvmmLinuxRestored
                | PathId::TinyvmmBundle
                | PathId::QemuBundle
        )
    }

    /// Whether this path is another project's VMM, whose guest's status
    /// does not pass through (its clean reset exits 0).
    pub fn is_peer_vmm(self) -> bool {
        matches!(
            self,
            PathId::QemuLinux | PathId::Firecracker | PathId::CloudHypervisor | PathId::QemuBundle
        )
    }

    /// Whether this path is a virtual machine.
    pub fn is_vm(self) -> bool {
        !matches!(self, PathId::Crun | PathId::Runc)
    }
}

/// Everything the paths share.
#[derive(Clone, Debug)]
pub struct Context {
    /// The tinyvmm executable to launch.
    pub tinyvmm: PathBuf,
    /// kernels/build.sh's output directory.
    pub kernels: PathBuf,
    /// Guest memory, bytes, and as given on the command line.
    pub memory: (u64, String),
    /// The workload.
    pub workload: Workload,
    /// Whether the host's KVM emulates guest kernel mode (kvm_pvm loaded).
    pub pvm: bool,
    /// Where bundles are written.
    pub scratch: PathBuf,
    /// Timeout of one Linux boot.
    pub linux_timeout: Duration,
    /// `--firecracker PATH` (else PATH is searched).
    pub firecracker: Option<PathBuf>,
    /// `--cloud-hypervisor PATH` (else PATH is searched).
    pub cloud_hypervisor: Option<PathBuf>,
}

impl Context {
    /// The Linux paths' one command line.
    pub fn linux_cmdline(&self) -> String {
        let mut c = format!("console=ttyS0 {}", crate::config::DEFAULT_CMDLINE);
        if self.pvm {
            // The same options tinyvmm's `minimal` template adds (it adds
            // them only once), so both VMMs' guests get one command line.
            c = format!("{c} {}", crate::arch::x86_64::cpuid::MINIMAL_KERNEL_ARGS);
        }
        format!("{c} {}", self.workload.linux_cmdline())
    }

    /// The Linux paths' kernel and initramfs.
    pub fn linux_images(&self) -> Result<(PathBuf, PathBuf), String> {
        let k = self.kernels.join("vmlinux");
        let i = self.kernels.join("initramfs.cpio");
        for f in [&k, &i] {
            if !f.is_file() {
                return Err(format!("{} missing (run kernels/build.sh)", f.display()));
            }
        }
        Ok((k, i))
    }
}

/// How a ready path is launched.
#[derive(Clone, Debug)]
pub enum Launcher {
    /// A VMM: one process, guest RAM of `memory` bytes.
    Vmm {
        /// Executable.
        program: PathBuf,
        /// Arguments.
        args: Vec<String>,
        /// Timeout.
        timeout: Duration,
        /// Run in the child before exec: a restored Linux's request line
        /// on stdin (`restored.rs`).
        pre_exec: Option<fn() -> std::io::Result<()>>,
    },
    /// A container runtime with its bundle.
    Container(Runtime, Bundle),
}

/// A path ready to run.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Which path.
    pub id: PathId,
    /// How to launch it.
    pub launcher: Launcher,
    /// Guest RAM size (VMs).
    pub guest_memory: Option<u64>,
    /// The launcher executable (VMM or runtime) and its size.
    pub binary: (PathBuf, u64),
    /// Bytes of guest/container image on disk, and what they are.
    pub image: (u64, String),
}

impl Prepared {
    /// The launch of run number `n` (container IDs must be unique).
    pub fn spec(&self, n: usize, trace: bool) -> LaunchSpec {
        match &self.launcher {
            Launcher::Vmm {
                program,
                args,
                timeout,
                pre_exec,
            } => LaunchSpec {
                program: program.clone(),
                args: args.clone(),
                marker: MARKER.into(),
                guest_memory: self.guest_memory,
                pre_exec: *pre_exec,
                trace,
                trace_threads: false,
                timeout: *timeout,
                // Measured runs only: a fresh memory cgroup costs a VMM
                // ~13 ms to its marker on our kvm_pvm host (its first
                // kernel allocations there take a slow path), so timed
                // runs are plain launches, for VMs and containers alike.
                cgroup: trace.then(|| self.container_id(n)),
            },
            Launcher::Container(rt, b) => {
                let id = self.container_id(n);
                rt.launch_spec(b, &id, trace, trace.then_some(id.as_str()))
            }
        }
    }

    /// Removes what run `n` may have left behind (a container's state and
    /// its instance bundle).
    pub fn cleanup(&self, n: usize) {
        if let Launcher::Container(rt, b) = &self.launcher {
            let id = self.container_id(n);
            rt.cleanup(&id);
            let _ = std::fs::remove_dir_all(b.instance_dir(&id));
        }
    }

    fn container_id(&self, n: usize) -> String {
        format!("tinyvmm-cmp-{}-{:?}-{n}", std::process::id(), self.id).to_lowercase()
    }

    /// The command line of a run, for the report.
    pub fn command_line(&self) -> String {
        let s = match &self.launcher {
            Launcher::Container(rt, b) => rt.launch_spec(b, &self.container_id(0), false, None),
            Launcher::Vmm { .. } => self.spec(0, false),
        };
        let mut words = vec![s.program.display().to_string()];
        words.extend(s.args.iter().map(|a| {
            if a.contains(' ') {
                format!("\"{a}\"")
            } else {
                a.clone()
            }
        }));
        words.join(" ")
    }
}

/// A file's size, 0 when unreadable.
pub fn file_size(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Bytes in a directory tree (regular files and symlinks, not following links).
pub fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            _ => fs::symlink_metadata(e.path()).map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Gets path `id` ready, or says why it cannot run here.
pub fn prepare(id: PathId, ctx: &Context) -> Result<Prepared, String> {
    // The VMM's own probe: /dev/kvm must open and answer API version 12.
    let kvm = || {
        crate::kvm::vm::open_kvm()
            .map(drop)
            .map_err(|e| format!("/dev/kvm: {e}"))
    };
    let vmm = |program: PathBuf, args: Vec<String>, timeout, image| Prepared {
        id,
        binary: (program.clone(), file_size(&program)),
        launcher: Launcher::Vmm {
            program,
            args,
            timeout,
            pre_exec: None,
        },
        guest_memory: Some(ctx.memory.0),
        image,
    };
    let mem = ctx.memory.1.clone();
    match id {
        PathId::TinyvmmDisk => super::disk::prepare(ctx),
        PathId::TinyvmmTiny | PathId::TinyvmmLinux => {
            kvm()?;
            if !ctx.tinyvmm.is_file() {
                return Err(format!("{} missing", ctx.tinyvmm.display()));
            }
            let mut args: Vec<String> = ["run", "--memory", &mem, "--boot-timer", "--stats"]
                .map(String::from)
                .to_vec();
            if id == PathId::TinyvmmTiny {
                args.extend(["--cmdline".into(), ctx.workload.tiny_cmdline()]);
                let image = (
                    crate::tiny_guest::ELF.len() as u64,
                    "tiny guest ELF (embedded in tinyvmm)".into(),
                );
                return Ok(vmm(
                    ctx.tinyvmm.clone(),
                    args,
                    Duration::from_secs(30),
                    image,
                ));
            }
            let (k, i) = ctx.linux_images()?;
            let image = (
                file_size(&k) + file_size(&i),
                "vmlinux + initramfs.cpio".into(),
            );
            args.extend(
                [
                    "--kernel",
                    &k.to_string_lossy(),
                    "--initrd",
                    &i.to_string_lossy(),
                ]
                .map(String::from),
            );
            args.extend(["--cmdline".into(), ctx.linux_cmdline()]);
            Ok(vmm(ctx.tinyvmm.clone(), args, ctx.linux_timeout, image))
        }
        PathId::QemuLinux | PathId::QemuBundle => {
            let qemu = crate::lab::qemu::find().ok_or(
                "qemu-system-x86_64 not found in PATH (install the Debian package qemu-system-x86)",
            )?;
            kvm()?;
            if id == PathId::QemuBundle {
                return super::bundle_paths::qemu(ctx, qemu);
            }
            super::peers::qemu(ctx, qemu)
        }
        PathId::TinyvmmBundle => {
            kvm()?;
            super::bundle_paths::tinyvmm(ctx)
        }
        PathId::Firecracker => {
            kvm()?;
            super::peers::firecracker(ctx)
        }
        PathId::CloudHypervisor => {
            kvm()?;
            super::peers::cloud_hypervisor(ctx)
        }
        PathId::Crun | PathId::Runc => {
            let kind = if id == PathId::Crun {
                RuntimeKind::Crun
            } else {
                RuntimeKind::Runc
            };
            let rt = Runtime::find(kind).map_err(|e| e.to_string())?;
            // The same bundle directory as the VM bundle paths.
            let b = super::bundle_paths::shared_bundle(ctx)?;
            let image = (
                tree_size(&b.rootfs) + file_size(&b.dir.join("config.json")),
                "rootfs/ + config.json".into(),
            );
            Ok(Prepared {
                id,
                binary: (rt.path.clone(), file_size(&rt.path)),
                launcher: Launcher::Container(rt, b),
                guest_memory: None,
                image,
            })
        }
        _ => super::restored::prepare(id, ctx),
    }
}

#[cfg(test)]
#[path = "paths_tests.rs"]
mod tests;
