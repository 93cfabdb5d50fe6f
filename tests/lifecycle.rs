//! Lifecycle and hostile-output cases (reliability issue): stdout closed or
//! too slow, the parent dying, leaks over repeated boots, many VMMs at once.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{kvm_available, tinyvmm};

/// Waits for `child` up to `limit`, killing it (and failing) after that.
fn wait(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("tinyvmm did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr_of(child: &mut std::process::Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

/// Parses "N bytes written, M dropped (...), K discarded" from stderr.
fn output_counts(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("guest console output"))
        .unwrap_or_else(|| panic!("no output report in: {stderr}"));
    let before = |word: &str| -> u64 {
        let head = &line[..line
            .find(word)
            .unwrap_or_else(|| panic!("{word} in {line}"))];
        head.split_whitespace().last().unwrap().parse().unwrap()
    };
    (
        before(" bytes written"),
        before(" dropped"),
        before(" discarded"),
    )
}

#[test]
fn closed_stdout_neither_kills_nor_spins_the_vmm() {
    if !kvm_available("closed_stdout_neither_kills_nor_spins_the_vmm") {
        return;
    }
    let mut child = Command::new(tinyvmm())
        .args([
            "run",
            "--console",
            "serial",
            "--cmdline",
            "tiny.quiet tiny.flood=20000 tiny.exit=9",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away: writes get EPIPE
    let status = wait(&mut child, Duration::from_secs(60));
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(9), "the guest ran to its end: {err}");
    assert!(err.contains("(stdout closed)"), "{err}");
    let (written, dropped, discarded) = output_counts(&err);
    assert_eq!(
        written + dropped + discarded,
        17 + 20000,
        "every byte accounted for: {err}"
    );
}

#[test]
fn slow_stdout_bounds_memory_and_counts_dropped_serial_bytes() {
    if !kvm_available("slow_stdout_bounds_memory_and_counts_dropped_serial_bytes") {
        return;
    }
    // Nobody reads stdout until the VM ends: the pipe (64 KiB) and our
    // buffer (256 KiB) fill, and the 8250, which has no flow control, drops.
    let flood = 600_000u64;
    let mut child = Command::new(tinyvmm())
        .args([
            "run",
            "--console",
            "serial",
            "--stats",
            "--cmdline",
            &format!("tiny.quiet tiny.flood={flood}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait(&mut child, Duration::from_secs(120));
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(0), "{err}");
    let (written, dropped, discarded) = output_counts(&err);
    assert_eq!(written + dropped + discarded, 17 + flood, "{err}");
    assert!(
        dropped > 0,
        "a stalled stdout must make the 8250 drop: {err}"
    );
    // VMM memory stayed bounded: its own RSS (guest RAM apart) is small.
    let vmm_mib = common::vmm_resident_mib(&err);
    assert!(vmm_mib < 16.0, "VMM RSS {vmm_mib} MiB");
}

#[test]
fn vmm_dies_with_its_parent() {
    if !kvm_available("vmm_dies_with_its_parent") {
        return;
    }
    // A shell starts tinyvmm on a guest that spins forever, prints its pid,
    // and exits: PR_SET_PDEATHSIG must take the VMM down with it.
    let spin = common::TempFile::with("spin", &common::elf_with_code(&[0xeb, 0xfe]));
    let script = format!(
        "{} run --kernel {} </dev/null >/dev/null 2>&1 & echo $!; sleep 0.5",
        tinyvmm(),
        spin.path()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let start = Instant::now();
    // The orphan is reparented (to init or a subreaper) and must exit; a
    // zombie (state Z) counts as exited.
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if stat.is_empty() || state == Some("Z") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "orphaned VMM {pid} still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_hundred_boots_in_one_process_leak_nothing() {
    if !kvm_available("two_hundred_boots_in_one_process_leak_nothing") {
        return;
    }
    let mut child = Command::new(tinyvmm())
        .args([
            "run",
            "--console",
            "serial",
            "--cmdline",
            "tiny.quiet",
            "--repeat",
            "200",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait(&mut child, Duration::from_secs(300));
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(0), "{err}");
    let boots: Vec<&str> = err.lines().filter(|l| l.contains(": exit 0,")).collect();
    assert_eq!(boots.len(), 200, "{err}");
    let census = |line: &str| -> (u64, u64, f64) {
        let tail = line.rsplit("; ").next().unwrap();
        let n: Vec<f64> = tail
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter_map(|w| w.parse().ok())
            .collect();
        (n[0] as u64, n[1] as u64, n[2])
    };
    // Compare boot 10 (allocator warmed up) with boot 200.
    let (fds0, thr0, rss0) = census(boots[9]);
    let (fds1, thr1, rss1) = census(boots[199]);
    eprintln!(
        "boot 10: fds {fds0} threads {thr0} rss {rss0} MiB; boot 200: fds {fds1} threads {thr1} rss {rss1} MiB"
    );
    assert_eq!(fds0, fds1, "fd leak");
    assert_eq!(thr0, thr1, "thread leak");
    assert!(rss1 - rss0 < 1.0, "RSS grew {rss0} -> {rss1} MiB");
}

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn twenty_vmms_at_once_all_exit_0_and_give_memory_back() {
    if !kvm_available("twenty_vmms_at_once_all_exit_0_and_give_memory_back") {
        return;
    }
    let before = mem_available_kib();
    let mut children: Vec<_> = (0..20)
        .map(|_| {
            Command::new(tinyvmm())
                .args([
                    "run",
                    "--console",
                    "serial",
                    "--cmdline",
                    "tiny.quiet tiny.touch=16",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        assert_eq!(wait(c, Duration::from_secs(120)).code(), Some(0));
    }
    // All reaped above (no zombies). Each guest touched 16 MiB, so a leak
    // of guest memory would keep >= 320 MiB; other processes on the host
    // move MemAvailable too, so allow 128 MiB and give it a few seconds.
    let start = Instant::now();
    let mut after = mem_available_kib();
    while before.saturating_sub(after) / 1024 >= 128 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        after = mem_available_kib();
    }
    let lost_mib = before.saturating_sub(after) / 1024;
    assert!(lost_mib < 128, "MemAvailable {before} -> {after} KiB");
}
