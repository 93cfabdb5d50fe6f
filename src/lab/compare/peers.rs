//! Peer VMMs as `compare` paths: QEMU microvm, Firecracker and Cloud
//! Hypervisor, booting
//! the same vmlinux, initramfs and command line as tinyvmm's Linux path,
//! with 1 vCPU and the same memory, launched and measured like every
//! other path (`measure::launch_all`: spawn to the marker line on stdout,
//! spawn to exit).
//!
//! - QEMU (`qemu-system-x86_64` from PATH, Debian's package): microvm as
//!   `crate::lab::qemu` builds it (an i8042 and `-no-reboot`, so the
//!   guest's reset ends it; this host's options).
//!
//! Firecracker and Cloud Hypervisor are not packaged by Debian: the binary is taken from `--firecracker
//! PATH` / `--cloud-hypervisor PATH`, else from PATH; a missing one is an
//! absent path with the reason (README: how to build them from source).
//!
//! - Firecracker (`--no-api --config-file`): the 8250 is its console,
//!   `reboot=k` reaches its i8042, and it exits 0.
//! - Cloud Hypervisor: serial console only (`--serial tty --console off`;
//!   it has no virtio-mmio, so no virtio console). A guest reset reboots
//!   its VM instead of ending the process (it has no option to exit
//!   instead), and `measure::launch_all` cannot yet end a run at its
//!   marker line, so a Cloud Hypervisor that is found is listed with that
//!   reason rather than run until its timeout; `cloud_hypervisor_launch`
//!   is its launch, ready for that.

use std::path::{Path, PathBuf};

use super::paths::{Context, Launcher, PathId, Prepared, file_size};

/// Where a peer's binary is: the given path, else PATH.
fn locate(given: Option<&Path>, name: &str, how: &str) -> Result<PathBuf, String> {
    match given {
        Some(p) if p.is_file() => Ok(p.to_path_buf()),
        Some(p) => Err(format!("{} is not a file", p.display())),
        None => crate::lab::which(name)
            .ok_or_else(|| format!("{name} not found in PATH (give it with --{name}; {how})")),
    }
}

/// The QEMU microvm path, with `program` found in PATH.
pub fn qemu(ctx: &Context, program: PathBuf) -> Result<Prepared, String> {
    let (kernel, initrd) = ctx.linux_images()?;
    let args = crate::lab::qemu::Microvm::new(
        &kernel,
        &initrd,
        &ctx.linux_cmdline(),
        &ctx.memory.1,
        ctx.pvm,
    )
    .args();
    Ok(peer(
        PathId::QemuLinux,
        ctx,
        program,
        args,
        &kernel,
        &initrd,
    ))
}

/// The Firecracker path: a config file in the scratch directory, then
/// `firecracker --no-api --config-file FILE`.
pub fn firecracker(ctx: &Context) -> Result<Prepared, String> {
    let program = locate(
        ctx.firecracker.as_deref(),
        "firecracker",
        "README: build it from source with cargo",
    )?;
    let (kernel, initrd) = ctx.linux_images()?;
    let config = serde_json::json!({
        "boot-source": {
            "kernel_image_path": kernel,
            "initrd_path": initrd,
            "boot_args": ctx.linux_cmdline(),
        },
        "drives": [],
        "machine-config": { "vcpu_count": 1, "mem_size_mib": ctx.memory.0 >> 20 },
    });
    std::fs::create_dir_all(&ctx.scratch).map_err(|e| format!("{}: {e}", ctx.scratch.display()))?;
    let file = ctx.scratch.join("firecracker.json");
    std::fs::write(&file, config.to_string()).map_err(|e| format!("{}: {e}", file.display()))?;
    let args = vec![
        "--no-api".to_string(),
        "--config-file".to_string(),
        file.display().to_string(),
    ];
    Ok(peer(
        PathId::Firecracker,
        ctx,
        program,
        args,
        &kernel,
        &initrd,
    ))
}

