//! The virtio-blk device driven by the tiny guest's driver
//! (`tiny.blk`, kernels/tiny/blk.S and blk_check.S): each test makes its
//! own small image, boots the embedded guest on it (milliseconds), and
//! checks the guest's verdict, its `tiny: blk:` lines, `--stats` and the
//! image as the host sees it afterwards. Also image locking between two
//! tinyvmm processes and `--disk` arguments that are refused.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Outcome, TempFile, kvm_available, run, skip, tinyvmm};

const T: Duration = Duration::from_secs(30);
const SECTOR: usize = 512;
/// 64 KiB: 128 sectors.
const IMAGE: usize = 64 << 10;

/// What the guest writes to sector 1 (`blk_pattern` in blk_check.S).
fn pattern() -> Vec<u8> {
    b"sector 1 as the tiny guest wrote it (tiny.blk, blk_check.S), 8x\n".repeat(8)
}

/// An image of `len` bytes: sector 0 starts with a recognisable header,
/// sector 1 is 0xa5 (so the pattern is new there), every other byte
/// depends on its offset (so a stray write shows).
fn image_bytes(len: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len).map(|i| (i * 7 + i / SECTOR) as u8).collect();
    b[..16].copy_from_slice(b"TINYVMM-BLK-TEST");
    b[SECTOR..2 * SECTOR].fill(0xa5);
    b
}

/// Step 2's line for an image from `image_bytes`: its first 8 bytes.
const SECTOR0_LINE: &str =
    "tiny: blk: 2 read sector 0: ok, first bytes 54 49 4e 59 56 4d 4d 2d, capacity 128 sectors\n";

fn image(tag: &str, len: usize) -> TempFile {
    TempFile::with(tag, &image_bytes(len))
}

fn read(img: &TempFile) -> Vec<u8> {
    std::fs::read(&img.0).unwrap()
}

/// Boots the tiny guest with `tiny.blk...` (`cmdline`) and `args`.
fn boot(test: &str, cmdline: &str, args: &[&str]) -> Option<Outcome> {
    if !kvm_available(test) {
        return None;
    }
    let mut all = vec!["run", "--cmdline", cmdline];
    all.extend_from_slice(args);
    Some(run(&all, b"", T))
}

fn assert_has(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

/// The writable-disk run: the guest passes all steps and the host finds the
/// guest's sector 1 in the image, nothing else changed.
fn writable(test: &str, opts: &str) {
    let img = image(test, IMAGE);
    let disk = format!("path={}{opts}", img.path());
    let Some(out) = boot(test, "tiny.blk=rw", &["--disk", &disk, "--stats"]) else {
        return;
    };
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    for line in [
        "tiny: blk: 1 set-up: ok, 0xd0001000 (irq 6 unused, polled), features 0x244, capacity 128 sectors, blk_size 512, requestq size 4\n",
        SECTOR0_LINE,
        "tiny: blk: 3 write sector 1, flush, read back: ok, 512 bytes as written\n",
        "tiny: blk: 4 read past the end: ok, IOERR as expected (sector 128)\n",
        "tiny: blk: 6 write to the read-only disk: skipped (writable disk)\n",
        "tiny: blk: all steps passed\n",
    ] {
        assert_has(&out.stdout, line);
    }
    // IN 0, OUT 1, FLUSH, IN 1, IN 128 (IOERR), GET_ID.
    assert_has(
        &out.stderr,
        &format!(
            "tinyvmm: disk vda ({}): 6 requests, 1024 bytes read, 512 bytes written, 1 flushes, 1 IOERR, 0 UNSUPP, 0 bad chains",
            img.path()
        ),
    );
    let mut want = image_bytes(IMAGE);
    want[SECTOR..2 * SECTOR].copy_from_slice(&pattern());
    let got = read(&img);
    assert!(
        got[SECTOR..2 * SECTOR] == pattern()[..],
        "sector 1 after the run: {:?}",
        String::from_utf8_lossy(&got[SECTOR..2 * SECTOR])
    );
    assert!(got == want, "the guest changed more than sector 1");
}

#[test]
fn writable_disk_guest_writes_flushes_and_reads_back() {
    writable("writable_disk_guest_writes_flushes_and_reads_back", "");
}

#[test]
fn direct_on_works_like_the_default() {
    let test = "direct_on_works_like_the_default";
    // O_DIRECT needs a file system that has it (tmpfs before Linux 6.6 has not).
    let probe = TempFile::with("direct-probe", &[0; SECTOR]);
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe.0)
    {
        skip::not_shown_here(test, &format!("O_DIRECT in the temp dir: {e}"));
        return;
    }
    writable(test, ",direct=on");
}

