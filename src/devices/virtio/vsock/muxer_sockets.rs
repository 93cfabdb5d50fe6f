//! The muxer's side that faces the host: socket events from the event
//! loop (the listener, host clients' CONNECT lines, connection sockets),
//! host port allocation, what each socket should be watched for, and the
//! deadline of host connections whose REQUEST the guest has not answered.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use vmm_sys_util::epoll::EventSet;

use super::super::conn::{Conn, State};
use super::super::host;
use super::super::packet::{HOST_CID, Header};
use super::{ACCEPTS_PER_EVENT, FIRST_LOCAL_PORT, MAX_CONNS, Muxer, REQUEST_TIMEOUT};

impl Muxer {
    /// A socket event from the event loop.
    pub fn socket_event(&mut self, fd: RawFd, set: EventSet) {
        self.dirty = true;
        if fd == self.listener.as_raw_fd() {
            return self.accept();
        }
        if self.waiting.contains_key(&fd) {
            return self.connect_line(fd);
        }
        let Some(&key) = self.by_fd.get(&fd) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if set.intersects(EventSet::HANG_UP | EventSet::ERROR) {
            // Watched no more (it would fire forever): read to its end as
            // the guest takes data; a write fails and resets.
            c.hung_up = true;
            c.readable = true;
            self.closed.push(fd);
        }
        if set.contains(EventSet::IN) {
            c.readable = true;
        }
        if set.contains(EventSet::OUT) || c.hung_up {
            return self.flush(key);
        }
        self.mark_ready(key);
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_EVENT {
            match host::accept(&self.listener) {
                Ok(Some(s)) if self.in_use() >= MAX_CONNS => {
                    self.stats.refused_limit += 1;
                    drop(s);
                }
                Ok(Some(s)) => {
                    self.waiting.insert(s.as_raw_fd(), (s, Vec::new()));
                }
                Ok(None) => return,
                Err(_) => {
                    self.stats.accept_errors += 1;
                    return;
                }
            }
        }
    }

    fn connect_line(&mut self, fd: RawFd) {
        let Some((stream, line)) = self.waiting.get_mut(&fd) else {
            return;
        };
        match host::read_connect_line(stream, line) {
            Ok(None) => {}
            Ok(Some(port)) => {
                let Some((stream, _)) = self.waiting.remove(&fd) else {
                    return;
                };
                let local = self.allocate_port();
                let key = (local, port);
                let mut c = Conn::new(stream, self.cid, local, port);
                c.owed.request = true;
                c.request_deadline = Some(Instant::now() + REQUEST_TIMEOUT);
                self.by_fd.insert(fd, key);
                self.conns.insert(key, c);
                self.stats.host_connections += 1;
                self.mark_ready(key);
            }
            Err(_) => {
                self.stats.bad_connect_lines += 1;
                if let Some((s, _)) = self.waiting.remove(&fd) {
                    self.bury(fd, Box::new(s));
                }
            }
        }
    }

    fn allocate_port(&mut self) -> u32 {
        loop {
            let p = self.next_port;
            self.next_port = self.next_port.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            // At most MAX_CONNS ports are in use: this ends.
            if self.conns.range((p, 0)..=(p, u32::MAX)).next().is_none() {
                return p;
            }
        }
    }

    /// What each socket should be watched for. A connection with data we
    /// already know about, or with no credit from the guest, is not
    /// watched for input: its level-triggered event would fire in a loop.
    pub fn interest(&mut self) -> Vec<(RawFd, EventSet)> {
        self.dirty = false;
        let mut out = vec![(self.listener.as_raw_fd(), EventSet::IN)];
        out.extend(self.waiting.keys().map(|&fd| (fd, EventSet::IN)));
        for c in self.conns.values().filter(|c| !c.hung_up) {
            let mut set = EventSet::empty();
            if c.may_send_data() && !c.readable {
                set |= EventSet::IN;
            }
            if c.has_pending() {
                set |= EventSet::OUT;
            }
            out.push((c.stream.as_raw_fd(), set));
        }
        out
    }

    /// The earliest deadline of a host connection still waiting for the
    /// guest's RESPONSE (the event loop's timer is set to it).
    pub fn next_request_deadline(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter(|c| c.state == State::Requested)
            .filter_map(|c| c.request_deadline)
            .min()
    }

    /// Closes every host connection whose REQUEST the guest has not
    /// answered by `now`: the host client sees the end of its stream, the
    /// guest gets a reset (it may answer later), and each is counted.
    pub fn expire_requests(&mut self, now: Instant) {
        let late: Vec<_> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Requested)
            .filter(|(_, c)| c.request_deadline.is_some_and(|d| d <= now))
            .map(|(&k, _)| k)
            .collect();
        for (local, peer) in late {
            self.remove((local, peer));
            self.stats.request_timeouts += 1;
            // queue_rst answers a guest packet: this one from the guest's side.
            self.queue_rst(&Header {
                src_cid: self.cid,
                dst_cid: HOST_CID,
                src_port: peer,
                dst_port: local,
                ..Header::default()
            });
        }
    }

    /// Sockets to stop watching; the caller then calls `release_closed`.
    pub fn take_closed(&mut self) -> Vec<RawFd> {
        std::mem::take(&mut self.closed)
    }

    /// Closes the sockets `take_closed` named (each client sees the end).
    pub fn release_closed(&mut self) {
        self.graveyard.clear();
    }
}
