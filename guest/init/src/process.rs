//! The workload process and its plumbing. Without `process.terminal` its
//! stdin, stdout and stderr are pipes, as under crun: init relays stdout to
//! hvc0 and stderr to hvc1 (both raw: no carriage returns added), and hvc0's
//! input to the stdin pipe. hvc1's input is the VMM's control channel, one
//! ASCII line per message: `signal N` (deliver signal N to the workload)
//! and `eof N` (host stdin ended after N bytes: close the stdin pipe once
//! N bytes went through). A signal is delivered only where the kernel
//! would deliver it to a namespace's PID 1, as the workload is under crun
//! (`delivered_to_pid1`). With `process.terminal` hvc0 is the workload's
//! controlling terminal, for all three.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::settings::Settings;
use crate::sys::check;

/// The workload's pid, for the control thread (0 before it starts).
static CHILD: AtomicI32 = AtomicI32::new(0);

/// The two console ports, opened before the root switch.
pub struct Consoles {
    pub out: File,
    pub err: File,
}

fn open_tty(path: &str, raw: bool) -> Result<File, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open(path)
        .map_err(|e| format!("opening {path}: {e}"))?;
    if raw {
        // SAFETY: termios is plain data; tcgetattr fills it, cfmakeraw and
        // tcsetattr read it; the fd is open for the whole block.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            check(libc::tcgetattr(file.as_raw_fd(), &mut t), "tcgetattr")?;
            libc::cfmakeraw(&mut t);
            check(
                libc::tcsetattr(file.as_raw_fd(), libc::TCSANOW, &t),
                "tcsetattr",
            )?;
        }
    }
    Ok(file)
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}
impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NOCTTY)
    }
}

/// Opens hvc0 (stdout, stdin; raw unless it is the workload's terminal)
/// and hvc1 (stderr out, control in; raw).
pub fn open_consoles(terminal: bool) -> Result<Consoles, String> {
    Ok(Consoles {
        out: open_tty("/dev/hvc0", !terminal)?,
        err: open_tty("/dev/hvc1", true)?,
    })
}

fn pipe() -> Result<(File, File), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    check(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        "pipe",
    )?;
    // SAFETY: pipe2 succeeded: both fds are new and ours.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// How the workload ended, as a status 0-255 (signal N: 128+N).
pub fn status_of(wait: libc::c_int) -> u8 {
    if libc::WIFEXITED(wait) {
        libc::WEXITSTATUS(wait) as u8
    } else if libc::WIFSIGNALED(wait) {
        (128 + libc::WTERMSIG(wait)).min(255) as u8
    } else {
        1
    }
}

/// Starts the workload, relays its output, forwards control messages,
/// reaps every process, and returns the workload's status once all of its
/// output went out.
pub fn run(s: &Settings, consoles: Consoles) -> Result<u8, String> {
    let exec = crate::exec::prepare(s);
    let Consoles { out, err } = consoles;
    let mut relays = Vec::new();
    let (child_fds, keep): ([RawFd; 3], Vec<File>) = if s.terminal {
        let fd = out.as_raw_fd();
        ([fd, fd, fd], vec![])
    } else {
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let fds = [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        relays.push(relay(out_r, out.try_clone().map_err(|e| e.to_string())?));
        relays.push(relay(err_r, err.try_clone().map_err(|e| e.to_string())?));
        let writer = Arc::new(Mutex::new(Some(in_w)));
        let forwarded = Arc::new(AtomicU64::new(0));
        let eof_at = Arc::new(AtomicU64::new(u64::MAX));
        stdin_relay(
            out.try_clone().map_err(|e| e.to_string())?,
            &writer,
            &forwarded,
            &eof_at,
        );
        control(
            err.try_clone().map_err(|e| e.to_string())?,
            writer,
            forwarded,
            eof_at,
        );
        (fds, vec![in_r, out_w, err_w])
    };
    if s.terminal {
        control_signals_only(err.try_clone().map_err(|e| e.to_string())?);
    }
    // SAFETY: the child only makes async-signal-safe calls (see `child`).
    let pid = check(unsafe { libc::fork() }, "fork")?;
    if pid == 0 {
        crate::exec::child(s, &exec, child_fds);
    }
    CHILD.store(pid, Ordering::SeqCst);
    drop(keep);
    let status = reap(pid);
    for r in relays {
        let _ = r.join();
    }
    for tty in [&out, &err] {
        // SAFETY: a valid fd; waits until the port took every byte.
        unsafe { libc::tcdrain(tty.as_raw_fd()) };
    }
    Ok(status)
}

/// Waits for `pid`, reaping every orphan meanwhile; once it ended, kills
/// what is left (as the end of a container's PID namespace does) and
/// reaps that too.
fn reap(pid: libc::pid_t) -> u8 {
    let mut status = None;
    loop {
        let mut w = 0;
        // SAFETY: `w` is a valid out-pointer.
        let r = unsafe { libc::waitpid(-1, &mut w, 0) };
        if r == pid {
            status = Some(status_of(w));
            // SAFETY: kill(-1) signals every process but init itself.
            unsafe { libc::kill(-1, libc::SIGKILL) };
        } else if r == -1 {
            let e = std::io::Error::last_os_error().raw_os_error();
            if e == Some(libc::ECHILD) {
                return status.unwrap_or(1);
            }
        }
    }
}

fn relay(mut from: File, mut to: File) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    })
}

