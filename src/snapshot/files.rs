//! A snapshot directory's files: created and opened while the VM is built
//! (the run-time sandbox allows no new opens), written when a snapshot is
//! taken, and read by a restore.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{MEMORY_FILE, STATE_FILE, SnapshotError};

/// The open files of a snapshot directory, for writing.
pub struct SnapshotFiles {
    /// The directory.
    pub dir: PathBuf,
    state: File,
    memory: File,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |e| SnapshotError::Io(path.display().to_string(), e)
}

impl SnapshotFiles {
    /// Creates `dir` if missing and opens (creating) its two files. Their
    /// old contents stay until a snapshot is written.
    pub fn create(dir: &Path) -> Result<Self, SnapshotError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let open = |name: &str| {
            let path = dir.join(name);
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err(&path))
        };
        Ok(SnapshotFiles {
            dir: dir.to_path_buf(),
            state: open(STATE_FILE)?,
            memory: open(MEMORY_FILE)?,
        })
    }

    /// The memory file, for `super::memory::save`.
    pub fn memory(&self) -> &File {
        &self.memory
    }

    /// Replaces the state file's contents with `bytes`, synced. Written
    /// after the memory, so a state file that checks out describes the
    /// memory file beside it.
    pub fn write_state(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.state.set_len(0)?;
        self.state.write_all_at(bytes, 0)?;
        self.state.sync_data()
    }
}

/// Reads a snapshot directory's state file (at most `MAX_PAYLOAD` plus the
/// header) and opens its memory file.
pub fn open(dir: &Path) -> Result<(Vec<u8>, File), SnapshotError> {
    use std::io::Read;
    let state_path = dir.join(STATE_FILE);
    let file = File::open(&state_path).map_err(io_err(&state_path))?;
    let mut bytes = Vec::new();
    file.take(super::MAX_PAYLOAD + super::HEADER_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(&state_path))?;
    let mem_path = dir.join(MEMORY_FILE);
    let memory = File::open(&mem_path).map_err(io_err(&mem_path))?;
    Ok((bytes, memory))
}
