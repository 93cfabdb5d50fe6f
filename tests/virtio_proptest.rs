//! Randomised tests (proptest, 256 cases each): arbitrary register-write
//! sequences against the virtio-mmio transport, and arbitrary descriptor
//! tables and available rings against the console's queues. After every
//! step the transport's invariants must hold:
//! - the status is one of 0, A, A|D, A|D|F, A|D|F|O (plus FAILED or
//!   DEVICE_NEEDS_RESET): no skipped or reordered step;
//! - FEATURES_OK implies the driver accepted only offered features and
//!   VIRTIO_F_VERSION_1;
//! - every ready queue has a power-of-two size within QueueNumMax and
//!   aligned rings inside guest RAM;
//! - while DRIVER_OK stays set, no queue's rings or size change;
//! - queue processing returns promptly, and every chain it took off the
//!   ring was completed (or is the one transmit chain held for stdout),
//!   unless the device set DEVICE_NEEDS_RESET.

mod virtio_util;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use tinyvmm::devices::bus::BusDevice;
use tinyvmm::devices::virtio::console::{Console, QUEUE_SIZES, TRANSMITQ};
use tinyvmm::devices::virtio::mmio::MmioTransport;
use tinyvmm::devices::virtio::status::*;
use tinyvmm::devices::virtio::{VirtioDevice, regs};
use virtio_queue::QueueT;
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_util::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const A: u32 = ACKNOWLEDGE;
const D: u32 = DRIVER;
const F: u32 = FEATURES_OK;
const O: u32 = DRIVER_OK;

/// (size, desc, avail, used, ready) of each queue.
type Layout = Vec<Option<(u16, u64, u64, u64, bool)>>;

fn layout(t: &MmioTransport<Console>) -> Layout {
    t.queues()
        .iter()
        .map(|q| {
            q.as_ref().map(|q| {
                (
                    q.size(),
                    q.desc_table(),
                    q.avail_ring(),
                    q.used_ring(),
                    q.ready(),
                )
            })
        })
        .collect()
}

