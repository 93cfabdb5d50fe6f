//! Snapshots of a running VM (issue 13): what is saved, in which format,
//! and how a snapshot directory is read back. The saving and restoring of
//! a live VM are `crate::vmm::snapshot` and `crate::vmm::restore`; the
//! KVM state calls are `crate::kvm::state`, the devices' state is the
//! device manager's (`crate::devices::manager`).
//!
//! A snapshot is a directory of two files (docs/snapshot.md):
//! - `state`: a 24-byte header (magic `TVMMSNAP`, format version, payload
//!   length, CRC-32 of the payload), then the payload: `SnapshotState` as
//!   JSON. JSON because serde_json is already a dependency, the state is
//!   small (tens of KiB) and a person can read it; the checksum and the
//!   strict parse catch truncation and corruption.
//! - `memory`: guest RAM, regions back to back, as a sparse file: pages
//!   that are all zero are holes. A restore maps it `MAP_PRIVATE`, so pages
//!   load lazily and restores of one snapshot share clean pages.

pub mod cli;
pub mod disk;
pub mod files;
pub mod memory;

use serde::{Deserialize, Serialize};

use crate::devices::manager::DevicesState;
use crate::kvm::state::{VcpuState, VmState, vm_state_is_consistent};

/// The first bytes of a `state` file.
pub const MAGIC: &[u8; 8] = b"TVMMSNAP";
/// The format version this build writes. Version 2 added the socket
/// device's state; version 1 files (without it) are read as well.
pub const VERSION: u32 = 2;
/// The oldest version this build reads.
pub const OLDEST_VERSION: u32 = 1;
/// Header bytes: magic, version (u32), payload length (u64), CRC-32 (u32).
pub const HEADER_LEN: usize = 24;
/// The largest payload accepted (the real one is tens of KiB per vCPU).
pub const MAX_PAYLOAD: u64 = 16 << 20;
/// File names inside a snapshot directory.
pub const STATE_FILE: &str = "state";
/// Guest RAM.
pub const MEMORY_FILE: &str = "memory";

/// Why a snapshot cannot be used: one line each; `tinyvmm restore` exits
/// 126 (a resource that cannot be used before the VM starts).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file of the snapshot could not be read or written.
    #[error("snapshot {0}: {1}")]
    Io(String, std::io::Error),
    /// Not a snapshot, or cut short.
    #[error("snapshot state: {0}")]
    Format(String),
    /// Written by another format version.
    #[error(
        "snapshot state: format version {0}, this tinyvmm reads versions {OLDEST_VERSION} to {VERSION}"
    )]
    Version(u32),
    /// The checksum does not match: the file was changed or damaged.
    #[error(
        "snapshot state: checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt"
    )]
    Checksum {
        /// In the header.
        stored: u32,
        /// Of the payload read.
        computed: u32,
    },
    /// This host cannot run the saved guest.
    #[error("snapshot: this host's CPU lacks features the guest was given: {0}")]
    HostCpu(String),
    /// A disk image is not the one the snapshot was taken with.
    #[error("snapshot disk {0}: {1}")]
    Disk(String, String),
}

/// The machine as the snapshot's VM was built: what a restore rebuilds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineConfig {
    /// Guest RAM in bytes.
    pub memory: u64,
    /// vCPUs.
    pub vcpus: u8,
    /// "virtio", "serial" or "none".
    pub console: String,
    /// Whether the 8250 exists.
    pub serial: bool,
}

/// Everything in the `state` file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotState {
    /// The machine to rebuild.
    pub machine: MachineConfig,
    /// Interrupt controllers, PIT, clock.
    pub vm: VmState,
    /// Each vCPU, by id.
    pub vcpus: Vec<VcpuState>,
    /// Each device.
    pub devices: DevicesState,
}

/// The `state` file's bytes for `state`.
pub fn encode(state: &SnapshotState) -> Result<Vec<u8>, SnapshotError> {
    let payload = serde_json::to_vec(state).map_err(|e| SnapshotError::Format(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Parses a `state` file: header, checksum, payload, and the consistency
/// checks a hostile file could otherwise slip past (vCPU count and ids,
/// memory size, irqchip ids). Never panics, whatever `bytes` holds.
pub fn decode(bytes: &[u8]) -> Result<SnapshotState, SnapshotError> {
    let bad = |what: &str| SnapshotError::Format(what.to_string());
    if bytes.len() < HEADER_LEN {
        return Err(bad(
            "shorter than its header (truncated, or not a snapshot)",
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err(bad("not a tinyvmm snapshot (bad magic)"));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(SnapshotError::Version(version));
    }
    let len = u64::from(word(12)) | u64::from(word(16)) << 32;
    if len > MAX_PAYLOAD {
        return Err(bad("payload length is implausible"));
    }
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(SnapshotError::Format(format!(
            "payload is {} bytes, the header says {len} (truncated or extended)",
            payload.len()
        )));
    }
    let stored = word(20);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let state: SnapshotState =
        serde_json::from_slice(payload).map_err(|e| SnapshotError::Format(e.to_string()))?;
    check(&state)?;
    Ok(state)
}

/// What must hold between the parts of a parsed state.
fn check(state: &SnapshotState) -> Result<(), SnapshotError> {
    let m = &state.machine;
    let bad = |what: String| Err(SnapshotError::Format(what));
    if let Err(e) = crate::config::validate_memory(m.memory, &m.memory.to_string()) {
        return bad(format!("memory size: {e}"));
    }
    if m.vcpus == 0 || m.vcpus > crate::config::MAX_VCPUS {
        return bad(format!("{} vCPUs", m.vcpus));
    }
    let ids: Vec<u8> = state.vcpus.iter().map(|v| v.id).collect();
    if ids != (0..m.vcpus).collect::<Vec<_>>() {
        return bad(format!("vCPU states {ids:?} for {} vCPUs", m.vcpus));
    }
    if !["virtio", "serial", "none"].contains(&m.console.as_str()) {
        return bad(format!("console {:?}", m.console));
    }
    if !vm_state_is_consistent(&state.vm) {
        return bad("interrupt controller ids".into());
    }
    if state
        .vcpus
        .iter()
        .any(|v| v.cpuid.len() > kvm_bindings::KVM_MAX_CPUID_ENTRIES)
    {
        return bad("CPUID has too many entries".into());
    }
    Ok(())
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
