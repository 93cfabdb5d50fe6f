//! Unit tests of the MMIO register file and status state machine: no KVM,
//! a made-up device and 1 MiB of guest memory.

use super::*;
use crate::devices::virtio::UsedQueues;
use crate::devices::virtio::VIRTIO_F_VERSION_1;
use status::{
    ACKNOWLEDGE as A, DEVICE_NEEDS_RESET, DRIVER as D, DRIVER_OK as O, FAILED, FEATURES_OK as F,
};
use vm_memory::GuestMemoryError;
use vmm_sys_util::eventfd::EFD_NONBLOCK;

const MEM_SIZE: u64 = 0x10_0000;
const QMAX: u16 = 16;

#[derive(Default)]
struct Fake {
    resets: u32,
    activated: Option<u64>,
    fail: bool,
}

impl VirtioDevice for Fake {
    fn device_type(&self) -> u32 {
        42
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QMAX, QMAX]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | 1
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(offset as u8);
    }
    fn write_config(&mut self, _: u64, _: &[u8]) {}
    fn activate(&mut self, features: u64) {
        self.activated = Some(features);
    }
    fn reset(&mut self) {
        self.resets += 1;
    }
    fn process(
        &mut self,
        _: &mut [Option<Queue>],
        _: &GuestMemoryMmap,
    ) -> Result<UsedQueues, DeviceError> {
        if self.fail {
            Err(GuestMemoryError::InvalidGuestAddress(GuestAddress(0)).into())
        } else {
            Ok(1)
        }
    }
}

type T = MmioTransport<Fake>;

fn transport() -> T {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap();
    let e = || EventFd::new(EFD_NONBLOCK).unwrap();
    MmioTransport::new(Fake::default(), mem, e(), vec![e(), e()], e())
}

