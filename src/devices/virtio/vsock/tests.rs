//! Unit tests of the vsock device against real Unix sockets in a scratch
//! directory, with the driver's side played by hand-written split rings
//! (as MockSplitQueue writes them, over any number of rounds): both connection directions, credit in
//! both directions, and hostile packets and chains, each of which must end
//! in a counted drop or a reset, never a panic or unbounded buffering.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::EventSet;

use super::conn::BUF_ALLOC;
use super::packet::{HDR_LEN, Header, op};
use super::*;

const GUEST: u64 = 3;
const QSIZE: u16 = 16;
/// Queue rings at 0, 64 KiB, 128 KiB; buffers from 1 MiB.
const RING: [u64; 3] = [0, 0x1_0000, 0x2_0000];
const BUFS: u64 = 0x10_0000;
/// A test's host socket read that would block this long is a failure.
const SOCKET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) struct Rig {
    pub mem: GuestMemoryMmap,
    pub dev: Vsock,
    pub queues: Vec<Option<Queue>>,
    pub dir: PathBuf,
    next_desc: [u16; 3],
    avail: [u16; 3],
    used_seen: [u16; 3],
    next_buf: u64,
    /// (available ring, used ring) of each queue.
    rings: Vec<(u64, u64)>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Rig {
    pub fn new(tag: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("tinyvmm-vsock-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = VsockConfig {
            cid: GUEST,
            socket: dir.join("v.sock"),
        };
        let listener = host::listen(&config).unwrap();
        let wake = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
        // Our own ring layout (descriptors, then the available ring at
        // +4 KiB, the used ring at +8 KiB): MockSplitQueue's packs the used
        // ring over the tail of a 16-entry available ring.
        let mut rings = Vec::new();
        let queues = RING
            .iter()
            .map(|&a| {
                let (avail, used) = (a + 0x1000, a + 0x2000);
                rings.push((avail, used));
                let mut q = Queue::new(QSIZE).unwrap();
                q.set_size(QSIZE);
                q.set_desc_table_address(Some(a as u32), Some(0));
                q.set_avail_ring_address(Some(avail as u32), Some(0));
                q.set_used_ring_address(Some(used as u32), Some(0));
                q.set_ready(true);
                Some(q)
            })
            .collect();
        Rig {
            dev: Vsock::new(&config, listener, wake),
            mem,
            queues,
            dir,
            next_desc: [0; 3],
            avail: [0; 3],
            used_seen: [0; 3],
            next_buf: BUFS,
            rings,
        }
    }

    fn avail_addr(&self, q: usize) -> u64 {
        self.rings[q].0
    }

    fn used_addr(&self, q: usize) -> u64 {
        self.rings[q].1
    }

    /// Puts a chain of (addr, len, device-writes) on queue `q`.
    pub fn push(&mut self, q: usize, descs: &[(u64, u32, bool)]) {
        let head = self.next_desc[q];
        for (i, &(addr, len, write)) in descs.iter().enumerate() {
            let idx = (head + i as u16) % QSIZE;
            let mut flags = if write { VRING_DESC_F_WRITE as u16 } else { 0 };
            let next = (idx + 1) % QSIZE;
            if i + 1 < descs.len() {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            let at = GuestAddress(RING[q] + 16 * u64::from(idx));
            self.mem.write_obj(addr, at).unwrap();
            self.mem.write_obj(len, GuestAddress(at.0 + 8)).unwrap();
            self.mem.write_obj(flags, GuestAddress(at.0 + 12)).unwrap();
            self.mem.write_obj(next, GuestAddress(at.0 + 14)).unwrap();
        }
        self.next_desc[q] = (head + descs.len() as u16) % QSIZE;
        let slot = self.avail_addr(q) + 4 + 2 * u64::from(self.avail[q] % QSIZE);
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail[q] = self.avail[q].wrapping_add(1);
        self.mem
            .write_obj(self.avail[q], GuestAddress(self.avail_addr(q) + 2))
            .unwrap();
    }

    pub fn buf(&mut self, len: u32) -> u64 {
        let a = self.next_buf;
        self.next_buf += u64::from(len).max(1).next_multiple_of(0x1000);
        if self.next_buf > 0x3f_0000 {
            self.next_buf = BUFS;
        }
        a
    }

    /// Sends a packet from the guest: header and payload in two buffers.
    pub fn send(&mut self, h: Header, payload: &[u8]) {
        let ha = self.buf(HDR_LEN as u32);
        self.mem
            .write_slice(&h.to_bytes(), GuestAddress(ha))
            .unwrap();
        if payload.is_empty() {
            self.push(TXQ, &[(ha, HDR_LEN as u32, false)]);
        } else {
            let pa = self.buf(payload.len() as u32);
            self.mem.write_slice(payload, GuestAddress(pa)).unwrap();
            self.push(
                TXQ,
                &[
                    (ha, HDR_LEN as u32, false),
                    (pa, payload.len() as u32, false),
                ],
            );
        }
        self.run();
    }

    /// One processing round, then closes what the muxer closed (as the
    /// socket subscriber does after every round).
    pub fn run(&mut self) {
        self.dev.process(&mut self.queues, &self.mem).unwrap();
        let m = self.dev.muxer();
        m.take_closed();
        m.release_closed();
    }

    /// Gives the device `n` receive buffers of header + 4 KiB (as Linux).
    pub fn rx_buffers(&mut self, n: usize) {
        for _ in 0..n {
            let a = self.buf(HDR_LEN as u32 + 4096);
            self.push(RXQ, &[(a, HDR_LEN as u32 + 4096, true)]);
        }
    }

    /// Completed (descriptor id, length) on queue `q` since the last call.
    pub fn used(&mut self, q: usize) -> Vec<(u16, u32)> {
        let base = self.used_addr(q);
        let idx: u16 = self.mem.read_obj(GuestAddress(base + 2)).unwrap();
        let mut out = Vec::new();
        while self.used_seen[q] != idx {
            let e = base + 4 + 8 * u64::from(self.used_seen[q] % QSIZE);
            let id: u32 = self.mem.read_obj(GuestAddress(e)).unwrap();
            let len: u32 = self.mem.read_obj(GuestAddress(e + 4)).unwrap();
            out.push((id as u16, len));
            self.used_seen[q] = self.used_seen[q].wrapping_add(1);
        }
        out
    }

    /// Packets the device wrote into receive buffers since the last call.
    pub fn received(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        for (id, len) in self.used(RXQ) {
            let at = GuestAddress(RING[RXQ] + 16 * u64::from(id));
            let addr: u64 = self.mem.read_obj(at).unwrap();
            if len == 0 {
                continue;
            }
            let mut b = vec![0u8; len as usize];
            self.mem.read_slice(&mut b, GuestAddress(addr)).unwrap();
            let h = Header::from_bytes(b[..HDR_LEN].try_into().unwrap());
            out.push((h, b[HDR_LEN..].to_vec()));
        }
        out
    }

    /// Every watched socket reports `set` (as epoll would).
    pub fn socket_events(&mut self, set: EventSet) {
        let m = self.dev.muxer();
        let fds = m.interest();
        for (fd, _) in fds {
            m.socket_event(fd, set);
        }
        self.run();
    }
}

pub(super) fn hdr(op: u16, src_port: u32, dst_port: u32, len: u32) -> Header {
    Header {
        src_cid: GUEST,
        dst_cid: packet::HOST_CID,
        src_port,
        dst_port,
        len,
        kind: packet::TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: 256 * 1024,
        fwd_cnt: 0,
    }
}

/// A guest connection from port 1000 to host port 52, accepted; `rx`
/// receive buffers given (one takes the RESPONSE).
pub(super) fn guest_connection(r: &mut Rig, rx: usize) -> (UnixListener, UnixStream) {
    let l = UnixListener::bind(r.dir.join("v.sock_52")).unwrap();
    r.rx_buffers(rx);
    r.send(hdr(op::REQUEST, 1000, 52, 0), &[]);
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    let got = r.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.op, op::RESPONSE);
    assert_eq!((got[0].0.src_port, got[0].0.dst_port), (52, 1000));
    assert_eq!(got[0].0.buf_alloc, BUF_ALLOC);
    (l, s)
}

#[test]
fn the_device_offers_id_19_version_1_and_its_cid() {
    let r = Rig::new("config");
    assert_eq!(r.dev.device_type(), 19);
    assert_eq!(r.dev.features(), VIRTIO_F_VERSION_1);
    assert_eq!(r.dev.queue_max_sizes().len(), 3);
    let mut b = [0xffu8; 8];
    r.dev.read_config(0, &mut b);
    assert_eq!(u64::from_le_bytes(b), GUEST);
    let mut past = [0xffu8; 4];
    r.dev.read_config(8, &mut past);
    assert_eq!(past, [0; 4]);
}

#[test]
fn a_guest_connection_carries_data_both_ways() {
    let mut r = Rig::new("guest-conn");
    let (_l, mut s) = guest_connection(&mut r, 4);
    r.send(hdr(op::RW, 1000, 52, 5), b"hello");
    let mut b = [0u8; 5];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
    s.write_all(b"world!").unwrap();
    r.rx_buffers(2);
    r.socket_events(EventSet::IN);
    let got = r.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0.op, op::RW);
    assert_eq!(got[0].1, b"world!");
    let st = r.dev.stats();
    assert_eq!((st.tx_bytes, st.rx_bytes), (5, 6));
    // The host closes: the guest is told it gets no more (SHUTDOWN SEND).
    drop(s);
    r.socket_events(EventSet::IN | EventSet::HANG_UP);
    let got = r.received();
    assert_eq!(got.last().unwrap().0.op, op::SHUTDOWN);
    // The guest closes both ways: we reset, and the connection is gone.
    let mut h = hdr(op::SHUTDOWN, 1000, 52, 0);
    h.flags = packet::shutdown::RCV | packet::shutdown::SEND;
    r.send(h, &[]);
    assert_eq!(r.received().last().unwrap().0.op, op::RST);
    assert_eq!(r.dev.muxer().connections(), 0);
}

