//! Network overhead, side by side in one run (issue 14): TCP throughput
//! host -> workload and workload -> host, and TCP request/response latency,
//! for tinyvmm + Linux (virtio-net on a tap it creates), QEMU microvm + the
//! same Linux (virtio-net-device on a tap), and crun running the same
//! busybox rootfs on a veth pair; for tinyvmm also VM exits, queue
//! notifications and interrupts per MiB moved (from `--stats`).
//!
//! One yardstick: every path runs the same busybox workload (one `nc`
//! sink, one `nc` source of an N MiB file in tmpfs, one `nc -e cat` echo
//! server) and the host measures each the same way from its side of the
//! link: throughput = connect to the last byte (sink: until the workload
//! closes after our EOF; source: until N MiB arrived), latency = 1-byte
//! round trips on one connection. Everything runs inside a network
//! namespace the bench makes (the container's netns too), root only.
//!
//! A plain program (harness = false), not criterion: each path is one
//! long-lived guest (a Linux boot costs minutes where guest kernel code is
//! emulated) measured several times, which criterion's per-sample model
//! does not fit. Run under the heavy lock:
//! `flock /work/.heavy.lock cargo bench --bench net` (or any host lock);
//! `TINYVMM_BENCH_NET_MIB` (default 16) and `TINYVMM_BENCH_NET_REPS`
//! (default 3) size it; `TINYVMM_BENCH_NET_PATHS=tinyvmm,qemu,crun` picks
//! paths (a path left out prints "absent").

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workload, the same on every path; `{MIB}` is the file size.
const WORKLOAD: &str = "dd if=/dev/zero of=/tmp/blob bs=1048576 count={MIB} 2>/dev/null; \
    (while :; do nc -l -p 5001 >/dev/null; done) & \
    (while :; do nc -l -p 5002 </tmp/blob; done) & \
    nc -ll -p 5003 -e cat &";
const READY_WAIT: Duration = Duration::from_secs(600);
const IO_TIMEOUT: Duration = Duration::from_secs(600);
const ROUND_TRIPS: usize = 200;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sh(cmd: &str, args: &[&str]) {
    let ok = Command::new(cmd)
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{cmd} {args:?} failed");
}

/// One running workload and how to end it.
struct Session {
    label: &'static str,
    addr: [u8; 4],
    child: Child,
    cleanup: Vec<Vec<String>>,
}

impl Session {
    fn ip(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.addr, port))
    }

    /// Ends the workload; returns its stderr (tinyvmm's `--stats`).
    fn stop(mut self) -> String {
        // SAFETY: kill takes integers; the pid is our child's, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // First the clean-up (a container's processes hold crun's stderr
        // open until it is deleted), then what the child said.
        for c in &self.cleanup {
            let _ = Command::new(&c[0]).args(&c[1..]).status();
        }
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

fn linux_cmdline(console: &str, me: &str, host: &str) -> String {
    format!(
        "console={console} reboot=k panic=1 pci=off io_delay=none quiet tinyvmm.shell=1 \
         ip={me}::{host}:255.255.255.0::eth0:off"
    )
}

/// Feeds the workload to a guest shell on the child's stdin (kept open).
fn feed(child: &mut Child, workload: &str) {
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{workload}").expect("guest stdin");
    // The shell must keep its stdin: leak the pipe's write end until exit.
    std::mem::forget(stdin);
}

/// Drains a child's stdout so the guest never blocks on its console.
fn drain(child: &mut Child) {
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || for _ in BufReader::new(out).lines().map_while(Result::ok) {});
    }
}

