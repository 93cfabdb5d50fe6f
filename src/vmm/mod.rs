//! The VMM: `Vmm::build` turns a `VmConfig` into a ready VM, `Vmm::run`
//! (run.rs) runs it to its end. The build reads top to bottom:
//! memory -> kernel -> VM -> devices -> boot structures -> vCPUs.
//!
//! - `images.rs`: opening and loading the kernel and initrd, and the full
//!   kernel command line.
//! - `run.rs`: vCPU threads, the event loop, the ending.
//! - `report.rs`: what a run measured, and what `run` prints about it.
//! - `launch.rs`: the `tinyvmm run` command: sandbox, build, run, report.
//! - `bundle_io.rs`: `run --bundle`'s consoles and control channel.

pub mod bundle_io;
pub mod images;
pub mod launch;
pub mod report;
pub mod restore;
pub mod run;
pub mod snapshot;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::GuestMemoryMmap;

use crate::arch::x86_64::boot::{self, BootError};
use crate::arch::x86_64::{cpuid, mptable, regs};
use crate::config::{ConfigError, ConsoleKind, VmConfig};
use crate::devices::boot_timer::BootTimer;
use crate::devices::legacy::SerialSetup;
use crate::devices::manager::{DeviceError, DeviceManager};
use crate::devices::output::{DEFAULT_CAPACITY, GuestOutput};
use crate::devices::virtio::vsock;
use crate::exit::{self, ExitSignal};
use crate::kvm::pause::Pause;
use crate::kvm::vcpu::{Vcpu, VcpuSetup, base_cpuid};
use crate::kvm::vm::{KvmError, Vm, kvm_err, max_vcpus, open_kvm};
use crate::snapshot::SnapshotError;
use crate::snapshot::files::SnapshotFiles;

