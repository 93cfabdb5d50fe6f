//! The host a comparison ran on, read from the system: every figure is a
//! figure for this host only.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// What the report says about the machine.
#[derive(Clone, Debug, Serialize)]
pub struct Host {
    /// CPU model name.
    pub cpu: String,
    /// CPUs available to us.
    pub cpus: usize,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// Distribution (os-release PRETTY_NAME).
    pub os: String,
    /// Which KVM module provides /dev/kvm.
    pub kvm: String,
    /// Whether guest kernel mode is emulated (kvm_pvm): Linux boots slowly.
    pub kvm_emulates_guest_kernel: bool,
    /// When (UTC, ISO 8601).
    pub date: String,
    /// /proc/loadavg's 1, 5 and 15 minute load averages when the run began:
    /// other work on the host slows every path, VMs with more threads most.
    pub load_average: String,
}

fn field<'a>(text: &'a str, key: &str, sep: char) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.split_once(sep).filter(|(k, _)| k.trim() == key))
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// Which KVM module serves /dev/kvm: `kvm_pvm`, `kvm_intel`, `kvm_amd`,
/// `kvm` (another), or `none`.
pub fn kvm_module() -> &'static str {
    ["kvm_pvm", "kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| Path::new("/sys/module").join(m).exists())
        .unwrap_or(if Path::new("/dev/kvm").exists() {
            "kvm"
        } else {
            "none"
        })
}

impl Host {
    /// Reads the host description.
    pub fn detect() -> Host {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let pvm = crate::host::kvm_emulates_guest_kernel();
        let kvm = kvm_module();
        Host {
            cpu: field(&cpuinfo, "model name", ':')
                .unwrap_or("unknown")
                .to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib: field(&meminfo, "MemTotal", ':')
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |k| k / 1024),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os: field(&read("/etc/os-release"), "PRETTY_NAME", '=')
                .unwrap_or("unknown")
                .to_string(),
            kvm: kvm.to_string(),
            kvm_emulates_guest_kernel: pvm,
            date: utc_date(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            ),
            load_average: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        format!(
            "{}, {} CPUs, {} MiB, {}, Linux {}, KVM: {}{}; {}, load average {} at the start",
            self.cpu,
            self.cpus,
            self.memory_mib,
            self.os,
            self.kernel,
            self.kvm,
            if self.kvm_emulates_guest_kernel {
                " (no hardware virtualization: guest kernel mode is emulated by the host kernel, guest user mode runs on the CPU)"
            } else {
                ""
            },
            self.date,
            self.load_average
        )
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM UTC` (days to civil date:
/// H. Hinnant's algorithm, proleptic Gregorian calendar).
pub fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13 UTC");
    }

    #[test]
    fn fields_are_found() {
        assert_eq!(
            field("model name\t: Xeon\nflags : a", "model name", ':'),
            Some("Xeon")
        );
        assert_eq!(
            field("PRETTY_NAME=\"Debian 12\"\n", "PRETTY_NAME", '='),
            Some("Debian 12")
        );
    }

    #[test]
    fn this_host_is_described() {
        let h = Host::detect();
        assert!(h.cpus >= 1 && h.memory_mib > 0 && !h.kernel.is_empty());
        assert!(h.describe().contains("Linux"));
        assert_eq!(h.load_average.split(' ').count(), 3, "{}", h.load_average);
    }
}
