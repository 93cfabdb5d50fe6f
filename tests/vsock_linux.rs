//! virtio-vsock with a Linux guest (issue 14), in ONE boot (a boot costs
//! 12-45 s where guest kernel code is emulated). The guest runs
//! `vsockt serve 5000` (kernels/initramfs/vsockt.c, `tinyvmm.vsock=5000`)
//! and the host drives it through Firecracker's protocol on the `--vsock`
//! socket, with the run-time seccomp filter on:
//!
//! 1. host -> guest: 4 MiB checksummed (the guest answers length and FNV-1a);
//! 2. guest -> host: 4 MiB of a known pattern, checked here;
//! 3. many at once: 16 host connections in parallel, and the guest opening
//!    16 connections at once to a host listener on `PATH_6000`;
//! 4. a guest that closes abruptly (connects to `PATH_6001`, sends, closes):
//!    the host side sees the end, never hangs;
//! 5. the VM ends with a host connection open: tinyvmm exits 0 and the
//!    host client sees end of stream;
//! 6. `--stats` shows the connections, no drops, and exactly the payload
//!    bytes moved each way (counted here as the test moves them).
//!
//! A second boot is saved at its marker and restored with the device
//! (`linux_guest_with_vsock_saved_and_restored_gets_the_reset_and_serves`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{guest_pair, tinyvmm};

const BASE: &str = "console=hvc0 reboot=k panic=1 pci=off io_delay=none quiet";
const PORT: u32 = 5000;
const MIB: usize = 1 << 20;

/// pattern(seed), as vsockt.c computes it.
fn pattern(seed: u32, start: u64, out: &mut [u8]) {
    for (k, b) in out.iter_mut().enumerate() {
        let i = (start + k as u64) as u32;
        let x = i
            .wrapping_mul(0x9E37_79B1)
            .wrapping_add(seed.wrapping_mul(0x85EB_CA77));
        *b = (x ^ (x >> 15)) as u8;
    }
}

fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

fn expected(seed: u32, n: usize) -> (usize, u64) {
    let mut b = vec![0u8; n];
    pattern(seed, 0, &mut b);
    (n, fnv(FNV0, &b))
}

/// `CONNECT port`, answered `OK <host port>`: the connected stream.
fn connect(sock: &Path, port: u32) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    writeln!(s, "CONNECT {port}")?;
    let line = read_line(&mut s)?;
    if !line.starts_with("OK ") || line[3..].trim().parse::<u32>().is_err() {
        return Err(std::io::Error::other(format!("answer {line:?}")));
    }
    Ok(s)
}

/// One line, byte by byte (nothing after it is consumed).
fn read_line(s: &mut UnixStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b)? == 1 {
        if b[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(b[0]);
    }
    Err(std::io::ErrorKind::UnexpectedEof.into())
}

/// SINK: sends pattern(seed) of `n` bytes; the guest's answer.
fn sink(sock: &Path, seed: u32, n: usize) -> String {
    let mut s = connect(sock, PORT).unwrap();
    s.write_all(b"SINK\n").unwrap();
    let mut b = vec![0u8; n];
    pattern(seed, 0, &mut b);
    s.write_all(&b).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    read_line(&mut s).unwrap()
}

fn stats_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("tinyvmm: vsock:"))
        .unwrap_or_else(|| panic!("no vsock stats line:\n{stderr}"))
}

/// The number right after `what` in the stats line.
fn number_after(line: &str, what: &str) -> usize {
    let at = line
        .find(what)
        .unwrap_or_else(|| panic!("{what} in {line}"))
        + what.len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("a number after {what} in {line}"))
}

/// The VM, killed if the test fails before it ends (its stderr printed).
struct Vm {
    child: std::process::Child,
    stderr: PathBuf,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            eprintln!("tinyvmm's stderr:\n{err}");
        }
    }
}

/// The vsock stats line's number before `what`.
fn stat(stderr: &str, what: &str) -> u64 {
    let line = stats_line(stderr);
    let at = line
        .find(what)
        .unwrap_or_else(|| panic!("{what} in {line}"));
    line[..at]
        .trim_end()
        .rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("number before {what} in {line}"))
}

/// A host listener on `PATH_port` that checks each connection against the
/// patterns of seeds 0..16 and answers OK or BAD; returns how many were OK.
fn dial_listener(path: PathBuf, conns: usize, n: usize) -> std::thread::JoinHandle<usize> {
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let want: Vec<u64> = (0..16).map(|s| expected(s, n).1).collect();
        let mut handles = Vec::new();
        for _ in 0..conns {
            let (mut s, _) = l.accept().unwrap();
            let want = want.clone();
            handles.push(std::thread::spawn(move || {
                let mut all = Vec::new();
                s.read_to_end(&mut all).unwrap();
                let ok = all.len() == n && want.contains(&fnv(FNV0, &all));
                s.write_all(if ok { b"OK\n" } else { b"BAD\n" }).unwrap();
                ok
            }));
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&ok| ok)
            .count()
    })
}

