//! `VmConfig`: what to boot, as plain data. No KVM types here.
//!
//! The CLI turns argv into a `VmConfig`; `validate()` rejects bad input with a
//! one-line message before any KVM call is made.

use std::path::PathBuf;

use crate::arch::x86_64::layout::{CMDLINE_MAX_SIZE, HIMEM_START};

#[path = "config_devices.rs"]
mod devices;
pub use devices::{parse_disk, parse_net, parse_vsock};

/// The default command line when `--cmdline` is not given; the console
/// option and device entries (`virtio_mmio.device=`) are appended to it.
/// `reboot=k`: reboot through the i8042 reset (there is no ACPI);
/// `panic=1`: reboot one second after a panic; `io_delay=none`: no writes to
/// port 0x80 (our boot-marker port); `quiet`: every console byte costs a VM exit.
pub const DEFAULT_CMDLINE: &str = "reboot=k panic=1 pci=off io_delay=none quiet";

/// Default guest memory: 128 MiB.
pub const DEFAULT_MEMORY: u64 = 128 << 20;
/// The most vCPUs we configure (the MP table and our APIC IDs are 8-bit).
pub const MAX_VCPUS: u8 = 32;
/// Smallest guest memory that can hold the boot structures and a kernel.
pub const MIN_MEMORY: u64 = 2 * HIMEM_START;

/// Errors in a configuration, each naming the argument and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The memory size could not be parsed.
    #[error("--memory {0:?}: expected a size such as 128, 128M, 512K or 2G (MiB when no suffix)")]
    MemorySyntax(String),
    /// The memory size is out of range.
    #[error("--memory {0:?}: {1}")]
    MemoryRange(String, &'static str),
    /// Bad vCPU count.
    #[error("--vcpus {0}: must be between 1 and {1}")]
    Vcpus(u64, u64),
    /// The command line has a character the kernel cannot take.
    #[error("--cmdline: {0}")]
    Cmdline(String),
    /// A path argument is unusable before we even read it.
    #[error("{0}")]
    Path(String),
}

/// Which device carries the guest console on the process's stdin/stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsoleKind {
    /// The 8250 UART at 0x3f8 (`console=ttyS0`); one VM exit per byte.
    Serial,
    /// A virtio console (`console=hvc0`), the default: one VM exit per
    /// buffer rather than per byte. Needs CONFIG_VIRTIO_CONSOLE and
    /// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES in the guest kernel.
    Virtio,
    /// No console on stdio.
    None,
}

/// Which CPUID the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuTemplate {
    /// `minimal` when the host's KVM emulates guest kernel mode (the `kvm_pvm`
    /// module is loaded), else `host`.
    Auto,
    /// Everything KVM supports (`KVM_GET_SUPPORTED_CPUID`), topology set per vCPU.
    Host,
    /// `host` minus the features an instruction emulator may not run: CX16,
    /// XSAVE/AVX family and leaf 0xD, SMAP, POPCNT, FSGSBASE, RDRAND, RDSEED,
    /// INVPCID, PCID, RDPID, PKU.
    Minimal,
}

/// The kernel to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// An ELF vmlinux or a bzImage on disk.
    File(PathBuf),
    /// The tiny guest built into this binary.
    Embedded,
}

/// Everything needed to build one VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// The guest kernel.
    pub kernel: KernelSource,
    /// Optional initramfs, loaded at the top of low memory.
    pub initrd: Option<PathBuf>,
    /// Base command line; devices append their own entries.
    pub cmdline: String,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Console device on stdio.
    pub console: ConsoleKind,
    /// Whether the 8250 is present at all (early boot and panic messages).
    pub serial: bool,
    /// CPUID template.
    pub cpu_template: CpuTemplate,
    /// Print boot-marker times on stderr.
    pub boot_timer: bool,
    /// Print VM-exit statistics on stderr at exit.
    pub stats: bool,
    /// Seccomp sandbox mode.
    pub sandbox: crate::seccomp::Sandbox,
    /// Switch to this (uid, gid) once the VM is built.
    pub user: Option<(u32, u32)>,
    /// Disks, in order: the first is /dev/vda.
    pub disks: Vec<crate::devices::virtio::block::disk::DiskConfig>,
    /// Network devices on taps, in order: the first is eth0.
    pub nets: Vec<crate::devices::virtio::net::NetConfig>,
    /// A virtio entropy device (virtio-rng) filled from the host's getrandom(2).
    pub rng: bool,
    /// The virtio socket device (`--vsock`), if any.
    pub vsock: Option<crate::devices::virtio::vsock::VsockConfig>,
    /// This process builds more VMs after this one (`--repeat`): it keeps
    /// the build stage's sandbox and capabilities, which a build needs.
    pub rebuilds: bool,
    /// Where and when to take snapshots (`--snapshot-on-marker`, `--snapshot-dir`).
    pub snapshot: Option<SnapshotPlan>,
    /// `run --bundle`: an OCI bundle's workload (docs/bundle.md).
    pub bundle: Option<BundleMode>,
    /// Sample the guest (`--profile`).
    pub profile: Option<crate::profile::ProfileConfig>,
}