/// The Cloud Hypervisor path, or why it is not measured (see above).
pub fn cloud_hypervisor(ctx: &Context) -> Result<Prepared, String> {
    let launch = cloud_hypervisor_launch(ctx)?;
    Err(format!(
        "{} found, not measured: Cloud Hypervisor reboots its VM at the guest's reset instead of exiting, \
         and compare cannot yet stop a run at its marker line",
        launch.binary.0.display()
    ))
}

/// Cloud Hypervisor booting the same kernel, initramfs and command line
/// on its serial port.
pub fn cloud_hypervisor_launch(ctx: &Context) -> Result<Prepared, String> {
    let program = locate(
        ctx.cloud_hypervisor.as_deref(),
        "cloud-hypervisor",
        "README: build it from source with cargo",
    )?;
    let (kernel, initrd) = ctx.linux_images()?;
    let args: Vec<String> = [
        "--kernel",
        &kernel.to_string_lossy(),
        "--initramfs",
        &initrd.to_string_lossy(),
        "--cmdline",
        &ctx.linux_cmdline(),
        "--cpus",
        "boot=1",
        "--memory",
        &format!("size={}M", ctx.memory.0 >> 20),
        "--serial",
        "tty",
        "--console",
        "off",
    ]
    .map(String::from)
    .to_vec();
    Ok(peer(
        PathId::CloudHypervisor,
        ctx,
        program,
        args,
        &kernel,
        &initrd,
    ))
}

fn peer(
    id: PathId,
    ctx: &Context,
    program: PathBuf,
    args: Vec<String>,
    kernel: &Path,
    initrd: &Path,
) -> Prepared {
    let image = (
        file_size(kernel) + file_size(initrd),
        "vmlinux + initramfs.cpio".into(),
    );
    vmm_path(id, ctx, program, args, image)
}

/// A VMM path of compare (a peer, or a bundle path): its binary, launched
/// with `args` under the Linux timeout, with the context's guest memory
/// and `image` as its (bytes, what) image row.
pub(super) fn vmm_path(
    id: PathId,
    ctx: &Context,
    program: PathBuf,
    args: Vec<String>,
    image: (u64, String),
) -> Prepared {
    Prepared {
        id,
        binary: (program.clone(), file_size(&program)),
        launcher: Launcher::Vmm {
            program,
            args,
            timeout: ctx.linux_timeout,
            pre_exec: None,
        },
        guest_memory: Some(ctx.memory.0),
        image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx(dir: &Path) -> Context {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("vmlinux"), b"k").unwrap();
        std::fs::write(dir.join("initramfs.cpio"), b"i").unwrap();
        Context {
            tinyvmm: "/nonexistent/tinyvmm".into(),
            kernels: dir.to_path_buf(),
            memory: (128 << 20, "128M".into()),
            workload: Default::default(),
            pvm: true,
            scratch: dir.join("scratch"),
            linux_timeout: Duration::from_secs(1),
            firecracker: None,
            cloud_hypervisor: None,
        }
    }

    #[test]
    fn a_missing_peer_is_a_reason_and_a_given_one_gets_the_same_guest() {
        let dir = std::env::temp_dir().join(format!("tinyvmm-peers-{}", std::process::id()));
        let mut c = ctx(&dir);
        c.firecracker = Some("/nonexistent/firecracker".into());
        let e = firecracker(&c).unwrap_err();
        assert!(e.contains("not a file"), "{e}");
        // Any file will do as the "binary": prepare only writes the config.
        let fake = dir.join("vmlinux");
        c.firecracker = Some(fake.clone());
        c.cloud_hypervisor = Some(fake);
        let fc = firecracker(&c).unwrap();
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(c.scratch.join("firecracker.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(cfg["boot-source"]["boot_args"], c.linux_cmdline());
        assert_eq!(cfg["machine-config"]["mem_size_mib"], 128);
        assert!(fc.command_line().contains("--no-api"));
        let why = cloud_hypervisor(&c).unwrap_err();
        assert!(why.contains("found, not measured"), "{why}");
        let ch = cloud_hypervisor_launch(&c).unwrap();
        let line = ch.command_line();
        assert!(
            line.contains("--serial tty --console off") && line.contains("size=128M"),
            "{line}"
        );
        assert!(line.contains(&c.linux_cmdline()), "{line}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