/// Why a VM could not be built or run. Each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A kernel or initrd file could not be opened.
    #[error("{0}: {1}")]
    ImageFile(PathBuf, String),
    /// The kernel or initrd could not be loaded.
    #[error("{0}: {1}")]
    Image(String, BootError),
    /// Guest memory could not be mapped (a bad size or layout).
    #[error("guest memory of {0} MiB could not be mapped: {1}")]
    Memory(u64, String),
    /// The host has no memory (or address space) to map guest RAM.
    #[error("the host could not give {0} MiB of guest memory: {1}")]
    HostMemory(u64, std::io::Error),
    /// A KVM call failed.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// A device could not be set up.
    #[error(transparent)]
    Devices(#[from] DeviceError),
    /// A disk image is unusable.
    #[error(transparent)]
    Disk(#[from] crate::devices::virtio::block::disk::DiskError),
    /// A `--net` tap could not be opened or created.
    #[error("{0}")]
    Net(String),
    /// The vsock socket path is unusable.
    #[error(transparent)]
    Vsock(#[from] crate::devices::virtio::vsock::host::ListenError),
    /// Something else the VM needs could not be set up.
    #[error("setting up {0}: {1}")]
    Setup(&'static str, String),
    /// A snapshot cannot be written there, or cannot be restored.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl VmmError {
    /// The documented process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            VmmError::Config(_) | VmmError::Memory(..) => exit::EXIT_BAD_CONFIG,
            VmmError::ImageFile(..)
            | VmmError::Image(..)
            | VmmError::Disk(_)
            | VmmError::Net(_)
            | VmmError::Snapshot(_) => exit::EXIT_BAD_IMAGE,
            VmmError::Vsock(_) => exit::EXIT_BAD_IMAGE,
            VmmError::Kvm(_)
            | VmmError::Devices(_)
            | VmmError::Setup(..)
            | VmmError::HostMemory(..) => exit::EXIT_KVM_UNAVAILABLE,
        }
    }
}

/// Wraps any displayable error as a `Setup` error about `what`.
pub(crate) fn setup_err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> VmmError {
    move |e| VmmError::Setup(what, e.to_string())
}

/// A built VM, ready to run.
pub struct Vmm {
    config: VmConfig,
    // Field order is drop order: vCPUs and devices before the VM.
    vcpus: Vec<Vcpu>,
    devices: DeviceManager,
    vm: Vm,
    exit: Arc<ExitSignal>,
    output: GuestOutput,
    boot_timer: Arc<BootTimer>,
    build_time: Duration,
    /// Parks the vCPUs for a snapshot (kvm/pause.rs).
    pause: Arc<Pause>,
    /// The snapshot directory's files, opened during the build.
    snapshot_files: Option<SnapshotFiles>,
    bundle: Option<bundle_io::BundleIo>,
    /// `--profile` / `--boot-timer` phases.
    profiler: Option<crate::profile::Profiler>,
}

impl Vmm {
    /// Builds a VM from `config`. `process_start` is when `main` began.
    pub fn build(config: &VmConfig, process_start: Instant) -> Result<Vmm, VmmError> {
        let build_start = Instant::now();
        config.validate()?;

        // 1. Guest memory: anonymous mappings, split around the MMIO gap.
        let mem = GuestMemoryMmap::from_ranges(&boot::ram_ranges(config.memory))
            .map_err(|e| memory_error(config.memory, e))?;

        // 2. Kernel and initrd into guest memory: bad images fail before any KVM call.
        let kernel = images::load_kernel(&mem, &config.kernel)?;
        let initrd = images::load_initrd(&mem, &kernel, config)?;
        // Disk images too: opened and locked before any KVM call, so an
        // unusable or busy image is a 126 whatever the host's KVM.
        let disks = config
            .disks
            .iter()
            .map(images::open_disk)
            .collect::<Result<Vec<_>, _>>()?;
        // Taps likewise (created ones need CAP_NET_ADMIN, still held here).
        let taps = config
            .nets
            .iter()
            .map(|n| crate::devices::virtio::net::open_tap(n).map(|t| (t, n.mac)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(VmmError::Net)?;
        // The snapshot directory too (no opens once the VM runs).
        let snapshot_files = match &config.snapshot {
            Some(plan) => Some(SnapshotFiles::create(&plan.dir)?),
            None => None,
        };
        // The profiler (--profile, --boot-timer): its symbols and output
        // files, also checked before any KVM call.
        let profiler = crate::profile::Profiler::new(config, &mem, process_start)
            .map_err(ConfigError::Path)?;
        // The vsock listener too (a path in use or not a socket: 126).
        let vsock_listener = config.vsock.as_ref().map(vsock::host::listen).transpose()?;

        // 3. The VM: memory slots, irqchip, PIT.
        let kvm = open_kvm()?;
        let max = max_vcpus(&kvm);
        if usize::from(config.vcpus) > max {
            return Err(ConfigError::Vcpus(config.vcpus.into(), max as u64).into());
        }
        let vm = Vm::new(kvm, mem)?;

        // Threads created from here on keep what a user switch needs.
        if config.user.is_some() {
            crate::privileges::plan_user_switch();
        }

        // 4. Devices on the buses, owned by the device manager.
        let exit = Arc::new(ExitSignal::new().map_err(setup_err("the exit eventfd"))?);
        let boot_timer = BootTimer::new(process_start, build_start, config.boot_timer);
        let output = match &config.bundle {
            Some(mode) => bundle_io::kernel_output(mode)?,
            None => guest_output(config.console)?,
        };
        let mut devices = DeviceManager::new();
        let serial = match (config.serial, config.console) {
            (false, _) => SerialSetup::Absent,
            (true, ConsoleKind::Serial) => SerialSetup::Console,
            (true, _) => SerialSetup::Output,
        };
        devices.attach_legacy_devices(vm.fd(), serial, &exit, &boot_timer, &output)?;
        let bundle = match &config.bundle {
            Some(mode) => Some(bundle_io::BundleIo::attach(
                mode,
                &mut devices,
                vm.fd(),
                vm.memory(),
            )?),
            None => {
                if config.console == ConsoleKind::Virtio {
                    devices.attach_virtio_console(vm.fd(), vm.memory(), &output)?;
                }
                None
            }
        };
        for disk in disks {
            devices.attach_virtio_block(vm.fd(), vm.memory(), disk)?;
        }
        for (tap, mac) in taps {
            devices.attach_virtio_net(vm.fd(), vm.memory(), tap, mac)?;
        }
        if config.rng {
            devices.attach_virtio_rng(vm.fd(), vm.memory())?;
        }
        if let (Some(c), Some(listener)) = (&config.vsock, vsock_listener) {
            devices.attach_virtio_vsock(vm.fd(), vm.memory(), c, listener)?;
        }
        let cmdline = images::full_cmdline(config, devices.cmdline_entries());
        crate::config::validate_cmdline(&cmdline)?;

        // 5. Boot structures: zero page + command line, MP table, GDT, page tables.
        let mem = vm.memory();
        boot::write_boot_params(mem, &kernel, initrd, &cmdline, config.memory)
            .map_err(|e| VmmError::Image(images::kernel_name(&config.kernel), e))?;
        mptable::setup_mptable(mem, config.vcpus).map_err(setup_err("the MP table"))?;
        regs::write_gdt_and_idt(mem).map_err(setup_err("the GDT"))?;
        regs::write_page_tables(mem).map_err(setup_err("the page tables"))?;

        // 6. vCPUs: CPUID (template + topology), MSRs, LAPIC, boot registers.
        let template = cpuid::resolve_template(config.cpu_template);
        let base_cpuid = base_cpuid(vm.kvm(), template)?;
        let supported_msrs = vm
            .kvm()
            .get_msr_index_list()
            .map_err(kvm_err("KVM_GET_MSR_INDEX_LIST"))?;
        let setup = VcpuSetup {
            base_cpuid: &base_cpuid,
            supported_msrs: supported_msrs.as_slice(),
            count: config.vcpus,
            entry: kernel.entry.0,
        };
        let vcpus = (0..config.vcpus)
            .map(|id| Vcpu::new(&vm, id, &setup))
            .collect::<Result<Vec<_>, _>>()?;
        let pause = new_pause(&vm, supported_msrs.as_slice())?;
        if config.snapshot.as_ref().is_some_and(|p| p.on_marker) {
            let p = pause.clone();
            boot_timer.on_first_user_space(Box::new(move || p.request()));
        }

        Ok(Vmm {
            config: config.clone(),
            vcpus,
            devices,
            vm,
            exit,
            output,
            boot_timer,
            build_time: build_start.elapsed(),
            pause,
            snapshot_files,
            bundle,
            profiler,
        })
    }

    /// The configuration it was built (or restored) with.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// The devices of this VM.
    pub fn devices(&self) -> &DeviceManager {
        &self.devices
    }
}

/// The pause switch for snapshots, with what this host's vCPUs can save.
fn new_pause(vm: &Vm, msrs: &[u32]) -> Result<Arc<Pause>, VmmError> {
    let has_xcrs = vm.kvm().check_extension(kvm_ioctls::Cap::Xcrs);
    Ok(Arc::new(
        Pause::new(msrs.to_vec(), has_xcrs).map_err(setup_err("the pause eventfd"))?,
    ))
}

/// A host that refuses the mapping (ENOMEM: out of memory or address
/// space) is not a bad configuration: it gets its own message and code.
fn memory_error(bytes: u64, e: vm_memory::mmap::FromRangesError) -> VmmError {
    use vm_memory::mmap::{FromRangesError, MmapRegionError};
    match e {
        FromRangesError::MmapRegion(MmapRegionError::Mmap(io))
            if io.raw_os_error() == Some(libc::ENOMEM) =>
        {
            VmmError::HostMemory(bytes >> 20, io)
        }
        other => VmmError::Memory(bytes >> 20, other.to_string()),
    }
}

/// Where the guest's console output goes: stdout, or nowhere with
/// `--console none` (it is still scanned for a panic line).
fn guest_output(console: ConsoleKind) -> Result<GuestOutput, VmmError> {
    match console {
        ConsoleKind::None => GuestOutput::new(Box::new(std::io::sink()), DEFAULT_CAPACITY),
        _ => GuestOutput::stdout(),
    }
    .map_err(setup_err("console output"))
}
