//! Guest console output to the host's stdout, without letting a slow or
//! closed stdout stall a vCPU or grow memory without bound.
//!
//! Devices push bytes into a bounded buffer; a thread named `console-out`
//! writes them to stdout. The 8250 has no flow control, so when the buffer is
//! full its bytes are dropped and counted (reported at exit). The virtio
//! console uses `try_push`, which takes only what fits, and holds the rest of
//! its descriptors until `space_event` fires. If stdout is closed (EPIPE),
//! output is discarded from then on and the VM runs to its end.
//!
//! The same path watches for the kernel's panic line, so a panic that ends in
//! the usual i8042 reset can still be told apart from a clean reboot.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

/// Default buffer between devices and stdout.
pub const DEFAULT_CAPACITY: usize = 256 << 10;
/// The line Linux prints in `panic()`.
pub const PANIC_LINE: &[u8] = b"Kernel panic - not syncing";
/// Largest chunk written to stdout at once.
const CHUNK: usize = 64 << 10;

/// What happened to the guest's output, reported at exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputStats {
    /// Bytes written to stdout.
    pub written: u64,
    /// Bytes dropped because the buffer was full (8250 only).
    pub dropped_full: u64,
    /// Bytes discarded because stdout was closed, or left when we stopped waiting.
    pub discarded: u64,
    /// Whether stdout was found closed.
    pub stdout_closed: bool,
    /// Whether the kernel's panic line went by.
    pub panic_seen: bool,
}

struct State {
    buf: VecDeque<u8>,
    capacity: usize,
    stats: OutputStats,
    panic_match: usize,
    stop: bool,
    busy: bool,
    /// Bytes taken by the writer and not yet accepted by stdout.
    in_flight: usize,
}

impl State {
    fn scan_for_panic(&mut self, mut data: &[u8]) {
        if self.stats.panic_seen {
            return;
        }
        while !data.is_empty() {
            if self.panic_match == 0 {
                // Skip to the next possible start at memchr-like speed: a
                // flood of guest output must not cost a branch per byte.
                match data.iter().position(|&b| b == PANIC_LINE[0]) {
                    Some(i) => data = &data[i..],
                    None => return,
                }
            }
            let b = data[0];
            data = &data[1..];
            // The pattern's first byte occurs nowhere else in it, so a
            // mismatch can restart at 0 (or 1 if this byte starts it anew).
            if b == PANIC_LINE[self.panic_match] {
                self.panic_match += 1;
                if self.panic_match == PANIC_LINE.len() {
                    self.stats.panic_seen = true;
                    self.panic_match = 0;
                }
            } else {
                self.panic_match = usize::from(b == PANIC_LINE[0]);
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    drained: Condvar,
    space: EventFd,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

/// The shared output path; clone a `handle()` for each device.
pub struct GuestOutput {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A device's end of the output path.
#[derive(Clone)]
pub struct OutputHandle {
    shared: Arc<Shared>,
}

impl GuestOutput {
    /// Output to the process's stdout.
    pub fn stdout() -> io::Result<Self> {
        Self::new(Box::new(RawFdWriter(1)), DEFAULT_CAPACITY)
    }

    /// Output to the process's stderr (`run --bundle`: the workload's stderr).
    pub fn stderr() -> io::Result<Self> {
        Self::new(Box::new(RawFdWriter(2)), DEFAULT_CAPACITY)
    }

    /// Output to any writer, through a buffer of `capacity` bytes.
    pub fn new(sink: Box<dyn Write + Send>, capacity: usize) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: VecDeque::with_capacity(capacity.min(CHUNK)),
                capacity,
                stats: OutputStats::default(),
                panic_match: 0,
                stop: false,
                busy: false,
                in_flight: 0,
            }),
            wake: Condvar::new(),
            drained: Condvar::new(),
            space: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
        });
        let worker = shared.clone();
        let thread = crate::privileges::spawn_unprivileged("console-out", move || {
            write_loop(&worker, sink)
        })?;
        Ok(GuestOutput {
            shared,
            thread: Some(thread),
        })
    }

    /// A handle for a device.
    pub fn handle(&self) -> OutputHandle {
        OutputHandle {
            shared: self.shared.clone(),
        }
    }

    /// Figures so far.
    pub fn stats(&self) -> OutputStats {
        self.shared.lock().stats
    }

