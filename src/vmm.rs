//! The VMM: `Vmm::build` turns a `VmConfig` into a ready VM, `Vmm::run`
//! runs it to its end. The build reads top to bottom:
//! memory -> kernel -> VM -> devices -> boot structures -> vCPUs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

use crate::arch::x86_64::boot::{self, BootError};
use crate::arch::x86_64::layout::{self, ports};
use crate::arch::x86_64::{cpuid, mptable, regs};
use crate::config::{ConfigError, ConsoleKind, KernelSource, VmConfig};
use crate::devices::boot_timer::{BootTimer, BootTimerMmio, DebugPort, MarkerTime};
use crate::devices::bus::{BusDevice, BusError};
use crate::devices::debug_exit::DebugExit;
use crate::devices::i8042::I8042;
use crate::devices::output::{DEFAULT_CAPACITY, GuestOutput, OutputStats};
use crate::devices::serial::SerialDevice;
use crate::devices::stdin::{ConsoleInput, StdinForwarder, StdinSource};
use crate::devices::virtio::console::{self as virtio_console, Console, ConsoleStats};
use crate::devices::virtio::manager::VirtioManager;
use crate::devices::virtio::mmio::{MmioTransport, TransportStats};
use crate::exit::{self, ExitSignal, VmExit};
use crate::kvm::vcpu::{IoBuses, Vcpu, VcpuSetup, base_cpuid};
use crate::kvm::vm::{KvmError, create_vm, kvm_err, max_vcpus, open_kvm};
use crate::signals;
use crate::stats::ExitStats;
use crate::terminal::RawTerminal;

/// How long we wait for guest output to reach stdout at exit.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// Guest memory could not be mapped.
    #[error("guest memory of {0} MiB could not be mapped: {1}")]
    Memory(u64, String),
    /// A KVM call failed.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// A device could not be set up.
    #[error("setting up {0}: {1}")]
    Device(&'static str, String),
}

impl VmmError {
    /// The documented process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            VmmError::Config(_) | VmmError::Memory(..) => exit::EXIT_BAD_CONFIG,
            VmmError::ImageFile(..) | VmmError::Image(..) => exit::EXIT_BAD_IMAGE,
            VmmError::Kvm(_) | VmmError::Device(..) => exit::EXIT_KVM_UNAVAILABLE,
        }
    }
}

fn device_err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> VmmError {
    move |e| VmmError::Device(what, e.to_string())
}

/// Everything measured about one run.
#[derive(Debug)]
pub struct RunReport {
    /// How the VM ended.
    pub exit: VmExit,
    /// VM exits, merged over the vCPUs.
    pub stats: ExitStats,
    /// What happened to the console output.
    pub output: OutputStats,
    /// Boot markers hit.
    pub markers: Vec<MarkerTime>,
    /// Time spent in `Vmm::build`.
    pub build_time: Duration,
    /// Time from the start of `run` to the VM's end.
    pub run_time: Duration,
    /// Process CPU time (user + system) just before the first `KVM_RUN`.
    pub cpu_to_first_run: Duration,
    /// Resident memory at the VM's end: guest RAM touched, and the VMM's own
    /// (measured only with `--stats`; zero otherwise).
    pub resident: crate::footprint::Resident,
    /// The virtio console's counters and its transport's, when attached.
    pub virtio_console: Option<(ConsoleStats, TransportStats)>,
}

/// The console device stdin feeds, and the event it fires when it has room again.
type InputTarget = (Arc<Mutex<dyn ConsoleInput>>, EventFd);
/// The virtio console behind its transport, shared by the MMIO bus (vCPUs)
/// and the event loop.
type VirtioConsole = Arc<Mutex<MmioTransport<Console>>>;

/// A built VM, ready to run.
pub struct Vmm {
    config: VmConfig,
    // Field order is drop order: vCPUs and the VM go before the memory
    // their slots point into.
    vcpus: Vec<Vcpu>,
    _vm: VmFd,
    _kvm: Kvm,
    mem: GuestMemoryMmap,
    buses: Arc<IoBuses>,
    exit: Arc<ExitSignal>,
    output: GuestOutput,
    console_input: Option<InputTarget>,
    virtio: VirtioManager,
    virtio_console: Option<VirtioConsole>,
    boot_timer: Arc<BootTimer>,
    cmdline: String,
    build_time: Duration,
}

