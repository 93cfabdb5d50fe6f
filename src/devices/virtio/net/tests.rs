//! Unit tests of the network device on an in-memory tap: frames both
//! ways, mergeable receive buffers, and hostile input (bad headers,
//! zero-length and oversized buffers, no receive buffers, chains in the
//! wrong direction) that must end in a drop and a count.

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, Bytes, GuestAddress};

use super::*;
use crate::fuzz_harness::MemBackend;

const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const W: u16 = VRING_DESC_F_WRITE as u16;
const RX_RING: u64 = 0;
const TX_RING: u64 = 0x1_0000;
const BUF: u64 = 0x10_0000;
const QSIZE: u16 = 16;

/// Guest RAM and a live device that accepted `extra` features (besides
/// VERSION_1 and CSUM).
fn rig(extra: &[u32]) -> (GuestMemoryMmap, Net<MemBackend>) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let mut dev = Net::new(MemBackend::default(), Some([6, 0, 10, 0, 2, 2])).unwrap();
    let features = extra
        .iter()
        .fold(VIRTIO_F_VERSION_1 | bit(n::VIRTIO_NET_F_CSUM), |f, &b| {
            f | bit(b)
        });
    dev.activate(features & dev.features());
    (mem, dev)
}

fn rxq(mem: &GuestMemoryMmap) -> MockSplitQueue<'_, GuestMemoryMmap> {
    MockSplitQueue::create(mem, GuestAddress(RX_RING), QSIZE)
}

fn txq(mem: &GuestMemoryMmap) -> MockSplitQueue<'_, GuestMemoryMmap> {
    MockSplitQueue::create(mem, GuestAddress(TX_RING), QSIZE)
}

fn run(
    dev: &mut Net<MemBackend>,
    mem: &GuestMemoryMmap,
    queues: &mut [Option<Queue>; 2],
) -> UsedQueues {
    dev.process(queues, mem).unwrap()
}

/// Descriptors (addr, len, flags), chained in order, at table slot `at`.
fn chain(descs: &[(u64, u32, u16)], at: u16) -> Vec<RawDescriptor> {
    let n = descs.len();
    descs
        .iter()
        .enumerate()
        .map(|(i, &(a, l, f))| {
            let next = if i + 1 < n { NEXT } else { 0 };
            RawDescriptor::from(Descriptor::new(a, l, f | next, at + i as u16 + 1))
        })
        .collect()
}

fn used(mem: &GuestMemoryMmap, vq: &MockSplitQueue<'_, GuestMemoryMmap>, i: u64) -> (u32, u32) {
    let elem = vq.used_addr().unchecked_add(4 + 8 * i);
    (
        mem.read_obj(elem).unwrap(),
        mem.read_obj(elem.unchecked_add(4)).unwrap(),
    )
}

fn used_idx(mem: &GuestMemoryMmap, vq: &MockSplitQueue<'_, GuestMemoryMmap>) -> u16 {
    mem.read_obj(vq.used_addr().unchecked_add(2)).unwrap()
}

fn frame(len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![fill; len];
    f[..VNET_HDR_LEN.min(len)].fill(0);
    f
}

#[test]
fn a_transmitted_frame_reaches_the_tap_with_its_header() {
    let (mem, mut dev) = rig(&[]);
    let tx = txq(&mem);
    mem.write_slice(&[0; 12], GuestAddress(BUF)).unwrap();
    mem.write_slice(&[0xab; 60], GuestAddress(BUF + 0x1000))
        .unwrap();
    tx.add_desc_chains(&chain(&[(BUF, 12, 0), (BUF + 0x1000, 60, 0)], 0), 0)
        .unwrap();
    let mut queues = [None, Some(tx.create_queue().unwrap())];
    assert_eq!(run(&mut dev, &mem, &mut queues), 1 << TXQ);
    let sent = &dev.backend().sent;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].len(), 72);
    assert!(sent[0][12..].iter().all(|&b| b == 0xab));
    assert_eq!(used(&mem, &tx, 0).1, 0, "transmit completions are empty");
    let s = dev.stats();
    assert_eq!((s.tx_frames, s.tx_bytes), (1, 60));
}

