//! Fuzz target `virtio_vsock`: the vsock device fed by a hostile driver.
//! The device listens on a per-thread scratch socket and a host listener
//! waits on `PATH_52` (so guest connections to port 52 succeed). The bytes
//! drive up to 16 rounds of: a transmit chain (a header with fields picked
//! from the real values or any, a payload length honest or not, one to
//! three descriptors of any length and direction), receive buffers (any
//! sizes, either direction), socket events on every socket, a transport
//! reset, a host client with a CONNECT line (good, bad, partial) and some
//! data, the REQUEST deadline passing, an event-queue buffer, then one
//! `process` call.
//!
//! After each round: every transmit chain made available was completed;
//! no used length on the receive or event queue exceeds its chain's
//! writable bytes; the connection count stays within the limit; once the
//! deadline has passed no host connection still waits for the guest. A
//! panic anywhere is a finding.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::Input;
use crate::devices::virtio::VirtioDevice;
use crate::devices::virtio::vsock::packet::{HDR_LEN, HOST_CID, Header, TYPE_STREAM};
use crate::devices::virtio::vsock::{EVQ, RXQ, TXQ, Vsock, VsockConfig, host, muxer};

const RAM: usize = 0x10_0000;
const QSIZE: u16 = 8;
/// Rings of queue n at n * 0x4000 (descriptors, avail +0x1000, used +0x2000).
const RINGS: u64 = 0x4000;
const BUFS: u64 = 0x1_0000;
const GUEST_CID: u64 = 3;

struct Ring {
    base: u64,
    next: u16,
    avail: u16,
}

impl Ring {
    fn queue(&self) -> Queue {
        let mut q = Queue::new(QSIZE).expect("a queue");
        q.set_size(QSIZE);
        q.set_desc_table_address(Some(self.base as u32), Some(0));
        q.set_avail_ring_address(Some((self.base + 0x1000) as u32), Some(0));
        q.set_used_ring_address(Some((self.base + 0x2000) as u32), Some(0));
        q.set_ready(true);
        q
    }

    /// Makes a chain of (addr, len, device-writes) available.
    fn push(&mut self, mem: &GuestMemoryMmap, descs: &[(u64, u32, bool)]) {
        let head = self.next;
        for (i, &(addr, len, write)) in descs.iter().enumerate() {
            let idx = (head + i as u16) % QSIZE;
            let at = self.base + 16 * u64::from(idx);
            let mut flags: u16 = if write { 2 } else { 0 };
            if i + 1 < descs.len() {
                flags |= 1;
            }
            let _ = mem.write_obj(addr, GuestAddress(at));
            let _ = mem.write_obj(len, GuestAddress(at + 8));
            let _ = mem.write_obj(flags, GuestAddress(at + 12));
            let _ = mem.write_obj((idx + 1) % QSIZE, GuestAddress(at + 14));
        }
        self.next = (head + descs.len() as u16) % QSIZE;
        let slot = self.base + 0x1000 + 4 + 2 * u64::from(self.avail % QSIZE);
        let _ = mem.write_obj(head, GuestAddress(slot));
        self.avail = self.avail.wrapping_add(1);
        let _ = mem.write_obj(self.avail, GuestAddress(self.base + 0x1002));
    }

    fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        mem.read_obj(GuestAddress(self.base + 0x2002)).unwrap_or(0)
    }

    /// The device-writable bytes of the chain at `head` as the descriptor
    /// table holds it now (a hostile driver rewrites descriptors of chains
    /// still out; the device saw the table as it is after `process`).
    fn writable(&self, mem: &GuestMemoryMmap, head: u16) -> u64 {
        let (mut idx, mut room) = (head % QSIZE, 0u64);
        for _ in 0..QSIZE {
            let at = self.base + 16 * u64::from(idx);
            let len: u32 = mem.read_obj(GuestAddress(at + 8)).unwrap_or(0);
            let flags: u16 = mem.read_obj(GuestAddress(at + 12)).unwrap_or(0);
            let next: u16 = mem.read_obj(GuestAddress(at + 14)).unwrap_or(0);
            if flags & 2 != 0 {
                room += u64::from(len);
            }
            if flags & 1 == 0 {
                break;
            }
            idx = next % QSIZE;
        }
        room
    }

    /// Checks every used entry since `seen`: none longer than its chain's
    /// writable bytes.
    fn check_used(&self, mem: &GuestMemoryMmap, seen: &mut u16) {
        while *seen != self.used_idx(mem) {
            let (id, len) = self.used_len(mem, *seen);
            let room = self.writable(mem, id);
            assert!(
                u64::from(len) <= room,
                "used length {len} > writable {room}"
            );
            *seen = seen.wrapping_add(1);
        }
    }

    fn used_len(&self, mem: &GuestMemoryMmap, i: u16) -> (u16, u32) {
        let e = self.base + 0x2004 + 8 * u64::from(i % QSIZE);
        let id: u32 = mem.read_obj(GuestAddress(e)).unwrap_or(0);
        let len: u32 = mem.read_obj(GuestAddress(e + 4)).unwrap_or(0);
        (id as u16, len)
    }
}