/// Opens an image path, refusing what is not a regular file before opening
/// it (a FIFO would block, `/dev/zero` never ends).
fn open_image(path: &Path) -> Result<(File, u64), VmmError> {
    let err = |why: String| VmmError::ImageFile(path.to_path_buf(), why);
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.is_dir() {
        return Err(err("is a directory".into()));
    }
    if !meta.is_file() {
        return Err(err("is not a regular file".into()));
    }
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    Ok((file, meta.len()))
}

impl Vmm {
    /// Builds a VM from `config`. `process_start` is when `main` began.
    pub fn build(config: &VmConfig, process_start: Instant) -> Result<Vmm, VmmError> {
        let build_start = Instant::now();
        config.validate()?;

        // 1. Guest memory: anonymous mappings, split around the MMIO gap.
        let mem = GuestMemoryMmap::from_ranges(&boot::ram_ranges(config.memory))
            .map_err(|e| VmmError::Memory(config.memory >> 20, e.to_string()))?;

        // 2. Kernel and initrd into guest memory: bad images fail before any KVM call.
        let kernel = load_kernel(&mem, &config.kernel)?;
        let initrd = match &config.initrd {
            Some(path) => {
                let (mut file, size) = open_image(path)?;
                Some(
                    boot::load_initrd(&mem, &kernel, config.memory, &mut file, size)
                        .map_err(|e| VmmError::Image(path.display().to_string(), e))?,
                )
            }
            None => None,
        };

        // 3. The VM: memory slots, irqchip, PIT.
        let kvm = open_kvm()?;
        let max = max_vcpus(&kvm);
        if usize::from(config.vcpus) > max {
            return Err(ConfigError::Vcpus(config.vcpus.into(), max as u64).into());
        }
        let vm = create_vm(&kvm, &mem)?;

        // 4. Devices on the buses.
        let exit = Arc::new(ExitSignal::new().map_err(device_err("the exit eventfd"))?);
        let boot_timer = BootTimer::new(process_start, build_start, config.boot_timer);
        // `--console none`: the guest's output reaches no stdio (it is still
        // scanned for a panic line).
        let output = match config.console {
            ConsoleKind::None => GuestOutput::new(
                Box::new(std::io::sink()),
                crate::devices::output::DEFAULT_CAPACITY,
            ),
            _ => GuestOutput::stdout(),
        }
        .map_err(device_err("console output"))?;
        let mut buses = IoBuses::default();
        let serial_input =
            attach_legacy_devices(&vm, &mut buses, config, &exit, &boot_timer, &output)?;
        let mut virtio = VirtioManager::default();
        let (virtio_console, console_input) = match config.console {
            ConsoleKind::Virtio => {
                let (console, input) =
                    attach_virtio_console(&vm, &mut buses, &mem, &output, &mut virtio)?;
                (Some(console), Some(input))
            }
            ConsoleKind::Serial | ConsoleKind::None => (None, serial_input),
        };
        let cmdline = full_cmdline(config, virtio.cmdline_entries());
        crate::config::validate_cmdline(&cmdline)?;

        // 5. Boot structures: zero page + command line, MP table, GDT, page tables.
        let image_name = kernel_name(&config.kernel);
        boot::write_boot_params(&mem, &kernel, initrd, &cmdline, config.memory)
            .map_err(|e| VmmError::Image(image_name.clone(), e))?;
        mptable::setup_mptable(&mem, config.vcpus).map_err(device_err("the MP table"))?;
        regs::write_gdt_and_idt(&mem).map_err(device_err("the GDT"))?;
        regs::write_page_tables(&mem).map_err(device_err("the page tables"))?;

        // 6. vCPUs: CPUID (template + topology), MSRs, LAPIC, boot registers.
        let template = cpuid::resolve_template(config.cpu_template);
        let base_cpuid = base_cpuid(&kvm, template)?;
        let supported_msrs = kvm
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

        Ok(Vmm {
            config: config.clone(),
            vcpus,
            _vm: vm,
            _kvm: kvm,
            mem,
            buses: Arc::new(buses),
            exit,
            output,
            console_input,
            virtio,
            virtio_console,
            boot_timer,
            cmdline,
            build_time: build_start.elapsed(),
        })
    }

