//! The container's root file system, built in the initramfs and then made
//! `/`: the bundle's root is a read-only ext4 image on /dev/vda. With
//! `root.readonly` false it goes under an overlay whose upper layer is a
//! tmpfs: the workload can write, and what it wrote is gone at exit. With
//! `root.readonly` true it is the root itself when every mount point
//! exists in it; otherwise it too goes under an overlay (where the mount
//! points are made), remounted read-only afterwards, as crun remounts its
//! root. Then the config's mounts, /dev's nodes when /dev is
//! a tmpfs (as crun fills it), masked and read-only paths, and the switch.

use crate::settings::Settings;
use crate::sys::{check, cstr, mkdir_p, mknod_char, mount};

/// Where the new root is assembled.
pub const NEW_ROOT: &str = "/newroot";
const LOWER: &str = "/lower";
const RW: &str = "/rw";

/// The standard devices crun creates in a tmpfs /dev: (name, major, minor).
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Mounts what the initramfs itself needs: /proc and devtmpfs on /dev.
pub fn mount_early() -> Result<(), String> {
    for (fs, dir) in [("proc", "/proc"), ("devtmpfs", "/dev")] {
        mkdir_p(dir)?;
        match mount(fs, dir, fs, 0, "") {
            Err(e) if !e.contains("busy") => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Builds the container's root at NEW_ROOT from /dev/vda.
pub fn build(s: &Settings) -> Result<(), String> {
    for d in [LOWER, RW, NEW_ROOT] {
        mkdir_p(d)?;
    }
    let ro = libc::MS_RDONLY;
    mount("/dev/vda", LOWER, "ext4", ro, "")?;
    // A mount point must exist in the image, or lie in an earlier mount
    // (/dev/pts in a tmpfs /dev), where it can be made.
    let points_exist = s.mounts.iter().enumerate().all(|(i, m)| {
        std::fs::metadata(format!("{LOWER}{}", m.dest)).is_ok_and(|d| d.is_dir())
            || s.mounts[..i]
                .iter()
                .any(|e| e.fstype == "tmpfs" && m.dest.starts_with(&format!("{}/", e.dest)))
    });
    let overlay = !s.readonly || !points_exist;
    if overlay {
        mount("tmpfs", RW, "tmpfs", 0, "mode=0755")?;
        mkdir_p(&format!("{RW}/upper"))?;
        mkdir_p(&format!("{RW}/work"))?;
        let data = format!("lowerdir={LOWER},upperdir={RW}/upper,workdir={RW}/work");
        mount("overlay", NEW_ROOT, "overlay", 0, &data)?;
    } else {
        mount(LOWER, NEW_ROOT, "", libc::MS_BIND, "")?;
    }
    for m in &s.mounts {
        let target = format!("{NEW_ROOT}{}", m.dest);
        mkdir_p(&target)?;
        mount(&m.source, &target, &m.fstype, m.flags, &m.data)?;
        if m.dest == "/dev" && m.fstype == "tmpfs" {
            fill_dev(&target)?;
        }
    }
    for path in &s.masked {
        mask(&format!("{NEW_ROOT}{path}"));
    }
    for path in &s.readonly_paths {
        let p = format!("{NEW_ROOT}{path}");
        if std::fs::symlink_metadata(&p).is_ok() {
            let bind = libc::MS_BIND | libc::MS_REC;
            mount(&p, &p, "", bind, "")?;
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
            mount("", &p, "", flags, "")?;
        }
    }
    if s.readonly && overlay {
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        mount("", NEW_ROOT, "", flags, "")?;
    }
    Ok(())
}

/// Hides `path` as crun does: /dev/null over a file, an empty read-only
/// tmpfs over a directory; a path that does not exist is left alone.
fn mask(path: &str) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let _ = if meta.is_dir() {
        mount("tmpfs", path, "tmpfs", libc::MS_RDONLY, "size=0k")
    } else {
        mount("/dev/null", path, "", libc::MS_BIND, "")
    };
}

/// The device nodes and links crun puts in a tmpfs /dev.
fn fill_dev(dev: &str) -> Result<(), String> {
    for (name, major, minor) in DEVICES {
        mknod_char(&format!("{dev}/{name}"), 0o666, major, minor)?;
    }
    for (name, to) in DEV_LINKS {
        let link = format!("{dev}/{name}");
        std::os::unix::fs::symlink(to, &link).map_err(|e| format!("symlink {link}: {e}"))?;
    }
    Ok(())
}

/// Makes NEW_ROOT the root: move it over / and chroot (an initramfs cannot
/// be pivoted away from). The workload's own cwd is set by its process.
pub fn switch() -> Result<(), String> {
    let root = cstr(NEW_ROOT);
    // SAFETY: NUL-terminated paths alive for each call.
    check(
        unsafe { libc::chdir(root.as_ptr()) },
        "chdir to the new root",
    )?;
    mount(".", "/", "", libc::MS_MOVE, "")?;
    // SAFETY: a NUL-terminated literal.
    check(unsafe { libc::chroot(c".".as_ptr()) }, "chroot")?;
    // SAFETY: a NUL-terminated literal.
    check(unsafe { libc::chdir(c"/".as_ptr()) }, "chdir to /").map(drop)
}
