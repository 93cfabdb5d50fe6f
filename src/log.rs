//! What the VMM says on stderr, without ever blocking on it: lines go
//! through a bounded queue to one writer thread, so a stderr that nobody
//! reads (a full pipe) stalls only that thread, never a vCPU or the event
//! loop, and SIGTERM still ends the VMM on time. A line that does not fit
//! in the queue is dropped and counted; `finish` waits a bounded time for
//! the rest and says how many were lost. Lines a guest can cause again and
//! again go through a `Limit`: the first few print, the rest are counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lines waiting for stderr at most.
const QUEUE: usize = 256;

/// The writer thread's end of the queue.
struct Writer {
    lines: SyncSender<String>,
    done: Mutex<Receiver<()>>,
}

static WRITER: OnceLock<Writer> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines queued and not yet written.
static PENDING: AtomicU64 = AtomicU64::new(0);

/// Starts the writer thread (once per process, while threads may still be
/// created). Before this, or if it cannot start, lines go straight to stderr.
pub fn start() {
    WRITER.get_or_init(|| {
        let (lines, rx) = mpsc::sync_channel::<String>(QUEUE);
        let (done_tx, done) = mpsc::channel();
        let spawned = crate::privileges::spawn_unprivileged("log", move || {
            use std::io::Write;
            for line in rx {
                let _ = std::io::stderr().write_all(line.as_bytes());
                PENDING.fetch_sub(1, Ordering::SeqCst);
                let _ = done_tx.send(());
            }
        });
        if spawned.is_err() {
            let (tx, _) = mpsc::sync_channel(0);
            return Writer {
                lines: tx,
                done: Mutex::new(mpsc::channel().1),
            };
        }
        Writer {
            lines,
            done: Mutex::new(done),
        }
    });
}

/// Queues `text` (a newline is added) for stderr; never blocks.
pub fn line(text: String) {
    let Some(writer) = WRITER.get() else {
        eprintln!("{text}");
        return;
    };
    PENDING.fetch_add(1, Ordering::SeqCst);
    match writer.lines.try_send(text + "\n") {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            PENDING.fetch_sub(1, Ordering::SeqCst);
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Waits up to `deadline` for queued lines to reach stderr, then reports
/// (best effort) how many lines were dropped. Returns that count.
pub fn finish(deadline: Duration) -> u64 {
    let until = Instant::now() + deadline;
    if let Some(writer) = WRITER.get() {
        let done = crate::sync::lock(&writer.done);
        while PENDING.load(Ordering::SeqCst) > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || done.recv_timeout(left).is_err() {
                break;
            }
        }
    }
    let lost = DROPPED.load(Ordering::Relaxed) + PENDING.load(Ordering::SeqCst);
    if lost > 0 {
        line(format!(
            "tinyvmm: {lost} message line(s) not written: stderr was not being read"
        ));
    }
    lost
}

/// A per-site budget for lines a guest can trigger repeatedly.
pub struct Limit {
    budget: u64,
    seen: AtomicU64,
}

impl Limit {
    /// Prints the first `budget` lines.
    pub const fn new(budget: u64) -> Limit {
        Limit {
            budget,
            seen: AtomicU64::new(0),
        }
    }

    /// Queues `text` if within budget; the line that exhausts it says so.
    pub fn line(&self, text: impl FnOnce() -> String) {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if n < self.budget {
            let mut text = text();
            if n + 1 == self.budget {
                text.push_str(" (further lines like this are counted, not printed)");
            }
            line(text);
        }
    }

    /// Lines this site was asked to print, printed or not.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Lines this site did not print.
    pub fn suppressed(&self) -> u64 {
        self.seen().saturating_sub(self.budget)
    }
}

/// `format!` into the log: `say!("tinyvmm: {x}")`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::log::line(format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_prints_its_budget_and_counts_the_rest() {
        let limit = Limit::new(2);
        let mut made = 0;
        for _ in 0..10 {
            limit.line(|| {
                made += 1;
                "x".into()
            });
        }
        assert_eq!(made, 2, "text is built only for printed lines");
        assert_eq!((limit.seen(), limit.suppressed()), (10, 8));
    }
}
