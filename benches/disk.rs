//! Disk benchmark (issue 11), side by side in one run on one image:
//! sequential read and write MiB/s and 4 KiB random-read IOPS measured by
//! /bin/diskbench (kernels/initramfs/diskbench.c, O_DIRECT) inside the
//! Linux guest under tinyvmm (`--disk ...,direct=on`) and under QEMU
//! microvm (`-device virtio-blk-device`, `cache=none`), and by the same
//! binary on the host reading the image file directly (the limit). Same
//! kernel, initramfs and command line for both VMMs (compare's); the image
//! is a raw file of non-zero bytes, O_DIRECT on every side, so neither
//! the host's nor the guest's page cache serves a read. For tinyvmm also
//! VM exits per request from `--stats`.
//!
//! Then the time to the boot marker with the root on a virtio disk
//! (`rootfs.ext4`, read-only) versus in the initramfs, same kernel,
//! alternating, as `compare` launches its `tinyvmm-disk` and
//! `tinyvmm-linux` paths.
//!
//! `cargo bench --bench disk` (run it under the machine's heavy-work lock:
//! `flock /work/.heavy.lock cargo bench --bench disk` on our shared hosts).
//! Linux boots take 15-30 s each on kvm_pvm hosts; sizes via
//! `TINYVMM_DISKBENCH=MIB,OPS` (default 64,2000), boot rounds via
//! `TINYVMM_DISKBENCH_BOOTS` (default 2). A missing kernel or QEMU is said
//! on stderr and that column is left out.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tinyvmm::lab::compare::paths::{self, Launcher, PathId};
use tinyvmm::lab::measure::{self, LaunchSpec};

/// One side's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    read_mibs: f64,
    write_mibs: f64,
    iops: f64,
}

/// diskbench's three lines -> figures.
fn parse(out: &str) -> Option<Figures> {
    let field = |test: &str, key: &str| -> Option<f64> {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("diskbench {test} ")))?;
        let v = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))?;
        v.parse().ok()
    };
    let mibs = |test| Some(field(test, "bytes")? / f64::from(1 << 20) / (field(test, "ns")? / 1e9));
    Some(Figures {
        read_mibs: mibs("seqread")?,
        write_mibs: mibs("seqwrite")?,
        iops: field("randread", "ops")? / (field("randread", "ns")? / 1e9),
    })
}

/// A number from a `--stats` line: the word before `unit` on the line holding `key`.
fn stat(stderr: &str, key: &str, unit: &str) -> Option<f64> {
    let line = stderr.lines().find(|l| l.contains(key))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches([',', ';']) == unit)?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

fn launch(program: &Path, args: Vec<String>, timeout: std::time::Duration) -> measure::RunRecord {
    let spec = LaunchSpec {
        program: program.to_path_buf(),
        args,
        marker: tinyvmm::lab::MARKER.into(),
        guest_memory: None,
        pre_exec: None,
        trace: false,
        trace_threads: false,
        timeout,
        cgroup: None,
    };
    measure::launch(&spec).expect("launch")
}

