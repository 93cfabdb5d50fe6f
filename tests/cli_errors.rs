//! Bad input: each case gets a one-line error naming the problem and the
//! documented exit code (125 configuration, 126 unusable kernel/initrd),
//! never a panic or a hang. None of these needs /dev/kvm: images and
//! options are checked before any KVM call.

mod common;

use std::time::Duration;

use common::{TempFile, run};

const T: Duration = Duration::from_secs(20);

/// Asserts exit `code`, a single `tinyvmm:` line on stderr mentioning `want`.
fn expect(args: &[&str], code: i32, want: &str) {
    let out = run(args, b"", T);
    assert_eq!(out.code, Some(code), "{args:?}: stderr: {}", out.stderr);
    assert!(
        out.stderr.contains(want),
        "{args:?}: stderr should mention {want:?}: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    if code == 126 || out.stderr.starts_with("tinyvmm:") {
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "one line: {}",
            out.stderr
        );
    }
}

fn bzimage_header(setup_sects: u8, syssize: u32, version: u16, len: usize) -> Vec<u8> {
    let mut img = vec![0u8; len.max(0x240)];
    img[0x1f1] = setup_sects;
    img[0x1f4..0x1f8].copy_from_slice(&syssize.to_le_bytes());
    img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    img[0x211] = 1;
    img[0x214..0x218].copy_from_slice(&0x100000u32.to_le_bytes());
    img[0x236..0x238].copy_from_slice(&1u16.to_le_bytes());
    img.truncate(len);
    img
}

#[test]
fn kernel_paths_that_cannot_be_kernels() {
    expect(
        &["run", "--kernel", "/nonexistent/vmlinux"],
        126,
        "No such file",
    );
    expect(&["run", "--kernel", "/tmp"], 126, "is a directory");
    expect(&["run", "--kernel", "/dev/zero"], 126, "not a regular file");
    let fifo = std::env::temp_dir().join(format!("tinyvmm-fifo-{}", std::process::id()));
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    expect(
        &["run", "--kernel", fifo.to_str().unwrap()],
        126,
        "not a regular file",
    );
    std::fs::remove_file(&fifo).unwrap();
}

