//! Facts about the host the VMM runs on, read from /proc and /sys: the one
//! parser of each /proc format (`procfs`), this process's own CPU time and
//! memory (`process`), tap devices for virtio-net (`tap`), and what kind of KVM this is (`kvm_emulates_guest_kernel`).

pub mod process;
pub mod procfs;
pub mod tap;

use std::path::Path;

/// Present when KVM is the paravirtual `kvm_pvm` module (a VM inside a
/// VM without hardware virtualization): its instruction emulator runs guest
/// kernel code, guest user code runs natively. docs/host-kvm.md says what
/// follows for the VMM (a conservative CPU template, longer Linux boots).
pub const KVM_PVM_MODULE: &str = "/sys/module/kvm_pvm";

/// Whether this host's KVM emulates guest kernel mode (`kvm_pvm` loaded).
/// The one probe the VMM, `compare`, the tests and the benches all use.
pub fn kvm_emulates_guest_kernel() -> bool {
    Path::new(KVM_PVM_MODULE).exists()
}