#[test]
fn bad_transmit_headers_are_dropped_and_counted() {
    let (mem, mut dev) = rig(&[n::VIRTIO_NET_F_HOST_TSO6]);
    // (flags, gso_type, gso_size, csum_start, csum_offset)
    let bad: [(u8, u8, u16, u16, u16); 6] = [
        (2, 0, 0, 0, 0),        // DATA_VALID is for received frames
        (0x80, 0, 0, 0, 0),     // an unknown flag
        (1, 1, 1448, 14, 6),    // TCPv4 GSO: HOST_TSO4 not negotiated
        (1, 0x84, 1448, 14, 6), // ECN: HOST_ECN not offered
        (0, 4, 1448, 0, 0),     // GSO without NEEDS_CSUM
        (1, 0, 0, 50, 10),      // the checksum field lies past the frame
    ];
    let tx = txq(&mem);
    for (i, &(flags, gso, size, start, off)) in bad.iter().enumerate() {
        let mut hdr = [0u8; 12];
        hdr[0] = flags;
        hdr[1] = gso;
        hdr[4..6].copy_from_slice(&size.to_le_bytes());
        hdr[6..8].copy_from_slice(&start.to_le_bytes());
        hdr[8..10].copy_from_slice(&off.to_le_bytes());
        let at = BUF + 0x100 * i as u64;
        mem.write_slice(&hdr, GuestAddress(at)).unwrap();
        tx.add_desc_chains(&chain(&[(at, 12 + 60, 0)], i as u16), i as u16)
            .unwrap();
    }
    let mut queues = [None, Some(tx.create_queue().unwrap())];
    run(&mut dev, &mem, &mut queues);
    assert!(
        dev.backend().sent.is_empty(),
        "no refused header reaches the tap"
    );
    assert_eq!(dev.stats().tx_bad_header, bad.len() as u64);
    assert_eq!(
        used_idx(&mem, &tx),
        bad.len() as u16,
        "every chain completed"
    );
    // And a good TCPv6 GSO header passes.
    let mut hdr = [0u8; 12];
    hdr[0] = 1;
    hdr[1] = 4;
    hdr[4..6].copy_from_slice(&1428u16.to_le_bytes());
    hdr[6..8].copy_from_slice(&54u16.to_le_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_le_bytes());
    assert_eq!(check_header(&hdr, 3000, dev.stats().features), Ok(()));
}

#[test]
fn zero_length_oversized_and_wrong_way_transmit_chains_are_counted() {
    let (mem, mut dev) = rig(&[]);
    let tx = txq(&mem);
    let half = (MAX_FRAME / 2 + 1) as u32;
    tx.add_desc_chains(&chain(&[(BUF, 0, 0)], 0), 0).unwrap();
    tx.add_desc_chains(&chain(&[(BUF, half, 0), (BUF, half, 0)], 1), 1)
        .unwrap();
    tx.add_desc_chains(&chain(&[(BUF, 100, W)], 3), 3).unwrap();
    tx.add_desc_chains(&chain(&[(0x3f_fff0, 0x20, 0)], 4), 4)
        .unwrap();
    let mut queues = [None, Some(tx.create_queue().unwrap())];
    run(&mut dev, &mem, &mut queues);
    let s = dev.stats();
    assert_eq!(s.tx_bad_length, 2, "empty and oversized: {s:?}");
    assert_eq!(s.bad_chains, 2, "device-writable and outside RAM: {s:?}");
    assert_eq!(used_idx(&mem, &tx), 4);
    assert!(dev.backend().sent.is_empty());
}

