//! Running a built VM to its end: vCPU threads run the guest while the main
//! thread runs the event loop (stdin, device queues, the exit eventfd,
//! signals). When an ending is recorded, the vCPUs are kicked and joined
//! (with a deadline), the terminal is restored and the output drained.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;

use super::report::{GuestRam, RunReport};
use super::{Vmm, VmmError, setup_err};
use crate::config::ConsoleKind;
use crate::devices::boot_timer::Marker;
use crate::devices::output::DEFAULT_CAPACITY;
use crate::devices::stdin::{StdinForwarder, StdinSource};
use crate::exit::{ExitSignal, VmEnd};
use crate::host::process;
use crate::kvm::pause::Pause;
use crate::kvm::vcpu_handles::VcpuHandles;
use crate::seccomp::Sandbox;
use crate::signals;
use crate::sync::lock;
use crate::terminal::RawTerminal;

/// How long we wait for guest output to reach stdout at exit.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// The same when a signal ended the VM: the user asked to stop, and the
/// whole exit must fit in 2 s even if nobody reads stdout.
const OUTPUT_DRAIN_AFTER_SIGNAL: Duration = Duration::from_millis(500);
/// The event loop's manager.
type Loop = EventManager<Box<dyn MutEventSubscriber + Send>>;

/// How long the vCPU threads get to leave `KVM_RUN` once kicked.
const VCPU_JOIN_DEADLINE: Duration = Duration::from_secs(5);

impl Vmm {
    /// Runs the VM to its end.
    pub fn run(mut self) -> Result<RunReport, VmmError> {
        let run_start = Instant::now();
        signals::install().map_err(setup_err("signal handlers"))?;
        signals::set_exit_fd(std::os::fd::AsRawFd::as_raw_fd(self.exit.event()));
        if let Some(sig) = signals::pending() {
            self.exit.request(VmEnd::Signal(sig));
        }
        if self.config.snapshot.as_ref().is_some_and(|p| !p.on_marker) {
            signals::install_snapshot_signal().map_err(setup_err("the SIGUSR1 handler"))?;
        }
        let terminal = match (self.config.console, &self.config.bundle) {
            (ConsoleKind::None, _) => None,
            // A bundle's workload without a terminal reads stdin as it is,
            // and Ctrl-C stays a signal (forwarded), as under crun.
            (_, Some(b)) if !b.terminal => None,
            _ => RawTerminal::enter(),
        };
        // Everything that opens files or makes fds and threads happens now,
        // before the run-time sandbox forbids it.
        let escape = terminal.is_some();
        let mut events = self
            .event_manager(escape)
            .map_err(setup_err("the event loop"))?;
        let mut rollup = self
            .config
            .stats
            .then(process::RollupReader::open)
            .flatten();
        let pvm = crate::host::kvm_emulates_guest_kernel();

        let cpu_to_first_run = process::process_cpu_time();
        let wall_to_first_run = self.boot_timer.since_process_start();
        if let Some(profiler) = &self.profiler {
            for vcpu in &mut self.vcpus {
                vcpu.probe = Some(profiler.probe(vcpu.id));
            }
        }
        let vcpus = VcpuHandles::start(
            std::mem::take(&mut self.vcpus),
            self.devices.buses(),
            self.exit.clone(),
            self.pause.clone(),
            self.config.sandbox,
        )
        .map_err(setup_err("a vCPU thread"))?;
        vcpus.wait_all_ready();
        let sampler = match self.profiler.as_mut() {
            Some(p) => p
                .start(vcpus.sample_kicks(), self.boot_timer.clone())
                .map_err(setup_err("the profiler thread")),
            None => Ok(()),
        };
        match sampler.and_then(|()| self.lock_down()) {
            Ok(()) => vcpus.release(true),
            Err(e) => {
                vcpus.release(false);
                self.exit.request(VmEnd::KvmCall(e.to_string()));
            }
        }

        if let Err(e) = self.event_loop(&mut events, pvm, &vcpus) {
            self.exit
                .request(VmEnd::KvmCall(format!("event loop: {e}")));
        }

        let ended = Instant::now();
        let joined = vcpus.join(VCPU_JOIN_DEADLINE);
        if let Some(profiler) = self.profiler.take() {
            profiler.finish(&self.boot_timer.marks(), ended);
        }
        for id in &joined.stuck {
            crate::say!(
                "tinyvmm: vCPU {id} did not leave KVM_RUN within {} s of its kick; exiting without it",
                VCPU_JOIN_DEADLINE.as_secs()
            );
        }
        for id in &joined.panicked {
            crate::say!("tinyvmm: vCPU {id}'s thread panicked; its exit counts are lost");
        }
        signals::set_exit_fd(-1);
        drop(terminal);
        // Reading /proc/self/smaps_rollup costs time at exit: only for --stats.
        let resident = match rollup.as_mut() {
            Some(r) => r.resident(&self.vm.guest_host_ranges()),
            None => process::Resident::default(),
        };

        let drain = match self.exit.reason() {
            Some(VmEnd::Signal(_)) => OUTPUT_DRAIN_AFTER_SIGNAL,
            _ => OUTPUT_DRAIN_TIMEOUT,
        };
        let output = self.output.finish(drain);
        if let Some(b) = self.bundle.take() {
            b.finish(drain);
        }
        let mut exit = self.exit.reason().unwrap_or(VmEnd::Reset);
        if exit == VmEnd::Reset && output.panic_seen {
            exit = VmEnd::Panic;
        }
        if !joined.stuck.is_empty() {
            exit = VmEnd::VcpuStuck(joined.stuck.clone());
        }
        Ok(RunReport {
            exit,
            stats: joined.merged(),
            output,
            markers: self.boot_timer.marks(),
            marker_writes: self.boot_timer.writes(),
            build_time: self.build_time,
            run_time: run_start.elapsed(),
            cpu_to_first_run,
            wall_to_first_run,
            resident,
            guest_ram: GuestRam(self.vm.memory().clone()),
            disks: self
                .devices
                .virtio_disks()
                .map(|d| {
                    let d = lock(d);
                    (
                        d.device().disk().path().display().to_string(),
                        d.device().stats(),
                        d.stats(),
                    )
                })
                .collect(),
            nets: self
                .devices
                .virtio_nets()
                .map(|n| {
                    let n = lock(n);
                    let d = n.device();
                    (d.backend().name().to_string(), d.stats(), n.stats())
                })
                .collect(),
            virtio_console: self.devices.virtio_console().map(|c| {
                let c = lock(c);
                (c.device().stats(), c.stats())
            }),
            rng: self.devices.virtio_rng().map(|r| {
                let r = lock(r);
                (r.device().stats(), r.stats())
            }),
            vsock: self.devices.virtio_vsock().map(|v| {
                let v = lock(v);
                (v.device().stats(), v.stats())
            }),
        })
    }

