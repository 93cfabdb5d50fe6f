//! Skips that cannot pass unseen.
//!
//! A test that lacks `/dev/kvm` or the built Linux guest returns early, and
//! libtest captures what a passing test prints, so a plain `eprintln!`
//! would vanish behind `ok`. Here each skip is:
//!
//! - written at once to the process's stderr with `Stderr::write_all`,
//!   which libtest's capture (it only redirects the `print!` family) does
//!   not intercept, so it shows on the terminal or in a CI log;
//! - counted, and the count with every reason is printed again when the
//!   test binary exits (an `atexit` handler, after libtest's own
//!   `test result:` line);
//! - a failure instead, when `TINYVMM_REQUIRE_KVM=1` is set (CI sets it):
//!   a machine that is meant to run everything must not skip anything.
//!
//! A second kind of note, `not_shown_here`, is for a check this host cannot
//! make (its KVM behaves differently): printed and counted the same way,
//! but never a failure, because the test ran and checked what it could.

use std::io::Write;
use std::sync::{Mutex, Once};

/// The switch under which a missing KVM or guest fails the test.
pub const REQUIRE_KVM: &str = "TINYVMM_REQUIRE_KVM";

/// Whether `TINYVMM_REQUIRE_KVM=1` is set.
pub fn require_kvm() -> bool {
    std::env::var_os(REQUIRE_KVM).is_some_and(|v| v == "1")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Skip,
    NotShown,
}

static NOTES: Mutex<Vec<(Kind, String, String)>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

/// The running test's name: libtest names each test's thread after it;
/// `fallback` when the thread has no useful name.
fn test_name(fallback: &str) -> String {
    match std::thread::current().name() {
        Some(n) if n != "main" => n.to_string(),
        _ => fallback.to_string(),
    }
}

/// Straight to fd 2, past libtest's output capture.
fn to_terminal(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn record(kind: Kind, test: &str, reason: &str) {
    let test = test_name(test);
    let tag = match kind {
        Kind::Skip => "SKIP",
        Kind::NotShown => "NOT SHOWN ON THIS HOST",
    };
    to_terminal(&format!("{tag} {test}: {reason}\n"));
    AT_EXIT.call_once(|| {
        // SAFETY: atexit(3) with a function that has the required C ABI and
        // signature; it runs once, at process exit.
        unsafe { libc::atexit(summary) };
    });
    let mut notes = NOTES.lock().unwrap_or_else(|e| e.into_inner());
    if !notes
        .iter()
        .any(|(k, t, r)| *k == kind && *t == test && r == reason)
    {
        notes.push((kind, test, reason.to_string()));
    }
}

/// Printed when the test binary exits: how many tests skipped and why.
extern "C" fn summary() {
    let notes = NOTES.lock().unwrap_or_else(|e| e.into_inner());
    let binary = std::env::args()
        .next()
        .and_then(|a| {
            let name = std::path::Path::new(&a).file_name()?.to_str()?.to_string();
            // cargo names test binaries `<target>-<16 hex digits>`.
            Some(match name.rsplit_once('-') {
                Some((stem, hash)) if hash.len() == 16 => stem.to_string(),
                _ => name,
            })
        })
        .unwrap_or_default();
    let mut text = String::new();
    for (kind, head) in [
        (
            Kind::Skip,
            format!("test(s) SKIPPED (passed without running; {REQUIRE_KVM}=1 makes them fail)"),
        ),
        (
            Kind::NotShown,
            "test(s) with a check this host cannot make (they ran the rest)".to_string(),
        ),
    ] {
        let of_kind: Vec<_> = notes.iter().filter(|(k, _, _)| *k == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let mut tests: Vec<&str> = of_kind.iter().map(|(_, t, _)| t.as_str()).collect();
        tests.sort_unstable();
        tests.dedup();
        text.push_str(&format!("{binary}: {} {head}:\n", tests.len()));
        // One line per reason, then the tests it applies to.
        let mut reasons: Vec<&str> = of_kind.iter().map(|(_, _, r)| r.as_str()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        for reason in reasons {
            text.push_str(&format!("  {reason}\n"));
            for (_, test, _) in of_kind.iter().filter(|(_, _, r)| r == reason) {
                text.push_str(&format!("    {test}\n"));
            }
        }
    }
    if !text.is_empty() {
        to_terminal(&format!("\n{text}\n"));
    }
}

/// Skips the running test for `reason` (printed, counted), or fails it
/// under `TINYVMM_REQUIRE_KVM=1`.
pub fn skip(test: &str, reason: &str) {
    if require_kvm() {
        panic!(
            "{}: {reason}; {REQUIRE_KVM}=1 is set, so this test may not skip",
            test_name(test)
        );
    }
    record(Kind::Skip, test, reason);
}

/// Notes, visibly, a check the running test cannot make on this host.
pub fn not_shown_here(test: &str, reason: &str) {
    record(Kind::NotShown, test, reason);
}
