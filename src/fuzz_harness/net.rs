//! Fuzz target `virtio_net`: the network device's transmit and receive
//! paths, fed descriptor chains a hostile driver wrote and frames from a
//! tap that `MemBackend` stands in for. The bytes pick the features the
//! driver accepts, then up to 32 steps, each one of: a transmit chain (up
//! to 4 descriptors: addresses in the data area, over the rings (transmit
//! only) or anywhere, lengths from 0 to past 4 GiB, either direction, a 12-byte
//! header from the input), a receive chain (the same), a frame arriving
//! on the tap (0 bytes to past the largest), a device reset and
//! re-activation, or one `process` call.
//!
//! After each `process`: the used index of each queue moved by at most the
//! chains made available; transmit completions have length 0, receive
//! completions at most `MAX_FRAME`; every frame that reached the tap has a
//! header `check_header` accepts and a length within bounds; frames
//! delivered plus dropped are at most the frames that arrived. A panic
//! anywhere is a finding. A broken ring (the device wrote over it) ends
//! the input, as the transport would set NEEDS_RESET.

use std::collections::VecDeque;
use std::io;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::Input;
use crate::devices::virtio::VirtioDevice;
use crate::devices::virtio::net::{Backend, MAX_FRAME, Net, RXQ, TXQ};
use crate::host::tap::VNET_HDR_LEN;

/// A tap in memory: frames to hand the device, frames it sent.
#[derive(Debug, Default)]
pub struct MemBackend {
    /// Frames (with their vnet header) waiting to be read by the device.
    pub incoming: VecDeque<Vec<u8>>,
    /// Frames the device wrote.
    pub sent: Vec<Vec<u8>>,
    /// The last offloads set.
    pub offload: Option<u32>,
}

impl Backend for MemBackend {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let frame = self.incoming.pop_front().ok_or(io::ErrorKind::WouldBlock)?;
        // A tap read truncates a frame longer than the buffer.
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Ok(n)
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<usize> {
        self.sent.push(frame.to_vec());
        Ok(frame.len())
    }
    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        self.offload = Some(flags);
        Ok(())
    }
}

const RAM: usize = 0x2_0000;
const QSIZE: u16 = 8;
/// (descriptor table, available ring, used ring) of receiveq and transmitq.
const RINGS: [(u64, u64, u64); 2] = [(0x1000, 0x1800, 0x1c00), (0x2000, 0x2800, 0x2c00)];
const DATA: u64 = 0x4000;

fn queue(q: usize) -> Queue {
    let (desc, avail, used) = RINGS[q];
    let mut queue = Queue::new(QSIZE).expect("a queue");
    queue.try_set_size(QSIZE).expect("size");
    queue
        .try_set_desc_table_address(GuestAddress(desc))
        .expect("desc");
    queue
        .try_set_avail_ring_address(GuestAddress(avail))
        .expect("avail");
    queue
        .try_set_used_ring_address(GuestAddress(used))
        .expect("used");
    queue.set_ready(true);
    queue
}

/// Writes a chain of up to 4 descriptors at `slot` of queue `q`'s table
/// and makes it available.
fn add_chain(input: &mut Input, mem: &GuestMemoryMmap, q: usize, slot: u16, avail_idx: &mut u16) {
    let (desc, avail, _) = RINGS[q];
    let n = 1 + u16::from(input.u8()) % 4;
    for i in 0..n {
        let addr = match input.u8() % 5 {
            0 | 1 => DATA + u64::from(input.u16()) * 2,
            2 => RINGS[usize::from(input.u8() & 1)].0,
            3 => u64::from(input.u32()),
            _ => input.u64(),
        };
        // The device writes receive buffers: over the rings they would
        // break the ring itself, which ends an input (see the header), so
        // they stay in the data area.
        let addr = if q == RXQ && addr < DATA {
            DATA + (addr & 0xfff)
        } else {
            addr
        };
        let len = input.pick(&[0u32, 1, 11, 12, 60, 1514, 4096, 0x1_0000, 0x1_0010]);
        let len = if input.u8() == 0xff { input.u32() } else { len };
        let write = if q == RXQ { 2u16 } else { 0 };
        let flip = if input.u8() == 0xfe { 2 } else { 0 };
        let next_flag = if i + 1 < n { 1 } else { 0 };
        let next = (slot + i + 1) % QSIZE;
        let at = desc + 16 * u64::from((slot + i) % QSIZE);
        mem.write_obj(addr, GuestAddress(at)).expect("in RAM");
        mem.write_obj(len, GuestAddress(at + 8)).expect("in RAM");
        mem.write_obj((write ^ flip) | next_flag, GuestAddress(at + 12))
            .expect("in RAM");
        mem.write_obj(next, GuestAddress(at + 14)).expect("in RAM");
    }
    let hdr = input.bytes(VNET_HDR_LEN);
    mem.write_slice(hdr, GuestAddress(DATA)).expect("in RAM");
    let entry = GuestAddress(avail + 4 + 2 * u64::from(*avail_idx % QSIZE));
    mem.write_obj(slot % QSIZE, entry).expect("in RAM");
    *avail_idx = avail_idx.wrapping_add(1);
    mem.write_obj(*avail_idx, GuestAddress(avail + 2))
        .expect("in RAM");
}

