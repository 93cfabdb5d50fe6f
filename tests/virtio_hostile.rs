//! A hostile driver against the virtio console's receive and transmit
//! paths: descriptor chains that loop, point past the table or past RAM,
//! overflow, nest indirect tables or go the wrong way, and an available
//! index that jumps. Each case: no panic, bounded work, and the chain is
//! completed (used, length 0) or the device is marked DEVICE_NEEDS_RESET.
//! The driver side is `virtio_queue::mock::MockSplitQueue`.

mod virtio_util;

use std::time::{Duration, Instant};

use tinyvmm::devices::virtio::INT_CONFIG;
use tinyvmm::devices::virtio::console::{Console, RECEIVEQ, TRANSMITQ};
use tinyvmm::devices::virtio::mmio::MmioTransport;
use tinyvmm::devices::virtio::regs;
use tinyvmm::devices::virtio::status::DEVICE_NEEDS_RESET;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_util::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;
const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

fn d(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

/// How one hostile case ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The bad chain was used (returned to the driver) and counted.
    Completed,
    /// The device gave up: DEVICE_NEEDS_RESET and a config interrupt.
    NeedsReset,
}

/// Offers `descs` on queue `q` (0 = receiveq, 1 = transmitq), processes,
/// then checks that a good chain still goes through if the device lives.
fn hostile(q: usize, descs: &[RawDescriptor]) -> Ending {
    let m = mem();
    let (out, sink) = output(1 << 20);
    let mut t = live_console(&m, &out);
    let base = [RXQ, TXQ][q];
    let vq = MockSplitQueue::create(&m, GuestAddress(base), QSIZE);
    vq.add_desc_chains(descs, 0).unwrap();
    if q == RECEIVEQ {
        t.device_mut().queue_input(b"input");
    }
    let start = Instant::now();
    t.process();
    assert!(start.elapsed() < Duration::from_secs(1), "bounded work");
    if t.status() & DEVICE_NEEDS_RESET != 0 {
        assert_eq!(r(&mut t, regs::INTERRUPT_STATUS) & INT_CONFIG, INT_CONFIG);
        // A device that needs a reset does no more work.
        t.process();
        return Ending::NeedsReset;
    }
    assert_eq!(used_idx(&m, base), 1, "the bad chain was completed");
    assert_eq!(t.device().stats().bad_chains, 1);
    assert_eq!(t.device().stats().tx_bytes, 0, "nothing from a bad chain");
    good_chain_still_works(&m, &mut t, &vq, q);
    out.finish(Duration::from_secs(5));
    if q == TRANSMITQ {
        assert_eq!(&*sink.0.lock().unwrap(), b"fine");
    }
    Ending::Completed
}

fn good_chain_still_works(
    m: &GuestMemoryMmap,
    t: &mut MmioTransport<Console>,
    vq: &MockSplitQueue<GuestMemoryMmap>,
    q: usize,
) {
    let base = [RXQ, TXQ][q];
    let buf = BUFFERS + 0x8000;
    let flags = if q == RECEIVEQ { WRITE } else { 0 };
    m.write_slice(b"fine", GuestAddress(buf)).unwrap();
    vq.add_desc_chains(&[d(buf, 4, flags, 0)], 8).unwrap();
    t.process();
    assert_eq!(used_idx(m, base), 2, "a good chain after the bad one");
    if q == RECEIVEQ {
        let mut got = [0u8; 4];
        m.read_slice(&mut got, GuestAddress(buf)).unwrap();
        assert_eq!(&got, b"inpu", "input went into the good buffer");
    }
}

fn both_queues(make: impl Fn(u16) -> Vec<RawDescriptor>) {
    assert_eq!(hostile(RECEIVEQ, &make(WRITE)), Ending::Completed);
    assert_eq!(hostile(TRANSMITQ, &make(0)), Ending::Completed);
}

#[test]
fn a_looping_chain_is_completed() {
    both_queues(|f| vec![d(BUFFERS, 8, f | NEXT, 1), d(BUFFERS, 8, f | NEXT, 0)]);
}

#[test]
fn a_self_loop_is_completed() {
    both_queues(|f| vec![d(BUFFERS, 8, f | NEXT, 0)]);
}

