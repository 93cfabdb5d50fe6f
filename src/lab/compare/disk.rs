//! The `tinyvmm-disk` path: tinyvmm boots the same kernel as
//! `tinyvmm-linux`, with the same busybox tree as an ext4 root on a virtio
//! disk (`rootfs.ext4` from kernels/build.sh) instead of an initramfs.
//!
//! Timed runs attach the image read-only (`readonly=on`, `root=/dev/vda
//! ro`), as the containers' bundles have a read-only root: instances may
//! then share it (a shared lock) for the density figure, and no run changes
//! what the next one boots. The persistence probe (`persistence.rs`) boots
//! a writable copy instead.

use std::path::{Path, PathBuf};

use super::paths::{Context, Launcher, PathId, Prepared};

/// The image kernels/build.sh writes.
pub const IMAGE: &str = "rootfs.ext4";

/// `tinyvmm run` arguments for a Linux boot from `image` on /dev/vda,
/// writable or not, with `extra` appended to the kernel command line.
pub fn args(
    ctx: &Context,
    kernel: &Path,
    image: &Path,
    writable: bool,
    extra: &str,
) -> Vec<String> {
    let (disk, root) = if writable {
        (format!("path={}", image.display()), "rw")
    } else {
        (format!("path={},readonly=on", image.display()), "ro")
    };
    let mut cmdline = format!("{} root=/dev/vda {root}", ctx.linux_cmdline());
    if !extra.is_empty() {
        cmdline = format!("{cmdline} {extra}");
    }
    [
        "run",
        "--memory",
        &ctx.memory.1,
        "--boot-timer",
        "--stats",
        "--kernel",
        &kernel.to_string_lossy(),
        "--disk",
        &disk,
        "--cmdline",
        &cmdline,
    ]
    .map(String::from)
    .to_vec()
}

/// The kernel and the image, or why the path cannot run.
pub fn images(ctx: &Context) -> Result<(PathBuf, PathBuf), String> {
    let k = ctx.kernels.join("vmlinux");
    let i = ctx.kernels.join(IMAGE);
    for f in [&k, &i] {
        if !f.is_file() {
            return Err(format!("{} missing (run kernels/build.sh)", f.display()));
        }
    }
    Ok((k, i))
}

/// Gets the path ready, or says why it cannot run here.
pub fn prepare(ctx: &Context) -> Result<Prepared, String> {
    crate::kvm::vm::open_kvm().map_err(|e| format!("/dev/kvm: {e}"))?;
    if !ctx.tinyvmm.is_file() {
        return Err(format!("{} missing", ctx.tinyvmm.display()));
    }
    let (kernel, image) = images(ctx)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    Ok(Prepared {
        id: PathId::TinyvmmDisk,
        binary: (ctx.tinyvmm.clone(), size(&ctx.tinyvmm)),
        launcher: Launcher::Vmm {
            program: ctx.tinyvmm.clone(),
            args: args(ctx, &kernel, &image, false, ""),
            timeout: ctx.linux_timeout,
            pre_exec: None,
        },
        guest_memory: Some(ctx.memory.0),
        image: (
            size(&kernel) + size(&image),
            format!("vmlinux + {IMAGE} (read-only virtio disk)"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::compare::paths::Workload;
    use std::time::Duration;

    fn ctx() -> Context {
        Context {
            tinyvmm: "/nonexistent/tinyvmm".into(),
            kernels: "/nonexistent/kernels".into(),
            memory: (128 << 20, "128M".into()),
            workload: Workload::default(),
            pvm: false,
            scratch: std::env::temp_dir(),
            linux_timeout: Duration::from_secs(1),
            firecracker: None,
            cloud_hypervisor: None,
        }
    }

    #[test]
    fn timed_runs_boot_the_image_read_only_and_the_probe_writable() {
        let c = ctx();
        let ro = args(&c, Path::new("/k"), Path::new("/i.ext4"), false, "");
        let at = ro.iter().position(|a| a == "--disk").unwrap();
        assert_eq!(ro[at + 1], "path=/i.ext4,readonly=on");
        assert!(ro.last().unwrap().ends_with("root=/dev/vda ro"), "{ro:?}");
        assert!(!ro.contains(&"--initrd".to_string()));
        let rw = args(
            &c,
            Path::new("/k"),
            Path::new("/c.ext4"),
            true,
            "tinyvmm.check=w",
        );
        assert!(rw.contains(&"path=/c.ext4".to_string()));
        assert!(
            rw.last()
                .unwrap()
                .ends_with("root=/dev/vda rw tinyvmm.check=w")
        );
    }

    #[test]
    fn a_missing_image_is_a_reason() {
        let e = images(&ctx()).unwrap_err();
        assert!(e.contains("vmlinux missing"), "{e}");
    }
}