/// The prepared path's program and arguments with `extra` on the kernel
/// command line and `more` arguments added.
fn vm_args(
    id: PathId,
    ctx: &paths::Context,
    extra: &str,
    more: &[String],
) -> Option<(PathBuf, Vec<String>)> {
    let p = paths::prepare(id, ctx)
        .map_err(|e| eprintln!("{}: absent: {e}", id.label()))
        .ok()?;
    let Launcher::Vmm {
        program, mut args, ..
    } = p.launcher
    else {
        return None;
    };
    let at = args
        .iter()
        .position(|a| a == "--cmdline" || a == "-append")?;
    args[at + 1] = format!("{} {extra}", args[at + 1]);
    args.extend_from_slice(more);
    Some((program, args))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it without.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("disk bench: run with `cargo bench --bench disk`");
        return;
    }
    let (mib, ops) = std::env::var("TINYVMM_DISKBENCH")
        .ok()
        .and_then(|v| {
            let (a, b) = v.split_once(',')?;
            Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
        })
        .unwrap_or((64, 2000));
    let boots: usize = std::env::var("TINYVMM_DISKBENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut ctx = common::context();
    ctx.linux_timeout = std::time::Duration::from_secs(900);
    std::fs::create_dir_all(&ctx.scratch).expect("scratch dir");
    let diskbench = ctx.kernels.join("rootfs/bin/diskbench");
    assert!(
        diskbench.is_file(),
        "{} missing: run kernels/build.sh",
        diskbench.display()
    );

    // The image: 2 x MIB MiB of non-zero bytes (not sparse: holes read fast).
    let image = ctx.scratch.join("disk.img");
    {
        let mut f = std::fs::File::create(&image).expect("image");
        let chunk: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1)
            .collect();
        for _ in 0..2 * mib {
            f.write_all(&chunk).expect("write image");
        }
        f.sync_all().expect("sync image");
    }
    let host = chrono_line();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "disk bench: {host}; load {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "image {} MiB raw, tests on its first {mib} MiB: 1 MiB sequential requests, {ops} random 4 KiB reads, O_DIRECT",
        2 * mib
    );

    // Host: the limit.
    let out = Command::new(&diskbench)
        .args([image.to_str().unwrap(), &mib.to_string(), &ops.to_string()])
        .output()
        .expect("diskbench on the host");
    let host_fig = parse(&String::from_utf8_lossy(&out.stdout));

    // tinyvmm and QEMU: the same kernel, initramfs and command line.
    let extra = format!("tinyvmm.diskbench={mib},{ops}");
    let tv = vm_args(
        PathId::TinyvmmLinux,
        &ctx,
        &extra,
        &[
            "--disk".into(),
            format!("path={},direct=on", image.display()),
        ],
    )
    .map(|(prog, args)| launch(&prog, args, ctx.linux_timeout));
    let qemu_drive = format!(
        "id=d0,file={},format=raw,if=none,cache=none,aio=threads",
        image.display()
    );
    let qm = vm_args(
        PathId::QemuLinux,
        &ctx,
        &extra,
        &[
            "-drive".into(),
            qemu_drive,
            "-device".into(),
            "virtio-blk-device,drive=d0".into(),
        ],
    )
    .map(|(prog, args)| launch(&prog, args, ctx.linux_timeout));
    let tv_fig = tv.as_ref().and_then(|r| parse(&r.stdout_tail));
    let qm_fig = qm.as_ref().and_then(|r| parse(&r.stdout_tail));
    for (name, r, f) in [("tinyvmm", &tv, tv_fig), ("QEMU", &qm, qm_fig)] {
        if let (Some(r), None) = (r, f) {
            eprintln!(
                "{name}: no diskbench figures; stdout tail:\n{}\nstderr tail:\n{}",
                r.stdout_tail, r.stderr_tail
            );
        }
    }
    let exits = tv.as_ref().and_then(|r| {
        let exits = stat(&r.stderr_tail, "VM exits;", "VM")?;
        let reqs = stat(&r.stderr_tail, "disk vda", "requests")?;
        let notes = stat(&r.stderr_tail, "disk vda", "notifications")?;
        Some((exits, reqs, notes))
    });

    let show = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    };
    println!();
    println!(
        "| | host (the file, O_DIRECT) | tinyvmm (direct=on) | QEMU microvm (cache=none) | tinyvmm : QEMU | tinyvmm : host |"
    );
    println!("|---|---|---|---|---|---|");
    type Get = fn(&Figures) -> f64;
    let rows: [(&str, Get); 3] = [
        ("sequential read, MiB/s", |f| f.read_mibs),
        ("sequential write, MiB/s", |f| f.write_mibs),
        ("4 KiB random read, IOPS", |f| f.iops),
    ];
    for (what, get) in rows {
        let (h, t, q) = (
            host_fig.map(|f| get(&f)),
            tv_fig.map(|f| get(&f)),
            qm_fig.map(|f| get(&f)),
        );
        println!(
            "| {what} | {} | {} | {} | {} | {} |",
            show(h),
            show(t),
            show(q),
            ratio(t, q),
            ratio(t, h)
        );
    }
    if let Some((exits, reqs, notes)) = exits {
        println!(
            "\ntinyvmm, whole boot: {exits:.0} VM exits to the VMM and {notes:.0} queue notifications (ioeventfd, completed in KVM) for {reqs:.0} disk requests: {:.3} exits and {:.2} notifications per request",
            exits / reqs.max(1.0),
            notes / reqs.max(1.0)
        );
    }

    // Time to the marker: root on the disk vs in the initramfs.
    let disk = paths::prepare(PathId::TinyvmmDisk, &ctx);
    let ram = paths::prepare(PathId::TinyvmmLinux, &ctx);
    if let (Ok(disk), Ok(ram)) = (disk, ram) {
        let (mut d, mut r) = (Vec::new(), Vec::new());
        for n in 0..boots {
            for (p, into) in [(&ram, &mut r), (&disk, &mut d)] {
                let rec = measure::launch(&p.spec(n, false)).expect("launch");
                p.cleanup(n);
                into.push(rec.marker.map(|m| m.as_secs_f64()));
            }
        }
        let fmt = |v: &[Option<f64>]| {
            v.iter()
                .map(|x| x.map_or("–".into(), |s| format!("{s:.2} s")))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!("\nspawn to the marker line, same vmlinux, alternating, {boots} rounds:");
        println!("- root in the initramfs: {}", fmt(&r));
        println!(
            "- root on a virtio disk (rootfs.ext4, readonly=on): {}",
            fmt(&d)
        );
    }
    let _ = std::fs::remove_dir_all(&ctx.scratch);
}

/// The host and the time, for the report.
fn chrono_line() -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok();
    let date = date
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kvm = if tinyvmm::host::kvm_emulates_guest_kernel() {
        "kvm_pvm (guest kernel mode emulated)"
    } else {
        "KVM"
    };
    format!("{date}, {cpus} CPUs, {kvm}")
}
