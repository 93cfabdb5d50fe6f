//! The boot marker: the guest says "I reached user space" and we note when.
//!
//! Two ways in, compatible with the VMMs people compare us with:
//! - a write of byte 123 to guest physical 0xC000_0000 (Firecracker's
//!   boot-timer device; Linux user space reaches it with `devmem`);
//! - the values 0x40 (kernel start) and 0x41 (user space) written to I/O
//!   port 0x80 (Cloud Hypervisor's debug-port codes). Linux also writes port
//!   0x80 for I/O delays, so other values are ignored, and guests should boot
//!   with `io_delay=none`.
//!
//! A guest can write a marker as often as it likes, so only the first time
//! of each kind is kept, plus a count: memory does not grow with the
//! guest's writes. Nothing is printed from the vCPU thread that saw the
//! write; the event loop prints new markers (`take_unprinted`).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::bus::BusDevice;

/// The byte Firecracker's boot timer waits for.
pub const BOOT_TIMER_MAGIC: u8 = 123;
/// Cloud Hypervisor's debug-port code for "kernel started".
pub const DEBUG_PORT_KERNEL_START: u8 = 0x40;
/// Cloud Hypervisor's debug-port code for "user space reached".
pub const DEBUG_PORT_USER_SPACE: u8 = 0x41;

/// What a marker means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// Port 0x80 = 0x40.
    KernelStart,
    /// Port 0x80 = 0x41.
    UserSpace,
    /// 123 written to the boot-timer address.
    BootTimer,
}

impl Marker {
    /// Short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Marker::KernelStart => "kernel start (port 0x80 = 0x40)",
            Marker::UserSpace => "user space (port 0x80 = 0x41)",
            Marker::BootTimer => "boot timer (123 at 0xc0000000)",
        }
    }
}

/// One marker hit, timed from process start and from the start of VM build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkerTime {
    /// Which marker.
    pub marker: Marker,
    /// Time since `main` started.
    pub since_process_start: Duration,
    /// Time since `Vmm::build` began.
    pub since_build_start: Duration,
}

impl MarkerTime {
    /// The line `--boot-timer` prints.
    pub fn report(&self) -> String {
        format!(
            "tinyvmm: boot marker: {} at {:.3} ms after process start, {:.3} ms after VM build start",
            self.marker.label(),
            self.since_process_start.as_secs_f64() * 1e3,
            self.since_build_start.as_secs_f64() * 1e3
        )
    }
}

/// What the timer keeps: each kind's first time, in order, and counts.
#[derive(Debug, Default)]
struct Marks {
    first: Vec<MarkerTime>,
    printed: usize,
    writes: u64,
}

/// Collects marker times; the device on both buses and the VMM share it.
pub struct BootTimer {
    process_start: Instant,
    build_start: Instant,
    print: bool,
    marks: Mutex<Marks>,
    /// Called once, on the first user-space marker (`--snapshot-on-marker`).
    on_user_space: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for BootTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootTimer")
            .field("marks", &self.marks)
            .finish_non_exhaustive()
    }
}

impl BootTimer {
    /// A timer whose new markers `take_unprinted` hands out when `print`
    /// is set (`--boot-timer`).
    pub fn new(process_start: Instant, build_start: Instant, print: bool) -> Arc<Self> {
        Arc::new(BootTimer {
            process_start,
            build_start,
            print,
            marks: Mutex::new(Marks::default()),
            on_user_space: OnceLock::new(),
        })
    }

    /// Records a marker now: its time if it is the first of its kind, and
    /// a count in any case.
    pub fn mark(&self, marker: Marker) {
        let now = Instant::now();
        let mut marks = crate::sync::lock(&self.marks);
        marks.writes = marks.writes.saturating_add(1);
        if marks.first.iter().any(|m| m.marker == marker) {
            return;
        }
        let user_space = |m: Marker| matches!(m, Marker::UserSpace | Marker::BootTimer);
        let first_user_space =
            user_space(marker) && !marks.first.iter().any(|m| user_space(m.marker));
        marks.first.push(MarkerTime {
            marker,
            since_process_start: now.saturating_duration_since(self.process_start),
            since_build_start: now.saturating_duration_since(self.build_start),
        });
        drop(marks);
        if first_user_space {
            if let Some(hook) = self.on_user_space.get() {
                hook();
            }
        }
    }

