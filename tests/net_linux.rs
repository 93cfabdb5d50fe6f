//! A Linux guest on virtio-net, in one boot (each costs minutes where the
//! guest kernel is emulated), inside a network namespace this test makes:
//! tinyvmm creates the tap (`--net ip=10.0.2.1/24`), the guest configures
//! itself from the kernel's `ip=` option, and then
//! 1. the guest fetches 8 MiB from a host HTTP server (busybox wget) and
//!    prints its sha256, which must be the host's;
//! 2. the host fetches the same 8 MiB back from the guest's busybox httpd
//!    and compares every byte;
//! 3. the guest starts an endless download and tinyvmm is stopped (SIGTERM)
//!    mid-transfer: it exits promptly with 143, the host's sending side
//!    ends (write error or timeout) instead of hanging, and the tap is gone.
//!
//! A second boot is saved at its marker and restored on a new tap, over
//! which the restored guest fetches a page from the host.
//!
//! `--stats` must show the frames both ways and no drops of well-formed
//! traffic; the net line (with the offloads Linux negotiated) is printed.

mod common;
mod net_ns;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{guest_pair, skip::skip, tinyvmm};
use net_ns::{in_new_netns, link_exists};

const BLOB: usize = 8 << 20;
/// Generous: a boot takes 12 s to minutes here, and the guest's TCP stack
/// runs in the emulated kernel.
const STEP: Duration = Duration::from_secs(900);

/// Spawns `cmd` with piped stdio: the child, its stdin, its stdout as a
/// channel of lines, and a thread that collects its stderr.
fn spawn_piped(
    cmd: &mut Command,
) -> (
    Child,
    ChildStdin,
    mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tinyvmm");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (line_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    (child, stdin, lines, err_reader)
}

/// The 8 MiB the host serves: xorshift bytes, so a dropped, duplicated or
/// reordered segment cannot go unnoticed.
fn blob() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..BLOB / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    let file = common::TempFile::with("net-blob", data);
    let out = Command::new("sha256sum").arg(file.path()).output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// The host's HTTP server (in the namespace): `/blob` is the blob,
/// `/endless` streams until the peer goes away; its end (bytes sent) is
/// reported on `ended`, and `started` fires after the first MiB.
fn serve(
    listener: TcpListener,
    data: Vec<u8>,
    started: mpsc::Sender<()>,
    ended: mpsc::Sender<u64>,
) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut req = [0u8; 1024];
        let n = conn.read(&mut req).unwrap_or(0);
        let req = String::from_utf8_lossy(&req[..n]).to_string();
        if req.starts_with("GET /blob ") {
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", data.len());
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&data);
        } else if req.starts_with("GET /endless ") {
            // Bounded in time and size whatever the peer does.
            conn.set_write_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\n\r\n");
            let mut sent = 0u64;
            let chunk = vec![0x5au8; 64 << 10];
            while sent < 1 << 30 {
                if conn.write_all(&chunk).is_err() {
                    break;
                }
                sent += chunk.len() as u64;
                if sent == 1 << 20 {
                    let _ = started.send(());
                }
            }
            let _ = ended.send(sent);
            return;
        }
    }
}