#[test]
fn a_received_frame_fills_one_chain_without_mergeable_buffers() {
    let (mem, mut dev) = rig(&[]);
    let rx = rxq(&mem);
    rx.add_desc_chains(&chain(&[(BUF, 2048, W)], 0), 0).unwrap();
    dev.backend_mut().incoming.push_back(frame(1526, 0x77));
    let mut queues = [Some(rx.create_queue().unwrap()), None];
    assert_eq!(run(&mut dev, &mem, &mut queues), 1 << RXQ);
    assert_eq!(used(&mem, &rx, 0), (0, 1526));
    let num_buffers: u16 = mem.read_obj(GuestAddress(BUF + 10)).unwrap();
    assert_eq!(num_buffers, 1);
    let last: u8 = mem.read_obj(GuestAddress(BUF + 1525)).unwrap();
    assert_eq!(last, 0x77);
    assert_eq!(dev.stats().rx_bytes, 1514);
}

#[test]
fn a_mergeable_frame_spans_chains_and_says_how_many() {
    let (mem, mut dev) = rig(&[n::VIRTIO_NET_F_MRG_RXBUF]);
    let rx = rxq(&mem);
    for i in 0..3u16 {
        let at = BUF + 0x1000 * u64::from(i);
        rx.add_desc_chains(&chain(&[(at, 2048, W)], i), i).unwrap();
    }
    dev.backend_mut().incoming.push_back(frame(5012, 0x42));
    let mut queues = [Some(rx.create_queue().unwrap()), None];
    run(&mut dev, &mem, &mut queues);
    assert_eq!(used_idx(&mem, &rx), 3);
    assert_eq!(used(&mem, &rx, 0), (0, 2048));
    assert_eq!(used(&mem, &rx, 1), (1, 2048));
    assert_eq!(used(&mem, &rx, 2), (2, 5012 - 4096));
    let num_buffers: u16 = mem.read_obj(GuestAddress(BUF + 10)).unwrap();
    assert_eq!(num_buffers, 3);
}

#[test]
fn with_no_receive_buffers_the_frame_waits_and_the_tap_is_not_read() {
    let (mem, mut dev) = rig(&[n::VIRTIO_NET_F_MRG_RXBUF]);
    let rx = rxq(&mem);
    for _ in 0..5 {
        dev.backend_mut().incoming.push_back(frame(100, 1));
    }
    let mut queues = [Some(rx.create_queue().unwrap()), None];
    assert_eq!(run(&mut dev, &mem, &mut queues), 0);
    assert_eq!(run(&mut dev, &mem, &mut queues), 0);
    assert_eq!(dev.backend().incoming.len(), 4, "one frame read, held");
    assert_eq!(dev.stats().rx_waits, 2);
    rx.add_desc_chains(&chain(&[(BUF, 4096, W)], 0), 0).unwrap();
    run(&mut dev, &mem, &mut queues);
    let s = dev.stats();
    assert_eq!((s.rx_frames, s.rx_dropped), (1, 0), "{s:?}");
    assert_eq!(dev.backend().incoming.len(), 3, "the next one waits");
}

