//! The workload's exec, prepared before fork (strings, pointer arrays,
//! PATH candidates, messages) and done in the forked child with
//! async-signal-safe calls only: signals reset, stdio, rlimits, the
//! capability bounding set, groups and user, the other capability sets,
//! umask, cwd, no_new_privs, execve along PATH.

use std::ffi::CString;
use std::os::fd::RawFd;

use crate::settings::Settings;
use crate::sys::cstr;

/// Everything the child needs, prepared before fork (after it, only
/// async-signal-safe calls).
pub struct Exec {
    /// Own the strings `argv_ptrs` and `envp_ptrs` point into.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    candidates: Vec<CString>,
    cwd: CString,
    /// NULL-terminated pointer arrays into `argv` and `envp` (a CString's
    /// bytes stay put when the vector moves).
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    not_found: Vec<u8>,
    denied: Vec<u8>,
    /// The guest kernel's highest capability number.
    last_cap: u64,
    no_cwd: Vec<u8>,
}

pub fn prepare(s: &Settings) -> Exec {
    let path = s
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let arg0 = &s.args[0];
    let candidates = if arg0.contains('/') {
        vec![cstr(arg0)]
    } else {
        path.split(':')
            .map(|d| cstr(&format!("{}/{arg0}", if d.is_empty() { "." } else { d })))
            .collect()
    };
    let mut env = s.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        if let Some(home) = home_of(s.uid) {
            env.push(format!("HOME={home}"));
        }
    }
    let argv: Vec<CString> = s.args.iter().map(|a| cstr(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| cstr(e)).collect();
    let ptrs = |v: &[CString]| {
        let mut p: Vec<*const libc::c_char> = v.iter().map(|c| c.as_ptr()).collect();
        p.push(std::ptr::null());
        p
    };
    Exec {
        argv_ptrs: ptrs(&argv),
        envp_ptrs: ptrs(&envp),
        _argv: argv,
        _envp: envp,
        candidates,
        cwd: cstr(&s.cwd),
        not_found: format!(
            "tinyvmm: executable file `{arg0}` not found in $PATH: No such file or directory\n"
        )
        .into_bytes(),
        last_cap: std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40),
        denied: format!("tinyvmm: executable file `{arg0}`: Permission denied\n").into_bytes(),
        no_cwd: format!(
            "tinyvmm: chdir to cwd `{}` set in config.json failed\n",
            s.cwd
        )
        .into_bytes(),
    }
}

/// HOME as crun sets it when the config has none: the user's entry in
/// the root's /etc/passwd, else none.
fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[2].parse() == Ok(uid))
        .map(|f| f[5].to_string())
}

/// The forked child: becomes the workload. Only async-signal-safe calls.
pub fn child(s: &Settings, e: &Exec, fds: [RawFd; 3]) -> ! {
    // SAFETY: each call is a plain system call on values prepared before
    // fork; nothing here allocates or takes a lock.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..32 {
            libc::signal(sig, libc::SIG_DFL);
        }
        if s.terminal {
            libc::setsid();
            libc::ioctl(fds[0], libc::TIOCSCTTY, 0);
        }
        for (to, &from) in fds.iter().enumerate() {
            libc::dup2(from, to as i32);
        }
        for &(r, soft, hard) in &s.rlimits {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            libc::setrlimit(r as _, &lim);
        }
        let fail = |msg: &[u8]| -> ! {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(1)
        };
        if let Some([bounding, ..]) = s.caps {
            // As crun: the bounding set first, and keep the permitted set
            // across the uid change.
            for cap in 0..=e.last_cap {
                if bounding & (1 << cap) == 0 {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
                }
            }
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        }
        if libc::setgroups(s.groups.len(), s.groups.as_ptr()) != 0
            || libc::setgid(s.gid) != 0
            || libc::setuid(s.uid) != 0
        {
            fail(b"tinyvmm: setting the user and groups failed\n");
        }
        if let Some([_, effective, permitted, inheritable, ambient]) = s.caps {
            // capset(2), _LINUX_CAPABILITY_VERSION_3: two 32-bit halves.
            let header = [0x2008_0522u32, 0];
            let half = |m: u64, i: u32| (m >> (32 * i)) as u32;
            let data: [[u32; 3]; 2] =
                [0, 1].map(|i| [half(effective, i), half(permitted, i), half(inheritable, i)]);
            if libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) != 0 {
                fail(b"tinyvmm: setting the capabilities failed\n");
            }
            for cap in 0..=e.last_cap {
                if ambient & (1 << cap) != 0 {
                    libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap, 0, 0);
                }
            }
        }
        if let Some(m) = s.umask {
            libc::umask(m);
        }
        if libc::chdir(e.cwd.as_ptr()) != 0 {
            fail(&e.no_cwd);
        }
        if s.no_new_privileges {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        }
        let mut denied = false;
        for c in &e.candidates {
            libc::execve(c.as_ptr(), e.argv_ptrs.as_ptr(), e.envp_ptrs.as_ptr());
            denied |= *libc::__errno_location() == libc::EACCES;
        }
        fail(if denied { &e.denied } else { &e.not_found })
    }
}
