//! `Vmm::restore`: a VM rebuilt from a snapshot directory, ready for
//! `Vmm::run`. The build's order, with state put back instead of a kernel
//! loaded:
//! 1. the state file: header, checksum, parse (`crate::snapshot::decode`);
//! 2. disk images: opened, locked and checked against the saved identity;
//! 3. guest RAM: the memory file mapped `MAP_PRIVATE` (pages load lazily);
//! 4. the VM: is this host's CPU enough for the guest? then irqchip, PIT,
//!    clock;
//! 5. devices attached in the saved order (a socket device binds its
//!    path again), then their state;
//! 6. vCPUs created bare and given their state.
//!
//! Every refusal is a `SnapshotError` (exit 126) except a failing KVM call
//! that has nothing to do with the snapshot (123).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;

use super::{Vmm, VmmError, guest_output, new_pause, setup_err};
use crate::arch::x86_64::boot;
use crate::config::{ConfigError, ConsoleKind, VmConfig};
use crate::devices::boot_timer::BootTimer;
use crate::devices::legacy::SerialSetup;
use crate::devices::manager::{DeviceManager, VirtioKindSnapshot};
use crate::devices::virtio::block::disk::DiskImage;
use crate::devices::virtio::vsock;
use crate::exit::ExitSignal;
use crate::kvm::state::{missing_cpu_features, restore_vcpu, restore_vm};
use crate::kvm::vcpu::Vcpu;
use crate::kvm::vm::{Vm, kvm_err, max_vcpus, open_kvm};
use crate::seccomp::Sandbox;
use crate::snapshot::{self, SnapshotError, disk, files, memory};

/// What `tinyvmm restore` was asked for (plain data).
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The snapshot directory.
    pub dir: PathBuf,
    /// Where the console goes: the saved device (`None`), or `none`.
    pub console: Option<ConsoleKind>,
    /// `--stats`.
    pub stats: bool,
    /// `--boot-timer`.
    pub boot_timer: bool,
    /// `--disk` overrides, in disk order (/dev/vda first).
    pub disks: Vec<PathBuf>,
    /// `--net` overrides (as `run --net` takes them), in device order.
    pub nets: Vec<String>,
    /// The seccomp sandbox.
    pub sandbox: Sandbox,
}

fn bad_state(what: &str) -> impl FnOnce(String) -> VmmError + '_ {
    move |e| SnapshotError::Format(format!("{what}: {e}")).into()
}

fn console_kind(name: &str) -> ConsoleKind {
    match name {
        "serial" => ConsoleKind::Serial,
        "none" => ConsoleKind::None,
        _ => ConsoleKind::Virtio,
    }
}