#[test]
fn next_past_the_table_is_completed() {
    both_queues(|f| vec![d(BUFFERS, 8, f | NEXT, QSIZE), d(BUFFERS, 8, f, 0)]);
    both_queues(|f| vec![d(BUFFERS, 8, f | NEXT, u16::MAX)]);
}

#[test]
fn buffers_past_ram_or_overflowing_are_completed() {
    both_queues(|f| vec![d(MEM_SIZE, 8, f, 0)]);
    both_queues(|f| vec![d(MEM_SIZE - 4, 8, f, 0)]);
    both_queues(|f| vec![d(u64::MAX - 3, 8, f, 0)]);
    both_queues(|f| vec![d(0xd000_0000, 0x1000, f, 0)]); // the MMIO gap
    both_queues(|f| vec![d(BUFFERS, 8, f | NEXT, 1), d(u64::MAX, u32::MAX, f, 0)]);
}

#[test]
fn a_chain_over_4_gib_is_completed() {
    // Lengths that pass 2^32 in total: virtio-queue stops the chain.
    both_queues(|f| {
        (0..4)
            .map(|i| d(BUFFERS, 0x7fff_ffff, f | NEXT, i + 1))
            .chain([d(BUFFERS, 0x10, f, 0)])
            .collect()
    });
}

#[test]
fn wrong_direction_buffers_are_completed() {
    // A device-writable buffer on the transmitq, a readable one on the
    // receiveq, and a chain that mixes both.
    assert_eq!(
        hostile(TRANSMITQ, &[d(BUFFERS, 8, WRITE, 0)]),
        Ending::Completed
    );
    assert_eq!(hostile(RECEIVEQ, &[d(BUFFERS, 8, 0, 0)]), Ending::Completed);
    assert_eq!(
        hostile(
            TRANSMITQ,
            &[d(BUFFERS, 8, NEXT, 1), d(BUFFERS, 8, WRITE, 0)]
        ),
        Ending::Completed
    );
}

#[test]
fn nested_and_bad_indirect_tables_are_completed() {
    let table = BUFFERS + 0x1_0000;
    let m_setup = |m: &GuestMemoryMmap, entries: &[RawDescriptor], table: u64| {
        for (i, e) in entries.iter().enumerate() {
            m.write_obj(*e, GuestAddress(table + 16 * i as u64))
                .unwrap();
        }
    };
    for q in [RECEIVEQ, TRANSMITQ] {
        let f = if q == RECEIVEQ { WRITE } else { 0 };
        for (entries, head_len) in [
            // An indirect descriptor inside an indirect table (2.7.5.3.1).
            (vec![d(table, 16, INDIRECT, 0)], 16),
            (
                vec![d(BUFFERS, 8, f | NEXT, 1), d(table, 32, INDIRECT, 0)],
                32,
            ),
            // A table length that is not a multiple of 16.
            (vec![d(BUFFERS, 8, f, 0)], 15),
            // An indirect table that loops.
            (
                vec![d(BUFFERS, 8, f | NEXT, 1), d(BUFFERS, 8, f | NEXT, 0)],
                32,
            ),
        ] {
            let m = mem();
            m_setup(&m, &entries, table);
            let (out, _sink) = output(1 << 20);
            let mut t = live_console(&m, &out);
            let base = [RXQ, TXQ][q];
            let vq = MockSplitQueue::create(&m, GuestAddress(base), QSIZE);
            vq.add_desc_chains(&[d(table, head_len, INDIRECT, 0)], 0)
                .unwrap();
            t.device_mut().queue_input(b"input");
            t.process();
            assert!(t.is_live());
            assert_eq!(used_idx(&m, base), 1, "{entries:?}");
            assert_eq!(t.device().stats().bad_chains, 1);
            good_chain_still_works(&m, &mut t, &vq, q);
        }
    }
}

#[test]
fn an_indirect_table_past_ram_is_completed() {
    both_queues(|_| vec![d(MEM_SIZE + 0x1000, 64, INDIRECT, 0)]);
    both_queues(|_| vec![d(u64::MAX - 15, 32, INDIRECT, 0)]);
}