    /// The end of the build: switch user (`--uid`/`--gid`), drop this
    /// thread's capabilities (the vCPU, output and stdin threads drop
    /// their own), and put the run-time seccomp filter on every thread.
    /// Skipped when the process will build another VM (`--repeat`), which
    /// needs the build stage's rights again; the test hook then fires.
    fn lock_down(&self) -> Result<(), VmmError> {
        if self.config.rebuilds {
            return Ok(());
        }
        // Bounding set first (that needs CAP_SETPCAP, which the switch
        // takes away), then the user, then what this thread has left.
        crate::privileges::drop_thread_capabilities()
            .map_err(setup_err("dropping capabilities"))?;
        if let Some((uid, gid)) = self.config.user {
            crate::privileges::switch_user(uid, gid).map_err(setup_err("--uid/--gid"))?;
        }
        crate::privileges::clear_thread_capabilities()
            .map_err(setup_err("dropping capabilities"))?;
        if self.config.sandbox == Sandbox::Off {
            return Ok(());
        }
        crate::seccomp::install_run_filter().map_err(setup_err("the run-time seccomp filter"))?;
        if let Sandbox::Test(v) = self.config.sandbox {
            if !v.on_vcpu {
                v.attempt();
            }
        }
        Ok(())
    }

    /// The event loop's manager with every subscriber: exit requests,
    /// stdin, the devices' queues.
    /// `escape`: stdin is a raw terminal, so Ctrl-A commands are taken out.
    fn event_manager(&mut self, escape: bool) -> Result<Loop, event_manager::Error> {
        let mut manager: Loop = EventManager::new()?;
        manager.add_subscriber(Box::new(ExitWatcher(self.exit.clone())));
        manager.add_subscriber(Box::new(PauseWatcher(self.pause.clone())));
        if let Some((target, drained)) = self.devices.take_console_input() {
            match StdinSource::open() {
                Ok(source) => {
                    let mut forwarder = StdinForwarder::new(source, target, drained);
                    if escape {
                        forwarder = forwarder.with_escape(self.exit.clone());
                    }
                    if let Some(b) = &self.bundle {
                        let control = b.control.clone();
                        forwarder = forwarder.with_eof_hook(Box::new(move |n| {
                            lock(&control).send(&format!("eof {n}\n"));
                        }));
                    }
                    manager.add_subscriber(Box::new(forwarder));
                }
                Err(e) => crate::say!("tinyvmm: warning: stdin is not forwarded to the guest: {e}"),
            }
        }
        for subscriber in self.devices.take_subscribers() {
            manager.add_subscriber(subscriber);
        }
        Ok(manager)
    }

