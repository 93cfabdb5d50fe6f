//! Unit tests of the console's receive and transmit paths, with a mock
//! driver (`virtio_queue::mock::MockSplitQueue`) and real guest memory.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::devices::output::GuestOutput;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::GuestAddress;

const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;
const RXQ_AT: u64 = 0x1_0000;
const TXQ_AT: u64 = 0x2_0000;

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
}

/// Collects what reaches "stdout"; `gate` closed = a stdout nobody reads.
#[derive(Clone, Default)]
struct Sink {
    data: Arc<Mutex<Vec<u8>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}
impl Sink {
    fn open(&self, open: bool) {
        *self.gate.0.lock().unwrap() = open;
        self.gate.1.notify_all();
    }
}
impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let mut open = self.gate.0.lock().unwrap();
        while !*open {
            open = self.gate.1.wait(open).unwrap();
        }
        self.data.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

fn used_idx(m: &GuestMemoryMmap, vq: &MockSplitQueue<GuestMemoryMmap>) -> u16 {
    m.read_obj(vq.used_addr().unchecked_add(2)).unwrap()
}

#[test]
fn transmitted_bytes_reach_stdout_in_order_and_the_chain_completes() {
    let m = mem();
    let sink = Sink::default();
    sink.open(true);
    let out = GuestOutput::new(Box::new(sink.clone()), 1 << 16).unwrap();
    let mut console = Console::new(out.handle(), None).unwrap();
    let tx = MockSplitQueue::create(&m, GuestAddress(TXQ_AT), 16);
    m.write_slice(b"hello, ", GuestAddress(0x10_0000)).unwrap();
    m.write_slice(b"world\n", GuestAddress(0x10_1000)).unwrap();
    tx.add_desc_chains(&[desc(0x10_0000, 7, NEXT, 1), desc(0x10_1000, 6, 0, 0)], 0)
        .unwrap();
    let mut queues = [None, Some(tx.create_queue().unwrap())];
    assert_eq!(console.process(&mut queues, &m).unwrap(), 1 << TRANSMITQ);
    assert_eq!(used_idx(&m, &tx), 1);
    out.finish(Duration::from_secs(5));
    assert_eq!(&*sink.data.lock().unwrap(), b"hello, world\n");
    assert_eq!(console.stats().tx_bytes, 13);
}

#[test]
fn a_full_stdout_holds_the_chain_and_loses_nothing() {
    let m = mem();
    let sink = Sink::default(); // closed: the output thread blocks
    let out = GuestOutput::new(Box::new(sink.clone()), 256).unwrap();
    let mut console = Console::new(out.handle(), None).unwrap();
    let tx = MockSplitQueue::create(&m, GuestAddress(TXQ_AT), 16);
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    m.write_slice(&payload, GuestAddress(0x10_0000)).unwrap();
    tx.add_desc_chains(&[desc(0x10_0000, payload.len() as u32, 0, 0)], 0)
        .unwrap();
    let mut queues = [None, Some(tx.create_queue().unwrap())];
    assert_eq!(console.process(&mut queues, &m).unwrap(), 0);
    assert!(console.tx_held(), "held, not completed");
    assert_eq!(used_idx(&m, &tx), 0);
    assert!(console.stats().tx_stalls >= 1);
    sink.open(true);
    // Each time stdout drains, the main loop would process again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while console.tx_held() && Instant::now() < deadline {
        let _ = out.handle().space_event().read();
        console.process(&mut queues, &m).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!console.tx_held());
    assert_eq!(used_idx(&m, &tx), 1);
    let stats = out.finish(Duration::from_secs(5));
    assert_eq!(stats.dropped_full, 0);
    assert_eq!(*sink.data.lock().unwrap(), payload);
}