fn tinyvmm(kernels: &Path, workload: &str) -> Session {
    let (k, i) = (kernels.join("vmlinux"), kernels.join("initramfs.cpio"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tinyvmm"))
        .args([
            "run",
            "--memory",
            "256M",
            "--stats",
            "--net",
            "ip=10.0.2.1/24",
        ])
        .arg("--kernel")
        .arg(&k)
        .arg("--initrd")
        .arg(&i)
        .args(["--cmdline", &linux_cmdline("hvc0", "10.0.2.2", "10.0.2.1")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tinyvmm");
    feed(&mut child, workload);
    drain(&mut child);
    Session {
        label: "tinyvmm + Linux (virtio-net, tap)",
        addr: [10, 0, 2, 2],
        child,
        cleanup: vec![],
    }
}

fn qemu(kernels: &Path, workload: &str) -> Option<Session> {
    let qemu = tinyvmm::lab::qemu::find()?;
    sh("ip", &["tuntap", "add", "dev", "tvq0", "mode", "tap"]);
    sh("ip", &["addr", "add", "10.0.4.1/24", "dev", "tvq0"]);
    sh("ip", &["link", "set", "tvq0", "up"]);
    // The lab's one QEMU microvm command line (with this host's CPU model
    // and kernel options, and `acpi=off` so the guest finds the device)
    // plus a virtio-net device on the tap.
    let (k, i) = (kernels.join("vmlinux"), kernels.join("initramfs.cpio"));
    let args = tinyvmm::lab::qemu::Microvm::new(
        &k,
        &i,
        &linux_cmdline("ttyS0", "10.0.4.2", "10.0.4.1"),
        "256M",
        tinyvmm::host::kvm_emulates_guest_kernel(),
    )
    .tap("tvq0")
    .args();
    let mut child = Command::new(qemu)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    feed(&mut child, workload);
    drain(&mut child);
    Some(Session {
        label: "QEMU microvm + Linux (virtio-net, tap)",
        addr: [10, 0, 4, 2],
        child,
        cleanup: vec![vec![
            "ip".into(),
            "link".into(),
            "del".into(),
            "tvq0".into(),
        ]],
    })
}

fn crun(kernels: &Path, workload: &str, scratch: &Path) -> Option<Session> {
    use tinyvmm::lab::container::runtime::{Runtime, RuntimeKind};
    let runtime = Runtime::find(RuntimeKind::Crun).ok()?;
    let ns = format!("tvbench{}", std::process::id());
    sh("ip", &["netns", "add", &ns]);
    sh(
        "ip",
        &[
            "link", "add", "tvh0", "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ],
    );
    sh("ip", &["addr", "add", "10.0.5.1/24", "dev", "tvh0"]);
    sh("ip", &["link", "set", "tvh0", "up"]);
    sh(
        "ip",
        &["-n", &ns, "addr", "add", "10.0.5.2/24", "dev", "eth0"],
    );
    sh("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
    sh("ip", &["-n", &ns, "link", "set", "lo", "up"]);
    let dir = scratch.join("bundle");
    let args = [
        "/bin/sh".to_string(),
        "-c".into(),
        format!("{workload} exec sleep 100000"),
    ];
    let bundle =
        tinyvmm::lab::container::bundle::Bundle::write(&dir, &kernels.join("rootfs"), &args)
            .ok()?;
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    for n in config["linux"]["namespaces"].as_array_mut()? {
        if n["type"] == "network" {
            n["path"] = format!("/run/netns/{ns}").into();
        }
    }
    std::fs::write(&path, config.to_string()).ok()?;
    let id = format!("tvbench-{}", std::process::id());
    // As `compare` launches crun (on a hybrid cgroup host, in a private
    // mount namespace without the cgroup2 mount), without its cgroup.
    let spec = runtime.launch_spec(&bundle, &id, false, None);
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(hook) = spec.pre_exec {
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook makes system calls only (unshare, mount,
        // umount2), which are safe between fork and exec.
        unsafe { cmd.pre_exec(hook) };
    }
    let mut child = cmd.spawn().ok()?;
    drain(&mut child);
    let crun = runtime.path.to_string_lossy().into_owned();
    Some(Session {
        label: "crun + busybox (veth)",
        addr: [10, 0, 5, 2],
        child,
        cleanup: vec![
            vec![crun.clone(), "delete".into(), "--force".into(), id],
            vec!["ip".into(), "netns".into(), "del".into(), ns],
        ],
    })
}

/// Connects, retrying while the workload's listener restarts.
fn connect(addr: SocketAddr, within: Duration) -> TcpStream {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => {
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                return s;
            }
            Err(e) if Instant::now() > deadline => panic!("{addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Host -> workload: N bytes into the sink, until it closes after our EOF.
fn to_workload(s: &Session, bytes: usize) -> Duration {
    let mut c = connect(s.ip(5001), Duration::from_secs(60));
    let start = Instant::now();
    let chunk = vec![0x5au8; 64 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        c.write_all(&chunk[..n]).expect("send");
        left -= n;
    }
    c.shutdown(Shutdown::Write).expect("shutdown");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    start.elapsed()
}

/// Workload -> host: the N-byte file from the source.
fn from_workload(s: &Session, bytes: usize) -> Duration {
    let mut c = connect(s.ip(5002), Duration::from_secs(60));
    let start = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0;
    while got < bytes {
        let n = c.read(&mut buf).expect("receive");
        assert!(n > 0, "the source closed after {got} of {bytes} bytes");
        got += n;
    }
    start.elapsed()
}

/// 1-byte round trips through the echo server; empty when an echo does
/// not come back within 10 s.
fn round_trips(s: &Session, n: usize) -> Vec<Duration> {
    let mut c = connect(s.ip(5003), Duration::from_secs(60));
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut byte = [0u8; 1];
    let mut once = || {
        let start = Instant::now();
        c.write_all(b"x").ok()?;
        c.read_exact(&mut byte).ok()?;
        Some(start.elapsed())
    };
    if (0..10).any(|_| once().is_none()) {
        return Vec::new();
    }
    (0..n)
        .map(|_| once())
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// "N VM exits;" and the net line's notifications and interrupts.
fn vm_counts(stats: &str) -> Option<(u64, u64, u64)> {
    let exits = stats.lines().find_map(|l| {
        l.strip_prefix("tinyvmm: ")?
            .split(" VM exits;")
            .next()?
            .parse()
            .ok()
    })?;
    let net = stats.lines().find(|l| l.contains("net eth0 (tap"))?;
    let before = |phrase: &str| -> Option<u64> {
        net[..net.find(phrase)?]
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    };
    Some((exits, before(" notifications")?, before(" interrupts")?))
}

/// Whether the workload's echo server answers within `READY_WAIT` (and
/// its VMM or runtime has not exited meanwhile).
fn ready(s: &mut Session) -> bool {
    let deadline = Instant::now() + READY_WAIT;
    while Instant::now() < deadline {
        if s.child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if TcpStream::connect_timeout(&s.ip(5003), Duration::from_secs(2)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn measure(mut s: Session, mib: usize, reps: usize) -> String {
    let start = Instant::now();
    if !ready(&mut s) {
        let label = s.label;
        let tail = s.stop();
        eprintln!("{label}: not up within {READY_WAIT:?}: {tail}");
        return format!("| {label} | did not come up (see stderr) | | | | | |");
    }
    eprintln!(
        "{}: ready after {:.1} s",
        s.label,
        start.elapsed().as_secs_f64()
    );
    let bytes = mib << 20;
    let rate = |d: Duration| mib as f64 / d.as_secs_f64();
    let h2w: Vec<f64> = (0..reps).map(|_| rate(to_workload(&s, bytes))).collect();
    eprintln!("{}: host->workload {h2w:.2?} MiB/s", s.label);
    let w2h: Vec<f64> = (0..reps).map(|_| rate(from_workload(&s, bytes))).collect();
    eprintln!("{}: workload->host {w2h:.2?} MiB/s", s.label);
    let mut rtt: Vec<f64> = round_trips(&s, ROUND_TRIPS)
        .iter()
        .map(|d| d.as_secs_f64() * 1e6)
        .collect();
    rtt.sort_by(f64::total_cmp);
    let latency = match rtt.len() {
        0 => "no echo within 10 s".to_string(),
        n => format!("{:.0} / {:.0}", median(rtt.clone()), rtt[n * 99 / 100]),
    };
    let label = s.label;
    let stats = s.stop();
    let moved = (2 * reps * mib) as f64;
    let per_mib = match vm_counts(&stats) {
        Some((e, n, i)) => format!(
            "{:.0} | {:.0} | {:.0}",
            e as f64 / moved,
            n as f64 / moved,
            i as f64 / moved
        ),
        None => "n/a | n/a | n/a".into(),
    };
    format!(
        "| {label} | {:.2} (min {:.2}) | {:.2} (min {:.2}) | {latency} | {per_mib} |",
        median(h2w.clone()),
        h2w.iter().cloned().fold(f64::INFINITY, f64::min),
        median(w2h.clone()),
        w2h.iter().cloned().fold(f64::INFINITY, f64::min),
    )
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let mib = env_num("TINYVMM_BENCH_NET_MIB", 16);
    let reps = env_num("TINYVMM_BENCH_NET_REPS", 3).max(1);
    let kernels: PathBuf =
        tinyvmm::kernel_dir::kernel_dir_for(Path::new(env!("CARGO_BIN_EXE_tinyvmm")));
    let scratch = std::env::temp_dir().join(format!("tinyvmm-bench-net-{}", std::process::id()));
    let workload = WORKLOAD.replace("{MIB}", &mib.to_string());
    let done = std::thread::spawn(move || {
        // SAFETY: unshare takes an integer flag; it moves only this thread
        // (and the processes it starts) into a new network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            eprintln!("net bench: needs root (unshare CLONE_NEWNET failed); nothing measured");
            return;
        }
        println!(
            "\nnet: {mib} MiB per transfer, median of {reps} (min), {ROUND_TRIPS} round trips; \
             VM counts per MiB moved over the whole session (boot included)"
        );
        println!(
            "| path | host->workload MiB/s | workload->host MiB/s | round trip median / p99 (us) | VM exits / MiB | notifications / MiB | interrupts / MiB |"
        );
        println!("|---|---|---|---|---|---|---|");
        let wanted = |p: &str| {
            std::env::var("TINYVMM_BENCH_NET_PATHS")
                .map_or(true, |v| v.split(',').any(|w| w == p))
        };
        if wanted("tinyvmm") {
            println!("{}", measure(tinyvmm(&kernels, &workload), mib, reps));
        }
        match wanted("qemu").then(|| qemu(&kernels, &workload)).flatten() {
            Some(s) => println!("{}", measure(s, mib, reps)),
            None => println!("| QEMU microvm | absent: qemu-system-x86_64 not found or did not start | | | | | |"),
        }
        match wanted("crun").then(|| crun(&kernels, &workload, &scratch)).flatten() {
            Some(s) => println!("{}", measure(s, mib, reps)),
            None => println!("| crun | absent: not found, or its bundle could not be written | | | | | |"),
        }
        let _ = std::fs::remove_dir_all(&scratch);
    })
    .join();
    assert!(done.is_ok(), "the bench thread panicked");
}
