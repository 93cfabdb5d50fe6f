//! criterion group `vsock`: throughput and latency of tinyvmm's virtio
//! socket device between a host Unix socket client and a Linux guest
//! (`vsockt serve`, kernels/initramfs/vsockt.c), over one boot:
//!
//! - `host-to-guest`: 4 MiB (`TINYVMM_BENCH_VSOCK_MIB`) written by the
//!   host, checksummed by the guest;
//! - `guest-to-host`: as many bytes of the guest's pattern read by the host;
//! - `echo-64B`: request/response round trip of 64 bytes on an open
//!   connection;
//! - `connect`: CONNECT to the guest's listener until `OK` arrives.
//!
//! Opt-in like the other Linux benches (`TINYVMM_BENCH_LINUX=1`; the boot
//! takes 12-45 s where KVM emulates guest kernel mode, and the guest's
//! network stack runs emulated too: these figures measure that host).
//! Run under the heavy lock: `flock /work/.heavy.lock cargo bench --bench vsock`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

const PORT: u32 = 5000;
const MIB: usize = 1 << 20;

struct Guest {
    child: Child,
    sock: PathBuf,
    dir: PathBuf,
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(mut s) = connect(&self.sock) {
            let _ = s.write_all(b"QUIT 0\n");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn connect(sock: &Path) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(sock)?;
    writeln!(s, "CONNECT {PORT}")?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b)? == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    if !line.starts_with(b"OK ") {
        return Err(std::io::Error::other("no OK"));
    }
    Ok(s)
}

fn boot() -> Option<Guest> {
    if std::env::var_os("TINYVMM_BENCH_LINUX").is_none_or(|v| v != "1") {
        eprintln!("vsock bench: SKIP (boots Linux; set TINYVMM_BENCH_LINUX=1)");
        return None;
    }
    let bin = env!("CARGO_BIN_EXE_tinyvmm");
    let kernels = tinyvmm::kernel_dir::kernel_dir_for(Path::new(bin));
    let dir = std::env::temp_dir().join(format!("tinyvmm-bench-vsock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    let sock = dir.join("v.sock");
    let cmdline =
        format!("console=hvc0 reboot=k panic=1 pci=off io_delay=none quiet tinyvmm.vsock={PORT}");
    let child = Command::new(bin)
        .arg("run")
        .arg("--kernel")
        .arg(kernels.join("vmlinux"))
        .arg("--initrd")
        .arg(kernels.join("initramfs-vsock.cpio"))
        .args(["--cmdline", &cmdline, "--memory", "256M", "--stats"])
        .arg("--vsock")
        .arg(format!("cid=3,socket={}", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let g = Guest { child, sock, dir };
    let start = Instant::now();
    while connect(&g.sock).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the guest never listened"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    Some(g)
}

fn vsock(c: &mut Criterion) {
    let Some(g) = boot() else {
        return;
    };
    let mib = std::env::var("TINYVMM_BENCH_VSOCK_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let payload = vec![0x5au8; mib * MIB];
    let mut group = c.benchmark_group("vsock");
    // Flat sampling: 10 samples of equal iteration counts, so a slow
    // transfer (the guest side runs in emulated kernel code on kvm_pvm
    // hosts) costs 10 iterations, not criterion's linear 55.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function("host-to-guest", |b| {
        b.iter(|| {
            let mut s = connect(&g.sock).unwrap();
            s.write_all(b"SINK\n").unwrap();
            s.write_all(&payload).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            assert!(
                answer.starts_with(&format!("{} ", payload.len())),
                "{answer}"
            );
        })
    });
    group.bench_function("guest-to-host", |b| {
        b.iter(|| {
            let mut s = connect(&g.sock).unwrap();
            writeln!(s, "SOURCE {} 1", payload.len()).unwrap();
            let mut all = Vec::with_capacity(payload.len());
            s.read_to_end(&mut all).unwrap();
            assert_eq!(all.len(), payload.len());
        })
    });
    group.throughput(Throughput::Elements(1));
    let mut echo = connect(&g.sock).unwrap();
    echo.write_all(b"ECHO\n").unwrap();
    let msg = [7u8; 64];
    group.bench_function("echo-64B", |b| {
        b.iter(|| {
            echo.write_all(&msg).unwrap();
            let mut back = [0u8; 64];
            echo.read_exact(&mut back).unwrap();
        })
    });
    group.bench_function("connect", |b| b.iter(|| connect(&g.sock).unwrap()));
    group.finish();
    drop(echo);
    drop(g);
}

criterion_group!(benches, vsock);
criterion_main!(benches);
