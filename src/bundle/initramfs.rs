//! The bundle's initramfs, generated per run: the guest's init (guest/init/,
//! built by build.rs, embedded here) as `/init` and the settings as
//! `/tinyvmm/settings`, as an uncompressed newc cpio (the `cpio` crate's
//! writer). It lives in a memfd: nothing is left on disk, whatever way
//! tinyvmm ends; the VMM opens it as `/proc/self/fd/N`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;

/// The guest's init, a static binary.
pub const GUEST_INIT: &[u8] = include_bytes!(env!("TINYVMM_GUEST_INIT"));

/// The cpio archive's bytes.
pub fn archive(settings: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let dirs = ["dev", "proc", "tinyvmm"];
    let files: [(&str, u32, &[u8]); 2] = [
        ("init", 0o100755, GUEST_INIT),
        ("tinyvmm/settings", 0o100600, settings),
    ];
    let mut ino = 1;
    for d in dirs {
        let w = cpio::newc::Builder::new(d)
            .ino(ino)
            .mode(0o040755)
            .nlink(2)
            .write(&mut out, 0);
        w.finish()?;
        ino += 1;
    }
    for (name, mode, data) in files {
        let mut w = cpio::newc::Builder::new(name)
            .ino(ino)
            .mode(mode)
            .nlink(1)
            .write(&mut out, data.len() as u32);
        w.write_all(data)?;
        w.finish()?;
        ino += 1;
    }
    cpio::newc::trailer(&mut out)?;
    Ok(out)
}

/// The archive in a memfd, and the path the VMM opens it by.
pub fn memfd(settings: &[u8]) -> std::io::Result<(File, PathBuf)> {
    // SAFETY: a NUL-terminated literal name and a flag word.
    let fd = unsafe { libc::memfd_create(c"tinyvmm-bundle-initramfs".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new fd that nobody else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(&archive(settings)?)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_holds_init_and_the_settings() {
        let bytes = archive(b"arg\0true\0").unwrap();
        let mut names = Vec::new();
        let mut rest = std::io::Cursor::new(&bytes[..]);
        loop {
            let r = cpio::newc::Reader::new(rest).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            names.push((r.entry().name().to_string(), r.entry().file_size()));
            rest = r.skip().unwrap();
        }
        assert_eq!(names[3], ("init".to_string(), GUEST_INIT.len() as u32));
        assert_eq!(names[4], ("tinyvmm/settings".to_string(), 9));
        assert!(GUEST_INIT.starts_with(b"\x7fELF"));
    }
}
