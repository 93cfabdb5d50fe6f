//! Unit tests of the virtio entropy device: good requests get random bytes
//! and say how many, hostile chains (MockSplitQueue) end in a completion
//! with nothing written and a count, never a panic, and the caps hold.

use std::io;

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

use super::*;

const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const W: u16 = VRING_DESC_F_WRITE as u16;
const RAM: usize = 0x20_0000;
const BUF: u64 = 0x1_0000;
/// What guest buffers hold before the device touches them.
const FILL: u8 = 0xaa;

fn mem() -> GuestMemoryMmap {
    let m = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    m.write_slice(&vec![FILL; RAM - BUF as usize], GuestAddress(BUF))
        .unwrap();
    m
}

/// A source that gives `good` bytes, then fails.
struct Failing {
    good: usize,
}

impl EntropySource for Failing {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if buf.len() > self.good {
            return Err(io::Error::other("no entropy"));
        }
        self.good -= buf.len();
        buf.fill(0x5a);
        Ok(())
    }
}

/// Makes the raw descriptors `descs` (addr, len, flags, next) available as
/// chains, runs one round, and returns the used lengths of the chains
/// completed in it.
fn run(dev: &mut Rng, m: &GuestMemoryMmap, descs: &[(u64, u32, u16, u16)]) -> Vec<u32> {
    let vq = MockSplitQueue::new(m, 64);
    let raw: Vec<RawDescriptor> = descs
        .iter()
        .map(|&(a, l, f, n)| RawDescriptor::from(Descriptor::new(a, l, f, n)))
        .collect();
    vq.add_desc_chains(&raw, 0).unwrap();
    let mut queues = [Some(vq.create_queue::<Queue>().unwrap())];
    dev.process(&mut queues, m).unwrap();
    let done: u16 = m.read_obj(vq.used_addr().unchecked_add(2)).unwrap();
    (0..u64::from(done))
        .map(|i| {
            m.read_obj(vq.used_addr().unchecked_add(4 + 8 * i + 4))
                .unwrap()
        })
        .collect()
}

fn untouched(m: &GuestMemoryMmap, at: u64, len: usize) -> bool {
    let mut b = vec![0u8; len];
    m.read_slice(&mut b, GuestAddress(at)).unwrap();
    b.iter().all(|&x| x == FILL)
}

/// Random bytes: not the fill pattern (a 64-byte run of 0xaa from the host
/// CSPRNG has probability 2^-512).
fn random(m: &GuestMemoryMmap, at: u64, len: usize) -> bool {
    len >= 64 && !untouched(m, at, len)
}

#[test]
fn writable_buffers_get_random_bytes_and_the_used_length_says_how_many() {
    let m = mem();
    let mut dev = Rng::new().unwrap();
    // One chain of two buffers (64 + 100 bytes), then a one-buffer chain.
    let used = run(
        &mut dev,
        &m,
        &[
            (BUF, 64, W | NEXT, 1),
            (BUF + 0x1000, 100, W, 0),
            (BUF + 0x2000, 4096, W, 0),
        ],
    );
    assert_eq!(used, vec![164, 4096]);
    assert!(random(&m, BUF, 64) && random(&m, BUF + 0x1000, 100));
    assert!(random(&m, BUF + 0x2000, 4096));
    assert!(untouched(&m, BUF + 64, 64) && untouched(&m, BUF + 0x1000 + 100, 64));
    let s = dev.stats();
    assert_eq!(
        (s.requests, s.bytes, s.bad_chains, s.capped),
        (2, 4260, 0, 0)
    );
    // Two requests do not get the same bytes.
    let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
    m.read_slice(&mut a, GuestAddress(BUF)).unwrap();
    m.read_slice(&mut b, GuestAddress(BUF + 0x2000)).unwrap();
    assert_ne!(a, b);
}

#[test]
fn device_readable_buffers_are_refused_and_counted() {
    let m = mem();
    let mut dev = Rng::new().unwrap();
    // Readable alone; readable after writable; writable after readable.
    let used = run(
        &mut dev,
        &m,
        &[
            (BUF, 64, 0, 0),
            (BUF + 0x1000, 64, W | NEXT, 2),
            (BUF + 0x2000, 64, 0, 0),
            (BUF + 0x3000, 64, NEXT, 4),
            (BUF + 0x4000, 64, W, 0),
        ],
    );
    assert_eq!(used, vec![0, 0, 0]);
    for at in [BUF, BUF + 0x1000, BUF + 0x2000, BUF + 0x3000, BUF + 0x4000] {
        assert!(untouched(&m, at, 64), "{at:#x} was written");
    }
    let s = dev.stats();
    assert_eq!((s.requests, s.bad_chains, s.bytes), (3, 3, 0));
}

#[test]
fn zero_length_buffers_are_skipped() {
    let m = mem();
    let mut dev = Rng::new().unwrap();
    let used = run(
        &mut dev,
        &m,
        &[
            (BUF, 0, W, 0),
            (BUF + 0x1000, 0, W | NEXT, 2),
            (BUF + 0x2000, 64, W, 0),
        ],
    );
    assert_eq!(used, vec![0, 64]);
    assert!(untouched(&m, BUF, 64) && untouched(&m, BUF + 0x1000, 64));
    assert!(random(&m, BUF + 0x2000, 64));
    assert_eq!(dev.stats().bad_chains, 0);
}

