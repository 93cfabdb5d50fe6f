//! Hostile-driver tests of the vsock device (the rig is in tests.rs):
//! credit overrun, bad headers, lengths and chains, a flood of packets for
//! connections that do not exist, receive buffers too short for a packet,
//! the transport reset, and host connections the guest never answers. Each
//! ends in a counted drop or a reset.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;

use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::EventSet;

use super::packet::{HDR_LEN, op};
use super::tests::{Rig, guest_connection, hdr};
use super::*;

#[test]
fn a_guest_beyond_its_credit_is_reset_before_anything_is_copied() {
    let mut r = Rig::new("credit");
    // No receive buffer after the RESPONSE: no credit update can reach
    // the guest, so its credit stays what the RESPONSE said.
    let (_l, mut s) = guest_connection(&mut r, 1);
    let chunk = vec![7u8; packet::MAX_PAYLOAD as usize];
    // 64 KiB fits the credit (BUF_ALLOC), one byte more does not.
    r.send(hdr(op::RW, 1000, 52, chunk.len() as u32), &chunk);
    r.send(hdr(op::RW, 1000, 52, 1), &[1]);
    assert_eq!(r.dev.stats().credit_violations, 1);
    r.rx_buffers(2);
    r.run();
    assert_eq!(r.received().last().unwrap().0.op, op::RST);
    assert_eq!(r.dev.muxer().connections(), 0);
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!(
        all.len(),
        chunk.len(),
        "the byte past the credit never left"
    );
}

#[test]
fn host_data_waits_for_the_guests_credit() {
    let mut r = Rig::new("peer-credit");
    let l = UnixListener::bind(r.dir.join("v.sock_52")).unwrap();
    r.rx_buffers(8);
    let mut h = hdr(op::REQUEST, 1000, 52, 0);
    h.buf_alloc = 10;
    r.send(h, &[]);
    let (mut s, _) = l.accept().unwrap();
    r.received();
    s.write_all(&[9u8; 100]).unwrap();
    r.socket_events(EventSet::IN);
    let got = r.received();
    let total: usize = got.iter().map(|(_, p)| p.len()).sum();
    assert_eq!(total, 10, "only the guest's buf_alloc");
    // The guest consumed them: 10 more.
    let mut u = hdr(op::CREDIT_UPDATE, 1000, 52, 0);
    u.buf_alloc = 10;
    u.fwd_cnt = 10;
    r.send(u, &[]);
    let total: usize = r.received().iter().map(|(_, p)| p.len()).sum();
    assert_eq!(total, 10);
    // A fwd_cnt ahead of what we sent gives no credit, and no panic.
    u.fwd_cnt = 1 << 31;
    r.send(u, &[]);
    r.socket_events(EventSet::IN);
    assert!(r.received().iter().all(|(_, p)| p.is_empty()));
}

#[test]
fn hostile_headers_are_dropped_and_counted() {
    let mut r = Rig::new("hostile");
    let (_l, _s) = guest_connection(&mut r, 4);
    r.rx_buffers(8);
    // Wrong source cid, wrong destination cid: dropped, not answered.
    let mut h = hdr(op::RW, 1000, 52, 0);
    h.src_cid = 99;
    r.send(h, &[]);
    let mut h = hdr(op::REQUEST, 1001, 52, 0);
    h.dst_cid = 7;
    r.send(h, &[]);
    assert_eq!(r.dev.stats().wrong_cid, 2);
    assert!(r.received().is_empty());
    // A header cut short (10 bytes).
    let a = r.buf(10);
    r.push(TXQ, &[(a, 10, false)]);
    r.run();
    // A transmit buffer the device would have to write.
    r.push(TXQ, &[(a, 64, true)]);
    r.run();
    assert_eq!(r.dev.stats().bad_chains, 1);
    // Length beyond the buffers, beyond 64 KiB, not a stream, unknown op:
    // each a bad packet and a reset.
    r.send(hdr(op::RW, 1000, 52, 100), b"short");
    let (_l2, _s2) = {
        let l = UnixListener::bind(r.dir.join("v.sock_53")).unwrap();
        r.send(hdr(op::REQUEST, 1000, 53, 0), &[]);
        let s = l.accept().unwrap().0;
        (l, s)
    };
    r.send(hdr(op::RW, 1000, 53, packet::MAX_PAYLOAD + 1), &[0; 16]);
    let mut t = hdr(op::REQUEST, 1002, 54, 0);
    t.kind = 2;
    r.send(t, &[]);
    r.send(hdr(99, 1003, 55, 0), &[]);
    let st = r.dev.stats();
    assert_eq!(st.bad_packets, 5, "{st:?}"); // the 10-byte header too
    let rsts = r.received().iter().filter(|(h, _)| h.op == op::RST).count();
    assert_eq!(rsts, 4);
    assert_eq!(r.dev.muxer().connections(), 0);
}

