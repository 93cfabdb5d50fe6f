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

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::Vsock;
use crate::devices::virtio::mmio::MmioTransport;

/// Watches a vsock device's sockets.
pub struct VsockSockets {
    transport: Arc<Mutex<MmioTransport<Vsock>>>,
    wake: EventFd,
    watched: HashMap<RawFd, EventSet>,
}

impl VsockSockets {
    /// The subscriber for the device in `transport`, woken by `wake`.
    pub fn new(transport: Arc<Mutex<MmioTransport<Vsock>>>, wake: EventFd) -> Self {
        VsockSockets {
            transport,
            wake,
            watched: HashMap::new(),
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
    }
}

impl MutEventSubscriber for VsockSockets {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.wake, EventSet::IN)) {
            crate::say!("tinyvmm: warning: the vsock device's wake-up is not watched: {e}");
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
        } else {
            t.device_mut()
                .muxer()
                .socket_event(events.fd(), events.event_set());
        }
        t.process();
        self.sync(&mut t, ops);
    }
}