#[test]
fn a_huge_buffer_gets_at_most_the_cap() {
    let m = mem();
    let mut dev = Rng::new().unwrap();
    let len = 1 << 20;
    let used = run(&mut dev, &m, &[(BUF, len, W, 0)]);
    assert_eq!(used, vec![MAX_REQUEST_BYTES]);
    let cap = u64::from(MAX_REQUEST_BYTES);
    assert!(random(&m, BUF + cap - 64, 64), "the cap's last bytes");
    assert!(untouched(&m, BUF + cap, 4096), "past the cap");
    let s = dev.stats();
    assert_eq!((s.capped, s.bytes), (1, cap));
}

#[test]
fn chains_outside_ram_or_overflowing_are_refused() {
    let m = mem();
    let mut dev = Rng::new().unwrap();
    let used = run(
        &mut dev,
        &m,
        &[
            // Starts in RAM, ends past it.
            (RAM as u64 - 16, 64, W, 0),
            // Wholly outside, then a good buffer after it in the same chain.
            (0xd000_0000, 64, W | NEXT, 2),
            (BUF, 64, W, 0),
            // A length of 4 GiB - 1 and an address that wraps.
            (BUF, u32::MAX, W, 0),
            (u64::MAX - 8, 64, W, 0),
        ],
    );
    assert_eq!(used, vec![0, 0, 0, 0]);
    assert!(
        untouched(&m, BUF, 64),
        "no part of a refused chain is written"
    );
    assert_eq!(dev.stats().bad_chains, 4);
}

#[test]
fn loops_and_bad_next_indices_are_refused() {
    let m = mem();
    let mut dev = Rng::new().unwrap();
    // 0 -> 1 -> 0 -> ... (the chain iterator stops after the queue size),
    // then a `next` past the table.
    let used = run(
        &mut dev,
        &m,
        &[(BUF, 64, W | NEXT, 1), (BUF + 0x1000, 64, W | NEXT, 0)],
    );
    assert_eq!(used, vec![0]);
    let used = run(&mut dev, &m, &[(BUF, 64, W | NEXT, 999)]);
    assert_eq!(used, vec![0]);
    assert!(untouched(&m, BUF, 64) && untouched(&m, BUF + 0x1000, 64));
    assert_eq!(dev.stats().bad_chains, 2);
}

#[test]
fn a_failing_host_source_gives_what_was_filled_and_is_counted() {
    let m = mem();
    let mut dev = Rng::with_source(Box::new(Failing { good: 4096 })).unwrap();
    let used = run(&mut dev, &m, &[(BUF, 8192, W, 0), (BUF + 0x4000, 64, W, 0)]);
    assert_eq!(used, vec![4096, 0]);
    let s = dev.stats();
    assert_eq!((s.host_errors, s.bytes, s.requests), (2, 4096, 2));
}

#[test]
fn a_round_stops_on_its_budget_and_resumes_through_its_event() {
    let m = mem();
    let mut dev = Rng::new().unwrap();
    let vq = MockSplitQueue::new(&m, 64);
    // 24 requests of 64 KiB in 1.5 MiB: more than one round's budget.
    let raw: Vec<RawDescriptor> = (0..24u64)
        .map(|i| {
            let addr = BUF + i * u64::from(MAX_REQUEST_BYTES);
            RawDescriptor::from(Descriptor::new(addr, MAX_REQUEST_BYTES, W, 0))
        })
        .collect();
    vq.add_desc_chains(&raw, 0).unwrap();
    let mut queues = [Some(vq.create_queue::<Queue>().unwrap())];
    let per_round = (ROUND_BUDGET / u64::from(MAX_REQUEST_BYTES)) as u16;
    assert_eq!(dev.process(&mut queues, &m).unwrap(), 1);
    let done: u16 = m.read_obj(vq.used_addr().unchecked_add(2)).unwrap();
    assert_eq!(done, per_round);
    assert_eq!(dev.resume_event().read().unwrap(), 1, "asked to resume");
    assert_eq!(dev.stats().budget_stops, 1);
    dev.process(&mut queues, &m).unwrap();
    let done: u16 = m.read_obj(vq.used_addr().unchecked_add(2)).unwrap();
    assert_eq!(done, 24);
    // Nothing left: no stop, no resume.
    assert_eq!(dev.stats().budget_stops, 1);
    assert!(dev.resume_event().read().is_err(), "no resume pending");
}

#[test]
fn the_device_offers_version_1_only_and_has_no_config_space() {
    let dev = Rng::new().unwrap();
    assert_eq!(dev.device_type(), 4);
    assert_eq!(dev.features(), VIRTIO_F_VERSION_1);
    assert_eq!(dev.queue_max_sizes(), &[256]);
    let mut b = [0xffu8; 8];
    dev.read_config(0, &mut b);
    assert_eq!(b, [0; 8]);
}

#[test]
fn no_ready_queue_is_no_work() {
    let m = mem();
    let mut dev = Rng::new().unwrap();
    assert_eq!(dev.process(&mut [None], &m).unwrap(), 0);
    assert_eq!(dev.process(&mut [], &m).unwrap(), 0);
}