    /// Sets what the first user-space marker (123 at the boot-timer
    /// address, or 0x41 on port 0x80) calls, on the vCPU thread that wrote
    /// it. At most once; a second hook is ignored.
    pub fn on_first_user_space(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_user_space.set(hook);
    }

    /// The first marker of each kind, in the order they came.
    pub fn marks(&self) -> Vec<MarkerTime> {
        crate::sync::lock(&self.marks).first.clone()
    }

    /// Wall time since `main` started.
    pub fn since_process_start(&self) -> Duration {
        self.process_start.elapsed()
    }

    /// Marker writes in all, first ones included.
    pub fn writes(&self) -> u64 {
        crate::sync::lock(&self.marks).writes
    }

    /// Adds `n` earlier writes to the count (a restored VM's).
    pub fn add_writes(&self, n: u64) {
        let mut marks = crate::sync::lock(&self.marks);
        marks.writes = marks.writes.saturating_add(n);
    }

    /// With `--boot-timer`, the markers not handed out yet (at most one of
    /// each kind over a run); nothing otherwise.
    pub fn take_unprinted(&self) -> Vec<MarkerTime> {
        if !self.print {
            return Vec::new();
        }
        let mut marks = crate::sync::lock(&self.marks);
        let new = marks.first[marks.printed..].to_vec();
        marks.printed = marks.first.len();
        new
    }
}

/// The MMIO boot-timer page at 0xC000_0000.
pub struct BootTimerMmio(pub Arc<BootTimer>);

impl BusDevice for BootTimerMmio {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.first() == Some(&BOOT_TIMER_MAGIC) {
            self.0.mark(Marker::BootTimer);
        }
    }
}

/// The debug port 0x80.
pub struct DebugPort(pub Arc<BootTimer>);

impl BusDevice for DebugPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        match data.first() {
            Some(&DEBUG_PORT_KERNEL_START) => self.0.mark(Marker::KernelStart),
            Some(&DEBUG_PORT_USER_SPACE) => self.0.mark(Marker::UserSpace),
            _ => {} // an I/O-delay write, not a marker
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_values_are_markers() {
        let t0 = Instant::now();
        let timer = BootTimer::new(t0, t0, false);
        let mut mmio = BootTimerMmio(timer.clone());
        let mut port = DebugPort(timer.clone());
        mmio.write(0, &[1]);
        mmio.write(8, &[BOOT_TIMER_MAGIC]);
        port.write(0, &[0x00]);
        port.write(0, &[0x42]);
        assert!(timer.marks().is_empty());
        port.write(0, &[DEBUG_PORT_KERNEL_START]);
        port.write(0, &[DEBUG_PORT_USER_SPACE]);
        mmio.write(0, &[BOOT_TIMER_MAGIC, 0, 0, 0]);
        let kinds: Vec<_> = timer.marks().iter().map(|m| m.marker).collect();
        assert_eq!(
            kinds,
            [Marker::KernelStart, Marker::UserSpace, Marker::BootTimer]
        );
        let m = timer.marks()[2];
        assert!(m.since_process_start >= m.since_build_start);
        assert!(m.report().contains("boot timer"));
    }

    #[test]
    fn a_guest_that_writes_markers_forever_grows_nothing() {
        let t0 = Instant::now();
        let timer = BootTimer::new(t0, t0, true);
        let mut port = DebugPort(timer.clone());
        for _ in 0..1_000_000 {
            port.write(0, &[DEBUG_PORT_USER_SPACE]);
        }
        assert_eq!(timer.marks().len(), 1);
        assert_eq!(timer.writes(), 1_000_000);
        assert_eq!(timer.take_unprinted().len(), 1);
        assert!(
            timer.take_unprinted().is_empty(),
            "each marker is handed out once"
        );
    }
}
