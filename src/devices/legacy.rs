//! The legacy (PC) devices of every VM, attached by the device manager:
//! the 8250 UART at 0x3f8 (IRQ 4 through an irqfd), the i8042 (its reset
//! line ends the VM), the boot marker (port 0x80 and MMIO 0xc000_0000) and
//! the debug-exit register (port 0xf4 and MMIO 0xc000_1000).

use std::sync::{Arc, Mutex};

use super::boot_timer::{BootTimer, BootTimerMmio, DebugPort};
use super::bus::BusDevice;
use super::debug_exit::DebugExit;
use super::i8042::I8042;
use super::manager::{DeviceError, DeviceManager, VmWiring, eventfd};
use super::output::GuestOutput;
use super::serial::SerialDevice;
use super::stdin::ConsoleInput;
use crate::arch::x86_64::layout::{self, ports};
use crate::exit::ExitSignal;

/// Whether the 8250 is present, and whether stdin feeds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialSetup {
    /// No 8250.
    Absent,
    /// Present for output (kernel messages); stdin goes elsewhere.
    Output,
    /// Present and the console: stdin feeds its receive FIFO.
    Console,
}

/// The legacy devices, typed.
pub struct LegacyDevices {
    /// The 8250, when present.
    pub serial: Option<Arc<Mutex<SerialDevice>>>,
    /// The i8042.
    pub i8042: Arc<Mutex<I8042>>,
    /// Boot markers (port 0x80 and the boot-timer page).
    pub boot_timer: Arc<BootTimer>,
}

fn shared<D: BusDevice + 'static>(dev: D) -> Arc<Mutex<D>> {
    Arc::new(Mutex::new(dev))
}

impl DeviceManager {
    /// Attaches the 8250 (per `serial`), i8042, boot marker and debug-exit.
    pub fn attach_legacy_devices(
        &mut self,
        vm: &impl VmWiring,
        serial: SerialSetup,
        exit: &Arc<ExitSignal>,
        boot_timer: &Arc<BootTimer>,
        output: &GuestOutput,
    ) -> Result<(), DeviceError> {
        let serial_dev = match serial {
            SerialSetup::Absent => None,
            SerialSetup::Output | SerialSetup::Console => {
                const WHAT: &str = "the serial port";
                let irq = eventfd(WHAT)?;
                vm.register_irqfd(&irq, layout::COM1_IRQ)
                    .map_err(|e| DeviceError::Kvm(WHAT, "KVM_IRQFD", e))?;
                let (dev, counters) = SerialDevice::new(irq, output.handle())
                    .map_err(|e| DeviceError::Device(WHAT, e.to_string()))?;
                let dev = shared(dev);
                self.insert_pio(WHAT, ports::COM1, 8, dev.clone())?;
                if serial == SerialSetup::Console {
                    let drained = counters
                        .fifo_drained
                        .try_clone()
                        .map_err(|e| DeviceError::EventFd(WHAT, e))?;
                    self.console_input =
                        Some((dev.clone() as Arc<Mutex<dyn ConsoleInput>>, drained));
                }
                Some(dev)
            }
        };
        let i8042 = shared(I8042::new(exit.clone()));
        self.insert_pio("the i8042", ports::I8042_DATA, 5, i8042.clone())?;
        self.insert_pio(
            "the debug port",
            ports::DEBUG_PORT,
            1,
            shared(DebugPort(boot_timer.clone())),
        )?;
        self.insert_mmio(
            "the boot timer",
            layout::BOOT_TIMER_MMIO,
            shared(BootTimerMmio(boot_timer.clone())),
        )?;
        let debug_exit = shared(DebugExit(exit.clone()));
        self.insert_pio(
            "the debug-exit port",
            ports::DEBUG_EXIT,
            4,
            debug_exit.clone(),
        )?;
        self.insert_mmio(
            "the debug-exit register",
            layout::DEBUG_EXIT_MMIO,
            debug_exit,
        )?;
        self.legacy = Some(LegacyDevices {
            serial: serial_dev,
            i8042,
            boot_timer: boot_timer.clone(),
        });
        Ok(())
    }

    fn insert_pio(
        &mut self,
        what: &'static str,
        port: u16,
        len: u64,
        dev: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), DeviceError> {
        self.buses_mut(what)?
            .pio
            .insert(port.into(), len, dev)
            .map_err(|e| DeviceError::Bus(what, e))
    }

    /// A one-page register at `addr`.
    fn insert_mmio(
        &mut self,
        what: &'static str,
        addr: u64,
        dev: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), DeviceError> {
        self.buses_mut(what)?
            .mmio
            .insert(addr, 0x1000, dev)
            .map_err(|e| DeviceError::Bus(what, e))
    }
}
