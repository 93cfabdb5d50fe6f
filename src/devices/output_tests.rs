//! Unit tests of `output.rs`.

use super::*;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Broken;
impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A sink that blocks until released, like a pipe nobody reads.
struct Stalled(Arc<(Mutex<bool>, Condvar)>);
impl Write for Stalled {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let (m, c) = &*self.0;
        let mut go = m.lock().unwrap();
        while !*go {
            go = c.wait(go).unwrap();
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn bytes_reach_the_sink_in_order() {
    let sink = Sink::default();
    let out = GuestOutput::new(Box::new(sink.clone()), 16).unwrap();
    let mut h = out.handle();
    for i in 0..100u8 {
        while out.handle().free() == 0 {
            std::thread::yield_now();
        }
        h.write_all(&[i]).unwrap();
    }
    let stats = out.finish(Duration::from_secs(5));
    assert_eq!(stats.written, 100);
    assert_eq!(stats.dropped_full, 0);
    assert_eq!(*sink.0.lock().unwrap(), (0..100u8).collect::<Vec<_>>());
}

#[test]
fn a_stalled_stdout_bounds_memory_and_counts_drops() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let out = GuestOutput::new(Box::new(Stalled(gate.clone())), 1024).unwrap();
    let h = out.handle();
    for _ in 0..100 {
        h.push_or_drop(&[b'x'; 100]);
    }
    assert!(h.free() <= 1024);
    let stats = out.stats();
    // At most one chunk in flight plus the buffer were kept.
    assert!(stats.dropped_full >= 10_000 - 2 * 1024, "{stats:?}");
    assert_eq!(
        h.try_push(&[1; 10]),
        0,
        "virtio gets back-pressure, not drops"
    );
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let stats = out.finish(Duration::from_secs(5));
    assert_eq!(stats.written + stats.dropped_full + stats.discarded, 10_000);
}

#[test]
fn closed_stdout_discards_without_blocking() {
    let out = GuestOutput::new(Box::new(Broken), 64).unwrap();
    let h = out.handle();
    h.push_or_drop(b"first");
    let t = Instant::now();
    while !out.stats().stdout_closed && t.elapsed() < Duration::from_secs(5) {
        std::thread::yield_now();
    }
    for _ in 0..1000 {
        assert_eq!(h.try_push(b"more bytes"), 10);
    }
    let stats = out.finish(Duration::from_secs(1));
    assert!(stats.stdout_closed);
    assert_eq!(stats.written, 0);
    assert_eq!(stats.discarded, 5 + 10_000);
}

#[test]
fn the_panic_line_is_noticed_across_writes() {
    let out = GuestOutput::new(Box::new(Sink::default()), 4096).unwrap();
    let h = out.handle();
    h.push_or_drop(b"[ 1.0] Kernel pan");
    assert!(!h.panic_seen());
    h.push_or_drop(b"ic - not syncing: Attempted to kill init!\n");
    assert!(h.panic_seen());
    let quiet = GuestOutput::new(Box::new(Sink::default()), 4096).unwrap();
    quiet.handle().push_or_drop(b"KKernel panic - not syncin");
    assert!(!quiet.handle().panic_seen());
    quiet.handle().push_or_drop(b"g");
    assert!(
        quiet.handle().panic_seen(),
        "restart after a repeated first byte"
    );
}