    /// Waits up to `timeout` for everything to reach stdout, then stops the
    /// writer. Bytes still buffered after that are counted as discarded.
    pub fn finish(mut self, timeout: Duration) -> OutputStats {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while (!st.buf.is_empty() || st.busy) && !st.stats.stdout_closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .drained
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        // What stdout has not accepted by now is discarded: the buffer and
        // the rest of a chunk a stalled write(2) still holds.
        let left_over = (st.buf.len() + st.in_flight) as u64;
        st.stats.discarded += left_over;
        st.in_flight = 0;
        st.buf.clear();
        st.stop = true;
        let stats = st.stats;
        let finished = !st.busy;
        drop(st);
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            // A writer stuck in write(2) on a stalled pipe is left behind
            // (the process is about to exit); an idle one is joined.
            if finished {
                let _ = t.join();
            }
        }
        stats
    }
}

impl OutputHandle {
    /// Queues what fits and returns how many bytes were taken (virtio: the
    /// caller keeps the rest and retries on `space_event`).
    pub fn try_push(&self, data: &[u8]) -> usize {
        let mut st = self.shared.lock();
        if st.stats.stdout_closed {
            st.stats.discarded += data.len() as u64;
            st.scan_for_panic(data);
            return data.len();
        }
        let n = data.len().min(st.capacity - st.buf.len());
        st.scan_for_panic(&data[..n]);
        st.buf.extend(&data[..n]);
        drop(st);
        if n > 0 {
            self.shared.wake.notify_one();
        }
        n
    }

    /// Queues what fits and drops (and counts) the rest (8250).
    pub fn push_or_drop(&self, data: &[u8]) {
        let n = self.try_push(data);
        if n < data.len() {
            let mut st = self.shared.lock();
            st.scan_for_panic(&data[n..]);
            st.stats.dropped_full += (data.len() - n) as u64;
        }
    }

    /// Fires whenever the buffer has been emptied (a chunk reached stdout).
    pub fn space_event(&self) -> &EventFd {
        &self.shared.space
    }

    /// Free room in the buffer now.
    pub fn free(&self) -> usize {
        let st = self.shared.lock();
        st.capacity - st.buf.len()
    }

    /// Whether the kernel's panic line went by.
    pub fn panic_seen(&self) -> bool {
        self.shared.lock().stats.panic_seen
    }
}

impl Write for OutputHandle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push_or_drop(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_loop(shared: &Shared, mut sink: Box<dyn Write + Send>) {
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        {
            let mut st = shared.lock();
            st.busy = false;
            if st.buf.is_empty() {
                shared.drained.notify_all();
            }
            while st.buf.is_empty() && !st.stop {
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.stop && st.buf.is_empty() {
                return;
            }
            let n = st.buf.len().min(CHUNK);
            chunk.clear();
            // Copy whole slices, not byte by byte through an iterator.
            let (front, back) = st.buf.as_slices();
            let from_front = front.len().min(n);
            chunk.extend_from_slice(&front[..from_front]);
            chunk.extend_from_slice(&back[..n - from_front]);
            st.buf.drain(..n);
            st.busy = true;
            st.in_flight = n;
        }
        // Count each write(2) as it completes, so the figures add up to
        // every byte at any moment, even if a write blocks forever.
        let mut off = 0;
        while off < chunk.len() {
            let result = sink.write(&chunk[off..]).and_then(|n| match n {
                0 => Err(io::ErrorKind::WriteZero.into()),
                n => Ok(n),
            });
            let mut st = shared.lock();
            match result {
                Ok(n) => {
                    off += n;
                    st.stats.written += n as u64;
                    st.in_flight = st.in_flight.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // EPIPE or any other write error: stdout is gone for good.
                    st.stats.stdout_closed = true;
                    st.stats.discarded += (st.in_flight + st.buf.len()) as u64;
                    st.in_flight = 0;
                    st.buf.clear();
                    break;
                }
            }
        }
        let _ = sink.flush();
        let _ = shared.space.write(1);
    }
}

/// fd 1 without a user-space buffer: `io::stdout()` is a LineWriter,
/// whose buffered bytes would count as written although a closed or
/// stalled stdout never takes them. Every byte counted has been taken by
/// write(2).
struct RawFdWriter(libc::c_int);

impl Write for RawFdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: write(2) reads `buf.len()` bytes from a live slice; the
        // fd is 1 or 2, which the process keeps open.
        let n = unsafe { libc::write(self.0, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