#[test]
fn frames_no_buffer_can_hold_are_dropped_and_counted() {
    // Without mergeable buffers a frame must fit one chain: the too-small
    // chain is kept and the next, smaller frame uses it.
    let (mem, mut dev) = rig(&[]);
    let rx = rxq(&mem);
    rx.add_desc_chains(&chain(&[(BUF, 100, W)], 0), 0).unwrap();
    dev.backend_mut().incoming.push_back(frame(1526, 1));
    dev.backend_mut().incoming.push_back(frame(60, 2));
    dev.backend_mut().incoming.push_back(frame(5, 3)); // shorter than a header
    let mut queues = [Some(rx.create_queue().unwrap()), None];
    run(&mut dev, &mem, &mut queues);
    let s = dev.stats();
    assert_eq!((s.rx_frames, s.rx_dropped), (1, 2), "{s:?}");
    assert_eq!(used(&mem, &rx, 0), (0, 60));

    // Mergeable: every chain the queue can hold is not enough.
    let (mem, mut dev) = rig(&[n::VIRTIO_NET_F_MRG_RXBUF]);
    let rx = rxq(&mem);
    for i in 0..QSIZE {
        rx.add_desc_chains(&chain(&[(BUF + 0x100 * u64::from(i), 16, W)], i), i)
            .unwrap();
    }
    dev.backend_mut().incoming.push_back(frame(MAX_FRAME, 1));
    dev.backend_mut()
        .incoming
        .push_back(frame(VNET_HDR_LEN + 8, 1));
    let mut queues = [Some(rx.create_queue().unwrap()), None];
    run(&mut dev, &mem, &mut queues);
    let s = dev.stats();
    assert_eq!((s.rx_dropped, s.rx_frames), (1, 1), "{s:?}");
    // The chains stayed for the next frame: it takes the first two.
    // (MockSplitQueue 0.18 lays the used ring over the end of the
    // available one, so only the used elements are read back.)
    assert_eq!(used(&mem, &rx, 0), (0, 16));
    assert_eq!(used(&mem, &rx, 1), (1, 4));
}

#[test]
fn zero_length_and_read_only_receive_chains_are_returned_unused() {
    let (mem, mut dev) = rig(&[n::VIRTIO_NET_F_MRG_RXBUF]);
    let rx = rxq(&mem);
    rx.add_desc_chains(&chain(&[(BUF, 0, W)], 0), 0).unwrap();
    rx.add_desc_chains(&chain(&[(BUF, 2048, 0)], 1), 1).unwrap();
    rx.add_desc_chains(&chain(&[(BUF, 2048, W)], 2), 2).unwrap();
    dev.backend_mut().incoming.push_back(frame(200, 9));
    let mut queues = [Some(rx.create_queue().unwrap()), None];
    run(&mut dev, &mem, &mut queues);
    assert_eq!(used(&mem, &rx, 0), (0, 0));
    assert_eq!(used(&mem, &rx, 1), (1, 0));
    assert_eq!(used(&mem, &rx, 2), (2, 200));
    assert_eq!(dev.stats().bad_chains, 2);
}

#[test]
fn the_tap_gets_the_offloads_the_guest_accepted_and_the_mac_is_in_config() {
    let (mem, mut dev) = rig(&[n::VIRTIO_NET_F_GUEST_CSUM, n::VIRTIO_NET_F_GUEST_TSO4]);
    let mut queues = [None, None];
    run(&mut dev, &mem, &mut queues);
    let want = libc::TUN_F_CSUM | libc::TUN_F_TSO4;
    assert_eq!(dev.backend().offload, Some(want));
    assert_eq!(dev.stats().offloads, want);
    let (mem, mut dev) = rig(&[n::VIRTIO_NET_F_GUEST_TSO4]);
    run(&mut dev, &mem, &mut queues);
    assert_eq!(dev.backend().offload, Some(0), "TSO needs GUEST_CSUM");
    let mut mac = [0u8; 8];
    dev.read_config(0, &mut mac);
    assert_eq!(mac, [6, 0, 10, 0, 2, 2, 0, 0]);
    let offered = dev.features();
    assert!(offered & bit(n::VIRTIO_NET_F_MAC) != 0);
    let no_mac = Net::new(MemBackend::default(), None).unwrap();
    assert_eq!(no_mac.features() & bit(n::VIRTIO_NET_F_MAC), 0);
}

#[test]
fn macs_parse_and_multicast_is_refused() {
    assert_eq!(parse_mac("06:00:0a:00:02:02"), Ok([6, 0, 10, 0, 2, 2]));
    assert!(parse_mac("01:00:5e:00:00:01").is_err());
    assert!(parse_mac("06:00:0a:00:02").is_err());
    assert!(parse_mac("06:00:0a:00:02:2").is_err());
    assert!(parse_mac("06:00:0a:00:02:zz").is_err());
}
