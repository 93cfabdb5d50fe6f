//! Thin wrappers over the system calls PID 1 makes: each returns an error
//! naming what failed.

use std::ffi::CString;
use std::io;

/// A C string of `s` (settings never hold NUL: the file uses it as separator).
pub fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// -1 becomes the errno, described with `what`.
pub fn check(r: libc::c_int, what: &str) -> Result<libc::c_int, String> {
    if r == -1 {
        Err(format!("{what}: {}", io::Error::last_os_error()))
    } else {
        Ok(r)
    }
}

/// mount(2).
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: u64,
    data: &str,
) -> Result<(), String> {
    let (s, t, f, d) = (cstr(source), cstr(target), cstr(fstype), cstr(data));
    let null = |c: &CString, empty: bool| if empty { std::ptr::null() } else { c.as_ptr() };
    // SAFETY: every pointer is a NUL-terminated string alive for the call, or null.
    let r = unsafe {
        libc::mount(
            null(&s, source.is_empty()),
            t.as_ptr(),
            null(&f, fstype.is_empty()),
            flags as libc::c_ulong,
            null(&d, data.is_empty()).cast(),
        )
    };
    check(r, &format!("mounting {fstype} {source:?} on {target}")).map(drop)
}

/// mkdir -p.
pub fn mkdir_p(path: &str) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("creating {path}: {e}"))
}

/// mknod for a character device.
pub fn mknod_char(path: &str, mode: u32, major: u32, minor: u32) -> Result<(), String> {
    let p = cstr(path);
    // SAFETY: NUL-terminated path; makedev is pure arithmetic.
    let r = unsafe {
        libc::mknod(
            p.as_ptr(),
            libc::S_IFCHR | mode,
            libc::makedev(major, minor),
        )
    };
    check(r, &format!("mknod {path}"))?;
    // SAFETY: NUL-terminated path; the umask must not narrow the mode.
    check(
        unsafe { libc::chmod(p.as_ptr(), mode) },
        &format!("chmod {path}"),
    )
    .map(drop)
}