#[test]
fn input_fills_receive_buffers_in_order_and_stays_bounded() {
    let m = mem();
    let out = GuestOutput::new(Box::new(std::io::sink()), 1024).unwrap();
    let mut console = Console::new(out.handle(), None).unwrap();
    assert_eq!(console.queue_input(&[b'x'; 10_000]), INPUT_CAPACITY);
    assert_eq!(console.input_room(), 0);
    assert_eq!(console.queue_input(b"more"), 0);
    let rx = MockSplitQueue::create(&m, GuestAddress(RXQ_AT), 16);
    let mut queues = [Some(rx.create_queue().unwrap()), None];
    // No buffers posted: the input waits.
    assert_eq!(console.process(&mut queues, &m).unwrap(), 0);
    assert_eq!(console.input_room(), 0);

    let mut console = Console::new(out.handle(), None).unwrap();
    console.open_input();
    console.queue_input(b"0123456789");
    rx.add_desc_chains(
        &[desc(0x10_0000, 4, WRITE, 0), desc(0x10_1000, 100, WRITE, 0)],
        0,
    )
    .unwrap();
    assert_eq!(console.process(&mut queues, &m).unwrap(), 1 << RECEIVEQ);
    assert_eq!(used_idx(&m, &rx), 2);
    let mut a = [0u8; 4];
    let mut b = [0u8; 6];
    m.read_slice(&mut a, GuestAddress(0x10_0000)).unwrap();
    m.read_slice(&mut b, GuestAddress(0x10_1000)).unwrap();
    assert_eq!((&a, &b), (b"0123", b"456789"));
    // Used ring: flags, idx, then {id: u32, len: u32} elements.
    let len = |i: u64| -> u32 {
        m.read_obj(rx.used_addr().unchecked_add(4 + 8 * i + 4))
            .unwrap()
    };
    assert_eq!((len(0), len(1)), (4, 6), "used length = bytes written");
    assert_eq!(console.input_room(), INPUT_CAPACITY);
    assert_eq!(
        console.input_drained().read().unwrap(),
        1,
        "stdin may resume"
    );
    assert_eq!(console.stats().rx_bytes, 10);
}

#[test]
fn config_space_gives_the_terminal_size_with_f_size() {
    let out = GuestOutput::new(Box::new(std::io::sink()), 1024).unwrap();
    let console = Console::new(out.handle(), Some((132, 43))).unwrap();
    assert_eq!(
        console.features(),
        VIRTIO_F_VERSION_1 | VIRTIO_CONSOLE_F_SIZE
    );
    let mut cols = [0u8; 2];
    let mut rows = [0u8; 2];
    console.read_config(0, &mut cols);
    console.read_config(2, &mut rows);
    assert_eq!(
        (u16::from_le_bytes(cols), u16::from_le_bytes(rows)),
        (132, 43)
    );
    let mut past = [0xffu8; 8];
    console.read_config(u64::MAX - 2, &mut past);
    assert_eq!(past, [0; 8]);
    let plain = Console::new(out.handle(), None).unwrap();
    assert_eq!(plain.features(), VIRTIO_F_VERSION_1);
}

#[test]
fn input_waits_for_the_guests_first_output() {
    let m = mem();
    let out = GuestOutput::new(Box::new(std::io::sink()), 1024).unwrap();
    let mut console = Console::new(out.handle(), None).unwrap();
    console.queue_input(b"typed ahead");
    let rx = MockSplitQueue::create(&m, GuestAddress(RXQ_AT), 16);
    let tx = MockSplitQueue::create(&m, GuestAddress(TXQ_AT), 16);
    rx.add_desc_chains(&[desc(0x10_0000, 64, WRITE, 0)], 0)
        .unwrap();
    let mut queues = [
        Some(rx.create_queue().unwrap()),
        Some(tx.create_queue().unwrap()),
    ];
    // Buffers posted, but the port may not be connected yet: hold.
    assert_eq!(console.process(&mut queues, &m).unwrap(), 0);
    assert_eq!(used_idx(&m, &rx), 0);
    // The guest prints: now the input goes in, in the same round.
    m.write_slice(b"login: ", GuestAddress(0x20_0000)).unwrap();
    tx.add_desc_chains(&[desc(0x20_0000, 7, 0, 0)], 0).unwrap();
    let used = console.process(&mut queues, &m).unwrap();
    assert_eq!(used, 1 << RECEIVEQ | 1 << TRANSMITQ);
    assert_eq!(used_idx(&m, &rx), 1);
    // A reset closes it again until the next driver prints.
    console.reset();
    console.queue_input(b"x");
    let rx2 = MockSplitQueue::create(&m, GuestAddress(0x3_0000), 16);
    rx2.add_desc_chains(&[desc(0x10_0000, 64, WRITE, 0)], 0)
        .unwrap();
    let mut queues = [Some(rx2.create_queue().unwrap()), None];
    assert_eq!(console.process(&mut queues, &m).unwrap(), 0);
}
