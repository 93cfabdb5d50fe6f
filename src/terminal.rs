//! Raw terminal mode while a guest owns the console, always restored: on
//! drop, from a panic (the hook), and from the SIGSYS handler of a
//! forbidden system call (`restore_saved`, async-signal-safe).
//!
//! vmm-sys-util's `Terminal::set_raw_mode` switches stdin to raw; it has no
//! way to put back the exact previous settings, so we save them with
//! tcgetattr and restore them ourselves.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use vmm_sys_util::terminal::Terminal;

/// The settings stdin had before the first raw switch of this process.
static SAVED: OnceLock<libc::termios> = OnceLock::new();
/// Whether stdin is raw right now (restoring a terminal we never changed
/// would be harmless, but says nothing true).
static RAW: AtomicBool = AtomicBool::new(false);

/// Restores the saved terminal settings when dropped.
pub struct RawTerminal(());

impl RawTerminal {
    /// Switches stdin to raw mode if it is a terminal; `None` if it is not.
    pub fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        // SAFETY: termios is plain data; zeroed is a valid value to overwrite.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 is open; `saved` is a valid termios to fill in.
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return None;
        }
        let _ = SAVED.set(saved);
        install_panic_hook();
        stdin.lock().set_raw_mode().ok()?;
        RAW.store(true, Ordering::SeqCst);
        Some(RawTerminal(()))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore_saved();
    }
}

/// Puts stdin's saved settings back if this process made it raw. Only an
/// atomic swap and one ioctl: safe in a signal handler.
pub fn restore_saved() {
    if !RAW.swap(false, Ordering::SeqCst) {
        return;
    }
    if let Some(saved) = SAVED.get() {
        // SAFETY: tcsetattr (an ioctl) reads the termios `saved` points to,
        // which lives for the whole process (a static).
        unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
    }
}

/// A panic restores the terminal before the default report (release
/// builds abort after the hook, so no destructor would run).
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_saved();
            default(info);
        }));
    });
}
