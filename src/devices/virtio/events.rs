//! The main thread's side of a virtio device: an event-manager subscriber
//! that watches the device's eventfds and does its queue work.
//!
//! A queue notification from the guest is a write to QueueNotify; KVM turns
//! it into an ioeventfd signal without leaving the kernel (for matching
//! writes), so the vCPU goes straight back to the guest. This subscriber
//! wakes on that eventfd, locks the transport and processes the queues, then
//! raises the interrupt through an irqfd. Devices add their own events
//! (e.g. "stdout has room again").

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::VirtioDevice;
use super::mmio::MmioTransport;

/// Processes a device whenever one of its eventfds fires.
pub struct VirtioEvents<D: VirtioDevice> {
    transport: Arc<Mutex<MmioTransport<D>>>,
    fds: Vec<EventFd>,
    queue_fds: usize,
}

impl<D: VirtioDevice> VirtioEvents<D> {
    /// Watches the queue notification eventfds `notify` and `others`
    /// (activation, device events) for the device in `transport`.
    pub fn new(
        transport: Arc<Mutex<MmioTransport<D>>>,
        notify: Vec<EventFd>,
        others: Vec<EventFd>,
    ) -> Self {
        let queue_fds = notify.len();
        let mut fds = notify;
        fds.extend(others);
        VirtioEvents {
            transport,
            fds,
            queue_fds,
        }
    }
}

impl<D: VirtioDevice> MutEventSubscriber for VirtioEvents<D> {
    fn init(&mut self, ops: &mut EventOps) {
        for fd in &self.fds {
            if let Err(e) = ops.add(Events::new(fd, EventSet::IN)) {
                crate::say!("tinyvmm: warning: a virtio event is not watched: {e}");
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let mut transport = crate::sync::lock(&self.transport);
        if let Some(i) = self.fds.iter().position(|f| f.as_raw_fd() == events.fd()) {
            // Reading resets the counter: several signals are one round of
            // work. For a queue, the count is the guest's notifications.
            let n = self.fds[i].read().unwrap_or(0);
            if i < self.queue_fds {
                transport.note_notifications(n);
            }
        }
        transport.process();
    }
}
