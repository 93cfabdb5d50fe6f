//! A disk image's identity in a snapshot: the guest's page cache and file
//! system state in the saved RAM match the image as it was at the moment
//! of the snapshot, so a restore must get that same image (or a copy the
//! user names with `--disk`). Identity is path, size, inode, device and
//! modification time, read with `fstat` on the open image after a flush.

use std::fs::File;
use std::os::fd::AsRawFd;

use serde::{Deserialize, Serialize};

use super::SnapshotError;
use crate::devices::virtio::block::disk::{DiskConfig, DiskImage, ID_BYTES};

/// What a snapshot records about one disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskIdentity {
    /// The path it was opened by.
    pub path: String,
    /// Offered read-only.
    pub readonly: bool,
    /// Opened with O_DIRECT.
    pub direct: bool,
    /// The serial the guest reads (GET_ID).
    pub id: Vec<u8>,
    /// Bytes.
    pub size: u64,
    /// Inode and device numbers.
    pub inode: u64,
    /// Device number of the file system.
    pub dev: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// size, inode, dev, mtime of an open file, with the fstat(2) system call
/// itself: glibc's fstat() is newfstatat(), a path lookup the run-time
/// sandbox does not allow.
pub fn stat(file: &File) -> std::io::Result<(u64, u64, u64, i128)> {
    // SAFETY: a zeroed `stat` is a valid value for the kernel to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: SYS_fstat writes only into `st`, a whole `struct stat` that
    // lives through the call, on an fd `file` keeps open.
    if unsafe {
        libc::syscall(
            libc::SYS_fstat,
            file.as_raw_fd(),
            &mut st as *mut libc::stat,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    let mtime = i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec);
    Ok((st.st_size as u64, st.st_ino, st.st_dev, mtime))
}

/// The identity of `disk` now (flush first: the guest's writes are in).
pub fn identity(disk: &DiskImage) -> std::io::Result<DiskIdentity> {
    disk.flush()?;
    let (size, inode, dev, mtime_ns) = stat(disk.file())?;
    Ok(DiskIdentity {
        path: disk.path().display().to_string(),
        readonly: disk.readonly(),
        direct: disk.direct(),
        id: disk.id().to_vec(),
        size,
        inode,
        dev,
        mtime_ns,
    })
}

/// How to open the image for a restore: the saved one, or `path` (a copy)
/// from `--disk`; always with the saved read-only flag and serial, so the
/// guest sees the same device.
pub fn config_for(saved: &DiskIdentity, path: Option<&std::path::Path>) -> DiskConfig {
    let id_len = saved
        .id
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(saved.id.len())
        .min(ID_BYTES);
    DiskConfig {
        path: path.map_or_else(|| saved.path.clone().into(), |p| p.to_path_buf()),
        readonly: saved.readonly,
        direct: saved.direct,
        id: Some(String::from_utf8_lossy(&saved.id[..id_len]).into_owned()),
    }
}

/// Checks the image opened for a restore against the saved identity. The
/// size must match (the guest knows its capacity). Without an override it
/// must be the same file, unchanged: a read-write image changed since the
/// snapshot is refused (the guest's cached view of it would be wrong), a
/// read-only one that changed gets a warning. An override (`--disk`) is a
/// copy by intent: only its size is checked.
pub fn check(
    saved: &DiskIdentity,
    disk: &DiskImage,
    overridden: bool,
) -> Result<(), SnapshotError> {
    let refuse = |why: String| Err(SnapshotError::Disk(disk.path().display().to_string(), why));
    let (size, inode, dev, mtime) =
        stat(disk.file()).map_err(|e| SnapshotError::Io(disk.path().display().to_string(), e))?;
    if size != saved.size {
        return refuse(format!(
            "is {size} bytes, it was {} bytes at the snapshot",
            saved.size
        ));
    }
    if overridden {
        return Ok(());
    }
    if (inode, dev) != (saved.inode, saved.dev) {
        return refuse(
            "is another file than at the snapshot (inode changed); give a copy with --disk".into(),
        );
    }
    if mtime != saved.mtime_ns {
        if saved.readonly {
            crate::say!(
                "tinyvmm: warning: read-only disk {} was modified since the snapshot",
                saved.path
            );
            return Ok(());
        }
        return refuse(
            "was modified since the snapshot (its guest's view of it would be wrong)".into(),
        );
    }
    Ok(())
}