#[test]
fn a_host_client_connects_with_connect_and_gets_ok() {
    let mut r = Rig::new("host-conn");
    let mut c = UnixStream::connect(r.dir.join("v.sock")).unwrap();
    c.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    c.write_all(b"CONNECT 1234\nearly").unwrap();
    r.rx_buffers(4);
    r.socket_events(EventSet::IN); // accept
    r.socket_events(EventSet::IN); // the CONNECT line
    let got = r.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let req = got[0].0;
    assert_eq!(
        (req.op, req.dst_port, req.src_port),
        (op::REQUEST, 1234, 1 << 30)
    );
    assert_eq!(req.dst_cid, GUEST);
    r.send(hdr(op::RESPONSE, 1234, 1 << 30, 0), &[]);
    let mut line = [0u8; 14];
    c.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"OK 1073741824\n");
    // What followed the line is data for the guest, not part of it.
    r.socket_events(EventSet::IN);
    let got = r.received();
    assert_eq!(got[0].1, b"early");
    assert_eq!(r.dev.stats().host_connections, 1);
}

#[test]
fn bad_connect_lines_and_refused_guest_connections_are_counted() {
    let mut r = Rig::new("refusals");
    let mut c = UnixStream::connect(r.dir.join("v.sock")).unwrap();
    c.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    c.write_all(b"HELLO 1\n").unwrap();
    r.socket_events(EventSet::IN);
    r.socket_events(EventSet::IN);
    assert_eq!(r.dev.stats().bad_connect_lines, 1);
    let mut b = [0u8; 1];
    assert_eq!(c.read(&mut b).unwrap(), 0, "the client is closed");
    // Nobody listens on v.sock_7: the guest gets a reset.
    r.rx_buffers(1);
    r.send(hdr(op::REQUEST, 1000, 7, 0), &[]);
    assert_eq!(r.received()[0].0.op, op::RST);
    assert_eq!(r.dev.stats().refused_host, 1);
}
