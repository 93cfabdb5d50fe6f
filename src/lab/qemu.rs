//! QEMU microvm's command line, built in one place for every user of the
//! lab: compare's QEMU path (`compare/peers.rs`), the network probe and
//! bench, the disk bench (through compare's path) and the many-processes
//! test. It knows the kernel, initramfs and kernel command line, the
//! memory, the vCPUs, the options this host needs, and virtio devices in
//! the order the guest numbers them: virtio-blk (read-write or read-only),
//! virtio-net on a tap, virtio consoles on QEMU character devices (with
//! the 8250 sent nowhere) and virtio-rng.
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

/// A virtio device on the microvm's virtio-mmio bus (the guest numbers
/// them in the order they are added).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Device {
    /// virtio-blk on a raw image; `direct`: `cache=none` (O_DIRECT).
    Disk {
        path: PathBuf,
        direct: bool,
        read_only: bool,
    },
    /// virtio-net on an existing tap device.
    Tap { ifname: String },
    /// A virtio console (one port) on a QEMU character device: `kind`
    /// (`stdio`, `file`, ...) and its options.
    Console { kind: String, options: String },
    /// virtio-rng, fed by the host's entropy.
    Rng,
}

impl Device {
    /// QEMU's arguments for device number `n`.
    fn args(&self, n: usize) -> Vec<String> {
        let (backend, device) = match self {
            Device::Disk {
                path,
                direct,
                read_only,
            } => (
                vec![
                    "-drive".to_string(),
                    format!(
                        "id=d{n},file={},format=raw,if=none,cache={},aio=threads{}",
                        path.display(),
                        if *direct { "none" } else { "writeback" },
                        if *read_only { ",readonly=on" } else { "" }
                    ),
                ],
                format!("virtio-blk-device,drive=d{n}"),
            ),
            Device::Tap { ifname } => (
                vec![
                    "-netdev".to_string(),
                    format!("tap,id=n{n},ifname={ifname},script=no,downscript=no"),
                ],
                format!("virtio-net-device,netdev=n{n}"),
            ),
            Device::Console { kind, options } => (
                vec![
                    "-chardev".to_string(),
                    format!("{kind},id=c{n},{options}")
                        .trim_end_matches(',')
                        .to_string(),
                    "-device".to_string(),
                    format!("virtio-serial-device,id=s{n},max_ports=1"),
                ],
                format!("virtconsole,bus=s{n}.0,chardev=c{n}"),
            ),
            Device::Rng => (Vec::new(), "virtio-rng-device".to_string()),
        };
        let mut a = backend;
        a.extend(["-device".to_string(), device]);
        a
    }
}

/// One QEMU microvm guest: Linux booted from `-kernel`/`-initrd`, 1 vCPU
/// unless told, the kernel's console on the 8250 (stdio) unless told.
#[derive(Clone, Debug)]
pub struct Microvm {
    kernel: PathBuf,
    initrd: PathBuf,
    cmdline: String,
    memory: String,
    pvm: bool,
    vcpus: u8,
    serial: &'static str,
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
            vcpus: 1,
            serial: "stdio",
            devices: Vec::new(),
        }
    }

    /// vCPUs (`-smp`); on kvm_pvm hosts only one boots Linux.
    pub fn vcpus(mut self, n: u8) -> Microvm {
        self.vcpus = n;
        self
    }

    /// The 8250 goes nowhere (`-serial null`): for a guest whose console is
    /// a virtio console.
    pub fn serial_null(mut self) -> Microvm {
        self.serial = "null";
        self
    }

    /// Adds a virtio console on a QEMU character device of `kind` with
    /// `options`: `console("stdio", "signal=off")` is hvc0 on QEMU's
    /// stdin/stdout when it is the first console added.
    pub fn console(mut self, kind: &str, options: &str) -> Microvm {
        self.devices.push(Device::Console {
            kind: kind.to_string(),
            options: options.to_string(),
        });
        self
    }

    /// Adds a virtio-rng device.
    pub fn rng(mut self) -> Microvm {
        self.devices.push(Device::Rng);
        self
    }

    /// Adds a read-only virtio-blk disk on the raw image `path`.
    pub fn read_only_disk(mut self, path: &Path) -> Microvm {
        self.devices.push(Device::Disk {
            path: path.to_path_buf(),
            direct: false,
            read_only: true,
        });
        self
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
            read_only: false,
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
            &self.vcpus.to_string(),
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-no-reboot",
            "-serial",
            self.serial,
            "-device",
            "i8042",
        ]
        .map(String::from)
        .to_vec();
        for (n, d) in self.devices.iter().enumerate() {
            a.extend(d.args(n));
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

    /// Where the first value of `key` is.
    fn value_at(args: &[String], key: &str) -> usize {
        args.iter().position(|a| a == key).unwrap() + 1
    }

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

    #[test]
    fn a_guest_on_virtio_consoles_gets_them_in_order_and_no_serial() {
        // The shape of compare's bundle path: stdout on hvc0, stderr on
        // hvc1, a read-only root image, an entropy device.
        let args = Microvm::new(Path::new("/k"), Path::new("/i"), "c", "128M", false)
            .vcpus(2)
            .serial_null()
            .console("stdio", "signal=off")
            .console("file", "path=/dev/stderr,append=on")
            .read_only_disk(Path::new("/root.ext4"))
            .rng()
            .args();
        assert_eq!(value(&args, "-smp"), ["2"]);
        assert_eq!(value(&args, "-serial"), ["null"]);
        assert_eq!(
            value(&args, "-chardev"),
            [
                "stdio,id=c0,signal=off",
                "file,id=c1,path=/dev/stderr,append=on"
            ]
        );
        assert_eq!(
            value(&args, "-drive"),
            ["id=d2,file=/root.ext4,format=raw,if=none,cache=writeback,aio=threads,readonly=on"]
        );
        assert_eq!(
            value(&args, "-device"),
            [
                "i8042",
                "virtio-serial-device,id=s0,max_ports=1",
                "virtconsole,bus=s0.0,chardev=c0",
                "virtio-serial-device,id=s1,max_ports=1",
                "virtconsole,bus=s1.0,chardev=c1",
                "virtio-blk-device,drive=d2",
                "virtio-rng-device"
            ]
        );
        assert_eq!(
            Microvm::new(Path::new("/k"), Path::new("/i"), "c", "1G", false)
                .console("stdio", "")
                .args()[value_at(&args, "-chardev")],
            "stdio,id=c0"
        );
    }
}
