//! The host side of a virtio disk: an image file, opened and locked while
//! the VM is built, and I/O that moves data straight between the file and
//! the guest's own pages (preadv/pwritev with iovecs into guest memory, no
//! intermediate copy; with O_DIRECT a misaligned request goes through an
//! aligned bounce buffer).
//!
//! Locks follow QEMU's rule: a read-write image is held exclusively, a
//! read-only one shared, so a second VM cannot open an image another holds
//! writable (flock(2) on the open file, dropped when the VMM exits).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use vm_memory::{GuestMemoryBackend, GuestMemoryMmap};

use crate::devices::virtio::queue::Segment;

/// Bytes per sector, the unit of every virtio-blk address (5.2.6).
pub const SECTOR: u64 = 512;
/// Length of the ID string `GET_ID` returns (`VIRTIO_BLK_ID_BYTES`).
pub const ID_BYTES: usize = 20;

/// What `--disk` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// The image file.
    pub path: PathBuf,
    /// The guest may not write (VIRTIO_BLK_F_RO); the image opens read-only.
    pub readonly: bool,
    /// O_DIRECT: bypass the host page cache.
    pub direct: bool,
    /// The serial `GET_ID` returns (at most 20 bytes); default: from the inode.
    pub id: Option<String>,
}

/// Why an image cannot be used. All are refused before the VM starts (126).
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Missing, unreadable, or not openable as asked.
    #[error("--disk {0}: {1}")]
    Open(PathBuf, io::Error),
    /// A directory, device, FIFO...
    #[error("--disk {0}: {1}")]
    NotAFile(PathBuf, &'static str),
    /// Another process holds it (writable, or we want it writable).
    #[error("--disk {0}: in use by another process (it holds a lock on it: {1})")]
    Locked(PathBuf, &'static str),
    /// Fewer than 512 bytes: no sector at all.
    #[error("--disk {0}: {1} bytes is less than one 512-byte sector")]
    TooSmall(PathBuf, u64),
    /// An `id=` longer than the 20 bytes virtio-blk carries.
    #[error("--disk {0}: id {1:?} is longer than 20 bytes")]
    IdTooLong(PathBuf, String),
}

/// An open, locked image.
#[derive(Debug)]
pub struct DiskImage {
    file: File,
    path: PathBuf,
    readonly: bool,
    direct: bool,
    sectors: u64,
    id: [u8; ID_BYTES],
    /// Bytes past the last whole sector, which the guest cannot see.
    pub tail_ignored: u64,
}

impl DiskImage {
    /// Opens and locks `config.path`: a regular file of at least one sector.
    pub fn open(config: &DiskConfig) -> Result<DiskImage, DiskError> {
        let path = config.path.clone();
        let meta = std::fs::metadata(&path).map_err(|e| DiskError::Open(path.clone(), e))?;
        if meta.is_dir() {
            return Err(DiskError::NotAFile(path, "is a directory"));
        }
        if !meta.is_file() {
            return Err(DiskError::NotAFile(path, "is not a regular file"));
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(!config.readonly);
        let mut flags = libc::O_CLOEXEC;
        if config.direct {
            flags |= libc::O_DIRECT;
        }
        opts.custom_flags(flags);
        let file = opts
            .open(&path)
            .map_err(|e| DiskError::Open(path.clone(), e))?;
        let (op, how) = if config.readonly {
            (libc::LOCK_SH, "it is open read-write elsewhere")
        } else {
            (libc::LOCK_EX, "it is open elsewhere")
        };
        // SAFETY: flock on an fd we own, with integer flags.
        if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } != 0 {
            return Err(DiskError::Locked(path, how));
        }
        let size = meta.len();
        if size < SECTOR {
            return Err(DiskError::TooSmall(path, size));
        }
        let id = match &config.id {
            Some(id) if id.len() > ID_BYTES => {
                return Err(DiskError::IdTooLong(path, id.clone()));
            }
            Some(id) => id.clone(),
            None => format!("tinyvmm-{:x}", meta.ino()),
        };
        let mut id_bytes = [0u8; ID_BYTES];
        let n = id.len().min(ID_BYTES);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        Ok(DiskImage {
            file,
            path,
            readonly: config.readonly,
            direct: config.direct,
            sectors: size / SECTOR,
            id: id_bytes,
            tail_ignored: size % SECTOR,
        })
    }

    /// Capacity in 512-byte sectors (the size rounded down).
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether the guest may not write.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// The 20-byte ID (`GET_ID`).
    pub fn id(&self) -> &[u8; ID_BYTES] {
        &self.id
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open image (a snapshot records its identity: crate::snapshot::disk).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether it was opened with O_DIRECT.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// Reads (`write == false`: file -> guest) or writes (guest -> file)
    /// `segments` at byte `offset`, all of it or an error.
    pub fn transfer(
        &self,
        mem: &GuestMemoryMmap,
        segments: &[Segment],
        mut offset: u64,
        write: bool,
    ) -> io::Result<()> {
        let aligned = |v: u64| v % SECTOR == 0;
        if self.direct
            && segments
                .iter()
                .any(|s| !aligned(s.addr.0) || !aligned(u64::from(s.len)))
        {
            return self.bounce(mem, segments, offset, write);
        }
        // One iovec per piece of guest RAM each segment covers.
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(segments.len());
        for seg in segments {
            for slice in mem.get_slices(seg.addr, seg.len as usize) {
                let slice = slice.map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                iov.push(libc::iovec {
                    iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                    iov_len: slice.len(),
                });
            }
        }
        let mut iov = &mut iov[..];
        while !iov.is_empty() {
            // SAFETY: every iovec points into a guest RAM mapping held by
            // `mem`, borrowed for this call, and covers only checked range
            // (`get_slice` refused anything past the region). The kernel
            // copies into or out of that memory; no Rust reference to it
            // exists meanwhile. `iov` is a live array of `iov.len()` entries.
            let n = unsafe {
                let fd = self.file.as_raw_fd();
                let count = iov.len().min(1024) as libc::c_int;
                if write {
                    libc::pwritev(fd, iov.as_ptr(), count, offset as libc::off_t)
                } else {
                    libc::preadv(fd, iov.as_ptr(), count, offset as libc::off_t)
                }
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            offset += n as u64;
            iov = advance(iov, n as usize);
        }
        Ok(())
    }

    /// The O_DIRECT path for buffers not aligned to 512 bytes: the whole
    /// request through one aligned buffer (its total is whole sectors).
    fn bounce(
        &self,
        mem: &GuestMemoryMmap,
        segments: &[Segment],
        offset: u64,
        write: bool,
    ) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        use vm_memory::Bytes;
        let bad = |_| io::Error::from(io::ErrorKind::InvalidInput);
        let total: usize = segments.iter().map(|s| s.len as usize).sum();
        let mut buf = AlignedBuf::new(total);
        if write {
            let mut at = 0;
            for seg in segments {
                let len = seg.len as usize;
                mem.read_slice(&mut buf.as_mut()[at..at + len], seg.addr)
                    .map_err(bad)?;
                at += len;
            }
            self.file.write_all_at(buf.as_mut(), offset)
        } else {
            self.file.read_exact_at(buf.as_mut(), offset)?;
            let mut at = 0;
            for seg in segments {
                let len = seg.len as usize;
                mem.write_slice(&buf.as_mut()[at..at + len], seg.addr)
                    .map_err(bad)?;
                at += len;
            }
            Ok(())
        }
    }

    /// fdatasync: what the guest wrote is on stable storage.
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Punches a hole (`zero == false`, DISCARD) or zeroes the range
    /// (WRITE_ZEROES), keeping the file's size.
    pub fn deallocate(&self, offset: u64, len: u64, zero: bool) -> io::Result<()> {
        let mode = libc::FALLOC_FL_KEEP_SIZE
            | if zero {
                libc::FALLOC_FL_ZERO_RANGE
            } else {
                libc::FALLOC_FL_PUNCH_HOLE
            };
        // SAFETY: fallocate on an fd we own, with integer arguments.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                mode,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Drops `n` transferred bytes from the front of `iov`.
fn advance(iov: &mut [libc::iovec], mut n: usize) -> &mut [libc::iovec] {
    let mut skip = 0;
    while skip < iov.len() && n >= iov[skip].iov_len {
        n -= iov[skip].iov_len;
        skip += 1;
    }
    let rest = &mut iov[skip..];
    if let Some(first) = rest.first_mut() {
        // SAFETY: `n` < first.iov_len, so the pointer stays in its buffer.
        first.iov_base = unsafe { first.iov_base.cast::<u8>().add(n).cast() };
        first.iov_len -= n;
    }
    rest
}

/// A heap buffer aligned to 4 KiB (O_DIRECT's strictest common rule).
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let layout = std::alloc::Layout::from_size_align(len.max(1), 4096).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, layout }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live, zero-initialised allocation of
        // `layout.size()` bytes owned by self, borrowed mutably here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}
