//! The container side of comparisons: the same root filesystem as the VM's
//! initramfs, packaged as an OCI bundle (`bundle`) and run by crun or runc
//! (`runtime`). A runtime that is missing or unusable is reported with the
//! reason, never skipped silently.

pub mod bundle;
pub mod runtime;

use std::path::PathBuf;

pub use bundle::Bundle;
pub use runtime::{Runtime, RuntimeKind};

/// Why the container side cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The runtime is not installed.
    #[error("{0} not found in PATH (install the Debian package {0})")]
    Missing(&'static str),
    /// The runtime is installed but does not work.
    #[error("{0} --version failed: {1}")]
    Unusable(&'static str, String),
    /// Rootful containers need root.
    #[error("{0} needs root to create namespaces and cgroups (run as root)")]
    NotRoot(&'static str),
    /// The root filesystem is unusable.
    #[error("rootfs {0}: {1}")]
    Rootfs(PathBuf, String),
    /// The bundle could not be written.
    #[error("bundle {0}: {1}")]
    Bundle(PathBuf, String),
}