/// A valid kernel (the ELF boots elsewhere) that the user running tinyvmm
/// may not read. Root reads a mode-000 file anyway (CAP_DAC_OVERRIDE), so
/// as root tinyvmm runs as `nobody` for this case.
#[test]
fn unreadable_kernel_is_refused() {
    use std::os::unix::process::CommandExt;
    let f = TempFile::with("unreadable", &common::elf_with_code(&[0xf4]));
    std::fs::set_permissions(&f.0, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let mut cmd = std::process::Command::new(common::tinyvmm());
    cmd.args(["run", "--kernel", f.path()]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534); // nobody; std drops supplementary groups too
    }
    let out = cmd.output().expect("spawn tinyvmm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stderr.contains(f.path()), "names the file: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn garbage_kernels_are_refused_before_kvm() {
    let random: Vec<u8> = (0..4096)
        .map(|i| (common::rand_u64() >> (i % 56)) as u8 | 1)
        .collect();
    for (tag, bytes) in [("empty", vec![]), ("one", vec![0x7f]), ("random", random)] {
        let f = TempFile::with(tag, &bytes);
        expect(&["run", "--kernel", f.path()], 126, "not a kernel image");
    }
}

#[test]
fn broken_elf_kernels_are_refused() {
    let good = common::elf_with_code(&[0xf4]);
    let mut bad_magic = good.clone();
    bad_magic[1] = b'X';
    let f = TempFile::with("badmagic", &bad_magic);
    expect(&["run", "--kernel", f.path()], 126, "not a kernel image");

    let mut big_endian = good.clone();
    big_endian[5] = 2;
    let f = TempFile::with("bigendian", &big_endian);
    expect(&["run", "--kernel", f.path()], 126, "big-endian");

    let mut phdrs_past_end = good.clone();
    phdrs_past_end[32..40].copy_from_slice(&0x10_0000u64.to_le_bytes());
    let f = TempFile::with("phoff", &phdrs_past_end);
    expect(&["run", "--kernel", f.path()], 126, "ELF kernel");

    let mut overflowing = good.clone();
    let ph = 0x40;
    overflowing[ph + 24..ph + 32].copy_from_slice(&(u64::MAX - 4).to_le_bytes());
    let f = TempFile::with("overflow", &overflowing);
    expect(&["run", "--kernel", f.path()], 126, "ELF kernel");

    let mut past_ram = good;
    past_ram[ph + 24..ph + 32].copy_from_slice(&(64u64 << 30).to_le_bytes());
    let f = TempFile::with("pastram", &past_ram);
    expect(&["run", "--kernel", f.path()], 126, "ELF kernel");
}

#[test]
fn broken_bzimages_are_refused() {
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "cut",
            bzimage_header(4, 0x1000, 0x20f, 0x220),
            "ends inside the setup header",
        ),
        (
            "truncated",
            bzimage_header(4, 0x1000, 0x20f, 0x2000),
            "truncated",
        ),
        (
            "old",
            bzimage_header(4, 0x10, 0x205, 0x2000),
            "older than 2.06",
        ),
        (
            "sects",
            bzimage_header(200, 0x10, 0x20f, 0x2000),
            "setup_sects",
        ),
        (
            "no64",
            {
                let mut b = bzimage_header(4, 0x10, 0x20f, 0x2000);
                b[0x236] = 0;
                b
            },
            "64-bit",
        ),
    ];
    for (tag, bytes, want) in cases {
        let f = TempFile::with(tag, &bytes);
        expect(&["run", "--kernel", f.path()], 126, want);
    }
    let mut bad_magic = bzimage_header(4, 0x10, 0x20f, 0x2000);
    bad_magic[0x202] = b'X';
    let f = TempFile::with("hdrs", &bad_magic);
    expect(&["run", "--kernel", f.path()], 126, "not a kernel image");
}

#[test]
fn bad_memory_sizes() {
    expect(&["run", "--memory", "0"], 125, "--memory");
    expect(&["run", "--memory", "129K"], 125, "multiple of 4 KiB");
    expect(&["run", "--memory", "1M"], 125, "too small");
    expect(&["run", "--memory", "lots"], 125, "expected a size");
    expect(&["run", "--memory", "4096G"], 125, "too large");
}

#[test]
fn bad_vcpu_counts() {
    expect(&["run", "--vcpus", "0"], 125, "--vcpus 0");
    expect(&["run", "--vcpus", "100000"], 125, "--vcpus");
    expect(&["run", "--vcpus", "two"], 125, "--vcpus");
}

#[test]
fn bad_command_lines() {
    let long = "x".repeat(3000);
    expect(&["run", "--cmdline", &long], 125, "at most 2047");
    expect(&["run", "--cmdline", "a\u{1}b"], 125, "--cmdline");
}

#[test]
fn initrd_problems() {
    expect(
        &["run", "--initrd", "/nonexistent/initrd"],
        126,
        "No such file",
    );
    expect(&["run", "--initrd", "/dev/zero"], 126, "not a regular file");
    // An initrd larger than guest memory cannot fit below the kernel's limit.
    let big = TempFile::with("bigrd", &vec![0u8; 9 << 20]);
    expect(
        &["run", "--memory", "8M", "--initrd", big.path()],
        126,
        "does not fit",
    );
}

#[test]
fn bad_subcommands_and_flags_exit_125_and_help_exits_0() {
    assert_eq!(run(&["fly"], b"", T).code, Some(125));
    assert_eq!(run(&["run", "--no-such-flag"], b"", T).code, Some(125));
    assert_eq!(run(&[], b"", T).code, Some(125));
    let help = run(&["run", "--help"], b"", T);
    assert_eq!(help.code, Some(0));
    assert!(help.stdout.contains("--kernel"));
    assert!(help.stdout.contains("--cpu-template"));
}
