//! Network namespaces for the net tests: all their traffic stays on links
//! that exist only inside a namespace the test made, with no route to
//! anywhere else. `unshare(CLONE_NEWNET)` moves only the calling thread,
//! so each test runs its body on a thread of its own, and the processes
//! it starts (tinyvmm, `ip`) inherit that namespace.
#![allow(dead_code)]

use std::process::Command;

/// Runs `body` on a new thread in a new, empty network namespace. `Err`
/// when the namespace cannot be made (not root); a panic in `body` fails
/// the test as usual.
pub fn in_new_netns<T: Send + 'static>(
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare takes an integer flag; CLONE_NEWNET moves only
        // this thread into the new namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNET): {} (the net tests need root)",
                std::io::Error::last_os_error()
            ));
        }
        Ok(body())
    });
    match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs `ip ARGS` (in the calling thread's namespace); whether it succeeded.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Whether interface `name` exists in the calling thread's namespace.
pub fn link_exists(name: &str) -> bool {
    ip(&["link", "show", "dev", name])
}
