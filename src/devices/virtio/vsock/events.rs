//! The vsock device's sockets in the event loop: an event-manager
//! subscriber that watches the listener, the host clients and every
//! connection's socket, hands their events to the muxer, runs the device
//! (packets for the guest) and then re-watches the sockets as the muxer
//! wants them (`Muxer::interest`). The device's queue notifications go
//! through the ordinary `VirtioEvents`; when that work changes what the
//! sockets should be watched for, the device signals `wake` and this
//! subscriber catches up.
//!
//! A socket is taken out of epoll before it is closed (`take_closed`, then
//! `release_closed`), so that a new socket reusing its number is never
//! mistaken for it.
//!
//! A timerfd (made during the build, non-blocking) is set to the earliest
//! deadline of a host connection the guest has not answered
//! (`Muxer::next_request_deadline`); when it fires, those connections are
//! closed (`Muxer::expire_requests`).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use super::Vsock;
use crate::devices::virtio::mmio::MmioTransport;

/// Watches a vsock device's sockets.
pub struct VsockSockets {
    transport: Arc<Mutex<MmioTransport<Vsock>>>,
    wake: EventFd,
    watched: HashMap<RawFd, EventSet>,
    /// Fires at the earliest REQUEST deadline.
    timer: TimerFd,
    /// The deadline the timer is set to.
    armed: Option<Instant>,
}

impl VsockSockets {
    /// The subscriber for the device in `transport`, woken by `wake`.
    /// Makes its timer (build stage: `timerfd_create` is not allowed later).
    pub fn new(
        transport: Arc<Mutex<MmioTransport<Vsock>>>,
        wake: EventFd,
    ) -> std::io::Result<Self> {
        let timer = TimerFd::new()?;
        // Non-blocking, so that reading a timer re-armed since epoll saw it
        // fire never blocks the event loop.
        // SAFETY: fcntl on the timer's open fd; no memory is passed.
        let r = unsafe {
            let fd = timer.as_raw_fd();
            libc::fcntl(
                fd,
                libc::F_SETFL,
                libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(VsockSockets {
            transport,
            wake,
            watched: HashMap::new(),
            timer,
            armed: None,
        })
    }

    /// Sets the timer to the muxer's next REQUEST deadline (or stops it).
    fn arm(&mut self, next: Option<Instant>) {
        if next == self.armed {
            return;
        }
        let r = match next {
            // A zero duration would stop the timer: at least 1 ms.
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                self.timer.reset(wait.max(Duration::from_millis(1)), None)
            }
            None => self.timer.clear(),
        };
        match r {
            Ok(()) => self.armed = next,
            Err(e) => {
                static LINES: crate::log::Limit = crate::log::Limit::new(3);
                LINES.line(|| format!("tinyvmm: warning: the vsock request timer: {e}"));
            }
        }
    }

    fn sync(&mut self, t: &mut MmioTransport<Vsock>, ops: &mut EventOps) {
        let muxer = t.device_mut().muxer();
        for fd in muxer.take_closed() {
            if self.watched.remove(&fd).is_some() {
                let _ = ops.remove(Events::empty_raw(fd));
            }
        }
        muxer.release_closed();
        let next = muxer.next_request_deadline();
        let wanted: HashMap<RawFd, EventSet> = muxer.interest().into_iter().collect();
        let gone: Vec<RawFd> = self
            .watched
            .keys()
            .filter(|fd| !wanted.contains_key(fd))
            .copied()
            .collect();
        for fd in gone {
            self.watched.remove(&fd);
            let _ = ops.remove(Events::empty_raw(fd));
        }
        for (fd, set) in wanted {
            let result = match self.watched.get(&fd) {
                None => ops.add(Events::new_raw(fd, set)),
                Some(old) if *old != set => ops.modify(Events::new_raw(fd, set)),
                Some(_) => continue,
            };
            match result {
                Ok(()) => {
                    self.watched.insert(fd, set);
                }
                Err(e) => {
                    static LINES: crate::log::Limit = crate::log::Limit::new(3);
                    LINES.line(|| format!("tinyvmm: warning: a vsock socket is not watched: {e}"));
                }
            }
        }
        self.arm(next);
    }
}

impl MutEventSubscriber for VsockSockets {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.wake, EventSet::IN)) {
            crate::say!("tinyvmm: warning: the vsock device's wake-up is not watched: {e}");
        }
        if let Err(e) = ops.add(Events::new(&self.timer, EventSet::IN)) {
            crate::say!("tinyvmm: warning: the vsock request timer is not watched: {e}");
        }
        let transport = self.transport.clone();
        let mut t = crate::sync::lock(&transport);
        self.sync(&mut t, ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let transport = self.transport.clone();
        let mut t = crate::sync::lock(&transport);
        if events.fd() == self.wake.as_raw_fd() {
            let _ = self.wake.read();
        } else if events.fd() == self.timer.as_raw_fd() {
            // Would block if re-armed since: nothing to do then.
            let _ = self.timer.wait();
            self.armed = None;
            t.device_mut().muxer().expire_requests(Instant::now());
        } else {
            t.device_mut()
                .muxer()
                .socket_event(events.fd(), events.event_set());
        }
        t.process();
        self.sync(&mut t, ops);
    }
}
