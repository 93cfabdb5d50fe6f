//! The tap's side of the event loop: its fd is watched edge-triggered (a
//! wake-up when frames arrive, not for as long as some wait), and each
//! wake-up lets the device move frames. The device reads the tap until it
//! is empty or the guest has no room; when the guest adds buffers, its
//! queue notification (the shared `VirtioEvents`) resumes the reading.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;

use super::Net;
use crate::devices::virtio::mmio::MmioTransport;

/// Wakes the device when its tap has frames.
pub struct TapEvents {
    transport: Arc<Mutex<MmioTransport<Net>>>,
    tap: RawFd,
}

impl TapEvents {
    /// Watches `tap` (the device's own tap fd, which lives as long as the
    /// device in `transport`).
    pub fn new(transport: Arc<Mutex<MmioTransport<Net>>>, tap: RawFd) -> Self {
        TapEvents { transport, tap }
    }
}

impl MutEventSubscriber for TapEvents {
    fn init(&mut self, ops: &mut EventOps) {
        let events = Events::new_raw(self.tap, EventSet::IN | EventSet::EDGE_TRIGGERED);
        if let Err(e) = ops.add(events) {
            crate::say!("tinyvmm: warning: a tap is not watched, the guest receives nothing: {e}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        crate::sync::lock(&self.transport).process();
    }
}