    /// The command line the guest was given.
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// Runs the VM to its end: vCPU threads run the guest while this thread
    /// runs the event loop (stdin, exit requests, signals).
    pub fn run(mut self) -> Result<RunReport, VmmError> {
        let run_start = Instant::now();
        signals::install().map_err(device_err("signal handlers"))?;
        signals::set_exit_fd(std::os::fd::AsRawFd::as_raw_fd(self.exit.event()));
        if let Some(sig) = signals::pending() {
            self.exit.request(VmExit::Signal(sig));
        }
        let terminal = match self.config.console {
            ConsoleKind::None => None,
            _ => RawTerminal::enter(),
        };

        let stop = Arc::new(AtomicBool::new(false));
        let sandbox = self.config.sandbox;
        let cpu_to_first_run = crate::footprint::process_cpu_time();
        let mut threads = Vec::new();
        for vcpu in self.vcpus.drain(..) {
            let (buses, mem, exit, stop) = (
                self.buses.clone(),
                self.mem.clone(),
                self.exit.clone(),
                stop.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("vcpu{}", vcpu.id))
                .spawn(move || vcpu.run(&buses, &mem, &exit, &stop, sandbox))
                .map_err(device_err("a vCPU thread"))?;
            threads.push(handle);
        }

        let loop_result = self.event_loop();
        if let Err(e) = loop_result {
            self.exit
                .request(VmExit::KvmCall(format!("event loop: {e}")));
        }

        // Kick every vCPU out of KVM_RUN until its thread has finished: a
        // kick that lands just before KVM_RUN is lost, so repeat it.
        stop.store(true, Ordering::Release);
        let mut stats = ExitStats::default();
        for handle in threads {
            while !handle.is_finished() {
                use std::os::unix::thread::JoinHandleExt;
                // SAFETY: the thread has not been joined, so its pthread_t is valid.
                unsafe { libc::pthread_kill(handle.as_pthread_t(), signals::kick_signal()) };
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Ok(s) = handle.join() {
                stats.merge(&s);
            }
        }
        signals::set_exit_fd(-1);
        drop(terminal);
        // Reading /proc/self/smaps costs time at exit: only for --stats.
        let resident = if self.config.stats {
            crate::footprint::resident(&self.guest_host_ranges())
        } else {
            crate::footprint::Resident::default()
        };

        let output = self.output.finish(OUTPUT_DRAIN_TIMEOUT);
        let mut exit = self.exit.reason().unwrap_or(VmExit::Reset);
        if exit == VmExit::Reset && output.panic_seen {
            exit = VmExit::Panic;
        }
        Ok(RunReport {
            exit,
            stats,
            output,
            markers: self.boot_timer.marks(),
            build_time: self.build_time,
            run_time: run_start.elapsed(),
            cpu_to_first_run,
            resident,
            virtio_console: self.virtio_console.as_ref().map(|c| {
                let c = lock(c);
                (c.device().stats(), c.stats())
            }),
        })
    }

    /// A guest whose kernel lacks the virtio console driver prints nothing
    /// on hvc0 (and nothing on ttyS0, which is not its console). Once it
    /// has reached user space (boot marker), or after a delay longer than
    /// a normal boot, or by the time it ended on its own, without starting
    /// the device and without any output, say so with the fix. Returns
    /// whether the check is settled.
    fn check_console_started(&self, since: Instant, at_exit: bool) -> bool {
        let Some(console) = &self.virtio_console else {
            return true;
        };
        let out = self.output.stats();
        let printed = out.written + out.dropped_full + out.discarded > 0
            || self.output.handle().free() < DEFAULT_CAPACITY;
        if lock(console).ever_activated() || printed {
            return true;
        }
        let (progress, limit, unit) = console_start_limit(since);
        // Only the user-space markers count: "kernel start" (0x40 on port
        // 0x80) comes long before a driver could have probed the device.
        let user_space = self.boot_timer.marks().iter().any(|m| {
            matches!(
                m.marker,
                crate::devices::boot_timer::Marker::UserSpace
                    | crate::devices::boot_timer::Marker::BootTimer
            )
        });
        if !user_space && !at_exit && progress < limit {
            return false;
        }
        let when = if user_space {
            "by the time it reached user space".to_string()
        } else if at_exit {
            "before it ended".to_string()
        } else {
            format!("within {} s of {unit}", limit.as_secs())
        };
        eprintln!(
            "tinyvmm: warning: the guest has printed nothing and has not started the virtio console (hvc0) {when}; \
             its kernel may lack CONFIG_VIRTIO_MMIO, CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES or CONFIG_VIRTIO_CONSOLE. \
             Use --console serial for a console on the 8250 (ttyS0)."
        );
        true
    }

    /// Host virtual address ranges backing guest RAM.
    fn guest_host_ranges(&self) -> Vec<(u64, u64)> {
        use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
        self.mem
            .iter()
            .filter_map(|r| {
                let host = self.mem.get_host_address(r.start_addr()).ok()? as u64;
                Some((host, host + r.len()))
            })
            .collect()
    }

    fn event_loop(&mut self) -> Result<(), event_manager::Error> {
        let mut manager: EventManager<Box<dyn MutEventSubscriber + Send>> = EventManager::new()?;
        manager.add_subscriber(Box::new(ExitWatcher(self.exit.clone())));
        if let Some((target, drained)) = self.console_input.take() {
            match StdinSource::open() {
                Ok(source) => {
                    manager.add_subscriber(Box::new(StdinForwarder::new(source, target, drained)));
                }
                Err(e) => eprintln!("tinyvmm: warning: stdin is not forwarded to the guest: {e}"),
            }
        }
        for subscriber in self.virtio.take_subscribers() {
            manager.add_subscriber(subscriber);
        }
        let loop_start = Instant::now();
        let mut console_checked = self.virtio_console.is_none();
        while self.exit.reason().is_none() {
            manager.run_with_timeout(100)?;
            if !console_checked {
                console_checked = self.check_console_started(loop_start, false);
            }
            if let Some(sig) = signals::pending() {
                self.exit.request(VmExit::Signal(sig));
            }
        }
        // A guest that ended on its own before the check could settle.
        if !console_checked && !matches!(self.exit.reason(), Some(VmExit::Signal(_))) {
            self.check_console_started(loop_start, true);
        }
        Ok(())
    }
}

/// Wakes the loop when an exit is requested (the loop then checks the reason).
struct ExitWatcher(Arc<ExitSignal>);

impl MutEventSubscriber for ExitWatcher {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(self.0.event(), EventSet::IN));
    }
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.0.event().read();
    }
}

