//! Linux with its root file system on a virtio disk (issue 11): two boots
//! of the project's kernel from copies of `rootfs.ext4` (kernels/build.sh),
//! each carrying several checks, since a boot costs ~30 s where guest
//! kernel code is emulated.
//!
//! 1. Read-write root plus a second disk: the guest boots from /dev/vda
//!    with no initramfs (its /sbin/init is the image's), writes a word to
//!    a file and to the start of /dev/vdb, syncs and holds; meanwhile a
//!    second tinyvmm is refused the busy image (exit 126); then tinyvmm is
//!    SIGKILLed, and the host finds the word in both images (`debugfs`).
//! 2. The same image `readonly=on` with `root=/dev/vda rw`: the guest's
//!    write fails, the VM still ends with 0, the image is byte-identical.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_status, guest_pair, run, run_kernel, tinyvmm};

/// A boot takes 30-60 s on kvm_pvm; allow for a loaded host.
const T: Duration = Duration::from_secs(900);
const BASE: &str = "console=hvc0 reboot=k panic=1 pci=off io_delay=none quiet root=/dev/vda rw";

/// A private copy of `rootfs.ext4`, removed on drop.
struct Copy(PathBuf);

impl Copy {
    fn of(src: &Path, tag: &str) -> Copy {
        let dst =
            std::env::temp_dir().join(format!("tinyvmm-disk-{}-{tag}.ext4", std::process::id()));
        std::fs::copy(src, &dst).unwrap();
        Copy(dst)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `debugfs -R "cat PATH" IMAGE`: a file's contents, read from the image.
fn debugfs_cat(image: &str, path: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {path}"), image])
        .output()
        .expect("debugfs (e2fsprogs) is installed by kernels/build.sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn linux_boots_from_an_ext4_disk_and_a_synced_write_survives_sigkill() {
    let test = "linux_boots_from_an_ext4_disk_and_a_synced_write_survives_sigkill";
    let Some((kernel, image)) = guest_pair(test, "vmlinux", "rootfs.ext4") else {
        return;
    };
    let root = Copy::of(Path::new(&image), "root");
    let second = common::TempFile::with("vdb", &vec![0u8; 1 << 20]);
    let word = format!("tinyvmm-{}", std::process::id());
    let cmdline = format!("{BASE} tinyvmm.persist={word} tinyvmm.hold=1");
    let mut child = Command::new(tinyvmm())
        .args(["run", "--kernel", &kernel, "--cmdline", &cmdline, "--stats"])
        .args(["--disk", &format!("path={}", root.path())])
        .args(["--disk", &format!("path={},id=second", second.path())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let persisted = loop {
        match lines.next() {
            Some(Ok(line)) => {
                let done = line.contains("tinyvmm-init: holding");
                seen.push(line);
                if done {
                    break true;
                }
            }
            _ => break false,
        }
        if start.elapsed() > T {
            break false;
        }
    };
    // While it holds the image: a second VMM is refused it.
    let busy = run(
        &["run", "--disk", &format!("path={}", root.path())],
        b"",
        Duration::from_secs(30),
    );
    let busy_ro = run(
        &[
            "run",
            "--disk",
            &format!("path={},readonly=on", root.path()),
        ],
        b"",
        Duration::from_secs(30),
    );
    let _ = child.kill(); // SIGKILL: no chance to flush anything itself
    let _ = child.wait();
    let console = seen.join("\n");
    assert!(
        persisted,
        "the guest never said it held; console:\n{console}"
    );
    assert!(
        console.contains(&format!("tinyvmm-init: persisted {word}")),
        "{console}"
    );
    assert!(
        console.contains("TINYVMM-GUEST-OK") || console.contains("holding"),
        "{console}"
    );
    assert_eq!(busy.code, Some(126), "{}", busy.stderr);
    assert!(
        busy.stderr.contains("in use by another process"),
        "{}",
        busy.stderr
    );
    assert_eq!(
        busy_ro.code,
        Some(126),
        "a read-only open of a writable-held image: {}",
        busy_ro.stderr
    );
    // The synced write is in the image after the SIGKILL.
    assert_eq!(debugfs_cat(root.path(), "/tinyvmm-persist").trim(), word);
    let raw = std::fs::read(second.path()).unwrap();
    assert!(
        raw.starts_with(word.as_bytes()),
        "vdb starts with {:?}",
        &raw[..32]
    );
}

#[test]
fn a_read_only_root_disk_refuses_the_guests_writes() {
    let test = "a_read_only_root_disk_refuses_the_guests_writes";
    let Some((kernel, image)) = guest_pair(test, "vmlinux", "rootfs.ext4") else {
        return;
    };
    let root = Copy::of(Path::new(&image), "ro");
    let before = std::fs::read(&root.0).unwrap();
    let cmdline = format!("{BASE} tinyvmm.persist=should-not-land");
    let out = run_kernel(
        &kernel,
        &cmdline,
        &["--disk", &format!("path={},readonly=on", root.path())],
        T,
    );
    assert_status(&out, 0);
    assert!(out.stdout.contains("TINYVMM-GUEST-OK"), "{}", out.stdout);
    assert!(
        out.stdout.contains("tinyvmm-init: persist failed"),
        "{}",
        out.stdout
    );
    assert!(
        std::fs::read(&root.0).unwrap() == before,
        "the read-only image changed"
    );
}