#[test]
fn an_indirect_table_running_off_the_end_of_ram_is_completed() {
    for q in [RECEIVEQ, TRANSMITQ] {
        let f = if q == RECEIVEQ { WRITE } else { 0 };
        let m = mem();
        // Entry 0 is the last 16 bytes of RAM and points at entry 1, past it.
        let table = MEM_SIZE - 16;
        m.write_obj(d(BUFFERS, 8, f | NEXT, 1), GuestAddress(table))
            .unwrap();
        let (out, _sink) = output(1 << 20);
        let mut t = live_console(&m, &out);
        let base = [RXQ, TXQ][q];
        let vq = MockSplitQueue::create(&m, GuestAddress(base), QSIZE);
        vq.add_desc_chains(&[d(table, 32, INDIRECT, 0)], 0).unwrap();
        t.device_mut().queue_input(b"input");
        t.process();
        assert!(t.is_live());
        assert_eq!(used_idx(&m, base), 1);
        assert_eq!(t.device().stats().bad_chains, 1);
    }
}

#[test]
fn an_available_index_jumping_past_the_queue_size_needs_reset() {
    for q in [RECEIVEQ, TRANSMITQ] {
        let m = mem();
        let (out, _sink) = output(1 << 20);
        let mut t = live_console(&m, &out);
        let base = [RXQ, TXQ][q];
        set_avail_idx(&m, base, QSIZE + 1);
        t.device_mut().queue_input(b"x");
        t.process();
        assert_ne!(t.status() & DEVICE_NEEDS_RESET, 0);
        assert_eq!(r(&mut t, regs::INTERRUPT_STATUS) & INT_CONFIG, INT_CONFIG);
        assert_eq!(used_idx(&m, base), 0);
        // A reset and a fresh bring-up make it work again.
        w(&mut t, regs::STATUS, 0);
        set_avail_idx(&m, base, 0);
        m.write_obj(0u16, GuestAddress(base + USED_OFFSET + 2))
            .unwrap();
        let mut t2 = live_console(&m, &out);
        t2.process();
        assert!(t2.is_live());
    }
}

#[test]
fn a_head_index_past_the_table_needs_reset() {
    // The available ring names descriptor 500 of a 16-entry table: there is
    // no chain to complete (the used ring cannot name it), so the device
    // gives up rather than guess.
    for q in [RECEIVEQ, TRANSMITQ] {
        let m = mem();
        let (out, _sink) = output(1 << 20);
        let mut t = live_console(&m, &out);
        let base = [RXQ, TXQ][q];
        let avail = base + 16 * u64::from(QSIZE);
        m.write_obj(500u16, GuestAddress(avail + 4)).unwrap();
        set_avail_idx(&m, base, 1);
        t.device_mut().queue_input(b"x");
        t.process();
        assert_ne!(t.status() & DEVICE_NEEDS_RESET, 0, "queue {q}");
    }
}

#[test]
fn a_full_ring_of_worst_case_chains_is_bounded() {
    // Every one of the 16 heads starts a 16-step loop; the avail index says
    // 16 chains (the most allowed). Work: 16 x 16 descriptor reads.
    for q in [RECEIVEQ, TRANSMITQ] {
        let m = mem();
        let (out, _sink) = output(1 << 20);
        let mut t = live_console(&m, &out);
        let base = [RXQ, TXQ][q];
        let f = if q == RECEIVEQ { WRITE } else { 0 };
        for i in 0..QSIZE {
            let desc = d(BUFFERS, 8, f | NEXT, (i + 1) % QSIZE);
            m.write_obj(desc, GuestAddress(base + 16 * u64::from(i)))
                .unwrap();
            let avail = base + 16 * u64::from(QSIZE);
            m.write_obj(i, GuestAddress(avail + 4 + 2 * u64::from(i)))
                .unwrap();
        }
        set_avail_idx(&m, base, QSIZE);
        t.device_mut().queue_input(&[b'x'; 4096]);
        let start = Instant::now();
        t.process();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(t.is_live());
        assert_eq!(used_idx(&m, base), QSIZE);
        assert_eq!(t.device().stats().bad_chains, u64::from(QSIZE));
    }
}
