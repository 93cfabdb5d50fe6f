//! compare's bundle paths (issue 12): the OCI bundle crun and runc run
//! (`shared_bundle`, one directory for all four paths) run as a micro-VM.
//!
//! - "tinyvmm --bundle": `tinyvmm run --bundle DIR` with the same kernel as
//!   the other Linux paths.
//! - "QEMU microvm --bundle": the core prepares the same artifacts
//!   (`crate::bundle::artifacts`: the root image from the image cache, the
//!   initramfs with the guest init and the bundle's settings, the kernel
//!   command line), and QEMU boots them with the devices the init expects:
//!   two virtio consoles (hvc0: the workload's stdout on QEMU's stdout,
//!   hvc1: its stderr on QEMU's stderr), the root image as a read-only
//!   virtio disk, a virtio-rng. QEMU has no device at tinyvmm's boot-marker
//!   and exit pages: its guest ends by a reboot (`-no-reboot`), so QEMU
//!   exits 0 whatever the workload's status (as for the other peer VMMs),
//!   and the host-to-guest control channel (signals, end of stdin) is not
//!   wired (compare sends neither). The kernel log goes nowhere on both.
//!
//! Both are measured like every path: spawn to the workload's marker line
//! on stdout, spawn to exit, the launcher's processes.

use std::path::{Path, PathBuf};

use super::paths::{Context, PathId, Prepared, file_size};
use crate::bundle::artifacts::{self, Artifacts};
use crate::lab::container::Bundle;
use crate::lab::qemu::Microvm;

/// The one bundle every bundle-running path gets: crun, runc, tinyvmm
/// and QEMU (`scratch/bundle`, rootfs = kernels/build.sh's tree).
pub fn shared_bundle(ctx: &Context) -> Result<Bundle, String> {
    Bundle::write(
        &ctx.scratch.join("bundle"),
        &ctx.kernels.join("rootfs"),
        &ctx.workload.container_args(),
    )
    .map_err(|e| e.to_string())
}

fn kernel(ctx: &Context) -> Result<PathBuf, String> {
    let k = ctx.kernels.join("vmlinux");
    if !k.is_file() {
        return Err(format!("{} missing (run kernels/build.sh)", k.display()));
    }
    Ok(k)
}

fn image_sizes(a: &Artifacts) -> Result<(u64, String), String> {
    let initramfs = a.initramfs().map_err(|e| e.to_string())?.len() as u64;
    Ok((
        file_size(&a.image.path) + initramfs,
        "root image (ext4, from the bundle's rootfs/) + init initramfs".into(),
    ))
}

/// `tinyvmm run --bundle DIR`.
pub fn tinyvmm(ctx: &Context) -> Result<Prepared, String> {
    if !ctx.tinyvmm.is_file() {
        return Err(format!("{} missing", ctx.tinyvmm.display()));
    }
    let b = shared_bundle(ctx)?;
    // What tinyvmm will find in its cache (the first launch pays no miss).
    let a = artifacts::prepare(&b.dir, Some(&ctx.memory.1), None).map_err(|e| e.to_string())?;
    let args = launch_args(PathId::TinyvmmBundle, ctx, &b.dir)?;
    Ok(super::peers::vmm_path(
        PathId::TinyvmmBundle,
        ctx,
        ctx.tinyvmm.clone(),
        args,
        image_sizes(&a)?,
    ))
}

/// QEMU microvm booting the artifacts the core prepared for the bundle.
pub fn qemu(ctx: &Context, program: PathBuf) -> Result<Prepared, String> {
    let b = shared_bundle(ctx)?;
    let a = artifacts::prepare(&b.dir, Some(&ctx.memory.1), None).map_err(|e| e.to_string())?;
    let args = launch_args(PathId::QemuBundle, ctx, &b.dir)?;
    Ok(super::peers::vmm_path(
        PathId::QemuBundle,
        ctx,
        program,
        args,
        image_sizes(&a)?,
    ))
}

