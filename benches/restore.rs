//! criterion groups for snapshots (issue 13), side by side in one run:
//! - `restore-first-instruction`: `tinyvmm restore` of the tiny guest
//!   (saved at its boot marker) from spawn to the restored guest's first
//!   `KVM_RUN`, wall and CPU time (tinyvmm's own `--stats` figures);
//! - `restore-to-exit`: spawn to exit of the tiny guest restored, beside a
//!   boot of it and `crun run` of the busybox workload (spawn to exit);
//! - `restore-to-output` (opt-in `TINYVMM_BENCH_LINUX=1`: one Linux boot to
//!   make the snapshot): Linux restored at its warm ready point, from spawn
//!   of `restore` with the request line on stdin to TINYVMM-GUEST-OK on
//!   stdout, beside `crun run` from spawn to the same line;
//! - `restore-pss`: PSS per instance with 1, 10 and 100 tiny guests
//!   restored at once from one snapshot (taken with SIGUSR1 in a user-mode
//!   loop, so the instances stay up while measured). Value axis: KiB.
//!
//! Run under the heavy lock: `cargo bench --bench restore`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::kib::Kib;
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use tinyvmm::lab::compare::paths::PathId;

const TINYVMM: &str = env!("CARGO_BIN_EXE_tinyvmm");

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("tinyvmm-bench-restore-{}", std::process::id()))
}

