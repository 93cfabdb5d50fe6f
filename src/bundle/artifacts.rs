//! What a bundle becomes for any VMM, before any VM exists: the checked
//! spec, the root image (cached), the init's settings (packed into the
//! initramfs on demand), the kernel command line and the VM's size. `run
//! --bundle` (launch.rs) turns these into a `VmConfig`; the lab hands the
//! same artifacts to another VMM (QEMU in `compare`), so both run exactly
//! what the bundle says. Nothing here depends on tinyvmm's VMM.

use std::path::Path;

use super::{BundleError, initramfs, rootfs, settings, spec};
use crate::config;

/// Annotation naming the VM's memory (a `--memory` size).
pub const MEMORY_ANNOTATION: &str = "org.tinyvmm.memory";
/// Annotation naming the VM's vCPU count.
pub const VCPUS_ANNOTATION: &str = "org.tinyvmm.vcpus";
/// Added to `linux.resources.memory.limit` for the guest kernel, as Kata
/// adds the limit to its base VM size.
pub const KERNEL_MEMORY: u64 = 64 << 20;
/// The base command line: kernel messages on the 8250 (to a kernel log or
/// nowhere). The guest's init finds everything else in its initramfs.
pub const CMDLINE: &str = "console=ttyS0 reboot=k panic=1 pci=off io_delay=none";
/// Added to `CMDLINE` when nobody reads the kernel's messages: only
/// emergencies (the panic line) are printed.
pub const QUIET: &str = "loglevel=1";

/// The guest's devices, in the order the init expects them, for a VMM
/// other than tinyvmm: hvc0 = a virtio console carrying the workload's
/// stdout (and stdin), hvc1 = a second virtio console carrying its stderr
/// (and the host-to-guest control lines), /dev/vda = the root image,
/// attached read-only. The init writes its boot marker and the status to
/// tinyvmm's MMIO pages (0xC000_0000, 0xC000_1000); where nothing answers
/// there, the VM ends by a reboot and the status is lost.
pub const DEVICES: &str = "hvc0: stdout+stdin; hvc1: stderr+control; vda: root image (read-only)";

/// A bundle, ready for a VMM.
pub struct Artifacts {
    /// Fields a VM does not honour (one warning).
    pub ignored: Vec<String>,
    /// The init's settings (`/tinyvmm/settings`).
    pub settings: Vec<u8>,
    /// The read-only root image and what finding or building it cost.
    pub image: rootfs::Image,
    /// Guest RAM, bytes: `--memory`, the annotation, `memory.limit` + 64 MiB, or the default.
    pub memory: u64,
    /// vCPUs: `--vcpus`, the annotation, or 1.
    pub vcpus: u8,
    /// `process.terminal`.
    pub terminal: bool,
}

impl Artifacts {
    /// The initramfs (the init and the settings) as cpio bytes.
    pub fn initramfs(&self) -> std::io::Result<Vec<u8>> {
        initramfs::archive(&self.settings)
    }

    /// The kernel command line; `kernel_log`: whether the kernel's
    /// messages are read (else only its panic line is printed).
    pub fn cmdline(kernel_log: bool) -> String {
        if kernel_log {
            CMDLINE.to_string()
        } else {
            format!("{CMDLINE} {QUIET}")
        }
    }
}

/// Reads and checks the bundle at `bundle` and makes its root image (or
/// finds it cached). `memory` / `vcpus` override the bundle's own sizes
/// (`--memory`, `--vcpus`). Every error is one line with its exit code.
pub fn prepare(
    bundle: &Path,
    memory: Option<&str>,
    vcpus: Option<u64>,
) -> Result<Artifacts, BundleError> {
    if !bundle.is_dir() {
        return Err(BundleError::resource(format!(
            "--bundle {}: not a directory",
            bundle.display()
        )));
    }
    let spec = spec::load(bundle)?;
    let root = spec.root.as_ref().expect("checked by load");
    let rootfs_dir = bundle.join(&root.path);
    check_root(&rootfs_dir)?;
    let settings = settings::encode(&spec)?;
    let memory = memory_size(memory, &spec)?;
    let vcpus = vcpu_count(vcpus, &spec)?;
    let image = rootfs::image(&rootfs_dir)?;
    Ok(Artifacts {
        ignored: spec.ignored(),
        settings,
        image,
        memory,
        vcpus,
        terminal: spec.process().terminal,
    })
}

fn check_root(rootfs_dir: &Path) -> Result<(), BundleError> {
    match std::fs::symlink_metadata(rootfs_dir) {
        Err(e) => Err(BundleError::resource(format!(
            "root.path {}: {e}",
            rootfs_dir.display()
        ))),
        Ok(m) if m.file_type().is_symlink() => Err(BundleError::resource(format!(
            "root.path {} is a symlink; refused, as crun refuses it",
            rootfs_dir.display()
        ))),
        Ok(m) if !m.is_dir() => Err(BundleError::resource(format!(
            "root.path {}: not a directory",
            rootfs_dir.display()
        ))),
        Ok(_) => Ok(()),
    }
}

/// `--memory`, else the annotation, else `linux.resources.memory.limit`
/// plus the kernel's share, else the default.
fn memory_size(given: Option<&str>, spec: &spec::Spec) -> Result<u64, BundleError> {
    let bad = |e: config::ConfigError| BundleError::config(e.to_string());
    if let Some(m) = given {
        return config::parse_memory(m).map_err(bad);
    }
    if let Some(m) = spec.annotations.get(MEMORY_ANNOTATION) {
        return config::parse_memory(m)
            .map_err(|e| BundleError::config(format!("annotation {MEMORY_ANNOTATION}: {e}")));
    }
    let limit = spec
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .and_then(|r| r.memory.as_ref())
        .and_then(|m| m.limit)
        .filter(|&l| l > 0);
    match limit {
        Some(l) => Ok((l as u64).div_ceil(1 << 20).saturating_mul(1 << 20) + KERNEL_MEMORY),
        None => Ok(config::DEFAULT_MEMORY),
    }
}

fn vcpu_count(given: Option<u64>, spec: &spec::Spec) -> Result<u8, BundleError> {
    let (n, what) = match (given, spec.annotations.get(VCPUS_ANNOTATION)) {
        (Some(n), _) => (n, "--vcpus".to_string()),
        (None, Some(a)) => (
            a.parse().map_err(|_| {
                BundleError::config(format!("annotation {VCPUS_ANNOTATION} {a:?}: not a number"))
            })?,
            format!("annotation {VCPUS_ANNOTATION}"),
        ),
        (None, None) => (1, String::new()),
    };
    u8::try_from(n)
        .ok()
        .filter(|n| (1..=config::MAX_VCPUS).contains(n))
        .ok_or_else(|| {
            BundleError::config(format!(
                "{what} {n}: must be between 1 and {}",
                config::MAX_VCPUS
            ))
        })
}