    fn event_loop(
        &mut self,
        manager: &mut Loop,
        pvm: bool,
        vcpus: &VcpuHandles,
    ) -> Result<(), event_manager::Error> {
        let loop_start = Instant::now();
        let mut console_checked = self.devices.virtio_console().is_none();
        while self.exit.reason().is_none() {
            manager.run_with_timeout(100)?;
            self.print_new_markers();
            if !console_checked {
                console_checked = self.check_console_started(loop_start, pvm, false);
            }
            match &self.bundle {
                Some(b) => b.tick(&self.boot_timer, &self.exit),
                None => {
                    if let Some(sig) = signals::pending() {
                        self.exit.request(VmEnd::Signal(sig));
                    }
                }
            }
            if signals::take_snapshot_request() && self.exit.reason().is_none() {
                self.pause.request();
            }
            if self.pause.requested() && self.exit.reason().is_none() {
                self.take_snapshot(vcpus);
            }
        }
        self.print_new_markers();
        // A guest that ended on its own before the check could settle.
        if !console_checked && !matches!(self.exit.reason(), Some(VmEnd::Signal(_))) {
            self.check_console_started(loop_start, pvm, true);
        }
        Ok(())
    }

    /// `--boot-timer`: each marker's line, once, from this thread (a vCPU
    /// thread that saw the write never waits on stderr).
    fn print_new_markers(&self) {
        for m in self.boot_timer.take_unprinted() {
            crate::say!("{}", m.report());
        }
    }

    /// A guest whose kernel lacks the virtio console driver prints nothing
    /// on hvc0 (and nothing on ttyS0, which is not its console). Once it
    /// has reached user space (boot marker), or after a delay longer than
    /// a normal boot, or by the time it ended on its own, without starting
    /// the device and without any output, say so with the fix. Returns
    /// whether the check is settled.
    fn check_console_started(&self, since: Instant, pvm: bool, at_exit: bool) -> bool {
        let Some(console) = self.devices.virtio_console() else {
            return true;
        };
        let out = self.output.stats();
        let printed = out.written + out.dropped_full + out.discarded > 0
            || self.output.handle().free() < DEFAULT_CAPACITY;
        if lock(console).ever_activated() || printed {
            return true;
        }
        let (progress, limit, unit) = console_start_limit(since, pvm);
        // Only the user-space markers count: "kernel start" (0x40 on port
        // 0x80) comes long before a driver could have probed the device.
        let user_space = self
            .boot_timer
            .marks()
            .iter()
            .any(|m| matches!(m.marker, Marker::UserSpace | Marker::BootTimer));
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
        crate::say!(
            "tinyvmm: warning: the guest has printed nothing and has not started the virtio console (hvc0) {when}; \
             its kernel may lack CONFIG_VIRTIO_MMIO, CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES or CONFIG_VIRTIO_CONSOLE. \
             Use --console serial for a console on the 8250 (ttyS0)."
        );
        true
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

/// Wakes the loop when a pause (snapshot) is requested.
struct PauseWatcher(Arc<Pause>);

impl MutEventSubscriber for PauseWatcher {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(self.0.wake_event(), EventSet::IN));
    }
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.0.wake_event().read();
    }
}

/// How far the guest got since `since`, how far a Linux guest may get
/// before it must have started its virtio console, and in what unit. On
/// hardware KVM: 5 s of wall time. Where KVM emulates guest kernel mode
/// (docs/host-kvm.md) a boot to user space costs 30-70 s of CPU, and wall
/// time says little when other VMs share the CPUs (a boot took over 6 min
/// on a loaded 2-core host), so the measure is the process's CPU time,
/// nearly all of it the vCPU running the guest.
fn console_start_limit(since: Instant, pvm: bool) -> (Duration, Duration, &'static str) {
    if pvm {
        let cpu = process::process_cpu_time();
        (cpu, Duration::from_secs(90), "guest CPU time")
    } else {
        (since.elapsed(), Duration::from_secs(5), "boot")
    }
}