impl Vmm {
    /// Rebuilds the VM saved in `opts.dir`. `process_start` is when `main` began.
    pub fn restore(opts: &RestoreOptions, process_start: Instant) -> Result<Vmm, VmmError> {
        let build_start = Instant::now();
        // 1. The state.
        let (bytes, mem_file) = files::open(&opts.dir)?;
        let state = snapshot::decode(&bytes)?;
        let m = &state.machine;
        let saved_console = console_kind(&m.console);
        let console = match opts.console {
            None => saved_console,
            Some(ConsoleKind::None) => ConsoleKind::None,
            Some(c) if c == saved_console => c,
            Some(c) => {
                return Err(ConfigError::Path(format!(
                    "--console {c:?}: the snapshot's console is {}; only `none` may replace it",
                    m.console
                ))
                .into());
            }
        };

        // 2. Disks: the saved images, or the copies given with --disk.
        let saved_disks: Vec<&disk::DiskIdentity> = state
            .devices
            .virtio
            .iter()
            .filter_map(|v| match &v.device {
                VirtioKindSnapshot::Block(d) => Some(d),
                _ => None,
            })
            .collect();
        if opts.disks.len() > saved_disks.len() {
            return Err(ConfigError::Path(format!(
                "--disk: {} given, the snapshot has {} disk(s)",
                opts.disks.len(),
                saved_disks.len()
            ))
            .into());
        }
        let mut disk_configs = Vec::new();
        let mut disks = Vec::new();
        for (i, saved) in saved_disks.iter().enumerate() {
            let over = opts.disks.get(i).map(PathBuf::as_path);
            let config = disk::config_for(saved, over);
            let image = DiskImage::open(&config)?;
            disk::check(saved, &image, over.is_some())?;
            disk_configs.push(config);
            disks.push(image);
        }

        // Taps: the saved ones by name, or those given with --net.
        let saved_nets: Vec<_> = state
            .devices
            .virtio
            .iter()
            .filter_map(|v| match &v.device {
                VirtioKindSnapshot::Net(n) => Some(n),
                _ => None,
            })
            .collect();
        if opts.nets.len() > saved_nets.len() {
            return Err(ConfigError::Path(format!(
                "--net: {} given, the snapshot has {} network device(s)",
                opts.nets.len(),
                saved_nets.len()
            ))
            .into());
        }
        let mut net_configs = Vec::new();
        let mut taps = Vec::new();
        for (i, saved) in saved_nets.iter().enumerate() {
            let over = opts
                .nets
                .get(i)
                .map(|t| crate::config::parse_net(t))
                .transpose()?;
            let config = saved
                .config(over)
                .map_err(|e| ConfigError::Path(format!("--net: {e}")))?;
            let tap = crate::devices::virtio::net::open_tap(&config).map_err(VmmError::Net)?;
            net_configs.push(config);
            taps.push(tap);
        }

        // 3. Guest RAM, mapped from the file.
        let mem = memory::map(&mem_file, &boot::ram_ranges(m.memory)).map_err(|e| {
            SnapshotError::Format(format!(
                "{}: {e}",
                opts.dir.join(snapshot::MEMORY_FILE).display()
            ))
        })?;

        // 4. The VM, if this host can run the guest.
        let kvm = open_kvm()?;
        if usize::from(m.vcpus) > max_vcpus(&kvm) {
            return Err(ConfigError::Vcpus(m.vcpus.into(), max_vcpus(&kvm) as u64).into());
        }
        let host = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        for v in &state.vcpus {
            let missing = missing_cpu_features(&v.cpuid, host.as_slice());
            if !missing.is_empty() {
                return Err(SnapshotError::HostCpu(format!("CPUID {}", missing.join(", "))).into());
            }
        }
        let vm = Vm::new(kvm, mem)?;
        restore_vm(vm.fd(), &state.vm).map_err(|e| bad_state("the VM state")(e.to_string()))?;

        // 5. Devices, in the saved order, then their state.
        let exit = Arc::new(ExitSignal::new().map_err(setup_err("the exit eventfd"))?);
        let boot_timer = BootTimer::new(process_start, build_start, opts.boot_timer);
        let output = guest_output(console)?;
        let mut devices = DeviceManager::new();
        let serial = match (m.serial, saved_console) {
            (false, _) => SerialSetup::Absent,
            (true, ConsoleKind::Serial) => SerialSetup::Console,
            (true, _) => SerialSetup::Output,
        };
        devices.attach_legacy_devices(vm.fd(), serial, &exit, &boot_timer, &output)?;
        let mut images = disks.into_iter();
        let mut vsock_config = None;
        let mut taps = taps.into_iter();
        for slot in &state.devices.virtio {
            match &slot.device {
                VirtioKindSnapshot::Console(c) => {
                    devices.attach_virtio_console_sized(vm.fd(), vm.memory(), &output, c.size)?
                }
                VirtioKindSnapshot::Block(_) => {
                    let image = images
                        .next()
                        .ok_or_else(|| bad_state("disks")("missing".into()))?;
                    devices.attach_virtio_block(vm.fd(), vm.memory(), image)?
                }
                VirtioKindSnapshot::Rng => devices.attach_virtio_rng(vm.fd(), vm.memory())?,
                VirtioKindSnapshot::Net(n) => {
                    let tap = taps
                        .next()
                        .ok_or_else(|| bad_state("taps")("missing".into()))?;
                    devices.attach_virtio_net(vm.fd(), vm.memory(), tap, n.mac)?
                }
                VirtioKindSnapshot::Vsock(s) => {
                    let config = s.config();
                    let listener = vsock::host::listen(&config)?;
                    devices.attach_virtio_vsock(vm.fd(), vm.memory(), &config, listener)?;
                    vsock_config = Some(config);
                }
            }
        }
        devices
            .restore_state(&state.devices, vm.memory())
            .map_err(bad_state("the devices"))?;

        // 6. vCPUs.
        let mut vcpus = Vec::with_capacity(state.vcpus.len());
        for saved in &state.vcpus {
            let vcpu = Vcpu::bare(&vm, saved.id, saved.cpuid.clone())?;
            restore_vcpu(vm.kvm(), &vcpu.fd, saved)
                .map_err(|e| bad_state("a vCPU's state")(format!("vCPU {}: {e}", saved.id)))?;
            vcpus.push(vcpu);
        }
        let msrs = vm
            .kvm()
            .get_msr_index_list()
            .map_err(kvm_err("KVM_GET_MSR_INDEX_LIST"))?;
        let pause = new_pause(&vm, msrs.as_slice())?;

        let config = VmConfig {
            memory: m.memory,
            vcpus: m.vcpus,
            console,
            serial: m.serial,
            boot_timer: opts.boot_timer,
            stats: opts.stats,
            sandbox: opts.sandbox,
            disks: disk_configs,
            vsock: vsock_config,
            nets: net_configs,
            ..VmConfig::default()
        };
        Ok(Vmm {
            config,
            vcpus,
            devices,
            vm,
            exit,
            output,
            boot_timer,
            build_time: build_start.elapsed(),
            pause,
            snapshot_files: None,
            bundle: None,
            profiler: None,
        })
    }
}