/// The launcher's arguments for running the bundle at `dir` on path `id`
/// (QEMU: its artifacts prepared now, the initramfs beside the bundle).
pub fn launch_args(id: PathId, ctx: &Context, dir: &Path) -> Result<Vec<String>, String> {
    let k = kernel(ctx)?;
    if id == PathId::TinyvmmBundle {
        return Ok([
            "run",
            "--bundle",
            &dir.to_string_lossy(),
            "--kernel",
            &k.to_string_lossy(),
            "--memory",
            &ctx.memory.1,
            "--boot-timer",
            "--stats",
        ]
        .map(String::from)
        .to_vec());
    }
    let a = artifacts::prepare(dir, Some(&ctx.memory.1), None).map_err(|e| e.to_string())?;
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push("-initramfs.cpio");
    let initrd = dir.with_file_name(name);
    let bytes = a.initramfs().map_err(|e| e.to_string())?;
    std::fs::write(&initrd, bytes).map_err(|e| format!("{}: {e}", initrd.display()))?;
    Ok(microvm(ctx, &k, &initrd, &a).args())
}

/// The lab's one QEMU microvm builder with the devices of
/// `artifacts::DEVICES` in the order the guest numbers them: hvc0 on
/// QEMU's stdio, hvc1 on its stderr, the root image read-only, virtio-rng;
/// the 8250 (kernel messages) nowhere, as tinyvmm without --kernel-log.
fn microvm(ctx: &Context, kernel: &Path, initrd: &Path, a: &Artifacts) -> Microvm {
    Microvm::new(
        kernel,
        initrd,
        &Artifacts::cmdline(false),
        &ctx.memory.1,
        ctx.pvm,
    )
    .vcpus(a.vcpus)
    .serial_null()
    .console("stdio", "signal=off")
    .console("file", "path=/dev/stderr,append=on")
    .read_only_disk(&a.image.path)
    .rng()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::rootfs::Image;

    #[test]
    fn qemu_gets_the_devices_the_guest_init_expects_in_its_order() {
        let ctx = Context {
            tinyvmm: "/nonexistent/tinyvmm".into(),
            kernels: "/k".into(),
            memory: (128 << 20, "128M".into()),
            workload: Default::default(),
            pvm: true,
            scratch: "/s".into(),
            linux_timeout: std::time::Duration::from_secs(1),
            firecracker: None,
            cloud_hypervisor: None,
        };
        let a = Artifacts {
            ignored: vec![],
            settings: b"arg\0true\0".to_vec(),
            image: Image {
                path: "/c/root.ext4".into(),
                hit: true,
                hash_time: Default::default(),
                build_time: Default::default(),
            },
            memory: 128 << 20,
            vcpus: 1,
            terminal: false,
        };
        let args = microvm(&ctx, Path::new("/k/vmlinux"), Path::new("/s/i.cpio"), &a).args();
        let line = args.join(" ");
        let at = |s: &str| line.find(s).unwrap_or_else(|| panic!("{s} not in {line}"));
        // hvc0 (stdout on QEMU's stdout) is the first virtio console, hvc1
        // (stderr) the second; the root image is read-only, after them.
        assert!(at("stdio,id=c0,signal=off") < at("file,id=c1,path=/dev/stderr,append=on"));
        assert!(at("virtconsole,bus=s0.0,chardev=c0") < at("virtconsole,bus=s1.0,chardev=c1"));
        assert!(at("virtconsole,bus=s1.0") < at("file=/c/root.ext4"));
        assert!(line.contains("readonly=on") && line.contains("-serial null"));
        assert!(line.contains("microvm,acpi=off") && line.contains("-device i8042"));
        assert!(
            line.contains("-initrd /s/i.cpio -append console=ttyS0"),
            "{line}"
        );
        assert!(line.contains(&Artifacts::cmdline(false)), "{line}");
    }
}
