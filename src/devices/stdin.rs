//! Host stdin to the guest's console device, only as fast as the guest
//! takes it: we read no more than the device has room for, stop watching
//! stdin while it is full, and resume when the device says it drained.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::{Arc, Mutex};

use super::escape::{Escape, EscapeAction, HELP};
use crate::exit::{ExitSignal, VmEnd};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

/// A console device that takes input.
pub trait ConsoleInput: Send {
    /// Bytes it can take now.
    fn room(&self) -> usize;
    /// Takes up to `room()` bytes; returns how many.
    fn push(&mut self, data: &[u8]) -> usize;
}

impl ConsoleInput for super::serial::SerialDevice {
    fn room(&self) -> usize {
        self.input_room()
    }
    fn push(&mut self, data: &[u8]) -> usize {
        self.enqueue_input(data)
    }
}

/// Where input comes from: stdin itself, or a pipe fed by a thread when
/// stdin cannot be polled (a regular file: epoll refuses those).
pub struct StdinSource {
    file: File,
}

impl StdinSource {
    /// Uses fd 0 if epoll takes it, else pumps it through a pipe.
    pub fn open() -> io::Result<Self> {
        // SAFETY: dup(2) of fd 0 returns a new fd we own, or -1.
        let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by fcntl and is owned by nobody else.
        let stdin = unsafe { File::from_raw_fd(fd) };
        if pollable(stdin.as_raw_fd()) {
            return Ok(StdinSource { file: stdin });
        }
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are new and ours.
        let (rd, wr) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        crate::privileges::spawn_unprivileged("stdin-pump", move || pump(stdin, wr))?;
        Ok(StdinSource { file: rd })
    }
}

fn pollable(fd: RawFd) -> bool {
    let Ok(ep) = vmm_sys_util::epoll::Epoll::new() else {
        return false;
    };
    ep.ctl(
        vmm_sys_util::epoll::ControlOperation::Add,
        fd,
        vmm_sys_util::epoll::EpollEvent::new(EventSet::IN, 0),
    )
    .is_ok()
}

fn pump(mut from: File, mut to: File) {
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if to.write_all(&buf[..n]).is_ok() => {}
            Ok(_) => break,
            // A signal (e.g. a kick or SIGWINCH) is not the end of input.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// The event-manager subscriber that moves stdin into a console device.
pub struct StdinForwarder {
    source: StdinSource,
    target: Arc<Mutex<dyn ConsoleInput>>,
    drained: EventFd,
    paused: bool,
    eof: bool,
    escape: Option<(Escape, Arc<ExitSignal>)>,
    /// Bytes given to the device so far, and who is told at end of input.
    pushed: u64,
    on_eof: Option<EofHook>,
}

/// Called once when stdin ends, with the number of bytes forwarded.
pub type EofHook = Box<dyn FnMut(u64) + Send>;

impl StdinForwarder {
    /// Forwards `source` to `target`; `drained` fires when `target` has room again.
    pub fn new(
        source: StdinSource,
        target: Arc<Mutex<dyn ConsoleInput>>,
        drained: EventFd,
    ) -> Self {
        StdinForwarder {
            source,
            target,
            drained,
            paused: false,
            eof: false,
            escape: None,
            pushed: 0,
            on_eof: None,
        }
    }

    /// Tells `hook` how many bytes went to the guest when stdin ends
    /// (`run --bundle` passes it on, so the workload sees end of input).
    pub fn with_eof_hook(mut self, hook: EofHook) -> Self {
        self.on_eof = Some(hook);
        self
    }

    /// Takes Ctrl-A commands out of the input (`super::escape`): for a
    /// terminal on stdin only, never for piped input.
    pub fn with_escape(mut self, exit: Arc<ExitSignal>) -> Self {
        self.escape = Some((Escape::default(), exit));
        self
    }

    fn stdin_events(&self) -> Events {
        Events::new(&self.source.file, EventSet::IN)
    }

    fn forward(&mut self, ops: &mut EventOps) {
        let mut target = crate::sync::lock(&self.target);
        let room = target.room().min(4096);
        if room == 0 {
            // Full: stop watching stdin until the guest drains the device.
            let _ = ops.remove(self.stdin_events());
            self.paused = true;
            return;
        }
        let mut buf = [0u8; 4096];
        match self.source.file.read(&mut buf[..room]) {
            // A signal interrupted the read: stdin is still there, and
            // epoll reports it again while data is waiting.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Would block: nothing to read after all (a spurious wake-up).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(0) | Err(_) => {
                let _ = ops.remove(self.stdin_events());
                self.eof = true;
                if let Some(mut hook) = self.on_eof.take() {
                    drop(target);
                    hook(self.pushed);
                }
            }
            Ok(n) => match &mut self.escape {
                None => {
                    self.pushed += target.push(&buf[..n]) as u64;
                }
                Some((escape, exit)) => {
                    let mut keep = Vec::with_capacity(n);
                    for action in escape.filter(&buf[..n], &mut keep) {
                        match action {
                            EscapeAction::Quit => exit.request(VmEnd::ConsoleEscape),
                            EscapeAction::Help => crate::say!("{HELP}"),
                        }
                    }
                    self.pushed += target.push(&keep) as u64;
                }
            },
        }
    }
}

impl MutEventSubscriber for StdinForwarder {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(self.stdin_events());
        let _ = ops.add(Events::new(&self.drained, EventSet::IN));
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.drained.as_raw_fd() {
            let _ = self.drained.read();
            if self.paused && !self.eof {
                self.paused = false;
                let _ = ops.add(self.stdin_events());
            }
        } else if events
            .event_set()
            .intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR)
        {
            self.forward(ops);
        }
    }
}
