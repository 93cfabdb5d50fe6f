//! The measurement lab: `tinyvmm compare`, its probes and the container
//! side of every comparison. The lab uses the VMM core (it launches the
//! `tinyvmm` executable and reads the core's config parsers); nothing in
//! the core imports the lab.

pub mod compare;
pub mod container;
pub mod measure;
pub mod qemu;

use std::path::PathBuf;

/// The line every workload prints when it runs, on every path (VM or
/// container): the common "the workload is up" marker.
pub const MARKER: &str = "TINYVMM-GUEST-OK";

/// Finds the executable `name` in `PATH` (crun, runc, QEMU, ...).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("surely-not-a-program-tinyvmm").is_none());
    }
}
