//! QEMU microvm's command line, built in one place for every user of the
//! lab: compare's QEMU path (`compare/peers.rs`), the disk and network
//! benches and the many-processes test. It knows the kernel, initramfs and
//! kernel command line, the memory, one vCPU, the options this host needs,
//! and virtio-blk and virtio-net devices.
//!
//! - Machine `microvm,acpi=off`: our guest kernel has no ACPI, and without
//!   ACPI tables QEMU lists its virtio-mmio devices on the kernel command
//!   line (`virtio_mmio.device=`), as tinyvmm does, so the guest finds
//!   them (with ACPI it finds none).
//! - The guest's console is the 8250 on stdio (`console=ttyS0` is the
//!   caller's), an i8042 lets the guest's `reboot=k` reset the machine and
//!   `-no-reboot` turns that reset into QEMU's exit (status 0).
//! - Where the host's KVM emulates guest kernel mode (kvm_pvm,
//!   docs/host-kvm.md): the CPU model [`PVM_QEMU_CPU`] and, once, the
//!   kernel options tinyvmm's `minimal` template adds
//!   (`MINIMAL_KERNEL_ARGS`), because `-cpu` flags do not reach the guest
//!   kernel's `cpuid` there (without them the guest stops at XRSTOR).

use std::path::{Path, PathBuf};

use crate::arch::x86_64::cpuid::MINIMAL_KERNEL_ARGS;

/// The executable, looked up in PATH.
pub const PROGRAM: &str = "qemu-system-x86_64";

/// CPU features QEMU hides on hosts whose KVM emulates guest kernel mode
/// (the same features as tinyvmm's `minimal` CPUID template;
/// `arch-capabilities`: the host refuses MSR 0x10a).
pub const PVM_QEMU_CPU: &str = "host,-arch-capabilities,-cx16,-xsave,-popcnt,-smap,-fsgsbase,-rdrand,-rdseed,-invpcid,-pcid,-rdpid,-avx,-avx2,-pku";

/// QEMU in PATH, if installed.
pub fn find() -> Option<PathBuf> {
    crate::lab::which(PROGRAM)
}

/// A virtio device on the microvm's virtio-mmio bus.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Device {
    /// virtio-blk on a raw image; `direct`: `cache=none` (O_DIRECT).
    Disk { path: PathBuf, direct: bool },
    /// virtio-net on an existing tap device.
    Tap { ifname: String },
}

/// One QEMU microvm guest: 1 vCPU, Linux booted from `-kernel`/`-initrd`.
#[derive(Clone, Debug)]
pub struct Microvm {
    kernel: PathBuf,
    initrd: PathBuf,
    cmdline: String,
    memory: String,
    pvm: bool,
    devices: Vec<Device>,
}

impl Microvm {
    /// `memory` as QEMU's `-m` takes it ("128M"); `pvm`: the host's KVM
    /// emulates guest kernel mode (`crate::host::kvm_emulates_guest_kernel`).
    pub fn new(kernel: &Path, initrd: &Path, cmdline: &str, memory: &str, pvm: bool) -> Microvm {
        Microvm {
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            cmdline: cmdline.to_string(),
            memory: memory.to_string(),
            pvm,
            devices: Vec::new(),
        }
    }

    /// Replaces the kernel command line (the host's options are still added).
    pub fn cmdline(mut self, cmdline: &str) -> Microvm {
        self.cmdline = cmdline.to_string();
        self
    }

    /// Adds a virtio-blk disk on the raw image `path`; `direct`: bypass
    /// the host's page cache (`cache=none`).
    pub fn disk(mut self, path: &Path, direct: bool) -> Microvm {
        self.devices.push(Device::Disk {
            path: path.to_path_buf(),
            direct,
        });
        self
    }

    /// Adds a virtio-net device on the existing tap `ifname` (no scripts).
    pub fn tap(mut self, ifname: &str) -> Microvm {
        self.devices.push(Device::Tap {
            ifname: ifname.to_string(),
        });
        self
    }

