//! `run --profile`: the guest profiler on the tiny guest (its known busy
//! loop, `tiny.spin`, is the top function, named from the guest's own ELF,
//! with its frame-pointer chain), on a tiny guest without symbols
//! (addresses and one warning), on Linux (kernel symbols such as
//! `start_kernel` in the folded stacks, and the boot phases, in one boot),
//! and bad `--profile` arguments (125).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{guest_pair, kvm_available, run};

const TINY: Duration = Duration::from_secs(120);
/// A Linux boot takes 12-30 s here; profiled, somewhat more.
const LINUX: Duration = Duration::from_secs(600);

/// A scratch directory for one test's output files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinyvmm-profile-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Rounds of `tiny.spin` that take ~100 ms: each round is a few hundred
/// instructions, ~1 us each where guest kernel mode is emulated, ~1000x
/// faster on hardware KVM.
fn spin_rounds() -> u64 {
    if tinyvmm::host::kvm_emulates_guest_kernel() {
        3_000
    } else {
        3_000_000
    }
}

/// The folded file's lines as (stack, count).
fn folded(path: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (stack, n) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (
                stack.to_string(),
                n.parse().unwrap_or_else(|_| panic!("bad count in {l:?}")),
            )
        })
        .collect()
}

/// Samples per leaf function.
fn by_leaf(lines: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut m = std::collections::BTreeMap::new();
    for (stack, n) in lines {
        *m.entry(stack.rsplit(';').next().unwrap().to_string())
            .or_insert(0) += n;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v
}

#[test]
fn the_tiny_guests_busy_loop_is_the_top_function() {
    let test = "the_tiny_guests_busy_loop_is_the_top_function";
    if !kvm_available(test) {
        return;
    }
    let dir = scratch(test);
    let out_file = dir.join("tiny.folded");
    let cmdline = format!("console=hvc0 tiny.quiet tiny.spin={}", spin_rounds());
    let out = run(
        &[
            "run",
            "--profile",
            out_file.to_str().unwrap(),
            "--profile-hz",
            "2000",
            "--cmdline",
            &cmdline,
        ],
        b"",
        TINY,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines = folded(&out_file);
    let leaves = by_leaf(&lines);
    assert_eq!(
        leaves[0].0, "spin_loop",
        "top functions: {leaves:?}\n{}",
        out.stderr
    );
    assert!(leaves[0].1 >= 20, "too few samples in the loop: {leaves:?}");
    // The chain was walked through the guest's page tables: most loop
    // samples carry their caller.
    let chained: u64 = lines
        .iter()
        .filter(|(s, _)| s.ends_with("spin_run;spin_loop"))
        .map(|(_, n)| n)
        .sum();
    assert!(chained * 2 > leaves[0].1, "chains: {lines:?}");
    assert!(out.stderr.contains("profile top  1:"), "{}", out.stderr);
    let top = out
        .stderr
        .lines()
        .find(|l| l.contains("profile top  1:"))
        .unwrap();
    assert!(top.ends_with("spin_loop"), "{top}");
    let svg = std::fs::read_to_string(dir.join("tiny.folded.svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("spin_loop"),
        "{}",
        &svg[..svg.len().min(500)]
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_kernel_without_symbols_gives_addresses_and_one_warning() {
    let test = "a_kernel_without_symbols_gives_addresses_and_one_warning";
    if !kvm_available(test) {
        return;
    }
    let dir = scratch(test);
    let elf = dir.join("tiny.elf");
    let stripped = dir.join("tiny-stripped.elf");
    std::fs::write(&elf, tinyvmm::tiny_guest::ELF).unwrap();
    let strip = std::process::Command::new("objcopy")
        .arg("--strip-all")
        .args([&elf, &stripped])
        .status()
        .expect("objcopy (binutils) runs");
    assert!(strip.success());
    let out_file = dir.join("p.folded");
    let cmdline = format!("console=hvc0 tiny.quiet tiny.spin={}", spin_rounds() / 3);
    let out = run(
        &[
            "run",
            "--kernel",
            stripped.to_str().unwrap(),
            "--profile",
            out_file.to_str().unwrap(),
            "--cmdline",
            &cmdline,
        ],
        b"",
        TINY,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let warnings: Vec<_> = out
        .stderr
        .lines()
        .filter(|l| l.contains("no symbol table"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].starts_with("tinyvmm: warning:"),
        "{}",
        warnings[0]
    );
    let lines = folded(&out_file);
    assert!(!lines.is_empty(), "{}", out.stderr);
    let kernel: Vec<_> = lines.iter().filter(|(s, _)| s != "[user]").collect();
    assert!(!kernel.is_empty(), "{lines:?}");
    for (stack, _) in kernel {
        for frame in stack.split(';') {
            assert!(frame.starts_with("0x"), "a name without symbols: {stack}");
            u64::from_str_radix(&frame[2..], 16).expect("a hex address");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_profile_arguments_exit_125() {
    let dir = scratch("bad_args");
    let out_file = dir.join("p.folded");
    let out_path = out_file.to_str().unwrap();
    let garbage = dir.join("garbage.map");
    std::fs::write(&garbage, "this is not a symbol map\n").unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["--profile", out_path, "--profile-hz", "0"],
        vec!["--profile", out_path, "--profile-hz", "1000000"],
        vec!["--profile", out_path, "--profile-hz", "fast"],
        vec!["--profile-hz", "100"],
        vec!["--profile-symbols", out_path],
        vec!["--profile", "/nonexistent-dir/p.folded"],
        vec!["--profile", dir.to_str().unwrap()],
        vec![
            "--profile",
            out_path,
            "--profile-symbols",
            "/nonexistent.map",
        ],
        vec![
            "--profile",
            out_path,
            "--profile-symbols",
            garbage.to_str().unwrap(),
        ],
    ];
    for case in cases {
        let args: Vec<&str> = std::iter::once("run").chain(case.iter().copied()).collect();
        let out = run(&args, b"", TINY);
        assert_eq!(out.code, Some(125), "{case:?}: {}", out.stderr);
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("profile"))
            .unwrap_or("");
        assert!(
            !line.is_empty(),
            "{case:?}: the message names the argument: {}",
            out.stderr
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// One Linux boot, several checks: kernel symbols in the folded stacks
/// (start_kernel through the stack scan), the flame graph, the top list,
/// and the boot phases of --boot-timer.
#[test]
fn a_linux_boot_profile_names_kernel_functions_and_the_phases() {
    let test = "a_linux_boot_profile_names_kernel_functions_and_the_phases";
    let Some((kernel, initrd)) = guest_pair(test, "vmlinux", "initramfs.cpio") else {
        return;
    };
    let dir = scratch(test);
    let out_file = dir.join("linux.folded");
    let out = run(
        &[
            "run",
            "--kernel",
            &kernel,
            "--initrd",
            &initrd,
            "--profile",
            out_file.to_str().unwrap(),
            "--boot-timer",
        ],
        b"",
        LINUX,
    );
    eprintln!("{}", out.stderr);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("TINYVMM-GUEST-OK"), "{}", out.stdout);
    let lines = folded(&out_file);
    let has = |name: &str| lines.iter().any(|(s, _)| s.split(';').any(|f| f == name));
    // start_kernel runs in the boot's first seconds: it is there only if
    // the sampler's kicks are honoured from the first guest instruction on
    // (a kick sent before the vCPU thread was in its KVM_RUN loop was once
    // lost, and no sample was taken until the guest's first exit: issue 15).
    for name in ["start_kernel", "kernel_init", "[user]"] {
        assert!(
            has(name),
            "{name} not in the profile:\n{}",
            std::fs::read_to_string(&out_file).unwrap()
        );
    }
    let svg = std::fs::read_to_string(dir.join("linux.folded.svg")).unwrap();
    assert!(svg.contains("start_kernel"));
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.contains("profile top"))
            .count(),
        20
    );
    for phase in [
        "first guest instruction",
        "kernel entry",
        "user space (boot marker)",
        "exit",
    ] {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("boot phase:") && l.contains(phase))
            .unwrap_or_else(|| panic!("no {phase} phase: {}", out.stderr));
        assert!(!line.contains("not seen"), "{line}");
    }
    // The kernel's entry comes within the boot's first moments (PVH entry,
    // then startup_64 at the link address), long before user space: the
    // phase must not be the first sample taken after a lost kick.
    let at = |phase: &str| -> f64 {
        let line = out.stderr.lines().find(|l| l.contains(phase)).unwrap();
        let rest = line.split(phase).nth(1).unwrap();
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (entry, marker) = (at("kernel entry"), at("user space (boot marker)"));
    assert!(
        entry < marker / 10.0,
        "kernel entry at {entry} ms, user space at {marker} ms:\n{}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(dir);
}