/// The fuzz target.
pub fn virtio_net(data: &[u8]) {
    let mut input = Input::new(data);
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).expect("guest RAM");
    let mac = (input.u8() & 1 == 1).then_some([6, 0, 10, 0, 2, 2]);
    let mut dev = Net::new(MemBackend::default(), mac).expect("an eventfd");
    let features = dev.features() & (input.u64() | crate::devices::virtio::VIRTIO_F_VERSION_1);
    dev.activate(features);
    let mut queues = [Some(queue(RXQ)), Some(queue(TXQ))];
    let mut avail = [0u16; 2];
    let mut seen_used = [0u16; 2];
    let mut arrived = 0u64;
    for step in 0..32u16 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 6 {
            0 => add_chain(&mut input, &mem, TXQ, step * 4, &mut avail[TXQ]),
            1 => add_chain(&mut input, &mem, RXQ, step * 4, &mut avail[RXQ]),
            2 => {
                let len = input.pick(&[0usize, 5, 12, 42, 1514, 9000, MAX_FRAME, MAX_FRAME + 8]);
                let mut frame = vec![0x5a; len];
                let hdr = input.bytes(VNET_HDR_LEN.min(len));
                frame[..hdr.len()].copy_from_slice(hdr);
                dev.backend_mut().incoming.push_back(frame);
                arrived += 1;
            }
            3 => {
                dev.reset();
                dev.activate(features);
                queues = [Some(queue(RXQ)), Some(queue(TXQ))];
                for q in [RXQ, TXQ] {
                    mem.write_obj(0u16, GuestAddress(RINGS[q].1 + 2))
                        .expect("in RAM");
                    mem.write_obj(0u16, GuestAddress(RINGS[q].2 + 2))
                        .expect("in RAM");
                }
                avail = [0; 2];
                seen_used = [0; 2];
            }
            _ => {
                if dev.process(&mut queues, &mem).is_err() {
                    break;
                }
                check(&dev, &mem, &avail, &mut seen_used, arrived, features);
            }
        }
    }
}

fn check(
    dev: &Net<MemBackend>,
    mem: &GuestMemoryMmap,
    avail: &[u16; 2],
    seen_used: &mut [u16; 2],
    arrived: u64,
    features: u64,
) {
    for q in [RXQ, TXQ] {
        let used_ring = RINGS[q].2;
        let idx: u16 = mem.read_obj(GuestAddress(used_ring + 2)).expect("in RAM");
        assert!(
            idx.wrapping_sub(seen_used[q]) <= avail[q].wrapping_sub(seen_used[q]),
            "queue {q}: used index {idx} passed the available {}",
            avail[q]
        );
        while seen_used[q] != idx {
            let elem = used_ring + 4 + 8 * u64::from(seen_used[q] % QSIZE);
            let len: u32 = mem.read_obj(GuestAddress(elem + 4)).expect("in RAM");
            if q == TXQ {
                assert_eq!(len, 0, "a transmit completion has length 0");
            } else {
                assert!(len as usize <= MAX_FRAME, "receive completion of {len}");
            }
            seen_used[q] = seen_used[q].wrapping_add(1);
        }
    }
    for frame in &dev.backend().sent {
        assert!((VNET_HDR_LEN..=MAX_FRAME).contains(&frame.len()));
        let checked = crate::devices::virtio::net::check_header(
            &frame[..VNET_HDR_LEN],
            frame.len() - VNET_HDR_LEN,
            features,
        );
        assert!(checked.is_ok(), "a refused header reached the tap");
    }
    let s = dev.stats();
    assert!(
        s.rx_frames + s.rx_dropped <= arrived,
        "{s:?}, {arrived} arrived"
    );
}
