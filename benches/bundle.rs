//! `run --bundle` benchmark (issue 12), side by side in one run on one OCI
//! bundle (compare's: the lab's config.json over kernels/build.sh's busybox
//! rootfs/, the default workload: print the marker line, exit 0):
//! `tinyvmm run --bundle` vs `crun run` vs `runc run`, launched and measured
//! exactly as `compare` launches its `tinyvmm-bundle`, `crun` and `runc`
//! paths (`measure::launch`):
//!
//! - spawn to the workload's first output line (the marker) and to exit,
//!   rounds interleaved path by path, untraced;
//! - memory per instance, one traced run per path, the same figure as
//!   `benches/footprint.rs` and compare's "total per instance" (the
//!   instance's cgroup peak where measured, else the processes' peaks plus
//!   guest RAM touched), and PSS at exit;
//! - where the guest's kernel is emulated (kvm_pvm), the share of the VM's
//!   samples in guest kernel mode: one more tinyvmm run with `--profile`
//!   (1 kHz; samples in user mode are `[user]`), and its `--boot-timer`
//!   phases;
//! - the root image cache: `bundle::artifacts::prepare` in this process
//!   with an empty cache directory (miss: hash + mkfs.ext4), again (hit:
//!   the metadata stamp), and after a `touch` of one file (same content:
//!   the content hash again, the same image found).
//!
//! `flock /work/.heavy.lock cargo bench --bench bundle` on our shared
//! hosts. Rounds via `TINYVMM_BUNDLEBENCH_ROUNDS` (default 2; a Linux
//! boot takes 15-25 s on kvm_pvm). A missing runtime or kernel is said on
//! stderr and that column is left out; under `TINYVMM_REQUIRE_KVM=1` a
//! missing tinyvmm path fails the bench.

mod common;

use std::time::{Duration, Instant};

use tinyvmm::lab::compare::bundle_paths;
use tinyvmm::lab::compare::paths::{Launcher, PathId, Prepared};
use tinyvmm::lab::compare::summary::instance_memory;
use tinyvmm::lab::measure;

const PATHS: [PathId; 3] = [PathId::TinyvmmBundle, PathId::Crun, PathId::Runc];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

fn show_ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 1000.0 => format!("{:.2} s", x / 1e3),
        Some(x) => format!("{x:.1} ms"),
        None => "–".into(),
    }
}

/// The image cache's miss, hit and touched-hit costs, in an empty cache
/// directory of our own (the user's is left alone).
fn image_cache(ctx: &tinyvmm::lab::compare::paths::Context) -> Result<Vec<String>, String> {
    // A copy of the bundle's tree: the touch below must not change
    // kernels/build.sh's own rootfs/.
    let b = bundle_paths::shared_bundle(ctx)?;
    let copy = ctx.scratch.join("cache-rootfs");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&b.rootfs)
        .arg(&copy)
        .status()
        .map_err(|e| format!("cp: {e}"))?;
    if !cp.success() {
        return Err(format!("cp -a {} failed", b.rootfs.display()));
    }
    let b = tinyvmm::lab::container::Bundle::write(
        &ctx.scratch.join("cache-bundle"),
        &copy,
        &ctx.workload.container_args(),
    )
    .map_err(|e| e.to_string())?;
    let cache = ctx.scratch.join("cache");
    let _ = std::fs::remove_dir_all(&cache);
    let old = std::env::var_os("XDG_CACHE_HOME");
    // SAFETY: called before this process starts any thread or child.
    unsafe { std::env::set_var("XDG_CACHE_HOME", &cache) };
    let mut lines = Vec::new();
    let mut step = |what: &str| -> Result<(), String> {
        let t = Instant::now();
        let a =
            tinyvmm::bundle::artifacts::prepare(&b.dir, None, None).map_err(|e| e.to_string())?;
        let i = &a.image;
        lines.push(format!(
            "| {what} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MiB |",
            if i.hit { "hit" } else { "miss" },
            ms(i.hash_time),
            ms(i.build_time),
            ms(t.elapsed()),
            std::fs::metadata(&i.path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0
        ));
        Ok(())
    };
    step("empty cache")?;
    step("again")?;
    step("again")?;
    let f = b.rootfs.join("bin/tinyvmm-workload");
    let touched = std::process::Command::new("touch").arg(&f).status();
    if touched.is_ok_and(|s| s.success()) {
        step("after `touch bin/tinyvmm-workload`")?;
    }
    // SAFETY: as above; nothing else runs yet.
    unsafe {
        match old {
            Some(v) => std::env::set_var("XDG_CACHE_HOME", v),
            None => std::env::remove_var("XDG_CACHE_HOME"),
        }
    }
    let _ = std::fs::remove_dir_all(&cache);
    Ok(lines)
}

/// Profile samples: (all, in user mode, ticks missed if said).
type Samples = (u64, u64, Option<u64>);

