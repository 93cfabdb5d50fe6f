//! `tinyvmm run`'s command line: clap derive, with `--help` written once in
//! the `///`s, turned into a `VmConfig` (plain data). The top-level command
//! (`run`, `compare`) is in main.rs, so the core never names the lab.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::config::{self, ConfigError, ConsoleKind, CpuTemplate, KernelSource, VmConfig};

/// Whether a device (the 8250, the entropy device) is present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Present.
    On,
    /// Absent.
    Off,
}

/// `tinyvmm run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Guest kernel: an uncompressed ELF vmlinux (fastest) or a bzImage.
    /// Without it, the built-in tiny guest boots.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initramfs (an uncompressed cpio boots fastest), loaded at the top of low memory.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Replace the base kernel command line. Default:
    /// "console=hvc0 reboot=k panic=1 pci=off io_delay=none quiet"
    /// (console=ttyS0 with --console serial).
    /// Device entries (virtio_mmio.device=...) are always appended.
    #[arg(long, value_name = "STRING")]
    pub cmdline: Option<String>,
    /// Guest memory: MiB, or a size with a K, M or G suffix [default: 128M;
    /// with --bundle: the org.tinyvmm.memory annotation, else
    /// linux.resources.memory.limit + 64M, else 128M].
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Number of vCPUs [default: 1; with --bundle: the org.tinyvmm.vcpus
    /// annotation, else 1].
    #[arg(long, value_name = "N")]
    pub vcpus: Option<u64>,
    /// Which device carries the guest console on stdin/stdout: the virtio
    /// console (hvc0), the 8250 (ttyS0), or neither.
    #[arg(long, value_enum, default_value = "virtio")]
    pub console: ConsoleKind,
    /// The 8250 serial port (early boot and panic messages even when the
    /// console is elsewhere).
    #[arg(long, value_enum, default_value = "on")]
    pub serial: OnOff,
    /// CPUID template: `minimal` hides features an instruction emulator
    /// cannot run (CX16, XSAVE/AVX, SMAP, POPCNT, ...); `auto` picks it when
    /// the kvm_pvm module is loaded, else `host`.
    #[arg(long, value_enum, default_value = "auto")]
    pub cpu_template: CpuTemplate,
    /// Print boot-marker times on stderr (guest writes 123 to 0xc0000000,
    /// or 0x40/0x41 to port 0x80).
    #[arg(long)]
    pub boot_timer: bool,
    /// Print VM-exit counts by reason and address, and VMM time, at exit.
    #[arg(long)]
    pub stats: bool,
    /// Boot the same VM N times in this process, one after another, printing
    /// each boot's times and the process's open fds, threads and RSS.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Run without the seccomp sandbox. For debugging only: a guest that
    /// exploits a VMM bug then has the whole process's privileges.
    #[arg(long)]
    pub no_seccomp: bool,
    /// A virtio disk: path=FILE[,readonly=on|off][,direct=on|off][,id=NAME].
    /// Repeatable: the first is /dev/vda, the next /dev/vdb, ...
    /// `readonly=on` offers it read-only; `direct=on` opens it with O_DIRECT
    /// (bypassing the host page cache); `id` is what the guest reads as its
    /// serial (at most 20 bytes). The image is locked: exclusively when
    /// writable, shared when read-only.
    #[arg(long, value_name = "path=FILE,...")]
    pub disk: Vec<String>,
    /// A virtio network device: tap=NAME[,mac=MAC] attaches an existing
    /// tap (Firecracker's model); ip=ADDR/PREFIX[,mac=MAC] creates a tap
    /// for this VM with the host side at ADDR/PREFIX (needs CAP_NET_ADMIN;
    /// the tap is gone when tinyvmm exits). Repeatable: eth0, eth1, ...
    #[arg(long, value_name = "tap=NAME|ip=ADDR/PREFIX,...")]
    pub net: Vec<String>,
    /// A virtio entropy device (virtio-rng, Linux's /dev/hwrng) that fills
    /// the guest's buffers from the host's getrandom(2), so that the guest
    /// never waits for entropy. On by default, as in Cloud Hypervisor
    /// (Firecracker makes its entropy device opt-in).
    #[arg(long, value_enum, default_value = "on")]
    pub rng: OnOff,
    /// A virtio socket device: cid=N,socket=PATH (Firecracker's host side).
    /// tinyvmm listens on PATH: a client writes `CONNECT <port>\n` to reach
    /// a guest listener and is answered `OK <host port>\n`; a guest
    /// connecting to host port P reaches a listener on `PATH_P`.
    #[arg(long, value_name = "cid=N,socket=PATH")]
    pub vsock: Option<String>,
    /// Once the VM is built, run as this user id (with --gid), as
    /// Firecracker's jailer does: the VMM then holds no root privilege
    /// while the guest runs. Every capability is dropped either way.
    #[arg(long, value_name = "UID", requires = "gid")]
    pub uid: Option<u32>,
    /// Once the VM is built, run as this group id (with --uid).
    #[arg(long, value_name = "GID", requires = "uid")]
    pub gid: Option<u32>,
    /// When the guest first writes a user-space boot marker (123 to
    /// 0xc0000000, or 0x41 to port 0x80), pause it, save a snapshot in DIR
    /// (created if missing) and exit 0. `tinyvmm restore DIR` resumes it.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["snapshot_dir", "repeat"])]
    pub snapshot_on_marker: Option<PathBuf>,
    /// Save a snapshot in DIR each time tinyvmm gets SIGUSR1; the VM then
    /// continues.
    #[arg(long, value_name = "DIR", conflicts_with = "repeat")]
    pub snapshot_dir: Option<PathBuf>,
    /// Sample every vCPU's guest instruction pointer (and call chain where
    /// the guest keeps frame pointers) while the VM runs; write folded
    /// stacks to FILE and a flame graph to FILE.svg, and print the top
    /// functions at exit.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Samples per second per vCPU with --profile (default 1000, at most 20000).
    #[arg(long, value_name = "N", requires = "profile")]
    pub profile_hz: Option<u32>,
    /// Symbols for --profile: a System.map, /proc/kallsyms copy or ELF file
    /// (default: the kernel's own ELF symbol table).
    #[arg(long, value_name = "FILE", requires = "profile")]
    pub profile_symbols: Option<PathBuf>,
    /// Test only: a thread makes a forbidden system call once its run-time
    /// filter is in: CALL@THREAD with CALL one of getppid, open, socket,
    /// clone, exec, tiocsti, mprotect-exec and THREAD main or vcpu.
    #[arg(long, hide = true, value_name = "CALL@THREAD", num_args = 0..=1,
          default_missing_value = "getppid@vcpu")]
    pub seccomp_test_violation: Option<String>,
    /// Run the process of the OCI bundle DIR (DIR/config.json, runtime-spec
    /// 1.x) in a micro-VM whose root is the bundle's root.path, as `crun run
    /// --bundle DIR` would run it in a container (docs/bundle.md). The
    /// kernel defaults to the Linux guest kernels/build.sh built.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// With --bundle: kernel messages go to FILE (default: nowhere).
    #[arg(long, value_name = "FILE", requires = "bundle")]
    pub kernel_log: Option<PathBuf>,
    /// With --bundle: seconds the workload has, after a SIGINT/SIGTERM
    /// forwarded to it, before the VM is stopped (a second signal stops it
    /// at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0,
          value_parser = parse_seconds)]
    pub stop_timeout: f64,
    /// With --bundle: the container's id (accepted as crun and runc take
    /// it; a VM needs no state directory).
    #[arg(value_name = "ID", requires = "bundle")]
    pub id: Option<String>,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=86_400.0).contains(s))
        .ok_or_else(|| format!("{text:?}: expected seconds between 0 and 86400"))
}

