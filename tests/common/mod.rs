//! Helpers shared by the integration tests: run the built binary with a
//! timeout, check for KVM and the built Linux kernel (skipping visibly, or
//! failing under `TINYVMM_REQUIRE_KVM=1`: see `skip`), and wrap
//! hand-assembled code in a minimal ELF the VMM can boot.
#![allow(dead_code)]

pub mod asm;
pub mod skip;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished run of the binary left behind.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// Path of the tinyvmm binary cargo built for these tests.
pub fn tinyvmm() -> &'static str {
    env!("CARGO_BIN_EXE_tinyvmm")
}

/// Runs tinyvmm with `args`, feeding `stdin`, killing it after `timeout`.
pub fn run(args: &[&str], stdin: &[u8], timeout: Duration) -> Outcome {
    let start = Instant::now();
    let mut child = Command::new(tinyvmm())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tinyvmm");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = finish(child, "tinyvmm", args, timeout, start);
    let _ = feeder.join();
    out
}

/// Runs tinyvmm with `args` and `stdin` as its stdin, killing it after `timeout`.
pub fn run_with_stdin(args: &[&str], stdin: Stdio, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let child = Command::new(tinyvmm())
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tinyvmm");
    finish(child, "tinyvmm", args, timeout, start)
}

/// Runs another program (e.g. a peer VMM) with `args` and no stdin,
/// killing it after `timeout`, as `run` does for tinyvmm.
pub fn run_program(program: &str, args: &[&str], timeout: Duration) -> Outcome {
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    finish(child, program, args, timeout, start)
}

/// Collects a started child's stdout and stderr, killing it (and failing,
/// with the tails of both) after `timeout`.
fn finish(
    mut child: std::process::Child,
    program: &str,
    args: &[&str],
    timeout: Duration,
    start: Instant,
) -> Outcome {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            // Show what the guest got to before we gave up.
            let out = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
            let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
            let tail = |s: &str| {
                s.chars()
                    .rev()
                    .take(2000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<String>()
            };
            panic!(
                "{program} {args:?} did not finish within {timeout:?}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
                tail(&out),
                tail(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out_t.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap()).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// The VMM's resident memory (MiB, guest RAM excluded) from `--stats` output.
pub fn vmm_resident_mib(stderr: &str) -> f64 {
    stderr
        .lines()
        .find_map(|l| l.split("resident memory at exit: VMM ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resident line in: {stderr}"))
}

/// Whether KVM answers here: `/dev/kvm` opens and `KVM_GET_API_VERSION`
/// returns 12 (so a `/dev/kvm` that is some other device counts as absent).
/// Probed once per test binary.
pub fn kvm_probe() -> Result<(), String> {
    static PROBE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            let kvm =
                kvm_ioctls::Kvm::new().map_err(|e| format!("/dev/kvm is not usable here ({e})"))?;
            match kvm.get_api_version() {
                12 => Ok(()),
                v if v < 0 => Err(format!(
                    "/dev/kvm is not KVM: KVM_GET_API_VERSION fails ({})",
                    std::io::Error::last_os_error()
                )),
                v => Err(format!(
                    "/dev/kvm answers KVM_GET_API_VERSION with {v}, not 12"
                )),
            }
        })
        .clone()
}

/// Whether KVM is usable; when not, the test skips visibly (see `skip`),
/// or fails under `TINYVMM_REQUIRE_KVM=1`.
pub fn kvm_available(test: &str) -> bool {
    match kvm_probe() {
        Ok(()) => true,
        Err(why) => {
            skip::skip(test, &why);
            false
        }
    }
}

/// `tinyvmm run --kernel KERNEL --cmdline CMDLINE ARGS...` with no stdin:
/// the shape of every Linux-guest test's boot.
pub fn run_kernel(kernel: &str, cmdline: &str, args: &[&str], timeout: Duration) -> Outcome {
    let mut all = vec!["run", "--kernel", kernel, "--cmdline", cmdline];
    all.extend_from_slice(args);
    run(&all, b"", timeout)
}

/// Asserts that the run exited with `code`, showing both streams if not.
#[track_caller]
pub fn assert_status(out: &Outcome, code: i32) {
    assert_eq!(
        out.code,
        Some(code),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
}

/// How many chaos-monkey seeds a chaos test runs: `TINYVMM_CHAOS_SEEDS`
/// when set to a number, else `default`.
pub fn chaos_seeds(default: u64) -> u64 {
    std::env::var("TINYVMM_CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Directory of the built Linux guest (kernels/build.sh output).
pub fn kernel_dir() -> PathBuf {
    tinyvmm::kernel_dir::kernel_dir_for(Path::new(tinyvmm()))
}

/// For a Linux-guest test: `/dev/kvm` and two built guest files (a kernel
/// and an initramfs or disk image) as path strings, or `None` with the
/// reason reported as a skip.
pub fn guest_pair(test: &str, kernel: &str, other: &str) -> Option<(String, String)> {
    if !kvm_available(test) {
        return None;
    }
    let k = guest_file(test, kernel)?;
    let o = guest_file(test, other)?;
    Some((k.display().to_string(), o.display().to_string()))
}

/// The built guest file `name`, or `None` (with the reason printed).
pub fn guest_file(test: &str, name: &str) -> Option<PathBuf> {
    let p = kernel_dir().join(name);
    if p.is_file() {
        Some(p)
    } else {
        skip::skip(
            test,
            &format!(
                "{} is missing; build it with `bash kernels/build.sh` (or set TINYVMM_KERNEL_DIR)",
                p.display()
            ),
        );
        None
    }
}

/// A scratch file that is removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// A new file with `bytes` in the system temp dir.
    pub fn with(tag: &str, bytes: &[u8]) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tinyvmm-test-{}-{n}-{tag}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }

    /// The path as a &str.
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A little randomness without a crate: the clock and an address.
pub fn rand_u64() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let x = &t as *const u64 as u64;
    (t ^ x.rotate_left(17)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Where hand-assembled code is loaded and entered.
pub const CODE_ADDR: u64 = 0x10_0000;

/// Wraps `code` in a minimal x86_64 ELF: one PT_LOAD at 1 MiB, entry at its
/// first byte. This is all the VMM's ELF path needs.
pub fn elf_with_code(code: &[u8]) -> Vec<u8> {
    let mut elf = vec![0u8; 0x78];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // ELFCLASS64
    elf[5] = 1; // little endian
    elf[6] = 1; // version
    elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[24..32].copy_from_slice(&CODE_ADDR.to_le_bytes()); // e_entry
    elf[32..40].copy_from_slice(&0x40u64.to_le_bytes()); // e_phoff
    elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = 0x40;
    elf[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf[ph + 4..ph + 8].copy_from_slice(&7u32.to_le_bytes()); // RWX
    elf[ph + 8..ph + 16].copy_from_slice(&0x78u64.to_le_bytes()); // p_offset
    elf[ph + 16..ph + 24].copy_from_slice(&CODE_ADDR.to_le_bytes()); // p_vaddr
    elf[ph + 24..ph + 32].copy_from_slice(&CODE_ADDR.to_le_bytes()); // p_paddr
    let len = code.len() as u64;
    elf[ph + 32..ph + 40].copy_from_slice(&len.to_le_bytes()); // p_filesz
    elf[ph + 40..ph + 48].copy_from_slice(&len.to_le_bytes()); // p_memsz
    elf.extend_from_slice(code);
    elf
}
