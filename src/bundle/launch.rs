//! `tinyvmm run --bundle DIR`: the bundle becomes a `VmConfig` (every
//! check done and every file made before the sandbox goes in and before
//! any KVM call), then the VM runs as `tinyvmm run` runs one; the
//! workload's status is the exit code (0-255; signal N: 128+N).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{BundleError, initramfs, rootfs, settings, spec};
use crate::cli::RunArgs;
use crate::config::{self, BundleMode, ConsoleKind, KernelSource, VmConfig};
use crate::devices::virtio::block::disk::DiskConfig;
use crate::exit::{self, VmEnd};
use crate::vmm::Vmm;
use crate::vmm::report::print_report;
use crate::{say, seccomp, signals};

/// Annotation naming the VM's memory (a `--memory` size).
pub const MEMORY_ANNOTATION: &str = "org.tinyvmm.memory";
/// Annotation naming the VM's vCPU count.
pub const VCPUS_ANNOTATION: &str = "org.tinyvmm.vcpus";
/// Added to `linux.resources.memory.limit` for the guest kernel, as Kata
/// adds the limit to its base VM size.
pub const KERNEL_MEMORY: u64 = 64 << 20;
/// The base command line: kernel messages on the 8250 (to --kernel-log
/// or nowhere), only emergencies (the panic line) without --kernel-log.
const CMDLINE: &str = "console=ttyS0 reboot=k panic=1 pci=off io_delay=none";

/// A bundle turned into a VM configuration.
pub struct Prepared {
    /// The VM to run.
    pub config: VmConfig,
    /// Fields the VM does not honour (one warning).
    pub ignored: Vec<String>,
    /// The root image and what it cost.
    pub image: rootfs::Image,
    /// Keeps the initramfs memfd open until the VM is built.
    _initrd: File,
}

/// Reads, checks and converts the bundle at `args.bundle`.
pub fn prepare(args: &RunArgs, bundle: &Path) -> Result<Prepared, BundleError> {
    if !bundle.is_dir() {
        return Err(BundleError::resource(format!(
            "--bundle {}: not a directory",
            bundle.display()
        )));
    }
    let spec = spec::load(bundle)?;
    let root = spec.root.as_ref().expect("checked by load");
    let rootfs_dir = bundle.join(&root.path);
    match std::fs::symlink_metadata(&rootfs_dir) {
        Err(e) => {
            return Err(BundleError::resource(format!(
                "root.path {}: {e}",
                rootfs_dir.display()
            )));
        }
        Ok(m) if m.file_type().is_symlink() => {
            return Err(BundleError::resource(format!(
                "root.path {} is a symlink; refused, as crun refuses it",
                rootfs_dir.display()
            )));
        }
        Ok(m) if !m.is_dir() => {
            return Err(BundleError::resource(format!(
                "root.path {}: not a directory",
                rootfs_dir.display()
            )));
        }
        Ok(_) => {}
    }
    let settings = settings::encode(&spec)?;
    let mut config = args
        .to_config()
        .map_err(|e| BundleError::config(e.to_string()))?;
    config.memory = memory(args, &spec)?;
    config.vcpus = vcpus(args, &spec)?;
    config.kernel = KernelSource::File(kernel(args)?);
    config.cmdline = match (&args.cmdline, &args.kernel_log) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => CMDLINE.to_string(),
        (None, None) => format!("{CMDLINE} loglevel=1"),
    };
    config.console = ConsoleKind::Virtio;
    config.serial = true;
    config.bundle = Some(BundleMode {
        kernel_log: args.kernel_log.clone(),
        stop_timeout: Duration::from_secs_f64(args.stop_timeout),
        terminal: spec.process().terminal,
    });
    config
        .validate()
        .map_err(|e| BundleError::config(e.to_string()))?;
    let image = rootfs::image(&rootfs_dir)?;
    config.disks.insert(
        0,
        DiskConfig {
            path: image.path.clone(),
            readonly: true,
            direct: false,
            id: None,
        },
    );
    let (initrd, path) = initramfs::memfd(&settings)
        .map_err(|e| BundleError::resource(format!("the bundle's initramfs: {e}")))?;
    config.initrd = Some(path);
    Ok(Prepared {
        config,
        ignored: spec.ignored(),
        image,
        _initrd: initrd,
    })
}

fn kernel(args: &RunArgs) -> Result<PathBuf, BundleError> {
    if let Some(k) = &args.kernel {
        return Ok(k.clone());
    }
    let exe = std::env::current_exe().unwrap_or_default();
    crate::kernel_dir::default_vmlinux(&exe).ok_or_else(|| {
        BundleError::resource(
            "no guest kernel: build it with `bash kernels/build.sh` (or pass --kernel PATH)".into(),
        )
    })
}

/// `--memory`, else the annotation, else `linux.resources.memory.limit`
/// plus the kernel's share, else the default.
fn memory(args: &RunArgs, spec: &spec::Spec) -> Result<u64, BundleError> {
    let bad = |e: config::ConfigError| BundleError::config(e.to_string());
    if let Some(m) = &args.memory {
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

fn vcpus(args: &RunArgs, spec: &spec::Spec) -> Result<u8, BundleError> {
    let (n, what) = match (args.vcpus, spec.annotations.get(VCPUS_ANNOTATION)) {
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

/// The command: prepare, sandbox, build, run; returns the exit code.
pub fn run_command(args: &RunArgs, bundle: &Path, process_start: Instant) -> u8 {
    signals::die_with_parent();
    let code = run(args, bundle, process_start);
    crate::log::finish(Duration::from_millis(500));
    code
}

fn run(args: &RunArgs, bundle: &Path, process_start: Instant) -> u8 {
    let prepared = match prepare(args, bundle) {
        Ok(p) => p,
        Err(e) => {
            say!("tinyvmm: {e}");
            return e.code;
        }
    };
    if !prepared.ignored.is_empty() {
        say!(
            "tinyvmm: warning: not honoured in a VM, ignored: {}",
            prepared.ignored.join("; ")
        );
    }
    let config = &prepared.config;
    if config.stats {
        let i = &prepared.image;
        say!(
            "tinyvmm: root image {} ({}): hash {:.1} ms, build {:.1} ms",
            i.path.display(),
            if i.hit { "cache hit" } else { "cache miss" },
            i.hash_time.as_secs_f64() * 1e3,
            i.build_time.as_secs_f64() * 1e3
        );
    }
    if config.sandbox == seccomp::Sandbox::Off {
        say!("tinyvmm: WARNING: --no-seccomp: running WITHOUT the seccomp sandbox; debugging only");
    } else if let Err(e) = seccomp::install_build_filter() {
        say!("tinyvmm: {e}");
        return exit::EXIT_KVM_UNAVAILABLE;
    }
    if config.user.is_some() {
        crate::privileges::plan_user_switch();
    }
    crate::log::start();
    let vmm = match Vmm::build(config, process_start) {
        Ok(v) => v,
        Err(e) => {
            say!("tinyvmm: {e}");
            return e.exit_code();
        }
    };
    drop(prepared._initrd);
    let report = match vmm.run() {
        Ok(r) => r,
        Err(e) => {
            say!("tinyvmm: {e}");
            return e.exit_code();
        }
    };
    print_report(config, &report);
    report.guest_ram.keep_until_process_exit();
    match report.exit {
        VmEnd::GuestStatus(s) => s,
        VmEnd::Reset => {
            say!("tinyvmm: the guest ended without reporting the workload's status");
            exit::EXIT_GUEST_PANIC
        }
        other => other.code(),
    }
}
