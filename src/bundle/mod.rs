//! `tinyvmm run --bundle DIR`: an OCI bundle (runtime-spec 1.x) run as a
//! micro-VM (docs/bundle.md). The bundle becomes a VM configuration before
//! any VM call: `artifacts` is what any VMM needs (used by `launch` and by
//! the lab's QEMU path), `spec` reads and sorts `config.json`, `rootfs` makes (or
//! finds cached) a read-only ext4 image of `root.path`, `settings` and
//! `initramfs` pack the guest's init (guest/init/) with the process's
//! settings; `launch` runs it through the ordinary VMM with
//! `VmConfig::bundle` set (vmm/bundle_io.rs: consoles, control channel).

pub mod artifacts;
pub mod cache;
pub mod initramfs;
pub mod launch;
pub mod rootfs;
pub mod settings;
pub mod spec;

use crate::exit::{EXIT_BAD_CONFIG, EXIT_BAD_IMAGE};

/// A bundle that cannot run: one line and an exit code (125: a bad
/// configuration; 126: a resource that cannot be used).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct BundleError {
    /// What is wrong, naming the file or field.
    pub message: String,
    /// The process exit code.
    pub code: u8,
}

impl BundleError {
    /// A bad configuration (125).
    pub fn config(message: String) -> Self {
        BundleError {
            message,
            code: EXIT_BAD_CONFIG,
        }
    }
    /// A resource that cannot be used (126).
    pub fn resource(message: String) -> Self {
        BundleError {
            message,
            code: EXIT_BAD_IMAGE,
        }
    }
}
