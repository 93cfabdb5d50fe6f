//! Unit tests of the device manager, without /dev/kvm: a recorder stands in
//! for the VM's irqfd/ioeventfd registration.

use std::cell::RefCell;
use std::time::Instant;

use vm_memory::GuestAddress;

use super::*;
use crate::arch::x86_64::layout::{self, IRQ_MAX, VIRTIO_FIRST_IRQ, VIRTIO_MMIO_START, ports};
use crate::devices::boot_timer::BootTimer;
use crate::devices::legacy::SerialSetup;
use crate::devices::output::GuestOutput;
use crate::exit::ExitSignal;

/// Records what a VM would have been asked to wire.
#[derive(Default)]
struct Recorder {
    irqfds: RefCell<Vec<u32>>,
    ioevents: RefCell<Vec<(u64, u32)>>,
}

impl VmWiring for Recorder {
    fn register_irqfd(&self, _fd: &EventFd, gsi: u32) -> std::io::Result<()> {
        self.irqfds.borrow_mut().push(gsi);
        Ok(())
    }
    fn register_ioevent(&self, _fd: &EventFd, addr: u64, datamatch: u32) -> std::io::Result<()> {
        self.ioevents.borrow_mut().push((addr, datamatch));
        Ok(())
    }
}

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
}

fn output() -> GuestOutput {
    GuestOutput::new(Box::new(std::io::sink()), 4096).unwrap()
}

fn read32(buses: &IoBuses, addr: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    buses
        .mmio
        .read(addr, &mut b)
        .then_some(u32::from_le_bytes(b))
}

#[test]
fn legacy_devices_sit_at_their_documented_addresses() {
    let vm = Recorder::default();
    let mut dm = DeviceManager::new();
    let exit = Arc::new(ExitSignal::new().unwrap());
    let timer = BootTimer::new(Instant::now(), Instant::now(), false);
    dm.attach_legacy_devices(&vm, SerialSetup::Console, &exit, &timer, &output())
        .unwrap();
    assert_eq!(*vm.irqfds.borrow(), [layout::COM1_IRQ]);
    let buses = dm.buses();
    let mut b = [0u8; 1];
    // Each legacy register answers; the byte after the UART's eight does not.
    for port in [
        ports::COM1,
        ports::COM1 + 7,
        ports::I8042_DATA,
        ports::I8042_COMMAND,
        ports::DEBUG_PORT,
        ports::DEBUG_EXIT,
    ] {
        assert!(buses.pio.read(port.into(), &mut b), "port {port:#x}");
    }
    assert!(!buses.pio.read(u64::from(ports::COM1) + 8, &mut b));
    assert!(buses.mmio.read(layout::BOOT_TIMER_MMIO, &mut b));
    assert!(buses.mmio.read(layout::DEBUG_EXIT_MMIO, &mut b));
    assert!(dm.take_console_input().is_some(), "stdin feeds the 8250");
    let legacy = dm.legacy().unwrap();
    assert!(legacy.serial.is_some());
    assert!(
        dm.cmdline_entries().is_empty(),
        "legacy devices need no cmdline entry"
    );
}

#[test]
fn several_virtio_devices_get_their_own_window_gsi_and_cmdline_entry() {
    let vm = Recorder::default();
    let mut dm = DeviceManager::new();
    let mem = mem();
    let out = output();
    for _ in 0..3 {
        dm.attach_virtio_console(&vm, &mem, &out).unwrap();
    }
    let slots = dm.virtio_devices();
    assert_eq!(slots.len(), 3);
    let buses = dm.buses();
    for (i, slot) in slots.iter().enumerate() {
        let base = VIRTIO_MMIO_START + 0x1000 * i as u64;
        assert_eq!((slot.base, slot.gsi), (base, VIRTIO_FIRST_IRQ + i as u32));
        // The window answers with the virtio magic "virt" and device id 3.
        assert_eq!(read32(&buses, base), Some(0x7472_6976));
        assert_eq!(read32(&buses, base + regs::DEVICE_ID), Some(3));
        assert_eq!(
            dm.cmdline_entries()[i],
            format!(
                "virtio_mmio.device=4K@{base:#x}:{}",
                VIRTIO_FIRST_IRQ + i as u32
            )
        );
        // The console's two queues each got an ioeventfd on QueueNotify.
        let notify = base + regs::QUEUE_NOTIFY;
        assert!(vm.ioevents.borrow().contains(&(notify, 0)));
        assert!(vm.ioevents.borrow().contains(&(notify, 1)));
    }
    assert_eq!(*vm.irqfds.borrow(), [5, 6, 7]);
    assert_eq!(dm.take_subscribers().len(), 3);
    assert!(dm.virtio_console().is_some());
}

#[test]
fn the_entropy_device_follows_the_console_with_its_own_window() {
    let vm = Recorder::default();
    let mut dm = DeviceManager::new();
    let mem = mem();
    dm.attach_virtio_console(&vm, &mem, &output()).unwrap();
    dm.attach_virtio_rng(&vm, &mem).unwrap();
    let base = VIRTIO_MMIO_START + 0x1000;
    let buses = dm.buses();
    assert_eq!(read32(&buses, base + regs::DEVICE_ID), Some(4));
    assert_eq!(
        dm.cmdline_entries()[1],
        format!("virtio_mmio.device=4K@{base:#x}:{}", VIRTIO_FIRST_IRQ + 1)
    );
    // One queue, one ioeventfd.
    let notify = base + regs::QUEUE_NOTIFY;
    assert!(vm.ioevents.borrow().contains(&(notify, 0)));
    assert!(!vm.ioevents.borrow().contains(&(notify, 1)));
    assert!(dm.virtio_rng().is_some() && dm.virtio_console().is_some());
    assert_eq!(dm.virtio_disks().count(), 0);
}

#[test]
fn running_out_of_gsis_is_a_clean_error() {
    let vm = Recorder::default();
    let mut dm = DeviceManager::new();
    let (mem, out) = (mem(), output());
    let room = IRQ_MAX - VIRTIO_FIRST_IRQ + 1;
    for _ in 0..room {
        dm.attach_virtio_console(&vm, &mem, &out).unwrap();
    }
    let err = dm.attach_virtio_console(&vm, &mem, &out).unwrap_err();
    assert!(
        matches!(err, DeviceError::Alloc(_, AllocError::GsiExhausted)),
        "{err}"
    );
    assert!(err.to_string().contains("no interrupt line left"), "{err}");
    assert_eq!(dm.virtio_devices().len(), room as usize);
}

#[test]
fn no_device_joins_once_the_buses_are_shared() {
    let vm = Recorder::default();
    let mut dm = DeviceManager::new();
    let running = dm.buses();
    let err = dm
        .attach_virtio_console(&vm, &mem(), &output())
        .unwrap_err();
    assert!(matches!(err, DeviceError::Running(_)), "{err}");
    drop(running);
}