    /// The kernel command line the guest gets.
    pub fn kernel_cmdline(&self) -> String {
        if self.pvm && !self.cmdline.contains(MINIMAL_KERNEL_ARGS) {
            format!("{} {MINIMAL_KERNEL_ARGS}", self.cmdline)
        } else {
            self.cmdline.clone()
        }
    }

    /// QEMU's arguments.
    pub fn args(&self) -> Vec<String> {
        let cpu = if self.pvm { PVM_QEMU_CPU } else { "host" };
        let mut a: Vec<String> = [
            "-M",
            "microvm,acpi=off",
            "-enable-kvm",
            "-cpu",
            cpu,
            "-m",
            &self.memory,
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-no-reboot",
            "-serial",
            "stdio",
            "-device",
            "i8042",
        ]
        .map(String::from)
        .to_vec();
        for (n, d) in self.devices.iter().enumerate() {
            let (backend, device) = match d {
                Device::Disk { path, direct } => (
                    [
                        "-drive".to_string(),
                        format!(
                            "id=d{n},file={},format=raw,if=none,cache={},aio=threads",
                            path.display(),
                            if *direct { "none" } else { "writeback" }
                        ),
                    ],
                    format!("virtio-blk-device,drive=d{n}"),
                ),
                Device::Tap { ifname } => (
                    [
                        "-netdev".to_string(),
                        format!("tap,id=n{n},ifname={ifname},script=no,downscript=no"),
                    ],
                    format!("virtio-net-device,netdev=n{n}"),
                ),
            };
            a.extend(backend);
            a.extend(["-device".to_string(), device]);
        }
        a.extend([
            "-kernel".to_string(),
            self.kernel.display().to_string(),
            "-initrd".to_string(),
            self.initrd.display().to_string(),
            "-append".to_string(),
            self.kernel_cmdline(),
        ]);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(args: &'a [String], key: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == key)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn the_host_options_are_added_once_and_only_where_needed() {
        let vm = Microvm::new(
            Path::new("/k"),
            Path::new("/i"),
            "console=ttyS0",
            "128M",
            true,
        );
        let args = vm.args();
        assert_eq!(value(&args, "-cpu"), [PVM_QEMU_CPU]);
        assert_eq!(
            value(&args, "-append"),
            [format!("console=ttyS0 {MINIMAL_KERNEL_ARGS}").as_str()]
        );
        // A command line that has them already keeps one copy.
        let again = vm.clone().cmdline(&vm.kernel_cmdline()).args();
        assert_eq!(value(&again, "-append"), value(&args, "-append"));
        let hw = Microvm::new(Path::new("/k"), Path::new("/i"), "x", "256M", false).args();
        assert_eq!(value(&hw, "-cpu"), ["host"]);
        assert_eq!(value(&hw, "-append"), ["x"]);
        assert_eq!(value(&hw, "-m"), ["256M"]);
        assert_eq!(value(&hw, "-M"), ["microvm,acpi=off"]);
        assert_eq!(value(&hw, "-kernel"), ["/k"]);
        assert_eq!(value(&hw, "-initrd"), ["/i"]);
    }

    #[test]
    fn devices_get_a_backend_and_a_virtio_mmio_device_each() {
        let args = Microvm::new(Path::new("/k"), Path::new("/i"), "x", "128M", false)
            .disk(Path::new("/img"), true)
            .tap("tap7")
            .disk(Path::new("/b"), false)
            .args();
        assert_eq!(
            value(&args, "-drive"),
            [
                "id=d0,file=/img,format=raw,if=none,cache=none,aio=threads",
                "id=d2,file=/b,format=raw,if=none,cache=writeback,aio=threads"
            ]
        );
        assert_eq!(
            value(&args, "-netdev"),
            ["tap,id=n1,ifname=tap7,script=no,downscript=no"]
        );
        assert_eq!(
            value(&args, "-device"),
            [
                "i8042",
                "virtio-blk-device,drive=d0",
                "virtio-net-device,netdev=n1",
                "virtio-blk-device,drive=d2"
            ]
        );
    }
}
