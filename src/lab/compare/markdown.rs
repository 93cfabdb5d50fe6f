//! The VMs-vs-containers table as Markdown: the classic rows (startup
//! time, size, resource usage, isolation, density, persistence, network) with the
//! measured figures, one column per path that ran.

use std::fmt::Write;

use super::paths::PathId;
use super::results::{PathResult, Report};
use crate::lab::measure::Summary;

/// A time in ms, with a unit that suits it.
pub fn time(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// A size in KiB as MiB (or KiB when small).
pub fn kib(k: f64) -> String {
    if k >= 1024.0 {
        format!("{:.1} MiB", k / 1024.0)
    } else {
        format!("{k:.0} KiB")
    }
}

/// A bar label: a time in ms, or MiB.
pub fn time_or_size(v: f64, unit: &str) -> String {
    if unit == "ms" {
        time(v)
    } else {
        format!("{v:.1} MiB")
    }
}

fn bytes(b: u64) -> String {
    kib(b as f64 / 1024.0)
}

fn spread(s: &Summary, f: fn(f64) -> String) -> String {
    if s.n == 1 {
        return format!("{} (1 run)", f(s.median));
    }
    format!(
        "{} (p90 {}; {}–{}; n={})",
        f(s.median),
        f(s.p90),
        f(s.min),
        f(s.max),
        s.n
    )
}

type Cell = fn(&PathResult) -> Option<String>;

const ROWS: &[(&str, Cell)] = &[
    ("**Startup time**: spawn → marker line", |p| {
        Some(spread(&p.startup.as_ref()?.marker_ms, time))
    }),
    ("Startup time: spawn → exit", |p| {
        Some(spread(&p.startup.as_ref()?.exit_ms, time))
    }),
    (
        "Startup time: tinyvmm's boot timer (guest marker, from VMM start)",
        |p| {
            Some(spread(
                p.startup.as_ref()?.vmm_boot_timer_ms.as_ref()?,
                time,
            ))
        },
    ),
    ("**Size**: image on disk", |p| {
        let s = p.size.as_ref()?;
        Some(format!("{} ({})", bytes(s.image_bytes), s.image))
    }),
    ("Size: VMM / runtime executable", |p| {
        let s = p.size.as_ref()?;
        Some(format!(
            "{} ({})",
            bytes(s.launcher_bytes),
            s.launcher_contains
        ))
    }),
    (
        "**Resource usage**: VMM / runtime peak RSS, guest RAM excluded",
        |p| Some(spread(&p.footprint.as_ref()?.launcher_peak_kib, kib)),
    ),
    ("Resource usage: guest RAM touched", |p| {
        Some(spread(
            p.footprint.as_ref()?.guest_touched_kib.as_ref()?,
            kib,
        ))
    }),
    ("Resource usage: workload process peak RSS", |p| {
        Some(spread(
            p.footprint.as_ref()?.workload_peak_kib.as_ref()?,
            kib,
        ))
    }),
    (
        "Resource usage: memory charged to the instance's cgroup (peak: processes, guest RAM, tmpfs, page cache)",
        |p| Some(spread(p.footprint.as_ref()?.charged_kib.as_ref()?, kib)),
    ),
    (
        "Resource usage: total per instance (cgroup peak where measured, else the peaks above) / PSS at exit",
        |p| {
            let f = p.footprint.as_ref()?;
            Some(format!(
                "{} / {}",
                kib(f.total_kib.median),
                kib(f.pss_kib.median)
            ))
        },
    ),
    (
        "**Isolation**: kernel the workload's system calls reach",
        |p| Some(p.isolation.as_ref()?.kernel.clone()),
    ),
    (
        "Isolation: host-facing process, seccomp, host syscalls reachable, capabilities",
        |p| {
            let i = p.isolation.as_ref()?;
            let who = if p.path.is_vm() { "VMM" } else { "workload" };
            let calls = i
                .host_syscalls
                .map_or("filtered".into(), |n| format!("all {n}"));
            let caps = i.capabilities.map_or("?".into(), |c| c.to_string());
            Some(format!(
                "{who}: seccomp {}, syscalls {calls}, {caps} capabilities",
                i.seccomp
            ))
        },
    ),
    ("Isolation: boundary", |p| {
        Some(p.isolation.as_ref()?.boundary.clone())
    }),
    (
        "**Density**: K started at once → all markers; total memory (peak sum / PSS sum)",
        |p| {
            let d = p.density.as_ref()?;
            let markers = d.all_markers_ms.map_or("not all markers".into(), time);
            Some(format!(
                "K={} ({} ok): {markers}, all exited {}; {} / {}",
                d.instances,
                d.succeeded,
                time(d.all_exited_ms),
                kib(d.total_peak_kib as f64),
                kib(d.total_pss_kib as f64)
            ))
        },
    ),
    ("**Persistence**", |p| {
        let configured = p.persistence.clone()?;
        Some(match &p.persistence_measured {
            Some(m) => format!("{}; timed runs: {configured}", m.sentence()),
            None => configured,
        })
    }),
    (
        "**Network**: host ↔ workload over TCP, measured (→ to the workload / ← from it; 1-byte round trip)",
        |p| Some(p.network.as_ref()?.cell()),
    ),
];

/// Ratio line: medians relative to the first present path of `order`.
fn ratios(report: &Report, what: &str, value: fn(&PathResult) -> Option<f64>) -> Option<String> {
    let order = [
        PathId::TinyvmmTiny,
        PathId::Crun,
        PathId::Runc,
        PathId::QemuLinux,
        PathId::Firecracker,
        PathId::CloudHypervisor,
        PathId::TinyvmmLinux,
        PathId::TinyvmmTinyRestored,
        PathId::TinyvmmLinuxRestored,
        PathId::TinyvmmDisk,
        PathId::TinyvmmBundle,
        PathId::QemuBundle,
    ];
    let vals: Vec<(&str, f64)> = order
        .iter()
        .filter_map(|id| report.paths.iter().find(|p| p.path == *id))
        .filter_map(|p| Some((p.label, value(p)?)))
        .collect();
    let base = vals.first()?.1;
    if vals.len() < 2 || base <= 0.0 {
        return None;
    }
    let names: Vec<&str> = vals.iter().map(|v| v.0).collect();
    let nums: Vec<String> = vals
        .iter()
        .map(|v| {
            let r = v.1 / base;
            if r >= 100.0 {
                format!("{r:.0}")
            } else {
                format!("{r:.2}")
            }
        })
        .collect();
    Some(format!(
        "- {what}: {} = {}",
        names.join(" : "),
        nums.join(" : ")
    ))
}

/// Renders the report.
pub fn render(report: &Report) -> String {
    let present: Vec<&PathResult> = report.paths.iter().filter(|p| p.absent.is_none()).collect();
    let mut s = String::new();
    let _ = writeln!(s, "## VMs vs containers, measured\n");
    let _ = writeln!(s, "Host: {}\n", report.host.describe());
    let w = &report.workload;
    let _ = writeln!(
        s,
        "Workload: print `TINYVMM-GUEST-OK`, loop {} iterations, touch {} MiB, exit {}. Figures are medians unless marked.\n",
        w.loop_iters, w.touch_mib, w.exit
    );
    if !present.is_empty() {
        let _ = write!(s, "| |");
        for p in &present {
            let _ = write!(s, " {} |", p.label);
        }
        let _ = write!(s, "\n|---|");
        for _ in &present {
            let _ = write!(s, "---|");
        }
        let _ = writeln!(s);
        for (name, cell) in ROWS {
            let _ = write!(s, "| {name} |");
            for p in &present {
                let _ = write!(
                    s,
                    " {} |",
                    cell(p).unwrap_or_else(|| "–".into()).replace('|', "/")
                );
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
    }
    let r1 = ratios(report, "Startup (spawn → marker)", |p| {
        Some(p.startup.as_ref()?.marker_ms.median)
    });
    let r2 = ratios(report, "Footprint (total per instance)", |p| {
        Some(p.footprint.as_ref()?.total_kib.median)
    });
    if r1.is_some() || r2.is_some() {
        let _ = writeln!(s, "Ratios (medians, first path = 1):\n");
        for r in [r1, r2].into_iter().flatten() {
            let _ = writeln!(s, "{r}");
        }
        let _ = writeln!(s);
    }
    let runs: Vec<String> = present
        .iter()
        .map(|p| format!("{} {}", p.label, p.runs))
        .collect();
    if !runs.is_empty() {
        let _ = writeln!(s, "Runs per path: {}.\n", runs.join(", "));
    }
    for p in &present {
        if let Some(how) = &p.how {
            let _ = writeln!(s, "- {} ran as: {how}", p.label);
        }
    }
    for p in report.paths.iter().filter(|p| p.absent.is_some()) {
        let _ = writeln!(
            s,
            "- **{}: absent**: {}",
            p.label,
            p.absent.as_deref().unwrap_or("")
        );
    }
    for p in &present {
        for f in &p.failures {
            let _ = writeln!(s, "- {} failed {f}", p.label);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_suit_the_magnitude() {
        assert_eq!(time(2.345), "2.35 ms");
        assert_eq!(time(23.45), "23.4 ms");
        assert_eq!(time(234.5), "234 ms");
        assert_eq!(time(41_234.0), "41.2 s");
        assert_eq!(kib(512.0), "512 KiB");
        assert_eq!(kib(3072.0), "3.0 MiB");
    }

    #[test]
    fn spread_shows_median_p90_and_range() {
        let s = Summary::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(
            spread(&s, time),
            "2.00 ms (p90 2.80 ms; 1.00 ms–3.00 ms; n=3)"
        );
        let one = Summary::of(&[5.0]).unwrap();
        assert_eq!(spread(&one, time), "5.00 ms (1 run)");
    }
}
