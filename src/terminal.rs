//! Raw terminal mode while a guest owns the console, always restored.
//!
//! vmm-sys-util's `Terminal::set_raw_mode` switches stdin to raw; it has no
//! way to put back the exact previous settings, so we save them with
//! tcgetattr and restore them on drop.

use std::io::IsTerminal;

use vmm_sys_util::terminal::Terminal;

/// Restores the saved terminal settings when dropped.
pub struct RawTerminal {
    saved: libc::termios,
}

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
        stdin.lock().set_raw_mode().ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores settings read from the same fd by tcgetattr.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}
