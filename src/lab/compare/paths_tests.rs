//! Tests of `paths.rs`: which paths are Linux and VMs, and that a path
//! that cannot run here is a reason, not a failure.

use super::*;

#[test]
fn linux_paths_and_vm_paths_are_told_apart() {
    let linux: Vec<_> = PathId::ALL.into_iter().filter(|p| p.is_linux()).collect();
    assert_eq!(
        linux,
        [
            PathId::TinyvmmLinux,
            PathId::TinyvmmDisk,
            PathId::QemuLinux,
            PathId::Firecracker,
            PathId::CloudHypervisor,
            PathId::TinyvmmBundle,
            PathId::QemuBundle,
            PathId::TinyvmmLinuxRestored
        ]
    );
    assert!(PathId::TinyvmmTiny.is_vm() && !PathId::Runc.is_vm());
}

#[test]
fn missing_kernel_is_a_reason_not_a_failure() {
    let ctx = Context {
        tinyvmm: "/nonexistent/tinyvmm".into(),
        kernels: "/nonexistent/kernels".into(),
        memory: (128 << 20, "128M".into()),
        workload: Workload::default(),
        pvm: true,
        scratch: std::env::temp_dir(),
        linux_timeout: Duration::from_secs(1),
        firecracker: None,
        cloud_hypervisor: None,
    };
    assert!(ctx.linux_cmdline().contains("noxsave"));
    let e = ctx.linux_images().unwrap_err();
    assert!(e.contains("vmlinux missing"), "{e}");
}

#[test]
fn tree_size_counts_files() {
    let d = std::env::temp_dir().join(format!("tinyvmm-tree-{}", std::process::id()));
    fs::create_dir_all(d.join("a")).unwrap();
    fs::write(d.join("a/f"), [0u8; 100]).unwrap();
    fs::write(d.join("g"), [0u8; 20]).unwrap();
    assert_eq!(tree_size(&d), 120);
    fs::remove_dir_all(d).unwrap();
}