fn tinyvmm(args: &[&str]) -> Command {
    let mut c = Command::new(TINYVMM);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// The tiny guest saved at its boot marker (then: prints, exits 0).
fn tiny_snapshot(dir: &Path) -> Option<()> {
    let d = dir.to_str()?;
    let out = tinyvmm(&["run", "--snapshot-on-marker", d]).output().ok()?;
    if out.status.code() != Some(0) {
        eprintln!(
            "tiny snapshot failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(())
}

/// A "... NAME X ms" figure of `--stats`.
fn stat_ms(stderr: &str, name: &str) -> Duration {
    let at = stderr
        .find(name)
        .unwrap_or_else(|| panic!("no {name:?} in {stderr}"))
        + name.len();
    let ms: f64 = stderr[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    Duration::from_secs_f64(ms / 1e3)
}

fn restore_stats(dir: &str) -> String {
    let out = tinyvmm(&["restore", dir, "--stats"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

fn first_instruction(c: &mut Criterion) {
    let dir = scratch().join("tiny");
    if tiny_snapshot(&dir).is_none() {
        return;
    }
    let d = dir.to_str().unwrap().to_string();
    let mut group = c.benchmark_group("restore-first-instruction");
    group.sampling_mode(SamplingMode::Flat).sample_size(30);
    for (what, name) in [
        ("wall", ", wall time"),
        ("cpu", "CPU time before the first KVM_RUN"),
    ] {
        group.bench_function(
            BenchmarkId::new(what, "tinyvmm + tiny guest (restored)"),
            |b| b.iter_custom(|iters| (0..iters).map(|_| stat_ms(&restore_stats(&d), name)).sum()),
        );
    }
    group.finish();
}

fn spawn_to_exit(args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = tinyvmm(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

fn to_exit(c: &mut Criterion) {
    let dir = scratch().join("tiny-exit");
    if tiny_snapshot(&dir).is_none() {
        return;
    }
    let d = dir.to_str().unwrap().to_string();
    let ctx = common::context();
    let crun = common::prepared(&ctx, &[PathId::Crun]);
    let mut group = c.benchmark_group("restore-to-exit");
    group.sampling_mode(SamplingMode::Flat).sample_size(30);
    group.bench_function(
        BenchmarkId::new("to-exit", "tinyvmm + tiny guest (restored)"),
        |b| b.iter_custom(|iters| (0..iters).map(|_| spawn_to_exit(&["restore", &d])).sum()),
    );
    group.bench_function(
        BenchmarkId::new("to-exit", "tinyvmm + tiny guest (boot)"),
        |b| b.iter_custom(|iters| (0..iters).map(|_| spawn_to_exit(&["run"])).sum()),
    );
    let mut n = 0;
    for p in &crun {
        group.bench_function(BenchmarkId::new("to-exit", p.id.label()), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        n += 1;
                        common::run_once(p, n, false).exit
                    })
                    .sum()
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&ctx.scratch);
}

/// Spawn of `restore` with the request on stdin to the marker line.
fn linux_restore_to_output(dir: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(TINYVMM)
        .args(["restore", dir])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"request\n").unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = None;
    for line in stdout.lines() {
        if line.unwrap().contains("TINYVMM-GUEST-OK") {
            seen = Some(start.elapsed());
            break;
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    seen.expect("the restored workload printed its line")
}

fn to_output(c: &mut Criterion) {
    if std::env::var_os(common::LINUX_OPT_IN).is_none_or(|v| v != "1") {
        eprintln!(
            "restore-to-output: not benched (set {}=1: one Linux boot)",
            common::LINUX_OPT_IN
        );
        return;
    }
    let ctx = common::context();
    let dir = scratch().join("linux");
    let d = dir.to_str().unwrap().to_string();
    let (k, i) = (
        ctx.kernels.join("vmlinux"),
        ctx.kernels.join("initramfs.cpio"),
    );
    let cmdline = "console=hvc0 reboot=k panic=1 pci=off io_delay=none quiet tinyvmm.ready=1";
    let out = tinyvmm(&[
        "run",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--cmdline",
        cmdline,
        "--snapshot-on-marker",
        &d,
    ])
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crun = common::prepared(&ctx, &[PathId::Crun]);
    let mut group = c.benchmark_group("restore-to-output");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.bench_function(
        BenchmarkId::new("to-output", "tinyvmm + Linux (restored)"),
        |b| b.iter_custom(|iters| (0..iters).map(|_| linux_restore_to_output(&d)).sum()),
    );
    let mut n = 0;
    for p in &crun {
        group.bench_function(BenchmarkId::new("to-output", p.id.label()), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        n += 1;
                        let r = common::run_once(p, n, false);
                        r.marker.unwrap_or(r.exit)
                    })
                    .sum()
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&ctx.scratch);
}

/// The tiny guest saved with SIGUSR1 in a long user-mode loop.
fn looping_snapshot(dir: &Path) -> Option<()> {
    let d = dir.to_str()?;
    let mut child = tinyvmm(&[
        "run",
        "--cmdline",
        "tiny.loop=100000000000",
        "--snapshot-dir",
        d,
    ])
    .spawn()
    .ok()?;
    let state = dir.join("state");
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
        if std::fs::metadata(&state).is_ok_and(|m| m.len() > 0) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    std::fs::metadata(&state)
        .is_ok_and(|m| m.len() > 0)
        .then_some(())
}

fn pss_kib(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn running_vcpu(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
        tasks.flatten().any(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "vcpu0")
        })
    })
}

/// Restores `n` instances at once, waits until each runs its vCPU, and
/// returns their mean PSS in KiB.
fn pss_per_instance(dir: &str, n: usize) -> f64 {
    let mut children: Vec<Child> = (0..n)
        .map(|_| tinyvmm(&["restore", dir]).spawn().unwrap())
        .collect();
    let until = Instant::now() + Duration::from_secs(60);
    while !children.iter().all(|c| running_vcpu(c.id())) {
        assert!(Instant::now() < until, "restores did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let total: f64 = children
        .iter()
        .map(|c| pss_kib(c.id()).expect("smaps_rollup"))
        .sum();
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    total / n as f64
}

fn pss(c: &mut Criterion<Kib>) {
    let dir = scratch().join("loop");
    if looping_snapshot(&dir).is_none() {
        eprintln!("restore-pss: the looping snapshot could not be made");
        return;
    }
    let d = dir.to_str().unwrap().to_string();
    let mut group = c.benchmark_group("restore-pss");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for n in [1usize, 10, 100] {
        group.measurement_time(Duration::from_secs(if n == 100 { 30 } else { 5 }));
        group.bench_function(
            BenchmarkId::new("pss-per-instance", format!("{n} restored tiny guests")),
            |b| b.iter_custom(|iters| (0..iters).map(|_| pss_per_instance(&d, n)).sum()),
        );
    }
    group.finish();
    let _ = std::fs::remove_dir_all(scratch());
}

criterion_group!(times, first_instruction, to_exit, to_output);
criterion_group! {
    name = memory;
    config = Criterion::default().with_measurement(Kib);
    targets = pss
}
criterion_main!(times, memory);