#[test]
fn resets_for_unknown_connections_are_bounded() {
    let mut r = Rig::new("rst-flood");
    for i in 0..(muxer::MAX_RSTS as u32 + 40) {
        r.send(hdr(op::RW, i, 9, 0), &[]);
    }
    let st = r.dev.stats();
    assert_eq!(st.dropped_rsts, 40);
}

#[test]
fn short_receive_buffers_are_completed_empty() {
    let mut r = Rig::new("short-rx");
    let a = r.buf(HDR_LEN as u32);
    r.push(RXQ, &[(a, HDR_LEN as u32, true)]);
    r.send(hdr(op::RW, 1, 2, 0), &[]); // owes a reset
    assert_eq!(r.used(RXQ), vec![(0, 0)]);
    assert_eq!(r.dev.stats().bad_chains, 1);
}

#[test]
fn a_transport_reset_drops_connections_and_tells_the_guest() {
    let mut r = Rig::new("reset");
    let (_l, mut s) = guest_connection(&mut r, 4);
    r.dev.transport_reset();
    assert_eq!(r.dev.muxer().connections(), 0);
    let a = r.buf(8);
    r.mem.write_obj(0xffff_ffffu32, GuestAddress(a)).unwrap();
    r.push(EVQ, &[(a, 8, true)]);
    r.run();
    assert_eq!(r.used(EVQ), vec![(0, 4)]);
    let ev: u32 = r.mem.read_obj(GuestAddress(a)).unwrap();
    assert_eq!(ev, EVENT_TRANSPORT_RESET);
    assert_eq!(r.dev.stats().transport_resets, 1);
    r.run();
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap(), 0, "the host side sees the end");
}

#[test]
fn host_connections_the_guest_never_answers_are_closed_and_counted() {
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};
    let mut r = Rig::new("request-timeout");
    // 40 host clients; the guest has one receive buffer (it gets the first
    // REQUEST) and answers none of them.
    let clients: Vec<UnixStream> = (0..40)
        .map(|i| {
            let mut c = UnixStream::connect(r.dir.join("v.sock")).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(format!("CONNECT {}\n", 5000 + i).as_bytes())
                .unwrap();
            c
        })
        .collect();
    r.rx_buffers(1);
    let start = Instant::now();
    for _ in 0..4 {
        r.socket_events(EventSet::IN); // accepts (16 a round), then lines
    }
    assert_eq!(r.dev.muxer().connections(), 40);
    assert_eq!(r.received()[0].0.op, op::REQUEST);
    let deadline = r.dev.muxer().next_request_deadline().unwrap();
    assert!(deadline > start && deadline <= Instant::now() + muxer::REQUEST_TIMEOUT);
    // Before the deadline nothing happens; at it every one is closed.
    r.dev
        .muxer()
        .expire_requests(deadline - Duration::from_millis(1));
    assert_eq!(r.dev.muxer().connections(), 40);
    r.dev
        .muxer()
        .expire_requests(deadline + muxer::REQUEST_TIMEOUT);
    r.run();
    assert_eq!(r.dev.muxer().connections(), 0);
    assert_eq!(r.dev.muxer().next_request_deadline(), None);
    assert_eq!(r.dev.stats().request_timeouts, 40);
    for mut c in clients {
        let mut b = [0u8; 16];
        assert_eq!(c.read(&mut b).unwrap(), 0, "the client sees the end, no OK");
    }
    // The guest is reset for each (it may still answer).
    r.rx_buffers(2);
    r.run();
    let got = r.received();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(h, _)| h.op == op::RST));
    assert_eq!((got[0].0.src_port, got[0].0.dst_port), (1 << 30, 5000));
    // A late RESPONSE finds no connection: reset again, nothing reopened.
    r.send(hdr(op::RESPONSE, 5000, 1 << 30, 0), &[]);
    assert_eq!(r.dev.muxer().connections(), 0);
    // An answered REQUEST is not timed out.
    let mut c = UnixStream::connect(r.dir.join("v.sock")).unwrap();
    c.write_all(b"CONNECT 6000\n").unwrap();
    r.socket_events(EventSet::IN);
    r.socket_events(EventSet::IN);
    // The 38 resets still queued go first, then the REQUEST.
    let mut req = None;
    for _ in 0..8 {
        r.rx_buffers(8);
        r.run();
        req = r.received().into_iter().find(|(h, _)| h.op == op::REQUEST);
        if req.is_some() {
            break;
        }
    }
    let req = req.expect("the REQUEST for CONNECT 6000").0;
    r.send(hdr(op::RESPONSE, 6000, req.src_port, 0), &[]);
    r.dev
        .muxer()
        .expire_requests(Instant::now() + 2 * muxer::REQUEST_TIMEOUT);
    assert_eq!(r.dev.muxer().connections(), 1);
    assert_eq!(r.dev.stats().request_timeouts, 40);
}