#[test]
fn readonly_disk_refuses_the_write_and_stays_unchanged() {
    let test = "readonly_disk_refuses_the_write_and_stays_unchanged";
    let img = image(test, IMAGE);
    let before = read(&img);
    let disk = format!("path={},readonly=on", img.path());
    let Some(out) = boot(test, "tiny.blk=ro", &["--disk", &disk, "--stats"]) else {
        return;
    };
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    for line in [
        // RO (bit 5) offered and accepted.
        "tiny: blk: 1 set-up: ok, 0xd0001000 (irq 6 unused, polled), features 0x264,",
        SECTOR0_LINE,
        "tiny: blk: 3 write sector 1, flush, read back: skipped (read-only disk)\n",
        "tiny: blk: 4 read past the end: ok, IOERR as expected (sector 128)\n",
        "tiny: blk: 6 write to the read-only disk: ok, IOERR and sector 1 unchanged\n",
        "tiny: blk: all steps passed\n",
    ] {
        assert_has(&out.stdout, line);
    }
    // IN 0, IN 128 (IOERR), GET_ID, IN 1, OUT 1 (IOERR), IN 1.
    assert_has(
        &out.stderr,
        "6 requests, 1536 bytes read, 0 bytes written, 0 flushes, 2 IOERR, 0 UNSUPP, 0 bad chains",
    );
    assert!(read(&img) == before, "a read-only image changed");
}

#[test]
fn two_disks_the_guest_uses_the_first_and_stats_show_both() {
    let test = "two_disks_the_guest_uses_the_first_and_stats_show_both";
    let (a, b) = (image("vda", IMAGE), image("vdb", 2 * IMAGE));
    let b_before = read(&b);
    let da = format!("path={}", a.path());
    let db = format!("path={},readonly=on", b.path());
    let Some(out) = boot(test, "tiny.blk", &["--disk", &da, "--disk", &db, "--stats"]) else {
        return;
    };
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_has(
        &out.stdout,
        "virtio_mmio.device=4K@0xd0001000:6 virtio_mmio.device=4K@0xd0002000:7",
    );
    assert_has(
        &out.stdout,
        "tiny: blk: 1 set-up: ok, 0xd0001000 (irq 6 unused, polled)",
    );
    assert_has(&out.stdout, "capacity 128 sectors");
    assert_has(&out.stdout, "tiny: blk: all steps passed\n");
    assert_has(
        &out.stderr,
        &format!("tinyvmm: disk vda ({}): 6 requests,", a.path()),
    );
    assert_has(
        &out.stderr,
        &format!(
            "tinyvmm: disk vdb ({}): 0 requests, 0 bytes read, 0 bytes written,",
            b.path()
        ),
    );
    assert!(read(&a)[SECTOR..2 * SECTOR] == pattern()[..]);
    assert!(read(&b) == b_before);
}

#[test]
fn get_id_returns_the_id_given_or_one_from_the_inode() {
    let test = "get_id_returns_the_id_given_or_one_from_the_inode";
    let img = image(test, IMAGE);
    // Shorter than 20 bytes (NUL-padded), exactly 20 (no NUL), none.
    for (opt, want) in [
        (",id=tiny-disk-42".to_string(), "tiny-disk-42".to_string()),
        (
            ",id=abcdefghijklmnopqrst".to_string(),
            "abcdefghijklmnopqrst".to_string(),
        ),
        (
            String::new(),
            format!("tinyvmm-{:x}", std::fs::metadata(&img.0).unwrap().ino()),
        ),
    ] {
        let disk = format!("path={}{opt}", img.path());
        let Some(out) = boot(test, "tiny.blk", &["--disk", &disk]) else {
            return;
        };
        assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
        assert_has(
            &out.stdout,
            &format!("tiny: blk: 5 get id: ok, id \"{want}\"\n"),
        );
    }
}