fn w(t: &mut T, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

fn r(t: &mut T, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

fn w64(t: &mut T, low: u64, v: u64) {
    w(t, low, v as u32);
    w(t, low + 4, (v >> 32) as u32);
}

/// Steps 1-6 of 3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK.
fn negotiate(t: &mut T, features: u64) -> u32 {
    w(t, regs::STATUS, 0);
    w(t, regs::STATUS, A);
    w(t, regs::STATUS, A | D);
    w(t, regs::DRIVER_FEATURES_SEL, 0);
    w(t, regs::DRIVER_FEATURES, features as u32);
    w(t, regs::DRIVER_FEATURES_SEL, 1);
    w(t, regs::DRIVER_FEATURES, (features >> 32) as u32);
    w(t, regs::STATUS, A | D | F);
    r(t, regs::STATUS)
}

/// Queue `i` with its rings at `base` (descriptors), +0x100, +0x200.
fn setup_queue(t: &mut T, i: u32, base: u64) -> u32 {
    w(t, regs::QUEUE_SEL, i);
    w(t, regs::QUEUE_NUM, u32::from(QMAX));
    w64(t, regs::QUEUE_DESC_LOW, base);
    w64(t, regs::QUEUE_DRIVER_LOW, base + 0x100);
    w64(t, regs::QUEUE_DEVICE_LOW, base + 0x200);
    w(t, regs::QUEUE_READY, 1);
    r(t, regs::QUEUE_READY)
}

fn bring_up(t: &mut T) {
    assert_eq!(negotiate(t, VIRTIO_F_VERSION_1 | 1), A | D | F);
    assert_eq!(setup_queue(t, 0, 0x1000), 1);
    assert_eq!(setup_queue(t, 1, 0x2000), 1);
    w(t, regs::STATUS, A | D | F | O);
}

#[test]
fn identification_registers() {
    let mut t = transport();
    assert_eq!(r(&mut t, regs::MAGIC), 0x7472_6976);
    assert_eq!(r(&mut t, regs::VERSION), 2);
    assert_eq!(r(&mut t, regs::DEVICE_ID), 42);
    assert_eq!(r(&mut t, regs::VENDOR_ID), VENDOR_TVMM);
    w(&mut t, regs::DEVICE_FEATURES_SEL, 0);
    assert_eq!(r(&mut t, regs::DEVICE_FEATURES), 1);
    w(&mut t, regs::DEVICE_FEATURES_SEL, 1);
    assert_eq!(r(&mut t, regs::DEVICE_FEATURES), 1, "VERSION_1 is bit 32");
    w(&mut t, regs::DEVICE_FEATURES_SEL, 7);
    assert_eq!(r(&mut t, regs::DEVICE_FEATURES), 0);
    assert_eq!(r(&mut t, regs::SHM_LEN_LOW), u32::MAX, "no shared memory");
    assert_eq!(r(&mut t, regs::CONFIG_GENERATION), 0);
}

#[test]
fn the_valid_sequence_makes_the_device_live() {
    let mut t = transport();
    bring_up(&mut t);
    assert_eq!(r(&mut t, regs::STATUS), A | D | F | O);
    assert!(t.is_live() && t.ever_activated());
    assert_eq!(t.device().activated, Some(VIRTIO_F_VERSION_1 | 1));
    assert_eq!(t.activate.read().unwrap(), 1, "the main loop is told");
    assert!(t.queues().iter().all(Option::is_some));
    assert_eq!(t.refusals(), Refusals::default());
    // Processing used a buffer: InterruptStatus says so, the irqfd fired.
    t.process();
    assert_eq!(r(&mut t, regs::INTERRUPT_STATUS), INT_VRING);
    assert_eq!(t.irq.read().unwrap(), 1);
    w(&mut t, regs::INTERRUPT_ACK, INT_VRING);
    assert_eq!(r(&mut t, regs::INTERRUPT_STATUS), 0);
}

/// From each state of the sequence, every one-byte write is either the next
/// step, a no-op, FAILED, or refused leaving the status unchanged.
#[test]
fn every_out_of_order_status_write_is_refused() {
    let states = [0, A, A | D, A | D | F, A | D | F | O];
    for (k, &state) in states.iter().enumerate() {
        for v in 1..=0xffu32 {
            let mut t = transport();
            for &s in &states[1..=k] {
                w(&mut t, regs::STATUS, s);
                if s == A | D {
                    // VERSION_1 accepted, so FEATURES_OK is the valid next step.
                    w(&mut t, regs::DRIVER_FEATURES_SEL, 1);
                    w(&mut t, regs::DRIVER_FEATURES, 1);
                }
            }
            assert_eq!(t.status(), state);
            w(&mut t, regs::STATUS, v);
            let got = t.status();
            let next = states.get(k + 1).copied();
            let v = v & !DEVICE_NEEDS_RESET;
            if v & FAILED != 0 {
                assert_eq!(got, state | FAILED, "FAILED from {state:#x}");
                assert!(!t.is_live());
            } else if Some(v) == next || v == state {
                assert_eq!(got, v, "{v:#x} from {state:#x}");
            } else {
                assert_eq!(got, state, "{v:#x} from {state:#x} must be refused");
            }
        }
    }
}

#[test]
fn features_ok_needs_version_1_and_only_offered_features() {
    let mut t = transport();
    assert_eq!(negotiate(&mut t, 1), A | D, "no VERSION_1");
    assert_eq!(
        negotiate(&mut t, VIRTIO_F_VERSION_1 | 2),
        A | D,
        "bit 1 not offered"
    );
    assert_eq!(negotiate(&mut t, VIRTIO_F_VERSION_1 | 1 << 40), A | D);
    assert_eq!(negotiate(&mut t, VIRTIO_F_VERSION_1), A | D | F);
    // A third feature word with a bit set is a feature not offered.
    w(&mut t, regs::STATUS, 0);
    w(&mut t, regs::STATUS, A);
    w(&mut t, regs::STATUS, A | D);
    w(&mut t, regs::DRIVER_FEATURES_SEL, 1);
    w(&mut t, regs::DRIVER_FEATURES, 1);
    w(&mut t, regs::DRIVER_FEATURES_SEL, 2);
    w(&mut t, regs::DRIVER_FEATURES, 0x10);
    w(&mut t, regs::STATUS, A | D | F);
    assert_eq!(t.status(), A | D);
}

#[test]
fn driver_features_are_frozen_outside_negotiation() {
    let mut t = transport();
    w(&mut t, regs::DRIVER_FEATURES, 1); // before DRIVER
    assert_eq!(t.refusals().register, 1);
    bring_up(&mut t);
    w(&mut t, regs::DRIVER_FEATURES_SEL, 0);
    w(&mut t, regs::DRIVER_FEATURES, 0xffff_ffff); // after FEATURES_OK
    assert_eq!(t.refusals().register, 2);
    assert_eq!(t.driver_features, VIRTIO_F_VERSION_1 | 1);
}

#[test]
fn queue_writes_after_driver_ok_are_ignored() {
    let mut t = transport();
    bring_up(&mut t);
    let before: Vec<_> = t
        .queues()
        .iter()
        .map(|q| q.as_ref().unwrap().state())
        .collect();
    for q in 0..2 {
        w(&mut t, regs::QUEUE_SEL, q);
        w(&mut t, regs::QUEUE_NUM, 4);
        w64(&mut t, regs::QUEUE_DESC_LOW, 0x8000);
        w64(&mut t, regs::QUEUE_DRIVER_LOW, 0x9000);
        w64(&mut t, regs::QUEUE_DEVICE_LOW, 0xa000);
        w(&mut t, regs::QUEUE_READY, 0);
        assert_eq!(r(&mut t, regs::QUEUE_READY), 1);
    }
    let after: Vec<_> = t
        .queues()
        .iter()
        .map(|q| q.as_ref().unwrap().state())
        .collect();
    assert_eq!(before, after, "a live ring cannot be moved");
    assert_eq!(t.refusals().register, 2 * 8);
    assert!(t.is_live());
}

#[test]
fn queue_writes_before_features_ok_or_on_a_ready_queue_are_ignored() {
    let mut t = transport();
    w(&mut t, regs::STATUS, A);
    w(&mut t, regs::STATUS, A | D);
    assert_eq!(setup_queue(&mut t, 0, 0x1000), 0);
    assert_eq!(t.refusals().register, 8, "QueueSel is always writable");
    negotiate(&mut t, VIRTIO_F_VERSION_1);
    assert_eq!(setup_queue(&mut t, 0, 0x1000), 1);
    w64(&mut t, regs::QUEUE_DESC_LOW, 0x4000);
    let q = t.queues()[0].as_ref().unwrap();
    assert_eq!(q.desc_table(), 0x1000, "ready queue keeps its rings");
}

#[test]
fn bad_queue_num_and_queue_sel_are_refused() {
    let mut t = transport();
    negotiate(&mut t, VIRTIO_F_VERSION_1);
    w(&mut t, regs::QUEUE_SEL, 0);
    assert_eq!(r(&mut t, regs::QUEUE_NUM_MAX), u32::from(QMAX));
    for bad in [0, 3, 12, 32, 0x1_0000, u32::MAX] {
        w(&mut t, regs::QUEUE_NUM, bad);
    }
    assert_eq!(t.refusals().register, 6);
    assert_eq!(t.regs[0].num, QMAX, "unchanged");
    w(&mut t, regs::QUEUE_NUM, 4);
    assert_eq!(t.regs[0].num, 4);
    // A queue that does not exist: QueueNumMax 0, writes refused.
    for sel in [2, 1000, u32::MAX] {
        w(&mut t, regs::QUEUE_SEL, sel);
        assert_eq!(r(&mut t, regs::QUEUE_NUM_MAX), 0);
        assert_eq!(setup_queue(&mut t, sel, 0x1000), 0);
    }
    // QueueNotify: a valid index signals the queue, an invalid one is counted.
    w(&mut t, regs::QUEUE_NOTIFY, 1);
    assert_eq!(t.notify[1].read().unwrap(), 1);
    let before = t.refusals().register;
    w(&mut t, regs::QUEUE_NOTIFY, 2);
    w(&mut t, regs::QUEUE_NOTIFY, u32::MAX);
    assert_eq!(t.refusals().register, before + 2);
}

#[test]
fn misaligned_or_outside_rings_are_not_made_ready() {
    let cases: [(u64, u64, u64); 9] = [
        (0x1008, 0x1100, 0x1200),          // descriptor table not 16-aligned
        (0x1000, 0x1101, 0x1200),          // available ring not 2-aligned
        (0x1000, 0x1100, 0x1202),          // used ring not 4-aligned
        (MEM_SIZE, 0x1100, 0x1200),        // descriptors past RAM
        (MEM_SIZE - 0x80, 0x1100, 0x1200), // descriptors run off the end
        (0x1000, MEM_SIZE - 0x10, 0x1200), // available ring runs off the end
        (0x1000, 0x1100, MEM_SIZE - 0x40), // used ring runs off the end
        (0x1000, 0x1100, u64::MAX - 3),    // overflowing
        (0x1000, 0, 0x1200),               // available ring at 0
    ];
    for (desc, driver, device) in cases {
        let mut t = transport();
        negotiate(&mut t, VIRTIO_F_VERSION_1);
        w(&mut t, regs::QUEUE_SEL, 0);
        w64(&mut t, regs::QUEUE_DESC_LOW, desc);
        w64(&mut t, regs::QUEUE_DRIVER_LOW, driver);
        w64(&mut t, regs::QUEUE_DEVICE_LOW, device);
        w(&mut t, regs::QUEUE_READY, 1);
        assert_eq!(
            r(&mut t, regs::QUEUE_READY),
            0,
            "{desc:#x} {driver:#x} {device:#x}"
        );
        assert_eq!(t.refusals().queue_ready, 1);
        assert!(t.queues()[0].is_none());
    }
}

#[test]
fn reset_returns_to_power_on_state_and_allows_re_initialisation() {
    let mut t = transport();
    bring_up(&mut t);
    t.process();
    w(&mut t, regs::STATUS, 0);
    assert_eq!(r(&mut t, regs::STATUS), 0);
    assert_eq!(r(&mut t, regs::INTERRUPT_STATUS), 0);
    assert!(!t.is_live() && t.ever_activated());
    assert!(t.queues().iter().all(Option::is_none));
    assert_eq!(t.device().resets, 3, "at creation, by bring_up, now");
    w(&mut t, regs::QUEUE_SEL, 1);
    assert_eq!(r(&mut t, regs::QUEUE_READY), 0);
    assert_eq!(t.regs[1].num, QMAX);
    bring_up(&mut t);
    assert!(t.is_live());
    assert_eq!(t.refusals(), Refusals::default());
}

#[test]
fn a_device_error_sets_needs_reset_with_a_config_interrupt() {
    let mut t = transport();
    bring_up(&mut t);
    t.device_mut().fail = true;
    t.process();
    assert_eq!(r(&mut t, regs::STATUS), A | D | F | O | DEVICE_NEEDS_RESET);
    assert_eq!(r(&mut t, regs::INTERRUPT_STATUS), INT_CONFIG);
    assert!(!t.is_live());
    // The driver cannot clear the bit except by resetting.
    w(&mut t, regs::STATUS, A | D | F | O);
    assert!(t.status() & DEVICE_NEEDS_RESET != 0);
    w(&mut t, regs::STATUS, 0);
    t.device_mut().fail = false;
    bring_up(&mut t);
    assert!(t.is_live());
}

#[test]
fn odd_sized_accesses_are_refused_and_config_space_reaches_the_device() {
    let mut t = transport();
    let mut b = [0xaau8; 2];
    t.read(regs::MAGIC, &mut b);
    assert_eq!(b, [0, 0]);
    t.read(regs::MAGIC + 1, &mut [0u8; 4]);
    t.write(regs::STATUS, &[1]);
    t.write(regs::STATUS + 2, &1u32.to_le_bytes());
    t.write(0x0f0, &1u32.to_le_bytes()); // reserved
    assert_eq!(t.status(), 0);
    assert_eq!(t.refusals().access, 5);
    let mut c = [0u8; 2];
    t.read(regs::CONFIG + 3, &mut c);
    assert_eq!(c, [3, 3]);
}