type Writer = Arc<Mutex<Option<File>>>;

fn stdin_relay(
    mut tty: File,
    writer: &Writer,
    forwarded: &Arc<AtomicU64>,
    eof_at: &Arc<AtomicU64>,
) {
    let (writer, forwarded, eof_at) = (writer.clone(), forwarded.clone(), eof_at.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match tty.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = w.as_mut() {
                // The workload may have closed its stdin: drop what it won't read.
                let _ = f.write_all(&buf[..n]);
            }
            let total = forwarded.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            if total >= eof_at.load(Ordering::SeqCst) {
                *w = None;
            }
        }
    });
}

fn control(tty: File, writer: Writer, forwarded: Arc<AtomicU64>, eof_at: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        for line in BufReader::new(tty).lines() {
            let Ok(line) = line else { return };
            if let Some(n) = line
                .strip_prefix("eof ")
                .and_then(|n| n.trim().parse::<u64>().ok())
            {
                eof_at.store(n, Ordering::SeqCst);
                if forwarded.load(Ordering::SeqCst) >= n {
                    if let Ok(mut w) = writer.try_lock() {
                        *w = None;
                    }
                }
            } else {
                signal_line(&line);
            }
        }
    });
}

fn control_signals_only(tty: File) {
    std::thread::spawn(move || {
        for line in BufReader::new(tty).lines() {
            let Ok(line) = line else { return };
            signal_line(&line);
        }
    });
}

fn signal_line(line: &str) {
    let Some(sig) = line
        .strip_prefix("signal ")
        .and_then(|n| n.trim().parse::<i32>().ok())
    else {
        return;
    };
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 && delivered_to_pid1(pid, sig) {
        // SAFETY: kill(2) with a pid we started and a signal number.
        unsafe { libc::kill(pid, sig) };
    }
}

/// /proc as the initramfs mounted it, kept open across the root switch
/// (the container's root may have no /proc).
static PROC: std::sync::OnceLock<File> = std::sync::OnceLock::new();

/// Opens /proc for `delivered_to_pid1`; call before the root switch.
pub fn keep_proc() {
    if let Ok(f) = File::open("/proc") {
        let _ = PROC.set(f);
    }
}

/// Whether `sig` from outside would reach the workload if it were PID 1 of
/// its PID namespace, as under crun: the kernel drops a signal the
/// namespace's init has no handler for, except SIGKILL and SIGSTOP from an
/// ancestor namespace (the host). Read from /proc/<pid>/status's SigCgt at
/// the moment of delivery, as the kernel decides at send time; when the
/// mask cannot be read the signal is delivered.
fn delivered_to_pid1(pid: libc::pid_t, sig: i32) -> bool {
    if sig == libc::SIGKILL || sig == libc::SIGSTOP {
        return true;
    }
    match caught_mask(pid) {
        Some(mask) => catches(mask, sig),
        None => true,
    }
}

/// Bit N-1 of a SigCgt mask is signal N.
pub fn catches(mask: u64, sig: i32) -> bool {
    (1..=64).contains(&sig) && mask & (1u64 << (sig - 1)) != 0
}

/// The SigCgt line of a /proc/<pid>/status text.
pub fn sigcgt(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn caught_mask(pid: libc::pid_t) -> Option<u64> {
    let proc = PROC.get()?;
    let name = std::ffi::CString::new(format!("{pid}/status")).ok()?;
    // SAFETY: a directory fd we keep open and a NUL-terminated relative path.
    let fd = unsafe {
        libc::openat(
            proc.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: openat returned a new fd that nobody else owns.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    sigcgt(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigcgt_bits_name_signals() {
        let status = "Name:\tsh\nSigIgn:\t0000000000000004\nSigCgt:\t0000000000004002\n";
        let mask = sigcgt(status).unwrap();
        assert!(catches(mask, libc::SIGINT)); // bit 1
        assert!(catches(mask, libc::SIGTERM)); // bit 14
        assert!(!catches(mask, libc::SIGHUP));
        assert!(!catches(mask, libc::SIGQUIT)); // ignored, not caught
        assert!(!catches(mask, 0) && !catches(mask, 65));
        assert_eq!(sigcgt("Name:\tx\n"), None);
    }
}