#[test]
fn the_guest_reports_the_step_that_failed() {
    let test = "the_guest_reports_the_step_that_failed";
    let img = image(test, IMAGE);
    let disk = format!("path={}", img.path());
    // tiny.blk=ro on a writable disk: step 1 (111), the rest still run.
    let Some(out) = boot(test, "tiny.blk=ro", &["--disk", &disk]) else {
        return;
    };
    assert_eq!(out.code, Some(111), "{}\n{}", out.stdout, out.stderr);
    assert_has(
        &out.stdout,
        "tiny: blk: 1 set-up: FAILED: tiny.blk=ro, but the device does not offer VIRTIO_BLK_F_RO\n",
    );
    assert_has(&out.stdout, "tiny: blk: 5 get id: ok");
    assert_has(&out.stdout, "tiny: blk: FAILED, exit status 111\n");
    let ro = format!("{disk},readonly=on");
    let out = boot(test, "tiny.blk=rw", &["--disk", &ro]).unwrap();
    assert_eq!(out.code, Some(111), "{}\n{}", out.stdout, out.stderr);
    // No disk at all: step 1, and nothing more.
    let out = boot(test, "tiny.blk", &[]).unwrap();
    assert_eq!(out.code, Some(111), "{}\n{}", out.stdout, out.stderr);
    assert_has(
        &out.stdout,
        "tiny: blk: 1 set-up: FAILED: no virtio-blk device (DeviceID 2) among the virtio_mmio.device= entries\n",
    );
    assert!(!out.stdout.contains("tiny: blk: 2"), "{}", out.stdout);
    // A bad value: the guest's bad-option status.
    let out = boot(test, "tiny.blk=yes", &["--disk", &disk]).unwrap();
    assert_eq!(out.code, Some(101), "{}\n{}", out.stdout, out.stderr);
    assert_has(
        &out.stdout,
        "tiny: tiny.blk takes no value, =rw or =ro, not tiny.blk=yes\n",
    );
}

#[test]
fn a_partial_last_sector_is_announced_and_left_alone() {
    let test = "a_partial_last_sector_is_announced_and_left_alone";
    let img = image(test, IMAGE + 100);
    let disk = format!("path={}", img.path());
    let Some(out) = boot(test, "tiny.blk", &["--disk", &disk]) else {
        return;
    };
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_has(
        &out.stderr,
        &format!(
            "tinyvmm: --disk {}: the last 100 bytes are not a whole 512-byte sector; the guest sees 128 sectors\n",
            img.path()
        ),
    );
    assert_has(&out.stdout, SECTOR0_LINE);
    assert_has(
        &out.stdout,
        "tiny: blk: 4 read past the end: ok, IOERR as expected (sector 128)\n",
    );
    let got = read(&img);
    assert_eq!(got.len(), IMAGE + 100);
    assert!(got[IMAGE..] == image_bytes(IMAGE + 100)[IMAGE..]);
}

/// A tinyvmm whose guest spins in user mode (`tiny.loop`) with `disk`
/// attached, killed when dropped.
struct Holder(Child);