impl RunArgs {
    /// The `VmConfig` these options describe (not yet validated against KVM).
    pub fn to_config(&self) -> Result<VmConfig, ConfigError> {
        let memory = match &self.memory {
            Some(m) => config::parse_memory(m)?,
            None => config::DEFAULT_MEMORY,
        };
        let vcpus_arg = self.vcpus.unwrap_or(1);
        let vcpus = u8::try_from(vcpus_arg)
            .ok()
            .filter(|&n| (1..=config::MAX_VCPUS).contains(&n))
            .ok_or(ConfigError::Vcpus(vcpus_arg, config::MAX_VCPUS.into()))?;
        let cmdline = match &self.cmdline {
            Some(c) => c.clone(),
            None => {
                let console = match self.console {
                    ConsoleKind::Serial => "console=ttyS0 ",
                    ConsoleKind::Virtio => "console=hvc0 ",
                    ConsoleKind::None => "",
                };
                format!("{console}{}", config::DEFAULT_CMDLINE)
            }
        };
        let kernel = match &self.kernel {
            Some(p) => KernelSource::File(p.clone()),
            None => KernelSource::Embedded,
        };
        let cfg = VmConfig {
            kernel,
            initrd: self.initrd.clone(),
            cmdline,
            memory,
            vcpus,
            console: self.console,
            serial: self.serial == OnOff::On,
            cpu_template: self.cpu_template,
            boot_timer: self.boot_timer,
            stats: self.stats,
            user: self.uid.zip(self.gid),
            disks: self
                .disk
                .iter()
                .map(|d| config::parse_disk(d))
                .collect::<Result<_, _>>()?,
            nets: self
                .net
                .iter()
                .map(|n| config::parse_net(n))
                .collect::<Result<_, _>>()?,
            rng: self.rng == OnOff::On,
            vsock: self.vsock.as_deref().map(config::parse_vsock).transpose()?,
            rebuilds: self.repeat > 1,
            snapshot: match (&self.snapshot_on_marker, &self.snapshot_dir) {
                (Some(dir), _) => Some(config::SnapshotPlan {
                    dir: dir.clone(),
                    on_marker: true,
                }),
                (None, Some(dir)) => Some(config::SnapshotPlan {
                    dir: dir.clone(),
                    on_marker: false,
                }),
                (None, None) => None,
            },
            bundle: None,
            profile: self
                .profile
                .as_ref()
                .map(|output| crate::profile::ProfileConfig {
                    output: output.clone(),
                    hz: self.profile_hz.unwrap_or(crate::profile::DEFAULT_HZ),
                    symbols: self.profile_symbols.clone(),
                }),
            sandbox: match (self.no_seccomp, &self.seccomp_test_violation) {
                (true, _) => crate::seccomp::Sandbox::Off,
                (false, Some(v)) => crate::seccomp::Sandbox::Test(
                    crate::seccomp::Violation::parse(v).ok_or_else(|| {
                        ConfigError::Path(format!(
                            "--seccomp-test-violation {v:?}: expected CALL@THREAD"
                        ))
                    })?,
                ),
                (false, None) => crate::seccomp::Sandbox::On,
            },
        };
        if cfg.rebuilds && cfg.user.is_some() {
            return Err(ConfigError::Path(
                "--uid/--gid cannot be used with --repeat: each boot needs the rights the switch gives up".into(),
            ));
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `tinyvmm run`'s options alone, as main.rs's `run` subcommand parses them.
    #[derive(Debug, Parser)]
    struct Run {
        #[command(flatten)]
        args: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<Run, clap::Error> {
        Run::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
    }

    fn run_config(args: &[&str]) -> Result<VmConfig, ConfigError> {
        parse(args).unwrap().args.to_config()
    }

    #[test]
    fn defaults_boot_the_tiny_guest_on_the_virtio_console() {
        let c = run_config(&[]).unwrap();
        assert_eq!(c.kernel, KernelSource::Embedded);
        assert_eq!(c.memory, 128 << 20);
        assert_eq!(c.vcpus, 1);
        assert!(c.cmdline.starts_with("console=hvc0 "));
        assert_eq!(c.console, ConsoleKind::Virtio);
        assert!(c.cmdline.contains("reboot=k"));
        assert!(c.serial);
        assert!(c.rng, "the entropy device is on by default");
        assert!(!run_config(&["--rng", "off"]).unwrap().rng);
        assert!(parse(&["--rng", "maybe"]).is_err());
    }

    #[test]
    fn options_reach_the_config() {
        let c = run_config(&[
            "--kernel",
            "/k",
            "--initrd",
            "/i",
            "--memory",
            "1G",
            "--vcpus",
            "4",
            "--cmdline",
            "quiet",
            "--console",
            "none",
            "--serial",
            "off",
            "--cpu-template",
            "minimal",
            "--boot-timer",
            "--stats",
        ])
        .unwrap();
        assert_eq!(c.kernel, KernelSource::File("/k".into()));
        assert_eq!(c.initrd, Some("/i".into()));
        assert_eq!((c.memory, c.vcpus), (1 << 30, 4));
        assert_eq!(c.cmdline, "quiet");
        assert_eq!(c.console, ConsoleKind::None);
        assert!(!c.serial && c.boot_timer && c.stats);
        assert_eq!(c.cpu_template, CpuTemplate::Minimal);
    }

    #[test]
    fn bad_values_name_the_argument() {
        assert!(
            run_config(&["--vcpus", "0"])
                .unwrap_err()
                .to_string()
                .contains("--vcpus 0")
        );
        assert!(run_config(&["--vcpus", "300"]).is_err());
        assert!(
            run_config(&["--memory", "129K"])
                .unwrap_err()
                .to_string()
                .contains("--memory")
        );
        assert!(
            run_config(&["--cmdline", "a\tb"])
                .unwrap_err()
                .to_string()
                .contains("--cmdline")
        );
        assert!(parse(&["--vcpus", "two"]).is_err());
        assert!(parse(&["--console", "vga"]).is_err());
    }
}
