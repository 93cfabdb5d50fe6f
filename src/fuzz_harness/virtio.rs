//! The `virtio_mmio` fuzz target: a virtio console behind its MMIO
//! transport, driven by a byte-coded program of register reads and writes
//! (in and out of order, odd sizes), driver bring-ups with fuzzed ring
//! layouts, descriptors and available-ring entries written into guest
//! memory, raw guest-memory writes, notifications followed by queue
//! processing, host input and configuration changes. After every step the
//! transport's invariants must hold (the same ones tests/virtio_proptest.rs
//! checks, plus chain and interrupt accounting).

use std::time::Duration;

use virtio_queue::QueueT;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::Input;
use crate::devices::bus::BusDevice;
use crate::devices::output::GuestOutput;
use crate::devices::virtio::console::{
    Console, QUEUE_SIZES, TRANSMITQ, TX_BUDGET, VIRTIO_CONSOLE_F_SIZE,
};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::regs::{self, MAGIC_VALUE, MMIO_VERSION};
use crate::devices::virtio::status::*;
use crate::devices::virtio::{INT_CONFIG, INT_VRING, VirtioDevice};

/// Guest RAM: two 64 KiB regions with a hole between them, so rings and
/// buffers can straddle a gap or run off the end.
const RAM: [(u64, usize); 2] = [(0, 0x1_0000), (0x2_0000, 0x1_0000)];
/// One past the last byte of guest RAM.
const RAM_END: u64 = 0x3_0000;
/// Steps per input: bounds the work of one execution.
const MAX_STEPS: usize = 512;
const A: u32 = ACKNOWLEDGE;
const D: u32 = DRIVER;
const F: u32 = FEATURES_OK;
const O: u32 = DRIVER_OK;

/// Registers the fuzzer hits besides regs::DRIVER_WRITES (a byte picks
/// one of the 20 by `b % 20`, these being 16..20).
const OTHER_REGS: [u64; 4] = [
    regs::SHM_SEL,
    regs::DEVICE_FEATURES,
    regs::INTERRUPT_STATUS,
    regs::CONFIG,
];
/// Ring bases the bring-up step chooses from: aligned, unaligned, near
/// the hole, near the end, outside RAM.
const RING_BASES: [u64; 10] = [
    0x1000, 0x4000, 0x8000, 0xe000, 0xff00, 0x2_0000, 0x2_8000, 0x2_fff0, 0x1002, 0x4_0000,
];
/// Buffer addresses descriptors choose from (the last: any u64).
const BUFFERS: [u64; 7] = [
    0xa000,
    0xc000,
    0xfff8,
    0x2_4000,
    0x2_fffc,
    0x3_0000,
    u64::MAX - 7,
];

/// Everything one execution has done that bounds what the device may do.
#[derive(Default)]
struct Budget {
    processed: u64,
    config_changes: u64,
    input: u64,
}

/// Runs one fuzz input against a console transport; panics if an
/// invariant breaks.
pub fn virtio_mmio(data: &[u8]) {
    let mut input = Input::new(data);
    let mem = GuestMemoryMmap::from_ranges(
        &RAM.iter()
            .map(|&(a, l)| (GuestAddress(a), l))
            .collect::<Vec<_>>(),
    )
    .expect("guest memory");
    let capacity = if input.u8() & 1 == 0 { 64 } else { 1 << 16 };
    let out = GuestOutput::new(Box::new(std::io::sink()), capacity).expect("output thread");
    let size = match input.u8() % 3 {
        0 => None,
        _ => Some((input.u16(), input.u16())),
    };
    let dev = Console::new(out.handle(), size).expect("console eventfds");
    let e = || EventFd::new(EFD_NONBLOCK).expect("eventfd");
    let mut t = MmioTransport::new(dev, mem.clone(), e(), vec![e(), e()], e());
    let mut budget = Budget::default();
    let mut live_layout = None;
    for _ in 0..MAX_STEPS {
        if input.is_empty() {
            break;
        }
        step(&mut t, &mem, &mut input, &mut budget, &mut live_layout);
        check(&t, &mem, &budget, &mut live_layout);
    }
    let stats = t.device().stats();
    assert!(stats.rx_bytes <= budget.input, "more input than was given");
    assert!(stats.tx_bytes <= budget.processed * TX_BUDGET as u64);
    drop(t);
    out.finish(Duration::from_secs(1));
}