fn descs(input: &mut Input<'_>, write: bool, first_len: u32) -> Vec<(u64, u32, bool)> {
    let n = 1 + usize::from(input.u8() % 3);
    (0..n)
        .map(|i| {
            let addr = BUFS + 0x1_0000 * i as u64 + u64::from(input.u16() & 0xff0);
            let len = match input.u8() % 6 {
                0 => 0,
                1 => u32::from(input.u8()),
                2 => HDR_LEN as u32,
                3 => 0x1_0000,
                4 => input.u32(),
                _ if i == 0 => first_len,
                _ => u32::from(input.u16()),
            };
            let dir = if input.u8() % 8 == 0 { !write } else { write };
            (addr, len, dir)
        })
        .collect()
}

/// The fuzz target.
pub fn virtio_vsock(data: &[u8]) {
    let mut input = Input::new(data);
    let dir = std::env::temp_dir().join(format!(
        "tinyvmm-fuzz-vsock-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::create_dir_all(&dir);
    let config = VsockConfig {
        cid: GUEST_CID,
        socket: dir.join("v"),
    };
    let _ = std::fs::remove_file(dir.join("v_52"));
    let port52 = UnixListener::bind(dir.join("v_52")).expect("a scratch listener");
    let listener = host::listen(&config).expect("the scratch vsock socket");
    let wake = EventFd::new(EFD_NONBLOCK).expect("an eventfd");
    let mut dev = Vsock::new(&config, listener, wake);
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).expect("guest RAM");
    let mut rings: Vec<Ring> = (0..3)
        .map(|n| Ring {
            base: RINGS * n,
            next: 0,
            avail: 0,
        })
        .collect();
    let mut queues: Vec<Option<Queue>> = rings.iter().map(|r| Some(r.queue())).collect();
    let mut rx_seen: u16 = 0;
    let mut ev_seen: u16 = 0;
    let mut clients: Vec<UnixStream> = Vec::new();
    for _ in 0..16 {
        if input.is_empty() {
            break;
        }
        let what = input.u8();
        if what & 1 != 0 {
            let h = Header {
                src_cid: input.pick(&[GUEST_CID, GUEST_CID, GUEST_CID, 2, 0, u64::MAX]),
                dst_cid: input.pick(&[HOST_CID, HOST_CID, HOST_CID, GUEST_CID, 1]),
                src_port: input.pick(&[1000, 1001, 1 << 30, 0, u32::MAX]),
                dst_port: input.pick(&[52, 52, 53, 1 << 30, u32::MAX]),
                len: input.pick(&[0, 5, 4096, 65536, 65537, u32::MAX]),
                kind: input.pick(&[TYPE_STREAM, TYPE_STREAM, TYPE_STREAM, 2, 0]),
                op: input.pick(&[1, 2, 3, 4, 5, 5, 5, 6, 7, 0, 8, 0xffff]),
                flags: input.pick(&[0, 1, 2, 3, u32::MAX]),
                buf_alloc: input.pick(&[0, 10, 256 * 1024, u32::MAX]),
                fwd_cnt: input.pick(&[0, 10, 1 << 31, u32::MAX]),
            };
            let chain = descs(&mut input, false, HDR_LEN as u32 + h.len.min(0x1_0000));
            let _ = mem.write_slice(&h.to_bytes(), GuestAddress(chain[0].0));
            let before = rings[TXQ].used_idx(&mem);
            rings[TXQ].push(&mem, &chain);
            if dev.process(&mut queues, &mem).is_err() {
                return; // a broken ring: the transport asks for a reset
            }
            rings[RXQ].check_used(&mem, &mut rx_seen);
            rings[EVQ].check_used(&mem, &mut ev_seen);
            assert_eq!(
                rings[TXQ].used_idx(&mem),
                before.wrapping_add(1),
                "every transmit chain is completed"
            );
        }
        if what & 2 != 0 {
            for _ in 0..=input.u8() % 3 {
                let chain = descs(&mut input, true, HDR_LEN as u32 + 4096);
                rings[RXQ].push(&mem, &chain);
            }
        }
        if what & 4 != 0 {
            let set = input.pick(&[
                EventSet::IN,
                EventSet::OUT,
                EventSet::IN | EventSet::HANG_UP,
            ]);
            let m = dev.muxer();
            for (fd, _) in m.interest() {
                m.socket_event(fd, set);
            }
            m.take_closed();
            m.release_closed();
        }
        if what & 8 != 0 {
            dev.transport_reset();
        }
        if what & 16 != 0 {
            if let Ok(mut c) = UnixStream::connect(&config.socket) {
                let line: &[u8] = input.pick(&[
                    b"CONNECT 52\n".as_slice(),
                    b"CONNECT 4294967295\n",
                    b"CONNECT 5",
                    b"CONNECT x\n",
                    b"HELLO\n",
                    b"CONNECT 52\r\nhello",
                ]);
                let _ = c.write_all(line);
                clients.push(c);
            }
        }
        if what & 32 != 0 {
            let late = std::time::Instant::now() + 2 * muxer::REQUEST_TIMEOUT;
            dev.muxer().expire_requests(late);
            assert!(
                dev.muxer().next_request_deadline().is_none_or(|d| d > late),
                "no host connection waits past its deadline"
            );
        }
        if what & 64 != 0 {
            let chain = descs(&mut input, true, 8);
            rings[EVQ].push(&mem, &chain);
        }
        if dev.process(&mut queues, &mem).is_err() {
            return;
        }
        rings[RXQ].check_used(&mem, &mut rx_seen);
        rings[EVQ].check_used(&mem, &mut ev_seen);
        assert!(dev.muxer().connections() <= muxer::MAX_CONNS);
    }
    drop(clients);
    drop(port52);
    let _ = std::fs::remove_dir_all(&dir);
}