fn check_invariants(
    t: &MmioTransport<Console>,
    m: &GuestMemoryMmap,
    live_layout: &mut Option<Layout>,
) {
    let s = t.status();
    let steps = s & !(FAILED | DEVICE_NEEDS_RESET);
    assert!(
        [0, A, A | D, A | D | F, A | D | F | O].contains(&steps),
        "status {s:#x}"
    );
    if s & F != 0 {
        let offered = t.device().features();
        assert_eq!(t.driver_features() & !offered, 0);
        assert_ne!(t.driver_features() & (1 << 32), 0, "VERSION_1");
    }
    for (i, q) in t.queues().iter().enumerate() {
        let Some(q) = q else { continue };
        let size = q.size();
        assert!(size.is_power_of_two() && size <= QUEUE_SIZES[i]);
        assert_eq!(q.desc_table() % 16, 0);
        assert_eq!(q.avail_ring() % 2, 0);
        assert_eq!(q.used_ring() % 4, 0);
        let n = u64::from(size);
        for (addr, len) in [
            (q.desc_table(), 16 * n),
            (q.avail_ring(), 6 + 2 * n),
            (q.used_ring(), 6 + 8 * n),
        ] {
            assert!(GuestMemoryBackend::check_range(
                m,
                GuestAddress(addr),
                len as usize
            ));
        }
    }
    match (s & O != 0, live_layout.as_ref()) {
        (true, None) => *live_layout = Some(layout(t)),
        (true, Some(l)) => assert_eq!(l, &layout(t), "a live ring moved"),
        (false, _) => *live_layout = None,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write(u64, u32),
    Read(u64),
    Odd(u64, usize),
    Process,
}

fn register() -> impl Strategy<Value = u64> {
    let known = regs::DRIVER_WRITES.to_vec();
    prop_oneof![
        8 => prop::sample::select(known),
        1 => (0u64..0x40).prop_map(|x| x * 4),
        1 => 0x100u64..0x120,
    ]
}

fn value() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => prop::sample::select(vec![0, 1, 2, 3, 4, 8, 11, 15, 16, 0x40, 0x80, 0x4f]),
        2 => (0u32..0x40).prop_map(|x| x * 0x800),
        1 => any::<u32>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (register(), value()).prop_map(|(r, v)| Op::Write(r, v)),
        1 => register().prop_map(Op::Read),
        1 => (0u64..0x110, 1usize..8).prop_map(|(o, n)| Op::Odd(o, n)),
        1 => Just(Op::Process),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_register_writes_keep_the_transport_consistent(
        bring_up in any::<bool>(),
        ops in prop::collection::vec(op(), 1..80),
        ring_bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let m = mem();
        // Whatever the rings hold: queues may be pointed anywhere.
        m.write_slice(&ring_bytes, GuestAddress(RXQ)).unwrap();
        m.write_slice(&ring_bytes, GuestAddress(TXQ)).unwrap();
        let (out, _sink) = output(4096);
        let mut t = if bring_up { live_console(&m, &out) } else { console(&m, &out) };
        let mut live_layout = None;
        check_invariants(&t, &m, &mut live_layout);
        for op in ops {
            match op {
                Op::Write(r, v) => w(&mut t, r, v),
                Op::Read(r) => { let _ = virtio_util::r(&mut t, r); }
                Op::Odd(o, n) => {
                    let mut b = vec![0u8; n];
                    t.read(o, &mut b);
                    t.write(o, &b);
                }
                Op::Process => {
                    t.device_mut().queue_input(b"typed");
                    t.process();
                }
            }
            check_invariants(&t, &m, &mut live_layout);
        }
    }

    #[test]
    fn random_descriptor_tables_are_completed_or_reset(
        queue in 0usize..2,
        descs in prop::collection::vec(
            (
                prop_oneof![
                    BUFFERS..BUFFERS + 0x2000,
                    MEM_SIZE - 16..MEM_SIZE + 16,
                    u64::MAX - 32..=u64::MAX,
                    any::<u64>(),
                ],
                prop_oneof![0u32..256, any::<u32>()],
                0u16..8,
                prop_oneof![0u16..QSIZE, any::<u16>()],
            ),
            QSIZE as usize,
        ),
        heads in prop::collection::vec(prop_oneof![0u16..QSIZE, any::<u16>()], QSIZE as usize),
        avail_idx in prop_oneof![0u16..=QSIZE, any::<u16>()],
        indirect_bytes in prop::collection::vec(any::<u8>(), 0..1024),
        input_len in 0usize..64,
        small_output in any::<bool>(),
    ) {
        let m = mem();
        // Random bytes where buffers and indirect tables may point.
        m.write_slice(&indirect_bytes, GuestAddress(BUFFERS)).unwrap();
        let (out, _sink) = output(if small_output { 64 } else { 1 << 20 });
        let mut t = live_console(&m, &out);
        let base = [RXQ, TXQ][queue];
        for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
            let raw = RawDescriptor::from(Descriptor::new(addr, len, flags, next));
            m.write_obj(raw, GuestAddress(base + 16 * i as u64)).unwrap();
        }
        let avail = base + 16 * u64::from(QSIZE);
        for (i, h) in heads.iter().enumerate() {
            m.write_obj(*h, GuestAddress(avail + 4 + 2 * i as u64)).unwrap();
        }
        set_avail_idx(&m, base, avail_idx);
        t.device_mut().queue_input(&vec![b'i'; input_len]);
        let mut live_layout = None;
        for _ in 0..3 {
            let start = Instant::now();
            t.process();
            prop_assert!(start.elapsed() < Duration::from_secs(2), "bounded work");
            check_invariants(&t, &m, &mut live_layout);
        }
        if t.status() & DEVICE_NEEDS_RESET == 0 {
            let q = t.queues()[queue].as_ref().unwrap();
            let taken = q.next_avail();
            prop_assert!(taken <= QSIZE * 3);
            let held = u16::from(queue == TRANSMITQ && t.device().tx_held());
            prop_assert_eq!(used_idx(&m, base), taken - held, "every chain taken was completed");
        }
        out.finish(Duration::from_secs(5));
    }
}
