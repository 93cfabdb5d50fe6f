//! Where the network probe (`network.rs`) runs each path: on a thread moved
//! into a network namespace of its own (`unshare(CLONE_NEWNET)` moves only
//! the calling thread; the processes it starts inherit it), on a link that
//! exists only there, gone with the namespace.
//!
//! - tinyvmm: its own launch plus `--net ip=10.0.2.1/24` (tinyvmm makes the
//!   tap); a Linux guest gets `ip=` and `tinyvmm.shell=1` in place of the
//!   workload's options and its console on hvc0, where tinyvmm forwards
//!   stdin, and the workload on that shell. A tinyvmm path that cannot take
//!   a network says so itself (its exit status and message are the reason).
//! - QEMU microvm: a tap made here, `crate::lab::qemu`'s command line with
//!   a virtio-net device on it; the workload on the serial console's shell.
//! - crun / runc: a veth pair, one end in a named namespace (`ip netns`)
//!   that the bundle's network namespace joins; the workload as `sh -c`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::network::{self, HOST, NetworkRow, PORTS, Plan, WORKLOAD};
use super::paths::{Context, Launcher, PathId, Prepared};
use crate::lab::container::Bundle;

/// The host end's address with its prefix, and the guest's `ip=` option.
fn addresses() -> (String, String) {
    let ip = |a: [u8; 4]| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
    (
        format!("{}/24", ip(HOST)),
        format!("ip={}::{}:255.255.255.0::eth0:off", ip(WORKLOAD), ip(HOST)),
    )
}

/// One running workload on its link.
pub struct Session {
    /// The link, for the report.
    pub link: String,
    child: Child,
    started: Instant,
    console: Arc<Mutex<VecDeque<String>>>,
    stderr: Arc<Mutex<String>>,
    /// Run before the child is signalled (a container's `delete --force`).
    stop_first: Vec<Box<dyn FnOnce()>>,
}

/// The line /init prints just before it starts the console shell.
const SHELL_UP: &str = "tinyvmm-init: interactive shell";

/// Keeps the last lines of the child's console; with `script`, types it
/// once the guest's shell is about to read (input sent earlier can be
/// lost: on QEMU's 8250 the guest dropped the first characters that
/// arrived before its driver started). Holds the console's input open
/// until the console ends (the shell would see end-of-input).
fn drain(
    out: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
    mut script: Option<(std::process::ChildStdin, String)>,
) {
    std::thread::spawn(move || {
        let mut input = None;
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(SHELL_UP)
                && let Some((mut stdin, s)) = script.take()
            {
                let _ = writeln!(stdin, "{s}");
                input = Some(stdin);
            }
            let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
            if t.len() == 5 {
                t.pop_front();
            }
            t.push_back(line);
        }
        drop(input);
    });
}