/// When a running VM is saved (issue 13, docs/snapshot.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotPlan {
    /// The snapshot directory (created if missing).
    pub dir: PathBuf,
    /// Save at the first user-space boot marker and exit 0; otherwise save
    /// on SIGUSR1 and continue.
    pub on_marker: bool,
}

/// What `run --bundle` changes in a VM: hvc0 carries the workload's stdout
/// (and stdin), a second virtio console (hvc1) its stderr and, host to
/// guest, the control lines; kernel messages (the 8250) go to a file or
/// nowhere; the first SIGINT/SIGTERM is forwarded to the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleMode {
    /// Where kernel messages go (`--kernel-log`); none: nowhere.
    pub kernel_log: Option<PathBuf>,
    /// How long the workload has after a forwarded signal before the VM is stopped.
    pub stop_timeout: std::time::Duration,
    /// `process.terminal`: the host terminal goes raw and hvc0 is the
    /// workload's terminal; otherwise stdin is passed as it is.
    pub terminal: bool,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            kernel: KernelSource::Embedded,
            initrd: None,
            cmdline: DEFAULT_CMDLINE.to_string(),
            memory: DEFAULT_MEMORY,
            vcpus: 1,
            console: ConsoleKind::Virtio,
            serial: true,
            cpu_template: CpuTemplate::Auto,
            boot_timer: false,
            stats: false,
            sandbox: crate::seccomp::Sandbox::On,
            user: None,
            disks: Vec::new(),
            nets: Vec::new(),
            rng: true,
            vsock: None,
            rebuilds: false,
            snapshot: None,
            bundle: None,
            profile: None,
        }
    }
}

impl VmConfig {
    /// Checks what can be checked without touching KVM or reading files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_memory(self.memory, &format!("{}", self.memory))?;
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(ConfigError::Vcpus(self.vcpus.into(), MAX_VCPUS.into()));
        }
        // One image twice would lock itself out ("in use"): say what it is.
        // The same file is the same (device, inode), whatever the path.
        use std::os::unix::fs::MetadataExt;
        let ids: Vec<_> = self
            .disks
            .iter()
            .map(|d| std::fs::metadata(&d.path).ok().map(|m| (m.dev(), m.ino())))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            if id.is_some() && ids[..i].contains(id) {
                return Err(ConfigError::Path(format!(
                    "--disk {}: the same image is given twice",
                    self.disks[i].path.display()
                )));
            }
        }
        // Nor a bundle's VM: its second console and control channel are
        // not restored (docs/snapshot.md).
        if self.snapshot.is_some() && self.bundle.is_some() {
            return Err(ConfigError::Path(
                "--snapshot-on-marker/--snapshot-dir: a --bundle VM cannot be saved yet".into(),
            ));
        }
        if let Some(p) = &self.profile {
            if !(1..=crate::profile::MAX_HZ).contains(&p.hz) {
                return Err(ConfigError::Path(format!(
                    "--profile-hz {}: must be between 1 and {}",
                    p.hz,
                    crate::profile::MAX_HZ
                )));
            }
            if p.output.as_os_str().is_empty() || p.output.is_dir() {
                return Err(ConfigError::Path(format!(
                    "--profile {:?}: expected a file to write the folded stacks to",
                    p.output
                )));
            }
        }
        validate_cmdline(&self.cmdline)
    }
}

/// Parses `--memory`: a number of MiB, or a number with a K, M or G suffix
/// (an optional trailing `B` or `iB` is accepted: `512MiB`).
pub fn parse_memory(text: &str) -> Result<u64, ConfigError> {
    let syntax = || ConfigError::MemorySyntax(text.to_string());
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    // One optional "IB" or "B" after the unit, not a repeated one ("128MIBIB").
    let unit_str = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (digits, shift) = match unit_str.chars().last() {
        Some('K') => (&unit_str[..unit_str.len() - 1], 10),
        Some('M') => (&unit_str[..unit_str.len() - 1], 20),
        Some('G') => (&unit_str[..unit_str.len() - 1], 30),
        Some(c) if c.is_ascii_digit() && unit_str.len() == upper.len() => (unit_str, 20),
        _ => return Err(syntax()),
    };
    // Digits only: Rust's integer parser would take a sign ("+128M").
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    let number: u64 = digits.parse().map_err(|_| syntax())?;
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or_else(|| ConfigError::MemoryRange(text.to_string(), "too large"))?;
    validate_memory(bytes, text)?;
    Ok(bytes)
}

