//! The disk bench's second part (issue 11's open point): requests on the
//! main thread's event loop (`--disk ...,iothread=off`) against a thread
//! of the disk's own (`iothread=on`), side by side in one run, rounds
//! interleaved (off, on, then on, off...). Each VM boots once and its
//! guest (`tinyvmm.diskbench=MIB,OPS,load`) runs diskbench three times:
//! /dev/vda alone; /dev/vda and /dev/vdb at once (two disks busy); /dev/vda
//! while a guest shell floods the console (the event loop also carries the
//! console's queue and stdout). From `--stats`: VM exits, notifications and
//! interrupts per disk request, the VMM's resident memory at exit outside
//! guest RAM; from /proc, the VMM's peak thread count.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Figures, parse_prefixed, stat};

/// What one VM's run gave.
#[derive(Clone, Debug, Default)]
pub struct ModeRun {
    /// /dev/vda alone.
    pub solo: Option<Figures>,
    /// /dev/vda and /dev/vdb at once (each).
    pub two: Option<(Figures, Figures)>,
    /// /dev/vda under the console flood.
    pub console: Option<Figures>,
    /// Flood lines the host received, and the console case's duration (s).
    pub flood: (u64, f64),
    /// VM exits, disk requests, notifications, interrupts (both disks).
    pub exits: Option<(f64, f64, f64, f64)>,
    /// VMM resident memory at exit outside guest RAM, MiB.
    pub vmm_mib: Option<f64>,
    /// Most threads the VMM had at once.
    pub peak_threads: usize,
}

