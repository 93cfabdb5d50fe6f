//! "The terminal is in raw mode while the guest runs, and always restored":
//! tinyvmm runs with a pseudo-terminal as its stdin and stdout; each test
//! checks the terminal went raw during the run and has exactly its old
//! settings afterwards, for each way a run ends.

mod common;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TempFile, asm, elf_with_code, kvm_available};

/// A pseudo-terminal: we keep both ends; the child gets copies of the slave.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    fn open() -> Pty {
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty writes two fds; the name, termios and winsize
        // arguments may be null.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both fds were just opened and are owned by nobody else.
        unsafe {
            Pty {
                master: OwnedFd::from_raw_fd(m),
                slave: OwnedFd::from_raw_fd(s),
            }
        }
    }

    fn termios(&self) -> libc::termios {
        // SAFETY: termios is plain data; tcgetattr fills it in.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `slave` is an open terminal fd; `t` is a valid termios.
        let r = unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) };
        assert_eq!(r, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        t
    }
}

/// The settings that matter, comparable.
fn settings(t: &libc::termios) -> (u32, u32, u32, u32, Vec<u8>) {
    (t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_cc.to_vec())
}

/// What the test does once the terminal is raw.
enum Then {
    /// Types a byte: the guest is waiting for one to go on.
    Type,
    /// Sends this signal to tinyvmm.
    Signal(i32),
    /// Nothing: the run ends by itself, maybe before raw mode can be seen.
    Wait,
    /// Types these bytes.
    Keys(&'static [u8]),
}

/// Runs `code` under a pty, does `then` once tinyvmm has made the terminal
/// raw, and checks the settings are back when it has exited; returns the
/// exit code and stderr.
fn run_on_pty(code: &[u8], extra: &[&str], then: Then) -> (Option<i32>, String) {
    let pty = Pty::open();
    let before = pty.termios();
    assert_ne!(before.c_lflag & libc::ICANON, 0, "a new pty starts cooked");
    let kernel = TempFile::with("pty", &elf_with_code(code));
    let slave = || Stdio::from(pty.slave.try_clone().unwrap());
    let mut child = Command::new(common::tinyvmm())
        .args(["run", "--kernel", kernel.path(), "--console", "serial"])
        .args(extra)
        .stdin(slave())
        .stdout(slave())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Keep the guest's output moving: read the master side until it closes.
    let mut master = std::fs::File::from(pty.master.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(master.read(&mut buf), Ok(n) if n > 0) {}
    });
    let start = Instant::now();
    while !matches!(then, Then::Wait) && pty.termios().c_lflag & libc::ICANON != 0 {
        if start.elapsed() > Duration::from_secs(20) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the terminal never went raw: {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !matches!(then, Then::Wait) {
        let raw = pty.termios();
        assert_eq!(
            raw.c_lflag & (libc::ECHO | libc::ISIG),
            0,
            "raw: no echo, no signals"
        );
    }
    match then {
        Then::Wait => {}
        Then::Type => {
            // SAFETY: writes one byte from a valid buffer to our master fd.
            let n = unsafe { libc::write(pty.master.as_raw_fd(), b"g".as_ptr().cast(), 1) };
            assert_eq!(n, 1);
        }
        Then::Keys(keys) => {
            // SAFETY: writes `keys` from a valid buffer to our master fd.
            let n =
                unsafe { libc::write(pty.master.as_raw_fd(), keys.as_ptr().cast(), keys.len()) };
            assert_eq!(n, keys.len() as isize);
        }
        // SAFETY: kill(2) on our own child's pid.
        Then::Signal(sig) => unsafe {
            libc::kill(child.id() as i32, sig);
        },
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("tinyvmm did not end: {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let err = err.join().unwrap();
    assert_eq!(
        settings(&pty.termios()),
        settings(&before),
        "terminal settings after tinyvmm ended ({status}) differ from before: {err}"
    );
    (status.code(), err)
}

/// i8042 command 0xfe: reset.
const RESET: &[u8] = &[0xb0, 0xfe, 0xe6, 0x64];

/// The guest waits for a typed byte, then does `then`.
fn after_input(then: &[u8]) -> Vec<u8> {
    [asm::WAIT_FOR_COM1_BYTE, then].concat()
}

#[test]
fn restored_after_a_normal_exit() {
    if !kvm_available("restored_after_a_normal_exit") {
        return;
    }
    let (code, err) = run_on_pty(&after_input(&asm::exit_with(0)), &[], Then::Type);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn restored_after_sigterm() {
    if !kvm_available("restored_after_sigterm") {
        return;
    }
    let spin = [0xeb, 0xfe]; // jmp $
    let (code, err) = run_on_pty(&spin, &[], Then::Signal(libc::SIGTERM));
    assert_eq!(code, Some(143), "{err}");
}

#[test]
fn restored_after_a_guest_panic() {
    if !kvm_available("restored_after_a_guest_panic") {
        return;
    }
    // What Linux prints, then the reset its panic=1 would do.
    let at = common::CODE_ADDR + asm::WAIT_FOR_COM1_BYTE.len() as u64;
    let mut then = asm::print_com1(b"Kernel panic - not syncing: test\n", at);
    then.extend_from_slice(RESET);
    then.extend_from_slice(asm::HALT_FOREVER);
    let (code, err) = run_on_pty(&after_input(&then), &[], Then::Type);
    assert_eq!(code, Some(120), "{err}");
    assert!(err.contains("guest kernel panic"), "{err}");
}

#[test]
fn restored_after_a_failed_run() {
    if !kvm_available("restored_after_a_failed_run") {
        return;
    }
    // A triple fault (ud2 with no IDT), and code where there is no RAM.
    let (code, err) = run_on_pty(&after_input(&[0x0f, 0x0b]), &[], Then::Type);
    assert_eq!(code, Some(121), "{err}");
    let nowhere = [0xb8, 0x00, 0x00, 0x00, 0x10, 0xff, 0xe0]; // mov eax, 0x10000000; jmp rax
    let (code, err) = run_on_pty(&after_input(&nowhere), &[], Then::Type);
    assert_eq!(code, Some(122), "{err}");
}

/// A forbidden system call ends the VMM from its SIGSYS handler, which
/// restores the terminal, reports the call and exits 159. Fails today for
/// a vCPU thread: glibc's tcsetattr issues TCSETS then TCGETS, the vCPU
/// filter allows only TCSETS (src/seccomp/filters.rs, `vcpu_filter`), so the
/// handler's TCGETS traps again and the kernel kills the process with
/// SIGSYS: no 159, no message, the terminal left raw. Allowing TCGETS there
/// too makes this pass (tried).
#[test]

fn restored_after_a_seccomp_violation() {
    if !kvm_available("restored_after_a_seccomp_violation") {
        return;
    }
    let spin = [0xeb, 0xfe];
    for thread in ["main", "vcpu"] {
        let violation = format!("getppid@{thread}");
        let args = ["--seccomp-test-violation", violation.as_str()];
        let (code, err) = run_on_pty(&spin, &args, Then::Wait);
        assert_eq!(code, Some(159), "{violation}: {err}");
    }
}

#[test]
fn ctrl_a_x_ends_the_vm_and_ctrl_a_h_prints_the_escape_help() {
    if !kvm_available("ctrl_a_x_ends_the_vm_and_ctrl_a_h_prints_the_escape_help") {
        return;
    }
    // A guest that spins forever: only the escape can end it.
    let (code, err) = run_on_pty(&[0xeb, 0xfe], &[], Then::Keys(b"\x01h\x01x"));
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("Ctrl-A x ends the VM"), "help printed: {err}");
    assert!(err.contains("ended from the console (Ctrl-A x)"), "{err}");
}
