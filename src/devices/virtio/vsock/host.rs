//! The host side's Unix sockets: the listener on PATH (bound during the
//! build, before any KVM call), accepting host clients and connecting to
//! `PATH_<port>` for the guest while the VM runs.
//!
//! Stale sockets: Firecracker refuses to start when PATH exists. We remove
//! PATH only when it is a socket that nobody listens on (a connect gets
//! ECONNREFUSED: a VMM that ended without unlinking it, as ours does, since
//! the run-time sandbox has no unlink); a socket with a live listener is
//! "in use", anything else "not a socket". Both refuse to start (126).
//!
//! Run-time sockets are made with SOCK_NONBLOCK by `accept4` and `socket`
//! directly: std's `set_nonblocking` is an `ioctl(FIONBIO)`, which the
//! run-time seccomp filter does not allow.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The longest path a `sockaddr_un` holds (108 bytes with the NUL).
pub const SUN_PATH_MAX: usize = 107;
/// Room left in a path for "_4294967295" (the guest-initiated sockets).
pub const PORT_SUFFIX_MAX: usize = 11;

/// `--vsock cid=N,socket=PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VsockConfig {
    /// The guest's context id (3 and up; 0-2 are reserved, 5.10.4).
    pub cid: u64,
    /// The host socket path.
    pub socket: PathBuf,
}

/// Why the listener could not be set up (exit 126 before the VM starts).
#[derive(Debug, thiserror::Error)]
#[error("--vsock socket={}: {why}", path.display())]
pub struct ListenError {
    path: PathBuf,
    why: String,
}

/// Binds and listens on `config.socket`, removing a stale socket first.
pub fn listen(config: &VsockConfig) -> Result<UnixListener, ListenError> {
    let path = &config.socket;
    let err = |why: String| ListenError {
        path: path.clone(),
        why,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(err("in use: another process listens on it".into())),
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                std::fs::remove_file(path)
                    .map_err(|e| err(format!("removing the stale socket: {e}")))?;
            }
            Err(e) => return Err(err(format!("an existing socket: {e}"))),
        },
        Ok(_) => return Err(err("exists and is not a socket".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let listener = UnixListener::bind(path).map_err(|e| err(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| err(e.to_string()))?;
    Ok(listener)
}

/// Accepts one client, non-blocking; `Ok(None)` when none is waiting.
pub fn accept(listener: &UnixListener) -> io::Result<Option<UnixStream>> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: a plain system call on the listener's open fd; null
        // address pointers are allowed (we do not want the peer address).
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: accept4 just returned this fd; nothing else owns it.
            return Ok(Some(UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) })));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            // The client went away before we accepted it.
            _ if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
            _ => return Err(e),
        }
    }
}

/// Connects to `PATH_<port>` without blocking (a listener whose backlog is
/// full answers EAGAIN: refused like any other failure).
pub fn connect(base: &Path, port: u32) -> io::Result<UnixStream> {
    let mut path = base.as_os_str().to_owned();
    path.push(format!("_{port}"));
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() > SUN_PATH_MAX {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: a plain system call with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket just returned this fd; nothing else owns it.
    let stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    use std::os::fd::AsRawFd;
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a live, initialised sockaddr_un of `len` bytes,
    // its path NUL-terminated (the array was zeroed and the path is at
    // most 107 bytes); `stream` owns the fd.
    let r = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            (&raw const addr).cast::<libc::sockaddr>(),
            len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
}

/// read(2) on a socket: std's socket `read` is a `recvfrom`, which the
/// run-time filter does not allow (`read` and `write` it does).
pub fn read_fd(stream: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes, and
    // `stream` owns the fd for the duration of the call.
    let n = unsafe { libc::read(stream.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// write(2) on a socket (std's socket `write` may become a `sendto`).
pub fn write_fd(stream: &UnixStream, buf: &[u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is a live buffer of `buf.len()` bytes, and `stream`
    // owns the fd for the duration of the call.
    let n = unsafe { libc::write(stream.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Reads the host client's `CONNECT <port>\n` one byte at a time (so that
/// no data after it is consumed) into `line`. `Ok(Some(port))` once it is
/// complete, `Ok(None)` when more is needed, Err when it is bad or the
/// client left.
pub fn read_connect_line(stream: &UnixStream, line: &mut Vec<u8>) -> io::Result<Option<u32>> {
    const MAX: usize = 32;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad CONNECT line");
    loop {
        let mut b = [0u8; 1];
        match read_fd(stream, &mut b) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) if b[0] == b'\n' => {
                let text = std::str::from_utf8(line).map_err(|_| bad())?;
                let port = text
                    .strip_prefix("CONNECT ")
                    .map(|p| p.trim_end_matches('\r'))
                    .and_then(|p| p.parse::<u32>().ok())
                    .ok_or_else(bad)?;
                return Ok(Some(port));
            }
            Ok(_) if line.len() >= MAX => return Err(bad()),
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
