//! `tinyvmm run --bundle DIR`: the bundle becomes a `VmConfig` (every
//! check done and every file made before the sandbox goes in and before
//! any KVM call), then the VM runs as `tinyvmm run` runs one; the
//! workload's status is the exit code (0-255; signal N: 128+N).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::artifacts::{self, Artifacts};
use super::{BundleError, initramfs, rootfs};
use crate::cli::RunArgs;
use crate::config::{BundleMode, ConsoleKind, KernelSource, VmConfig};
use crate::devices::virtio::block::disk::DiskConfig;
use crate::exit::{self, VmEnd};
use crate::vmm::Vmm;
use crate::vmm::report::print_report;
use crate::{say, seccomp, signals};

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
    let a = artifacts::prepare(bundle, args.memory.as_deref(), args.vcpus)?;
    let mut config = args
        .to_config()
        .map_err(|e| BundleError::config(e.to_string()))?;
    config.memory = a.memory;
    config.vcpus = a.vcpus;
    config.kernel = KernelSource::File(kernel(args)?);
    config.cmdline = match &args.cmdline {
        Some(c) => c.clone(),
        None => Artifacts::cmdline(args.kernel_log.is_some()),
    };
    config.console = ConsoleKind::Virtio;
    config.serial = true;
    config.bundle = Some(BundleMode {
        kernel_log: args.kernel_log.clone(),
        stop_timeout: Duration::from_secs_f64(args.stop_timeout),
        terminal: a.terminal,
    });
    config
        .validate()
        .map_err(|e| BundleError::config(e.to_string()))?;
    config.disks.insert(
        0,
        DiskConfig {
            path: a.image.path.clone(),
            readonly: true,
            direct: false,
            id: None,
        },
    );
    let (initrd, path) = initramfs::memfd(&a.settings)
        .map_err(|e| BundleError::resource(format!("the bundle's initramfs: {e}")))?;
    config.initrd = Some(path);
    Ok(Prepared {
        config,
        ignored: a.ignored,
        image: a.image,
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
