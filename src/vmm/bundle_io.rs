//! The VMM's side of `run --bundle` (docs/bundle.md): the workload's
//! stdout on hvc0 and stderr on a second virtio console (hvc1), kernel
//! messages to `--kernel-log` or nowhere, and the control channel.
//!
//! Control channel: host-to-guest ASCII lines on hvc1's input, read by the
//! guest's init (guest/init/src/process.rs): `signal N` delivers signal N
//! to the workload, `eof N` says host stdin ended after N bytes. The port
//! opens when the init has opened hvc1 and written the user-space boot
//! marker (123 at 0xC000_0000); before that a signal stops the VM at once
//! (no workload runs yet). The first SIGINT/SIGTERM/SIGHUP is forwarded;
//! the VM is stopped `stop_timeout` later, or at once on a second signal.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{VmmError, setup_err};
use crate::config::BundleMode;
use crate::devices::boot_timer::{BootTimer, Marker};
use crate::devices::manager::{DeviceManager, VirtioConsole, VmWiring};
use crate::devices::output::{DEFAULT_CAPACITY, GuestOutput, OutputStats};
use crate::devices::stdin::ConsoleInput;
use crate::exit::{ExitSignal, VmEnd};
use crate::sync::lock;

/// The kernel's messages: to the `--kernel-log` file, else nowhere (still
/// scanned for the panic line).
pub fn kernel_output(mode: &BundleMode) -> Result<GuestOutput, VmmError> {
    let sink: Box<dyn std::io::Write + Send> = match &mode.kernel_log {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| VmmError::Setup("--kernel-log", format!("{}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::sink()),
    };
    GuestOutput::new(sink, DEFAULT_CAPACITY).map_err(setup_err("kernel log output"))
}

/// The control channel's state.
pub struct Control {
    port: VirtioConsole,
    open: bool,
    pending: Vec<u8>,
    signals_seen: u32,
    deadline: Option<(Instant, i32)>,
    stop_timeout: Duration,
}

impl Control {
    /// Queues one line for the guest (sent once the port is open).
    pub fn send(&mut self, line: &str) {
        self.pending.extend_from_slice(line.as_bytes());
        self.flush();
    }

    fn flush(&mut self) {
        if !self.open || self.pending.is_empty() {
            return;
        }
        let mut port = lock(&self.port);
        let n = ConsoleInput::push(&mut *port, &self.pending);
        self.pending.drain(..n);
    }
}

/// The bundle's outputs and control channel, attached to a VM.
pub struct BundleIo {
    stdout: GuestOutput,
    stderr: GuestOutput,
    /// Shared with the stdin forwarder (its end-of-input line).
    pub control: Arc<Mutex<Control>>,
}

impl BundleIo {
    /// Attaches hvc0 (stdout, stdin) and hvc1 (stderr, control).
    pub fn attach(
        mode: &BundleMode,
        devices: &mut DeviceManager,
        vm: &impl VmWiring,
        mem: &vm_memory::GuestMemoryMmap,
    ) -> Result<BundleIo, VmmError> {
        let stdout = GuestOutput::stdout().map_err(setup_err("stdout"))?;
        let stderr = GuestOutput::stderr().map_err(setup_err("stderr"))?;
        devices.attach_virtio_console_port(
            vm,
            mem,
            &stdout,
            true,
            crate::devices::virtio::console::terminal_size(),
        )?;
        let port = devices.attach_virtio_console_port(
            vm,
            mem,
            &stderr,
            false,
            crate::devices::virtio::console::terminal_size(),
        )?;
        Ok(BundleIo {
            stdout,
            stderr,
            control: Arc::new(Mutex::new(Control {
                port,
                open: false,
                pending: Vec::new(),
                signals_seen: 0,
                deadline: None,
                stop_timeout: mode.stop_timeout,
            })),
        })
    }

    /// One turn of the event loop: opens the control port once the guest's
    /// init is up, forwards a new signal (or stops the VM on a second one,
    /// or before the workload runs), stops the VM when the timeout passed.
    pub fn tick(&self, boot_timer: &BootTimer, exit: &ExitSignal) {
        let mut c = lock(&self.control);
        if !c.open
            && boot_timer
                .marks()
                .iter()
                .any(|m| m.marker == Marker::BootTimer)
        {
            c.open = true;
            lock(&c.port).device_mut().open_input();
            c.flush();
        }
        let count = crate::signals::count();
        if count > c.signals_seen {
            c.signals_seen = count;
            let sig = crate::signals::pending().unwrap_or(libc::SIGTERM);
            if !c.open || c.deadline.is_some() {
                exit.request(VmEnd::Signal(sig));
                return;
            }
            c.send(&format!("signal {sig}\n"));
            c.deadline = Some((Instant::now() + c.stop_timeout, sig));
        }
        if let Some((at, sig)) = c.deadline {
            if Instant::now() >= at {
                crate::say!(
                    "tinyvmm: the workload did not end within {} s of signal {sig}; stopping the VM",
                    c.stop_timeout.as_secs_f64()
                );
                exit.request(VmEnd::Signal(sig));
            }
        }
    }

    /// Waits (up to `timeout`) for the workload's output to leave.
    pub fn finish(self, timeout: Duration) -> [OutputStats; 2] {
        [self.stdout.finish(timeout), self.stderr.finish(timeout)]
    }
}