#[test]
fn linux_guest_vsock_both_ways_many_host_connections_and_the_vm_end() {
    let test = "linux_guest_vsock_both_ways_many_host_connections_and_the_vm_end";
    let Some((kernel, initrd)) = guest_pair(test, "vmlinux", "initramfs-vsock.cpio") else {
        return;
    };
    let config = std::fs::read_to_string(common::kernel_dir().join("config")).unwrap_or_default();
    if !config.contains("CONFIG_VIRTIO_VSOCKETS=y") {
        common::skip::skip(test, "the built guest kernel has no CONFIG_VIRTIO_VSOCKETS");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tinyvmm-vsock-linux-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("v.sock");
    let dialed = dial_listener(dir.join("v.sock_6000"), 16, 256 * 1024);
    let aborter = UnixListener::bind(dir.join("v.sock_6001")).unwrap();

    let cmdline = format!("{BASE} tinyvmm.vsock={PORT}");
    let vsock = format!("cid=3,socket={}", sock.display());
    let err_path = dir.join("stderr");
    let child = Command::new(tinyvmm())
        .args([
            "run",
            "--kernel",
            &kernel,
            "--initrd",
            &initrd,
            "--cmdline",
            &cmdline,
        ])
        .args(["--vsock", &vsock, "--stats", "--memory", "256M"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut vm = Vm {
        child,
        stderr: err_path,
    };
    let child = &mut vm.child;
    let stdout = child.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines.push(l);
        }
        lines
    });

    // The guest's listener is up once a CONNECT is answered OK (before
    // that, the guest resets: nobody listens on its port yet).
    let start = Instant::now();
    let first = loop {
        match connect(&sock, PORT) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(600) => {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!("tinyvmm ended early: {st}");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("the guest's vsock listener never answered: {e}"),
        }
    };
    drop(first);
    eprintln!("{test}: guest listening after {:?}", start.elapsed());

    // Payload bytes each way, as the device must count them (a CONNECT
    // line is the device's, not payload).
    let (mut to_guest, mut from_guest) = (0usize, 0usize);

    // 1. host -> guest, 4 MiB.
    let (n, h) = expected(1, 4 * MIB);
    let answer = sink(&sock, 1, 4 * MIB);
    assert_eq!(answer, format!("{n} {h:016x}"));
    to_guest += "SINK\n".len() + 4 * MIB;
    from_guest += answer.len() + 1;

    // 2. guest -> host, 4 MiB.
    let mut s = connect(&sock, PORT).unwrap();
    let line = format!("SOURCE {} 2\n", 4 * MIB);
    s.write_all(line.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!((all.len(), fnv(FNV0, &all)), expected(2, 4 * MIB));
    to_guest += line.len();
    from_guest += all.len();

    // 3. 16 host connections at once, then 16 guest connections at once.
    let parallel: Vec<_> = (0..16u32)
        .map(|seed| {
            let sock = sock.clone();
            std::thread::spawn(move || (seed, sink(&sock, seed + 10, 64 * 1024)))
        })
        .collect();
    for t in parallel {
        let (seed, answer) = t.join().unwrap();
        let (n, h) = expected(seed + 10, 64 * 1024);
        assert_eq!(answer, format!("{n} {h:016x}"), "connection {seed}");
        to_guest += "SINK\n".len() + 64 * 1024;
        from_guest += answer.len() + 1;
    }
    // The guest opens 16 connections to PATH_6000 at once, sends 256 KiB
    // on each; the host listener answers each "OK\n".
    let mut ctl = connect(&sock, PORT).unwrap();
    let line = format!("DIAL 6000 {} 16\n", 256 * 1024);
    ctl.write_all(line.as_bytes()).unwrap();
    let answer = read_line(&mut ctl).unwrap();
    assert_eq!(answer, "DIALED 16 0");
    assert_eq!(dialed.join().unwrap(), 16);
    to_guest += line.len() + 16 * "OK\n".len();
    from_guest += answer.len() + 1 + 16 * 256 * 1024;

    // 4. The guest connects, sends 64 KiB and closes at once.
    let mut ctl = connect(&sock, PORT).unwrap();
    let line = "ABORT 6001 65536\n";
    ctl.write_all(line.as_bytes()).unwrap();
    let (mut a, _) = aborter.accept().unwrap();
    a.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    let end = a.read_to_end(&mut got);
    assert!(end.is_ok(), "the host side must see the end: {end:?}");
    assert!(got.len() <= 65536);
    assert_eq!(read_line(&mut ctl).unwrap(), "ABORTED");
    eprintln!(
        "{test}: the aborting guest's connection carried {} bytes",
        got.len()
    );
    to_guest += line.len();
    from_guest += "ABORTED\n".len();
    // The device may have taken bytes the host never saw (a reset drops
    // what the host socket had not taken yet).
    let aborted = got.len()..=65536;

    // 5. An echo connection stays open while the guest quits.
    let mut echo = connect(&sock, PORT).unwrap();
    echo.write_all(b"ECHO\nping").unwrap();
    let mut b = [0u8; 4];
    echo.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    let mut quit = connect(&sock, PORT).unwrap();
    quit.write_all(b"QUIT 0\n").unwrap();
    to_guest += "ECHO\nping".len() + "QUIT 0\n".len();
    from_guest += "ping".len();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "tinyvmm did not end after QUIT");
        std::thread::sleep(Duration::from_millis(100));
    };
    echo.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let r = echo.read_to_end(&mut rest);
    assert!(
        matches!(&r, Ok(0))
            || r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the open host connection ends with the VM: {r:?}"
    );
    let stderr = std::fs::read_to_string(&vm.stderr).unwrap();
    let stdout = out_reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}\n{stdout:?}");

    // 6. The counters.
    assert!(stat(&stderr, "host connections") >= 21, "{stderr}");
    assert!(stat(&stderr, "guest connections") >= 17, "{stderr}");
    for drop in [
        "bad chains",
        "bad packets",
        "wrong cid",
        "credit violations",
    ] {
        assert_eq!(stat(&stderr, drop), 0, "{drop}: {stderr}");
    }
    // Exactly the payload moved each way: nothing counted twice or missed.
    let line = stats_line(&stderr);
    eprintln!("{test}: {line}");
    let counted_from_guest = number_after(line, "packets from the guest (");
    let counted_to_guest = number_after(line, "to it (");
    assert_eq!(counted_to_guest, to_guest, "bytes to the guest: {line}");
    assert!(
        (from_guest + aborted.start()..=from_guest + aborted.end()).contains(&counted_from_guest),
        "bytes from the guest: {from_guest} + {aborted:?} moved: {line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Linux guest saved with a socket device at its boot marker (before
/// `vsockt` starts) and restored: the restored device binds the saved path,
/// the guest's driver gets the transport-reset event (`--stats` counts it
/// delivered), and a host connection then reaches the restored guest.
#[test]
fn linux_guest_with_vsock_saved_and_restored_gets_the_reset_and_serves() {
    let test = "linux_guest_with_vsock_saved_and_restored_gets_the_reset_and_serves";
    let Some((kernel, initrd)) = guest_pair(test, "vmlinux", "initramfs-vsock.cpio") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tinyvmm-vsock-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (sock, snap) = (dir.join("v.sock"), dir.join("snap"));
    let cmdline = format!("{BASE} tinyvmm.vsock={PORT}");
    let vsock = format!("cid=3,socket={}", sock.display());
    let snap_arg = snap.display().to_string();
    let out = common::run(
        &[
            "run",
            "--kernel",
            &kernel,
            "--initrd",
            &initrd,
            "--cmdline",
            &cmdline,
            "--vsock",
            &vsock,
            "--memory",
            "256M",
            "--snapshot-on-marker",
            &snap_arg,
        ],
        b"",
        Duration::from_secs(600),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let err_path = dir.join("stderr");
    let child = Command::new(tinyvmm())
        .args(["restore", &snap_arg, "--stats"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut vm = Vm {
        child,
        stderr: err_path,
    };
    let start = Instant::now();
    let mut echo = loop {
        match connect(&sock, PORT) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(300) => {
                if let Ok(Some(st)) = vm.child.try_wait() {
                    panic!("the restored VM ended early: {st}");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("the restored guest's listener never answered: {e}"),
        }
    };
    eprintln!(
        "{test}: restored guest listening after {:?}",
        start.elapsed()
    );
    echo.write_all(b"ECHO\nafter the restore").unwrap();
    let mut b = [0u8; 17];
    echo.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"after the restore");
    let mut quit = connect(&sock, PORT).unwrap();
    quit.write_all(b"QUIT 0\n").unwrap();
    let status = vm.child.wait().unwrap();
    let stderr = std::fs::read_to_string(&vm.stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stat(&stderr, "transport resets"), 1, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
