//! Where the Linux guest built by `kernels/build.sh` lives (vmlinux,
//! bzImage, initramfs.cpio, rootfs/): the one resolver `compare`, the tests
//! and the benches share.

use std::path::{Path, PathBuf};

/// The environment variable that names the directory explicitly.
pub const KERNEL_DIR_ENV: &str = "TINYVMM_KERNEL_DIR";

/// The kernel directory for the tinyvmm executable at `exe`:
/// 1. `$TINYVMM_KERNEL_DIR` when set;
/// 2. `kernels/` beside the executable's directory, when it exists
///    (`target/release/tinyvmm` finds `target/kernels`, where build.sh
///    writes by default);
/// 3. `target/kernels` under the current directory.
pub fn kernel_dir_for(exe: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os(KERNEL_DIR_ENV) {
        return dir.into();
    }
    exe.parent()
        .and_then(Path::parent)
        .map(|target| target.join("kernels"))
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from("target/kernels"))
}

/// The vmlinux `run --bundle` boots without `--kernel`, the first that
/// exists of: `$TINYVMM_KERNEL_DIR/vmlinux`; `../kernels/vmlinux` from the
/// directory of the executable `exe` (`target/release/tinyvmm` finds
/// `target/kernels/vmlinux`); the newest `vmlinux` in build.sh's cache,
/// `${XDG_CACHE_HOME:-~/.cache}/tinyvmm/kernels/*/`.
pub fn default_vmlinux(exe: &Path) -> Option<PathBuf> {
    let env = std::env::var_os(KERNEL_DIR_ENV).map(|d| PathBuf::from(d).join("vmlinux"));
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("kernels/vmlinux"));
    if let Some(found) = env.into_iter().chain(beside).find(|p| p.is_file()) {
        return Some(found);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?
        .join("tinyvmm/kernels");
    std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| {
            let p = e.ok()?.path().join("vmlinux");
            Some((p.metadata().ok()?.modified().ok()?, p))
        })
        .max()
        .map(|(_, p)| p)
}

/// `kernel_dir_for` this running executable.
pub fn kernel_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    kernel_dir_for(&exe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_beside_the_executable_is_found() {
        if std::env::var_os(KERNEL_DIR_ENV).is_some() {
            eprintln!("SKIP part of this test: {KERNEL_DIR_ENV} is set and wins");
            return;
        }
        let root = std::env::temp_dir().join(format!("tinyvmm-kdir-{}", std::process::id()));
        std::fs::create_dir_all(root.join("release")).unwrap();
        std::fs::create_dir_all(root.join("kernels")).unwrap();
        let exe = root.join("release/tinyvmm");
        assert_eq!(kernel_dir_for(&exe), root.join("kernels"));
        std::fs::remove_dir_all(root.join("kernels")).unwrap();
        assert_eq!(kernel_dir_for(&exe), PathBuf::from("target/kernels"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