/// Reads the guest console until a line containing `marker`; returns all
/// lines read.
fn wait_for(lines: &mpsc::Receiver<String>, marker: &str, log: &mut String) -> bool {
    let deadline = Instant::now() + STEP;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains(marker) {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

fn guest_http_get(path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect("10.0.2.2:80").expect("connect to the guest's httpd");
    s.set_read_timeout(Some(STEP)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("the guest's response");
    let body = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers")
        + 4;
    all.split_off(body)
}

#[test]
fn linux_guest_talks_tcp_both_ways_over_a_created_tap() {
    let test = "linux_guest_talks_tcp_both_ways_over_a_created_tap";
    let Some((kernel, initrd)) = guest_pair(test, "vmlinux", "initramfs.cpio") else {
        return;
    };
    if let Err(why) = in_new_netns(move || guest_session(&kernel, &initrd)) {
        skip(test, &why);
    }
}

fn guest_session(kernel: &str, initrd: &str) {
    let data = blob();
    let want = sha256(&data);
    let listener = TcpListener::bind("0.0.0.0:8080").expect("a listener in the namespace");
    let (started_tx, started) = mpsc::channel();
    let (ended_tx, ended) = mpsc::channel();
    let served = data.clone();
    std::thread::spawn(move || serve(listener, served, started_tx, ended_tx));

    let cmdline = "console=hvc0 reboot=k panic=1 pci=off io_delay=none quiet tinyvmm.shell=1 \
                   ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off";
    let (mut child, mut stdin, lines, err_reader) = spawn_piped(
        Command::new(tinyvmm())
            .args([
                "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M",
            ])
            .args(["--net", "ip=10.0.2.1/24,mac=06:00:0a:00:02:02", "--stats"])
            .args(["--cmdline", cmdline]),
    );
    let mut log = String::new();
    // The tty echoes what we type: markers are computed, so only the
    // output has them ("$((1+1))" is echoed, "2" printed).
    let mut say = |cmd: &str| writeln!(stdin, "{cmd}").expect("guest stdin");
    let fail = |what: &str, log: &str, child: &mut std::process::Child| -> ! {
        let _ = child.kill();
        panic!("{what}; console so far:\n{log}");
    };

    // 1. host -> guest, checksummed in the guest.
    say("wget -q -O /tmp/blob http://10.0.2.1:8080/blob; sha256sum /tmp/blob; echo GOT-$((40+2))");
    if !wait_for(&lines, "GOT-42", &mut log) {
        fail("the guest's download did not finish", &log, &mut child);
    }
    if !log.contains(&format!("{want}  /tmp/blob")) {
        fail(
            &format!("the guest's sha256 is not {want}"),
            &log,
            &mut child,
        );
    }

    // 2. guest -> host, compared byte for byte.
    say("httpd -p 80 -h /tmp && echo HTTPD-$((40+3))");
    if !wait_for(&lines, "HTTPD-43", &mut log) {
        fail("the guest's httpd did not start", &log, &mut child);
    }
    let back = guest_http_get("/blob");
    assert_eq!(back.len(), BLOB, "bytes from the guest");
    assert!(back == data, "the blob came back changed");

    // 3. Stopped mid-transfer.
    say("wget -q -O /dev/null http://10.0.2.1:8080/endless");
    if started.recv_timeout(STEP).is_err() {
        fail("the endless download did not start", &log, &mut child);
    }
    // SAFETY: kill takes integers; the pid is our child's, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stop = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stop.elapsed() > Duration::from_secs(15) {
            fail(
                "tinyvmm did not exit within 15 s of SIGTERM",
                &log,
                &mut child,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stats = err_reader.join().unwrap();
    assert_eq!(status.code(), Some(143), "{stats}");
    let sent = ended
        .recv_timeout(Duration::from_secs(60))
        .expect("the host's sending side ended instead of hanging");
    assert!(sent >= 1 << 20, "sent {sent}");
    assert!(
        !link_exists("tvmm0"),
        "the tap is gone once tinyvmm has exited"
    );

    let net = stats
        .lines()
        .find(|l| l.contains("net eth0 (tap tvmm0)"))
        .unwrap_or_else(|| panic!("no net line: {stats}"));
    eprintln!("{net}");
    // "rx F frames B bytes, tx F frames B bytes, ...; dropped: rx N (...), tx N bad length,
    // N bad header; ..."
    let number_before = |phrase: &str| -> u64 {
        let at = net
            .find(phrase)
            .unwrap_or_else(|| panic!("{phrase:?} in {net}"));
        let word = net[..at].split_whitespace().last().unwrap();
        word.parse()
            .unwrap_or_else(|_| panic!("{word:?} before {phrase:?}"))
    };
    assert!(
        number_before(" bytes, tx") >= BLOB as u64,
        "received: {net}"
    );
    let sent_bytes: u64 = net
        .split("tx ")
        .nth(1)
        .and_then(|t| t.split_whitespace().nth(2))
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("tx bytes in {net}"));
    assert!(sent_bytes >= BLOB as u64, "sent: {net}");
    // And not more than the traffic can explain (a count taken twice
    // would be): frame headers are at most ~5% of a full segment's bytes,
    // ACKs one small frame per segment the other way; 25% and 1 MiB of
    // slack for the handshakes and HTTP headers.
    let down = BLOB as u64 + sent;
    let received = number_before(" bytes, tx");
    assert!(
        received <= down + down / 4 + (1 << 20),
        "received {received} for {down}: {net}"
    );
    let up = BLOB as u64 + down / 10;
    assert!(
        sent_bytes <= up + up / 4 + (1 << 20),
        "sent {sent_bytes} for {BLOB}: {net}"
    );
    for drop in [" bad length", " bad header", " bad chains", " tap errors"] {
        assert_eq!(number_before(drop), 0, "{drop}: {net}");
    }
}

/// A Linux guest saved with a created tap at its boot marker (its address
/// already set by `ip=`), then restored on a new tap made by
/// `restore --net ip=` (the first is gone with its VMM): the restored guest
/// fetches a page from the host over it.
#[test]
fn linux_guest_saved_with_a_tap_restores_on_a_new_tap_and_talks() {
    let test = "linux_guest_saved_with_a_tap_restores_on_a_new_tap_and_talks";
    let Some((kernel, initrd)) = guest_pair(test, "vmlinux", "initramfs.cpio") else {
        return;
    };
    if let Err(why) = in_new_netns(move || restored_session(&kernel, &initrd)) {
        skip(test, &why);
    }
}

fn restored_session(kernel: &str, initrd: &str) {
    let dir = std::env::temp_dir().join(format!("tinyvmm-net-snap-linux-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let snap = dir.join("snap").display().to_string();
    let cmdline = "console=hvc0 reboot=k panic=1 pci=off io_delay=none quiet tinyvmm.shell=1 \
                   ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off";
    let out = common::run(
        &[
            "run",
            "--kernel",
            kernel,
            "--initrd",
            initrd,
            "--memory",
            "256M",
            "--net",
            "ip=10.0.2.1/24,mac=06:00:0a:00:02:02",
            "--cmdline",
            cmdline,
            "--snapshot-on-marker",
            &snap,
        ],
        b"",
        STEP,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let listener = TcpListener::bind("0.0.0.0:8080").expect("a listener in the namespace");
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = listener.accept() {
            let mut req = [0u8; 512];
            let _ = c.read(&mut req);
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 13\r\n\r\nrestored-talk");
        }
    });
    let (mut child, mut stdin, lines, err_reader) = spawn_piped(Command::new(tinyvmm()).args([
        "restore",
        &snap,
        "--stats",
        "--net",
        "ip=10.0.2.1/24",
    ]));
    let mut log = String::new();
    let mut fail = |what: &str, log: &str| -> ! {
        let _ = child.kill();
        panic!("{what}; console so far:\n{log}");
    };
    if !wait_for(&lines, "interactive shell", &mut log) {
        fail("the restored guest's shell did not start", &log);
    }
    writeln!(
        stdin,
        "wget -q -O - http://10.0.2.1:8080/x; echo; echo FETCHED-$((40+4))"
    )
    .unwrap();
    if !wait_for(&lines, "FETCHED-44", &mut log) {
        fail("the restored guest's fetch did not finish", &log);
    }
    if !log.contains("restored-talk") {
        fail("the page did not reach the restored guest", &log);
    }
    writeln!(stdin, "exit").unwrap();
    let status = child.wait().unwrap();
    let stats = err_reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{stats}\n{log}");
    let net = stats
        .lines()
        .find(|l| l.contains("net eth0 (tap tvmm0)"))
        .unwrap_or_else(|| panic!("no net line: {stats}"));
    eprintln!("restored: {net}");
    assert!(net.contains("0 bad header"), "{net}");
    let _ = std::fs::remove_dir_all(&dir);
}