/// Boots `program args` with `iothread=on|off` added to both `--disk`s
/// and collects what `ModeRun` holds.
pub fn run_mode(
    program: &Path,
    args: &[String],
    images: [&Path; 2],
    iothread: bool,
    timeout: Duration,
) -> ModeRun {
    let mode = if iothread { "on" } else { "off" };
    let mut all = args.to_vec();
    for img in images {
        all.push("--disk".into());
        all.push(format!("path={},direct=on,iothread={mode}", img.display()));
    }
    if !all.iter().any(|a| a == "--stats") {
        all.push("--stats".into());
    }
    let mut child = Command::new(program)
        .args(&all)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("launch tinyvmm");
    let pid = child.id();
    let out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        // Keep every line but the flood's, which are only counted.
        let (mut kept, mut flood) = (String::new(), 0u64);
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("flood ") {
                flood += 1;
            } else {
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        (kept, flood)
    });
    let mut err = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let mut peak_threads = 0;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            peak_threads = peak_threads.max(tasks.count());
        }
        if start.elapsed() > timeout {
            eprintln!("iothread={mode}: no end after {timeout:?}; killed");
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (stdout, flood) = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let solo = parse_prefixed(&stdout, "");
    let console = parse_prefixed(&stdout, "console: ");
    let two = parse_prefixed(&stdout, "two-vda: ").zip(parse_prefixed(&stdout, "two-vdb: "));
    if solo.is_none() || two.is_none() || console.is_none() {
        eprintln!(
            "iothread={mode}: diskbench figures missing; stdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }
    let console_secs = console_seconds(&stdout);
    let disk = |name: &str, key: &str| stat(&stderr, &format!("disk {name} "), key);
    let exits = (|| {
        let reqs = disk("vda", "requests")? + disk("vdb", "requests")?;
        let notes = disk("vda", "notifications")? + disk("vdb", "notifications")?;
        let irqs = disk("vda", "interrupts")? + disk("vdb", "interrupts")?;
        Some((stat(&stderr, "VM exits;", "VM")?, reqs, notes, irqs))
    })();
    ModeRun {
        solo,
        two,
        console,
        flood: (flood, console_secs),
        exits,
        vmm_mib: stat(&stderr, "resident memory at exit", "MiB"),
        peak_threads,
    }
}

/// The console case's diskbench time, seconds (its three tests' sum).
fn console_seconds(stdout: &str) -> f64 {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("console: diskbench "))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("ns=")))
        .filter_map(|v| v.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

/// Prints the table: one column per mode, every round's value.
pub fn print(runs: &[(bool, ModeRun)]) {
    let per = |on: bool, get: &dyn Fn(&ModeRun) -> Option<f64>| -> Vec<Option<f64>> {
        runs.iter()
            .filter(|(m, _)| *m == on)
            .map(|(_, r)| get(r))
            .collect()
    };
    let cell = |v: &[Option<f64>], prec: usize| {
        v.iter()
            .map(|x| x.map_or("–".into(), |x| format!("{x:.prec$}")))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let mean = |v: &[Option<f64>]| {
        let got: Vec<f64> = v.iter().flatten().copied().collect();
        (!got.is_empty()).then(|| got.iter().sum::<f64>() / got.len() as f64)
    };
    println!(
        "\n| per round (interleaved) | event loop (iothread=off) | I/O thread (iothread=on) | on : off (means) |"
    );
    println!("|---|---|---|---|");
    type Get = Box<dyn Fn(&ModeRun) -> Option<f64>>;
    let fig = |f: fn(&ModeRun) -> Option<Figures>, g: fn(&Figures) -> f64| -> Get {
        Box::new(move |r| f(r).map(|x| g(&x)))
    };
    let rows: Vec<(&str, usize, Get)> = vec![
        (
            "vda alone: seq read MiB/s",
            1,
            fig(|r| r.solo, |f| f.read_mibs),
        ),
        (
            "vda alone: seq write MiB/s",
            1,
            fig(|r| r.solo, |f| f.write_mibs),
        ),
        (
            "vda alone: 4 KiB random read IOPS",
            0,
            fig(|r| r.solo, |f| f.iops),
        ),
        (
            "two disks at once: seq read MiB/s (vda)",
            1,
            fig(|r| r.two.map(|t| t.0), |f| f.read_mibs),
        ),
        (
            "two disks at once: seq read MiB/s (vdb)",
            1,
            fig(|r| r.two.map(|t| t.1), |f| f.read_mibs),
        ),
        (
            "two disks at once: seq write MiB/s (vda)",
            1,
            fig(|r| r.two.map(|t| t.0), |f| f.write_mibs),
        ),
        (
            "two disks at once: seq write MiB/s (vdb)",
            1,
            fig(|r| r.two.map(|t| t.1), |f| f.write_mibs),
        ),
        (
            "two disks at once: random read IOPS (vda)",
            0,
            fig(|r| r.two.map(|t| t.0), |f| f.iops),
        ),
        (
            "two disks at once: random read IOPS (vdb)",
            0,
            fig(|r| r.two.map(|t| t.1), |f| f.iops),
        ),
        (
            "console flood: vda seq read MiB/s",
            1,
            fig(|r| r.console, |f| f.read_mibs),
        ),
        (
            "console flood: vda seq write MiB/s",
            1,
            fig(|r| r.console, |f| f.write_mibs),
        ),
        (
            "console flood: vda random read IOPS",
            0,
            fig(|r| r.console, |f| f.iops),
        ),
        (
            "console flood: flood lines/s reaching the host",
            0,
            Box::new(|r| (r.flood.1 > 0.0).then(|| r.flood.0 as f64 / r.flood.1)),
        ),
        (
            "VM exits per disk request (whole boot)",
            2,
            Box::new(|r| r.exits.map(|e| e.0 / e.1.max(1.0))),
        ),
        (
            "notifications per disk request",
            2,
            Box::new(|r| r.exits.map(|e| e.2 / e.1.max(1.0))),
        ),
        (
            "interrupts per disk request",
            2,
            Box::new(|r| r.exits.map(|e| e.3 / e.1.max(1.0))),
        ),
        (
            "VMM resident memory at exit, outside guest RAM, MiB",
            2,
            Box::new(|r| r.vmm_mib),
        ),
        (
            "VMM threads (peak)",
            0,
            Box::new(|r| Some(r.peak_threads as f64)),
        ),
    ];
    for (what, prec, get) in rows {
        let (off, on) = (per(false, &*get), per(true, &*get));
        let ratio = match (mean(&on), mean(&off)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".into(),
        };
        println!(
            "| {what} | {} | {} | {ratio} |",
            cell(&off, prec),
            cell(&on, prec)
        );
    }
}