impl Holder {
    /// Starts it and waits until the guest has printed its greeting (by
    /// then the VM is built and the image locked).
    fn start(disk: &str) -> Holder {
        let mut child = Command::new(tinyvmm())
            .args([
                "run",
                "--disk",
                disk,
                "--cmdline",
                "tiny.loop=1000000000000",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tinyvmm");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("tiny: hello") {
                    let _ = tx.send(());
                }
            }
        });
        let holder = Holder(child);
        rx.recv_timeout(T)
            .expect("the holding guest never said hello");
        holder
    }

    /// SIGTERM, then the exit code (143 expected).
    fn terminate(mut self) -> Option<i32> {
        // SAFETY: kill with our child's pid and a signal number.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(start.elapsed() < T, "tinyvmm did not end on SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A second tinyvmm with `disk` is refused: 126 and one line.
fn assert_refused(disk: &str) {
    let out = run(&["run", "--disk", disk, "--cmdline", "tiny.blk"], b"", T);
    assert_eq!(out.code, Some(126), "{disk}: {}", out.stderr);
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
    assert_has(&out.stderr, "in use by another process");
}

#[test]
fn an_image_held_writable_is_refused_to_a_second_tinyvmm() {
    let test = "an_image_held_writable_is_refused_to_a_second_tinyvmm";
    if !kvm_available(test) {
        return;
    }
    let img = image(test, IMAGE);
    let holder = Holder::start(&format!("path={}", img.path()));
    assert_refused(&format!("path={}", img.path()));
    assert_refused(&format!("path={},readonly=on", img.path()));
    assert_eq!(holder.terminate(), Some(143));
    // Released at exit: now it opens.
    let out = boot(
        test,
        "tiny.blk",
        &["--disk", &format!("path={}", img.path())],
    )
    .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn two_readonly_opens_share_the_image() {
    let test = "two_readonly_opens_share_the_image";
    if !kvm_available(test) {
        return;
    }
    let img = image(test, IMAGE);
    let ro = format!("path={},readonly=on", img.path());
    let holder = Holder::start(&ro);
    let out = boot(test, "tiny.blk=ro", &["--disk", &ro]).unwrap();
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_has(&out.stdout, "tiny: blk: all steps passed\n");
    // ...but not a writer next to a reader.
    assert_refused(&format!("path={}", img.path()));
    assert_eq!(holder.terminate(), Some(143));
}

/// Exit `code` and exactly one `tinyvmm:` line mentioning `want`.
fn expect_refusal(disk: &str, code: i32, want: &str) {
    let out = run(&["run", "--disk", disk], b"", T);
    assert_eq!(out.code, Some(code), "--disk {disk}: {}", out.stderr);
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "--disk {disk}: one line: {}",
        out.stderr
    );
    assert!(out.stderr.starts_with("tinyvmm: --disk"), "{}", out.stderr);
    assert_has(&out.stderr, want);
}

#[test]
fn bad_disk_arguments_get_one_line_and_125_or_126() {
    let img = image("bad-args", IMAGE);
    // Syntax (125): checked before anything is opened; no KVM needed.
    expect_refusal(
        &format!("path={},colour=red", img.path()),
        125,
        "unknown key \"colour\"",
    );
    expect_refusal(
        &format!("path={},readonly=yes", img.path()),
        125,
        "expected on or off",
    );
    expect_refusal("readonly=on", 125, "path= is required");
    // No I/O-thread mode: requests run on the event loop (docs/disk.md).
    expect_refusal(
        &format!("path={},iothread=on", img.path()),
        125,
        "unknown key \"iothread\"",
    );
    // Unusable images (126): opened while the VM is built (see the ignored
    // test below for why that needs KVM today).
    if !kvm_available("bad_disk_arguments_get_one_line_and_125_or_126") {
        return;
    }
    let missing = std::env::temp_dir().join(format!("tinyvmm-no-such-{}.img", std::process::id()));
    expect_refusal(
        &format!("path={}", missing.display()),
        126,
        "No such file or directory",
    );
    let dir = std::env::temp_dir();
    expect_refusal(&format!("path={}", dir.display()), 126, "is a directory");
    expect_refusal("path=/dev/null", 126, "is not a regular file");
    let tiny = TempFile::with("tiny", &[0; 100]);
    expect_refusal(
        &format!("path={}", tiny.path()),
        126,
        "less than one 512-byte sector",
    );
    assert!(read(&img) == image_bytes(IMAGE));
}

/// Runs tinyvmm with `args` where `/dev/kvm` is `/dev/null` (a private
/// mount namespace; needs root), returning the exit code and stderr.
fn without_kvm(args: &[&str]) -> Option<(Option<i32>, String)> {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let mut cmd = Command::new(tinyvmm());
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: only system calls between fork and exec, on static strings.
    unsafe {
        cmd.pre_exec(|| {
            let check = |rc: libc::c_int| match rc {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                c"/dev/null".as_ptr(),
                c"/dev/kvm".as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))
        });
    }
    let out = cmd.output().ok()?;
    Some((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn bad_disk_images_are_refused_before_any_kvm_call() {
    let test = "bad_disk_images_are_refused_before_any_kvm_call";
    if !std::path::Path::new("/dev/kvm").exists() {
        skip::not_shown_here(test, "no /dev/kvm to hide");
        return;
    }
    let Some((code, stderr)) = without_kvm(&["run", "--disk", "path=/nonexistent/disk.img"]) else {
        skip::not_shown_here(test, "needs root to hide /dev/kvm in a mount namespace");
        return;
    };
    assert_eq!(code, Some(126), "{stderr}");
    assert_has(&stderr, "No such file or directory");
}

#[test]
fn an_id_longer_than_20_bytes_is_a_bad_option() {
    let img = image("long-id", IMAGE);
    expect_refusal(
        &format!("path={},id=abcdefghijklmnopqrstu", img.path()),
        125,
        "longer than 20 bytes",
    );
}

#[test]
fn the_same_image_twice_is_a_bad_option_not_a_lock_conflict() {
    // No KVM call comes before the check: this runs without /dev/kvm too.
    let img = std::env::temp_dir().join(format!("tinyvmm-twice-{}.img", std::process::id()));
    std::fs::write(&img, vec![0u8; 4096]).unwrap();
    let a = format!("path={}", img.display());
    let b = format!(
        "path={}/./{},readonly=on",
        img.parent().unwrap().display(),
        img.file_name().unwrap().to_str().unwrap()
    );
    let out = common::run(
        &["run", "--disk", &a, "--disk", &b],
        b"",
        std::time::Duration::from_secs(30),
    );
    let _ = std::fs::remove_file(&img);
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    assert!(
        out.stderr.contains("the same image is given twice"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

/// The number before `unit` on the `disk vda` line of `--stats`.
fn vda_stat(stderr: &str, unit: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("tinyvmm: disk vda "))
        .unwrap_or_else(|| panic!("no disk vda line in: {stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == unit)
        .unwrap_or_else(|| panic!("no {unit:?} in {line:?}"));
    words[at - 1].parse().unwrap()
}

#[test]
fn a_guest_hammering_the_disk_queue_does_not_grow_the_vmm() {
    let test = "a_guest_hammering_the_disk_queue_does_not_grow_the_vmm";
    // The chaos monkey (kernels/tiny/chaos.S) with a disk among its
    // windows: queue notifications, rings anywhere in RAM, broken chains.
    let img = image("hammer", IMAGE);
    let disk = format!("path={}", img.path());
    let Some(idle) = boot(test, "tiny.chaos=1,0", &["--disk", &disk, "--stats"]) else {
        return;
    };
    let busy = run(
        &[
            "run",
            "--cmdline",
            "tiny.chaos=1,100000",
            "--disk",
            &disk,
            "--stats",
        ],
        b"",
        Duration::from_secs(120),
    );
    for (out, what) in [(&idle, "idle"), (&busy, "100000 accesses")] {
        assert_eq!(out.code, Some(0), "{what}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
    }
    let notified = vda_stat(&busy.stderr, "notifications");
    let requests = vda_stat(&busy.stderr, "requests");
    assert!(
        notified >= 100 && requests > 0,
        "chaos barely reached the disk ({notified} notifications, {requests} requests): {}",
        busy.stderr
    );
    // Its broken chains are completed empty and counted, not dropped.
    let bad = vda_stat(&busy.stderr, "bad");
    assert!(bad > 0, "no bad chain counted: {}", busy.stderr);
    let (a, b) = (
        common::vmm_resident_mib(&idle.stderr),
        common::vmm_resident_mib(&busy.stderr),
    );
    eprintln!("VMM resident memory: idle {a:.2} MiB, {notified} notifications {b:.2} MiB");
    assert!(
        (b - a).abs() <= 1.0,
        "the hammered disk moved VMM memory from {a} to {b} MiB"
    );
}