/// Checks a guest RAM size in bytes (`text` is how the user wrote it).
pub fn validate_memory(bytes: u64, text: &str) -> Result<(), ConfigError> {
    let range = |why| Err(ConfigError::MemoryRange(text.to_string(), why));
    if bytes == 0 {
        return range("must be more than zero");
    }
    if bytes % 4096 != 0 {
        return range("must be a multiple of 4 KiB (the page size)");
    }
    if bytes < MIN_MEMORY {
        return range("too small: at least 2 MiB is needed for the boot structures and a kernel");
    }
    // 1 TiB: far more than a micro-VM needs, and below every host's
    // guest-physical address width.
    if bytes > 1 << 40 {
        return range("too large: at most 1 TiB");
    }
    Ok(())
}

/// The kernel takes printable ASCII only, and at most `CMDLINE_MAX_SIZE - 1` bytes.
pub fn validate_cmdline(cmdline: &str) -> Result<(), ConfigError> {
    if let Some(c) = cmdline.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(ConfigError::Cmdline(format!(
            "contains the character {c:?}; only printable ASCII is allowed"
        )));
    }
    if cmdline.len() >= CMDLINE_MAX_SIZE {
        return Err(ConfigError::Cmdline(format!(
            "is {} bytes long; the x86 boot protocol allows at most {}",
            cmdline.len(),
            CMDLINE_MAX_SIZE - 1
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_with_and_without_suffix() {
        assert_eq!(parse_memory("128").unwrap(), 128 << 20);
        assert_eq!(parse_memory("128M").unwrap(), 128 << 20);
        assert_eq!(parse_memory("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_memory("4096k").unwrap(), 4 << 20);
        assert_eq!(parse_memory("2G").unwrap(), 2 << 30);
        assert_eq!(parse_memory("5GB").unwrap(), 5 << 30);
    }

    #[test]
    fn bad_memory_sizes_are_rejected_with_the_reason() {
        assert!(matches!(
            parse_memory("lots"),
            Err(ConfigError::MemorySyntax(_))
        ));
        assert!(matches!(
            parse_memory(""),
            Err(ConfigError::MemorySyntax(_))
        ));
        assert!(matches!(
            parse_memory("12X"),
            Err(ConfigError::MemorySyntax(_))
        ));
        assert!(matches!(
            parse_memory("-1"),
            Err(ConfigError::MemorySyntax(_))
        ));
        let zero = parse_memory("0").unwrap_err().to_string();
        assert!(zero.contains("more than zero"), "{zero}");
        let unaligned = parse_memory("129K").unwrap_err().to_string();
        assert!(unaligned.contains("4 KiB"), "{unaligned}");
        assert!(
            parse_memory("1M")
                .unwrap_err()
                .to_string()
                .contains("too small")
        );
        assert!(
            parse_memory("2048G")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        assert!(parse_memory("99999999999999999G").is_err());
        for bad in [
            "+128M", "+128", "128MIBIB", "128BB", "128IB", "M", "1 28M", "0x80M",
        ] {
            assert!(
                matches!(parse_memory(bad), Err(ConfigError::MemorySyntax(_))),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn cmdline_rejects_control_characters_and_overlong_lines() {
        assert!(validate_cmdline("console=ttyS0 quiet").is_ok());
        assert!(validate_cmdline("a\nb").is_err());
        assert!(validate_cmdline("a\u{7f}").is_err());
        assert!(validate_cmdline("é").is_err());
        assert!(validate_cmdline(&"x".repeat(CMDLINE_MAX_SIZE - 1)).is_ok());
        let long = validate_cmdline(&"x".repeat(CMDLINE_MAX_SIZE)).unwrap_err();
        assert!(long.to_string().contains("at most 2047"));
    }

    #[test]
    fn validate_checks_vcpus() {
        let mut cfg = VmConfig::default();
        assert!(cfg.validate().is_ok());
        cfg.vcpus = 0;
        assert_eq!(cfg.validate(), Err(ConfigError::Vcpus(0, MAX_VCPUS.into())));
        cfg.vcpus = 33;
        assert!(cfg.validate().is_err(), "Firecracker's cap: 32");
        cfg.vcpus = 32;
        assert!(cfg.validate().is_ok());
        cfg.vcpus = 255;
        assert!(cfg.validate().is_err());
    }
}