impl Session {
    fn spawn(mut cmd: Command, link: &str, script: Option<&str>) -> Result<Session, String> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let script = script.map(|s| (stdin, s.to_string()));
        let console = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        drain(
            child.stdout.take().ok_or("no stdout")?,
            console.clone(),
            script,
        );
        let mut err = child.stderr.take().ok_or("no stderr")?;
        let keep = stderr.clone();
        std::thread::spawn(move || {
            let mut all = String::new();
            let _ = err.read_to_string(&mut all);
            *keep.lock().unwrap_or_else(|e| e.into_inner()) = all;
        });
        Ok(Session {
            link: link.into(),
            child,
            started: Instant::now(),
            console,
            stderr,
            stop_first: Vec::new(),
        })
    }

    /// Seconds from spawn until the echo server answers, or why it never did.
    pub fn wait_ready(&mut self, within: Duration) -> Result<f64, String> {
        let echo = SocketAddr::from((WORKLOAD, PORTS.2));
        while self.started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                let said = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
                // Its own words when it refused (clap's `error:` line).
                let last = said.lines().find(|l| l.starts_with("error:"));
                return Err(format!(
                    "it ended ({status}) {:.1} s after its start without answering on the network{}",
                    self.started.elapsed().as_secs_f64(),
                    last.map(|l| format!(": {}", l.trim())).unwrap_or_default()
                ));
            }
            if TcpStream::connect_timeout(&echo, Duration::from_secs(2)).is_ok() {
                return Ok(self.started.elapsed().as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let tail: Vec<String> = self
            .console
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        Err(format!(
            "no answer within {within:?}; console: {}",
            tail.join(" | ")
        ))
    }

    /// Ends the workload; returns its launcher's stderr (tinyvmm's `--stats`).
    pub fn stop(mut self) -> String {
        for f in self.stop_first.drain(..) {
            f();
        }
        // SAFETY: kill takes integers; the pid is our child's, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200));
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    out.status.success().then_some(()).ok_or_else(|| {
        format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// The Linux command line with the network options in place of the
/// workload's, on `console`.
fn net_cmdline(line: &str, ctx: &Context, console: &str) -> Result<String, String> {
    let workload = ctx.workload.linux_cmdline();
    if !line.contains(&workload) {
        return Err(format!("no workload options in the command line {line:?}"));
    }
    let (_, guest) = addresses();
    Ok(line
        .replace(&workload, &format!("tinyvmm.shell=1 {guest}"))
        .replace("console=ttyS0", console))
}

/// Starts path `p`'s network session (call it in the private namespace).
pub fn start(p: &Prepared, ctx: &Context, mib: usize) -> Result<Session, String> {
    let (host, _) = addresses();
    let script = network::workload(mib);
    match &p.launcher {
        // They run crun's bundle, whose process is the startup workload;
        // the probe's servers are a shell line on a VM's console shell.
        _ if matches!(p.id, PathId::TinyvmmBundle | PathId::QemuBundle) => {
            Err("compare does not yet run the network workload as a bundle on this path".into())
        }
        Launcher::Vmm { program, args, .. } if *program == ctx.tinyvmm => {
            let mut args = args.clone();
            let linux = match args.iter().position(|a| a == "--cmdline") {
                Some(at) if p.id.is_linux() => {
                    args[at + 1] = net_cmdline(&args[at + 1], ctx, "console=hvc0")?;
                    true
                }
                _ => false,
            };
            args.extend(["--net".into(), format!("ip={host}")]);
            let mut cmd = Command::new(program);
            cmd.args(&args);
            Session::spawn(cmd, "virtio-net on a tap", linux.then_some(script.as_str()))
        }
        Launcher::Vmm { program, .. } if p.id == PathId::QemuLinux => {
            ip(&["tuntap", "add", "dev", "tvq0", "mode", "tap"])?;
            ip(&["addr", "add", &host, "dev", "tvq0"])?;
            ip(&["link", "set", "tvq0", "up"])?;
            let (k, i) = ctx.linux_images()?;
            let cmdline = net_cmdline(&ctx.linux_cmdline(), ctx, "console=ttyS0")?;
            let args = crate::lab::qemu::Microvm::new(&k, &i, &cmdline, &ctx.memory.1, ctx.pvm)
                .tap("tvq0")
                .args();
            let mut cmd = Command::new(program);
            cmd.args(args);
            Session::spawn(cmd, "virtio-net on a tap", Some(&script))
        }
        Launcher::Vmm { .. } => Err(format!(
            "compare gives {} no network device yet",
            p.id.label()
        )),
        Launcher::Container(rt, bundle) => {
            let ns = format!("tinyvmm-net-{}-{}", std::process::id(), rt.kind.name());
            ip(&["netns", "add", &ns])?;
            let del = ns.clone();
            let gone = move || {
                let _ = Command::new("ip").args(["netns", "del", &del]).status();
            };
            let veth = ip(&[
                "link", "add", "tvh0", "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])
            .and_then(|_| ip(&["addr", "add", &host, "dev", "tvh0"]))
            .and_then(|_| ip(&["link", "set", "tvh0", "up"]))
            .and_then(|_| {
                let workload = format!(
                    "{}.{}.{}.{}/24",
                    WORKLOAD[0], WORKLOAD[1], WORKLOAD[2], WORKLOAD[3]
                );
                ip(&["-n", &ns, "addr", "add", &workload, "dev", "eth0"])
            })
            .and_then(|_| ip(&["-n", &ns, "link", "set", "eth0", "up"]))
            .and_then(|_| ip(&["-n", &ns, "link", "set", "lo", "up"]));
            let dir = ctx.scratch.join(format!("net-bundle-{}", rt.kind.name()));
            let id = format!("tinyvmm-net-{}-{}", std::process::id(), rt.kind.name());
            let line = format!("{script} exec sleep 100000");
            let args = ["/bin/sh", "-c", line.as_str()].map(String::from);
            let b = veth.and_then(|_| {
                Bundle::write(&dir, &bundle.rootfs, &args).map_err(|e| e.to_string())
            });
            let b = match b.and_then(|b| join_netns(&b, &ns).map(|_| b)) {
                Ok(b) => b,
                Err(e) => {
                    gone();
                    return Err(e);
                }
            };
            let spec = rt.launch_spec(&b, &id, false, None);
            let mut cmd = Command::new(&spec.program);
            cmd.args(&spec.args);
            if let Some(hook) = spec.pre_exec {
                use std::os::unix::process::CommandExt;
                // SAFETY: the runtime's hook makes system calls only
                // (unshare, mount, umount2), safe between fork and exec.
                unsafe { cmd.pre_exec(hook) };
            }
            let mut s = Session::spawn(cmd, "veth pair", None).inspect_err(|_| gone())?;
            let rt = rt.clone();
            s.stop_first.push(Box::new(move || {
                rt.cleanup(&id);
                gone();
                let _ = std::fs::remove_dir_all(dir);
            }));
            Ok(s)
        }
    }
}

/// Points the bundle's network namespace at `/run/netns/NAME`.
fn join_netns(b: &Bundle, name: &str) -> Result<(), String> {
    let file = b.dir.join("config.json");
    let err = |e: String| format!("{}: {e}", file.display());
    let text = std::fs::read_to_string(&file).map_err(|e| err(e.to_string()))?;
    let mut c: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let spaces = c["linux"]["namespaces"]
        .as_array_mut()
        .ok_or_else(|| err("no linux.namespaces".into()))?;
    for n in spaces.iter_mut().filter(|n| n["type"] == "network") {
        n["path"] = format!("/run/netns/{name}").into();
    }
    std::fs::write(&file, c.to_string()).map_err(|e| err(e.to_string()))
}

/// Runs `f` on a thread of its own in a new network namespace.
pub fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: unshare takes an integer flag; it moves only this
            // thread (and what it starts) into a new network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(format!("no private network namespace (unshare: {e})"));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| "the network probe's thread panicked".to_string())?
    })
}

/// The network row of path `p`, and its launcher's stderr (tinyvmm's
/// `--stats`), measured in a private network namespace.
pub fn probe(p: &Prepared, ctx: &Context, plan: Plan) -> (NetworkRow, String) {
    let within = if p.id.is_linux() {
        ctx.linux_timeout
    } else {
        Duration::from_secs(30)
    };
    let run = || match start(p, ctx, plan.mib) {
        Err(why) => (NetworkRow::NotMeasured(why), String::new()),
        Ok(mut s) => {
            let row = network::measure(&mut s, plan, within);
            let stderr = s.stop();
            let row = row.map_or_else(NetworkRow::NotMeasured, NetworkRow::Measured);
            (row, stderr)
        }
    };
    in_private_netns(run).unwrap_or_else(|why| (NetworkRow::NotMeasured(why), String::new()))
}

#[cfg(test)]
#[path = "netns_tests.rs"]
mod tests;