/// One tinyvmm run with `--profile`: (samples, in user mode, ticks missed
/// if said)
/// and the boot-timer lines.
fn profile(p: &Prepared, dir: &std::path::Path, n: usize) -> Option<(Samples, Vec<String>)> {
    let Launcher::Vmm { .. } = &p.launcher else {
        return None;
    };
    let mut spec = p.spec(n, false);
    let file = dir.join("bundle.folded");
    spec.args
        .extend(["--profile".into(), file.display().to_string()]);
    let rec = measure::launch(&spec).ok()?;
    // The folded stacks: `frame;frame;... count`, user mode as `[user]`.
    let folded = std::fs::read_to_string(&file).ok()?;
    let (mut samples, mut user) = (0u64, 0u64);
    for line in folded.lines() {
        let (stack, count) = line.rsplit_once(' ')?;
        let count: u64 = count.parse().ok()?;
        samples += count;
        if stack == "[user]" {
            user += count;
        }
    }
    // The summary line, when it is still in the captured end of stderr.
    let missed = rec
        .stderr_tail
        .lines()
        .find(|l| l.starts_with("tinyvmm: profile:") && l.contains("ticks missed"))
        .and_then(|l| {
            l.split(", ")
                .find(|s| s.ends_with("ticks missed"))?
                .split(' ')
                .next()?
                .parse()
                .ok()
        });
    let phases = rec
        .stderr_tail
        .lines()
        .filter(|l| l.starts_with("tinyvmm: boot phase:"))
        .map(str::to_string)
        .collect();
    Some(((samples, user, missed), phases))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches`
    }
    let ctx = common::context();
    let rounds: usize = std::env::var("TINYVMM_BUNDLEBENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let when = tinyvmm::lab::compare::host::Host::detect();
    std::fs::create_dir_all(&ctx.scratch).expect("scratch directory");
    let cache = image_cache(&ctx);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let paths: Vec<Prepared> = PATHS
        .iter()
        .filter_map(
            |&id| match tinyvmm::lab::compare::paths::prepare(id, &ctx) {
                Ok(p) => Some(p),
                Err(why) => {
                    let require = std::env::var_os(common::REQUIRE_KVM).is_some_and(|v| v == "1");
                    assert!(
                        !(require && id == PathId::TinyvmmBundle),
                        "{}: absent: {why}",
                        id.label()
                    );
                    eprintln!("{}: absent: {why}", id.label());
                    None
                }
            },
        )
        .collect();
    let mut n = 0;
    let mut times: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); paths.len()];
    for r in 1..=rounds {
        for (i, p) in paths.iter().enumerate() {
            eprintln!("bundle bench: round {r}/{rounds}: {}", p.id.label());
            n += 1;
            let rec = common::run_once(p, n, false);
            times[i].0.extend(rec.marker.map(ms));
            times[i].1.push(ms(rec.exit));
        }
    }
    let mut memory = Vec::new();
    for p in &paths {
        eprintln!("bundle bench: traced run: {}", p.id.label());
        n += 1;
        let rec = common::run_once(p, n, true);
        let m = instance_memory(&rec);
        memory.push((m.total(), m.pss));
    }
    let prof = paths
        .iter()
        .find(|p| p.id == PathId::TinyvmmBundle)
        .and_then(|p| {
            eprintln!("bundle bench: profiled run: {}", p.id.label());
            n += 1;
            profile(p, &ctx.scratch, n)
        });
    let end_load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("## run --bundle vs crun vs runc, one bundle\n");
    println!(
        "Host: {} CPUs, {}, KVM: {}; load {} at the start, {} at the end; {rounds} rounds.\n",
        when.cpus,
        when.os,
        tinyvmm::lab::compare::host::kvm_module(),
        load.split(' ').take(3).collect::<Vec<_>>().join(" "),
        end_load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "| | {} |",
        paths
            .iter()
            .map(|p| p.id.label())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(paths.len()));
    let row = |name: &str, f: &dyn Fn(usize) -> String| {
        let cells: Vec<String> = (0..paths.len()).map(f).collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    row("spawn → first output (median)", &|i| {
        show_ms(median(times[i].0.clone()))
    });
    row("spawn → exit (median)", &|i| {
        show_ms(median(times[i].1.clone()))
    });
    row("spawn → first output (each run)", &|i| {
        times[i]
            .0
            .iter()
            .map(|&t| show_ms(Some(t)))
            .collect::<Vec<_>>()
            .join(", ")
    });
    row(
        "memory per instance: total (as footprint.rs) / PSS at exit",
        &|i| format!("{} KiB / {} KiB", memory[i].0, memory[i].1),
    );
    match &prof {
        Some(((samples, user, missed), phases)) => {
            let kernel = samples - user;
            println!(
                "\nGuest kernel share (tinyvmm --bundle, --profile at 1 kHz): {kernel} of {samples} samples in guest kernel mode = {:.1} % ({user} in user mode; ticks missed, not counted: {})",
                kernel as f64 * 100.0 / (*samples).max(1) as f64,
                missed.map_or("not in the captured stderr".into(), |m| m.to_string())
            );
            for l in phases {
                println!("    {l}");
            }
        }
        None => println!("\nGuest kernel share: not measured (no tinyvmm run or no profile line)"),
    }
    println!(
        "\nRoot image cache (artifacts::prepare in this process, an empty cache directory):\n"
    );
    println!(
        "| step | cache | hash | mkfs.ext4 | prepare in all | image |\n|---|---|---|---|---|---|"
    );
    match cache {
        Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
        Err(e) => println!("| not measured: {e} | | | | | |"),
    }
    let _ = std::fs::remove_dir_all(&ctx.scratch);
}