/// How far the guest got since `since`, how far a Linux guest may get
/// before it must have started its virtio console, and in what unit. On
/// hardware KVM: 5 s of wall time. Where KVM emulates guest kernel mode
/// (`kvm_pvm`, see the README) a boot to user space costs 30-70 s of CPU,
/// and wall time says little when other VMs share the CPUs (a boot took
/// over 6 min on a loaded 2-core host), so the measure is the process's
/// CPU time, nearly all of it the vCPU running the guest.
fn console_start_limit(since: Instant) -> (Duration, Duration, &'static str) {
    if Path::new(cpuid::KVM_PVM_MODULE).exists() {
        let cpu = crate::footprint::process_cpu_time();
        (cpu, Duration::from_secs(90), "guest CPU time")
    } else {
        (since.elapsed(), Duration::from_secs(5), "boot")
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shared<D: BusDevice + 'static>(dev: D) -> Arc<Mutex<D>> {
    Arc::new(Mutex::new(dev))
}

fn bus_err(what: &'static str) -> impl FnOnce(BusError) -> VmmError {
    device_err(what)
}

/// The 8250 (IRQ 4 through an irqfd), i8042, boot marker and debug-exit.
/// Returns the device stdin should feed, if any.
fn attach_legacy_devices(
    vm: &VmFd,
    buses: &mut IoBuses,
    config: &VmConfig,
    exit: &Arc<ExitSignal>,
    boot_timer: &Arc<BootTimer>,
    output: &GuestOutput,
) -> Result<Option<InputTarget>, VmmError> {
    let mut input = None;
    if config.serial {
        let irq = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(device_err("the serial IRQ"))?;
        vm.register_irqfd(&irq, layout::COM1_IRQ)
            .map_err(kvm_err("KVM_IRQFD (serial)"))?;
        let (serial, counters) =
            SerialDevice::new(irq, output.handle()).map_err(device_err("the serial port"))?;
        let serial = shared(serial);
        buses
            .pio
            .insert(ports::COM1.into(), 8, serial.clone())
            .map_err(bus_err("the serial port"))?;
        if config.console == ConsoleKind::Serial {
            let drained = counters
                .fifo_drained
                .try_clone()
                .map_err(device_err("the serial port"))?;
            input = Some((serial as Arc<Mutex<dyn ConsoleInput>>, drained));
        }
    }
    buses
        .pio
        .insert(
            ports::I8042_DATA.into(),
            5,
            shared(I8042::new(exit.clone())),
        )
        .map_err(bus_err("the i8042"))?;
    buses
        .pio
        .insert(
            ports::DEBUG_PORT.into(),
            1,
            shared(DebugPort(boot_timer.clone())),
        )
        .map_err(bus_err("the debug port"))?;
    buses
        .mmio
        .insert(
            layout::BOOT_TIMER_MMIO,
            0x1000,
            shared(BootTimerMmio(boot_timer.clone())),
        )
        .map_err(bus_err("the boot timer"))?;
    let debug_exit = shared(DebugExit(exit.clone()));
    buses
        .pio
        .insert(ports::DEBUG_EXIT.into(), 4, debug_exit.clone())
        .map_err(bus_err("the debug-exit port"))?;
    buses
        .mmio
        .insert(layout::DEBUG_EXIT_MMIO, 0x1000, debug_exit)
        .map_err(bus_err("the debug-exit register"))?;
    Ok(input)
}

/// The virtio console on stdio, in its own MMIO window with its own GSI;
/// stdin feeds it. With stdin a terminal, its size is offered (F_SIZE).
fn attach_virtio_console(
    vm: &VmFd,
    buses: &mut IoBuses,
    mem: &GuestMemoryMmap,
    output: &GuestOutput,
    virtio: &mut VirtioManager,
) -> Result<(VirtioConsole, InputTarget), VmmError> {
    let err = device_err("the virtio console");
    let console = Console::new(output.handle(), virtio_console::terminal_size()).map_err(err)?;
    let clone = |fd: &EventFd| fd.try_clone().map_err(device_err("the virtio console"));
    let drained = clone(console.input_drained())?;
    // Besides its queues, the console works when stdout has room again
    // (held output) and when it stopped on its budget.
    let events = vec![
        clone(output.handle().space_event())?,
        clone(console.resume_event())?,
    ];
    let transport = virtio
        .attach(vm, &mut buses.mmio, mem, console, events)
        .map_err(device_err("the virtio console"))?;
    let input: Arc<Mutex<dyn ConsoleInput>> = transport.clone();
    Ok((transport, (input, drained)))
}

/// The base command line plus what the devices need.
fn full_cmdline(config: &VmConfig, virtio: &[String]) -> String {
    let mut cmdline = config.cmdline.trim().to_string();
    for entry in virtio {
        cmdline.push(' ');
        cmdline.push_str(entry);
    }
    let template = cpuid::resolve_template(config.cpu_template);
    if let Some(args) = cpuid::template_kernel_args(template) {
        cmdline.push(' ');
        cmdline.push_str(args);
    }
    cmdline
}

fn kernel_name(source: &KernelSource) -> String {
    match source {
        KernelSource::File(p) => p.display().to_string(),
        KernelSource::Embedded => "embedded tiny guest".into(),
    }
}

fn load_kernel(
    mem: &GuestMemoryMmap,
    source: &KernelSource,
) -> Result<boot::LoadedKernel, VmmError> {
    let name = kernel_name(source);
    match source {
        KernelSource::File(path) => {
            let (mut file, _) = open_image(path)?;
            boot::load_kernel(mem, &mut file).map_err(|e| VmmError::Image(name, e))
        }
        KernelSource::Embedded => {
            let mut image = std::io::Cursor::new(crate::tiny_guest::ELF);
            boot::load_kernel(mem, &mut image).map_err(|e| VmmError::Image(name, e))
        }
    }
}