fn w(t: &mut MmioTransport<Console>, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

fn r(t: &mut MmioTransport<Console>, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

fn value(input: &mut Input) -> u32 {
    match input.u8() % 4 {
        0 => input.pick(&[0, 1, 2, 3, 4, 8, 11, 15, 16, 0x40, 0x80, 0x4f, 0x100]),
        1 => u32::from(input.u8()) * 0x800,
        2 => input.pick(&[
            A,
            A | D,
            A | D | F,
            A | D | F | O,
            FAILED,
            DEVICE_NEEDS_RESET,
        ]),
        _ => input.u32(),
    }
}

fn step(
    t: &mut MmioTransport<Console>,
    mem: &GuestMemoryMmap,
    input: &mut Input,
    budget: &mut Budget,
    live_layout: &mut Option<Layout>,
) {
    match input.u8() % 12 {
        0 | 1 => {
            let offset = match input.u8() {
                b if b < 0xc0 => match usize::from(b) % 20 {
                    i @ 0..16 => regs::DRIVER_WRITES[i],
                    i => OTHER_REGS[i - 16],
                },
                b => u64::from(b - 0xc0) * 4 + 0x20,
            };
            let v = value(input);
            w(t, offset, v);
        }
        2 => read_registers(t, input.u8()),
        3 => {
            let offset = u64::from(input.u16() % 0x140);
            let len = usize::from(input.u8() % 8) + 1;
            let before = t.refusals().access;
            let mut b = vec![0u8; len];
            t.read(offset, &mut b);
            t.write(offset, &b);
            let odd = len != 4 || offset % 4 != 0;
            if offset < regs::CONFIG && odd {
                assert_eq!(t.refusals().access, before + 2, "odd access not refused");
            }
        }
        4 => {
            let addr = u64::from(input.u32()) % (RAM_END + 0x100);
            let len = usize::from(input.u8() % 64);
            // Writes into the hole or past the end fail: so would the guest's.
            let _ = mem.write_slice(input.bytes(len), GuestAddress(addr));
        }
        5 => write_descriptor(t, mem, input),
        6 => publish(t, mem, input),
        7 => {
            *live_layout = None;
            bring_up(t, input);
        }
        8 => {
            w(t, regs::QUEUE_NOTIFY, u32::from(input.u8() % 3));
            budget.processed += 1;
            t.process();
        }
        9 => {
            let len = usize::from(input.u8());
            budget.input += t.device_mut().queue_input(input.bytes(len)) as u64;
            if input.u8() & 1 == 0 {
                t.device_mut().open_input();
            }
        }
        10 => {
            budget.config_changes += 1;
            t.config_changed();
        }
        _ => {
            *live_layout = None;
            w(t, regs::STATUS, 0);
        }
    }
}

/// Reads that have fixed answers, whatever the driver did.
fn read_registers(t: &mut MmioTransport<Console>, which: u8) {
    assert_eq!(r(t, regs::MAGIC), MAGIC_VALUE);
    assert_eq!(r(t, regs::VERSION), MMIO_VERSION);
    assert_eq!(r(t, regs::DEVICE_ID), t.device().device_type());
    let isr = r(t, regs::INTERRUPT_STATUS);
    assert_eq!(
        isr & !(INT_VRING | INT_CONFIG),
        0,
        "interrupt status {isr:#x}"
    );
    assert_eq!(r(t, regs::STATUS), t.status());
    let num_max = r(t, regs::QUEUE_NUM_MAX);
    assert!(num_max == 0 || QUEUE_SIZES.contains(&(num_max as u16)));
    let mut config = [0u8; 16];
    t.read(regs::CONFIG + u64::from(which % 16), &mut config);
}

/// The driver's bring-up (3.1.1) with a fuzzed layout for each queue:
/// size, where the three rings go, features, and whether each step runs.
fn bring_up(t: &mut MmioTransport<Console>, input: &mut Input) {
    let skip = input.u8();
    w(t, regs::STATUS, 0);
    w(t, regs::STATUS, A);
    w(t, regs::STATUS, A | D);
    w(t, regs::DRIVER_FEATURES_SEL, 1);
    w(t, regs::DRIVER_FEATURES, u32::from(skip & 1 == 0)); // VIRTIO_F_VERSION_1
    w(t, regs::DRIVER_FEATURES_SEL, 0);
    let size_bit = if skip & 2 == 0 {
        VIRTIO_CONSOLE_F_SIZE
    } else {
        0
    };
    w(t, regs::DRIVER_FEATURES, size_bit as u32);
    w(t, regs::STATUS, A | D | F);
    for q in 0..2u32 {
        let log2 = u32::from(input.u8() % 10);
        let base = input.pick(&RING_BASES);
        let num = 1u64 << log2;
        let desc = base;
        let avail = desc + 16 * num;
        let used = (avail + 6 + 2 * num + 3) & !3;
        w(t, regs::QUEUE_SEL, q);
        w(t, regs::QUEUE_NUM, num as u32);
        for (low, addr) in [
            (regs::QUEUE_DESC_LOW, desc),
            (regs::QUEUE_DRIVER_LOW, avail),
            (regs::QUEUE_DEVICE_LOW, used),
        ] {
            w(t, low, addr as u32);
            w(t, low + 4, (addr >> 32) as u32);
        }
        w(t, regs::QUEUE_READY, 1);
    }
    if skip & 4 == 0 {
        w(t, regs::STATUS, A | D | F | O);
    }
}

/// Writes one descriptor (address, length, flags, next) into a ready
/// queue's table.
fn write_descriptor(t: &MmioTransport<Console>, mem: &GuestMemoryMmap, input: &mut Input) {
    let q = usize::from(input.u8() & 1);
    let i = u64::from(input.u16());
    let addr = match input.u8() % 8 {
        7 => input.u64(),
        n => BUFFERS[usize::from(n) % BUFFERS.len()].wrapping_add(u64::from(input.u8())),
    };
    let len = match input.u8() % 4 {
        0 => input.u32(),
        _ => u32::from(input.u16() % 0x2000),
    };
    let flags = input.u16() & 0x7; // NEXT, WRITE, INDIRECT
    let next = input.u16();
    let Some(queue) = &t.queues()[q] else { return };
    let at = queue.desc_table() + 16 * (i % u64::from(queue.size()));
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&addr.to_le_bytes());
    raw[8..12].copy_from_slice(&len.to_le_bytes());
    raw[12..14].copy_from_slice(&flags.to_le_bytes());
    raw[14..].copy_from_slice(&next.to_le_bytes());
    mem.write_slice(&raw, GuestAddress(at))
        .expect("rings are in RAM");
}

/// Puts a head index into a ready queue's available ring and moves its
/// index on (by 1, or by a fuzzed amount), optionally asking for no
/// interrupts.
fn publish(t: &MmioTransport<Console>, mem: &GuestMemoryMmap, input: &mut Input) {
    let q = usize::from(input.u8() & 1);
    let head = input.u16();
    let how = input.u8();
    let Some(queue) = &t.queues()[q] else { return };
    let avail = GuestAddress(queue.avail_ring());
    let size = queue.size();
    let idx: u16 = mem
        .read_obj(avail.unchecked_add(2))
        .expect("rings are in RAM");
    let slot = avail.unchecked_add(4 + 2 * u64::from(idx % size));
    let head = if how & 1 == 0 { head % size } else { head };
    mem.write_obj(head, slot).expect("rings are in RAM");
    let step = if how & 0x80 == 0 { 1 } else { head };
    mem.write_obj(idx.wrapping_add(step), avail.unchecked_add(2))
        .expect("rings are in RAM");
    mem.write_obj(u16::from(how & 2 != 0), avail)
        .expect("rings are in RAM");
}

/// (size, desc, avail, used) of each ready queue.
type Layout = Vec<Option<(u16, u64, u64, u64)>>;

fn layout(t: &MmioTransport<Console>) -> Layout {
    t.queues()
        .iter()
        .map(|q| {
            q.as_ref()
                .map(|q| (q.size(), q.desc_table(), q.avail_ring(), q.used_ring()))
        })
        .collect()
}

/// The transport's invariants, after every step.
fn check(
    t: &MmioTransport<Console>,
    mem: &GuestMemoryMmap,
    budget: &Budget,
    live_layout: &mut Option<Layout>,
) {
    let s = t.status();
    let steps = s & !(FAILED | DEVICE_NEEDS_RESET);
    assert!(
        [0, A, A | D, A | D | F, A | D | F | O].contains(&steps),
        "status {s:#x}: a skipped or reordered step"
    );
    if s & F != 0 {
        let offered = t.device().features();
        assert_eq!(t.driver_features() & !offered, 0, "unoffered feature");
        assert_ne!(t.driver_features() & (1 << 32), 0, "no VERSION_1");
    }
    for (i, q) in t.queues().iter().enumerate() {
        let Some(q) = q else { continue };
        let size = q.size();
        assert!(
            size.is_power_of_two() && size <= QUEUE_SIZES[i],
            "size {size}"
        );
        assert_eq!(q.desc_table() % 16, 0);
        assert_eq!(q.avail_ring() % 2, 0);
        assert_eq!(q.used_ring() % 4, 0);
        let n = u64::from(size);
        for (addr, len) in [
            (q.desc_table(), 16 * n),
            (q.avail_ring(), 6 + 2 * n),
            (q.used_ring(), 6 + 8 * n),
        ] {
            let in_ram = GuestMemoryBackend::check_range(mem, GuestAddress(addr), len as usize);
            assert!(in_ram, "ring {addr:#x}+{len:#x} outside RAM");
        }
        // Every chain taken off the ring was completed, except the one
        // transmit chain held for stdout; unless the device gave up.
        if s & DEVICE_NEEDS_RESET == 0 {
            let held = u16::from(i == TRANSMITQ && t.device().tx_held());
            let in_flight = q.next_avail().wrapping_sub(q.next_used());
            assert_eq!(in_flight, held, "queue {i}: a chain was taken and dropped");
        }
    }
    match (s & O != 0, live_layout.as_ref()) {
        (true, None) => *live_layout = Some(layout(t)),
        (true, Some(l)) => assert_eq!(l, &layout(t), "a live ring moved"),
        (false, _) => *live_layout = None,
    }
    let raised = t.stats().interrupts;
    let causes = budget.processed + budget.config_changes;
    assert!(raised <= causes, "{raised} interrupts from {causes} causes");
}
