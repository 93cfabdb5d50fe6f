//! compare's persistence row, measured the same way on every path: one
//! instance writes a word to `/tinyvmm-persist` on its root file system
//! and syncs; it ends; a second instance of the same image reads that file
//! back. The row says whether the write succeeded and whether the next
//! instance found it.
//!
//! Each path runs its writable root for this: a VM boots with
//! `tinyvmm.persist=WORD`, then `tinyvmm.check=WORD` (the guest's /init
//! writes, syncs, reads and prints `tinyvmm-init: persisted WORD` / `check
//! WORD found|missing`); the disk path boots a writable copy of
//! `rootfs.ext4`, the initramfs paths their initramfs (a root in guest
//! RAM). A container runs the same busybox shell commands as /init, as
//! `sh -c`, in a bundle whose root is a private writable copy of `rootfs/`
//! (`root.readonly: false`, a plain host directory, as crun and runc use
//! it; the timed runs keep the read-only root); the bundle VM paths run
//! those bundles too. The tiny guest has no file system and is not measured.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde::Serialize;
use serde_json::Value;

use super::disk;
use super::paths::{Context, Launcher, PathId, Prepared};
use crate::lab::MARKER;
use crate::lab::container::Bundle;
use crate::lab::measure::{self, LaunchSpec};

/// The file the first instance writes and the second reads.
pub const FILE: &str = "/tinyvmm-persist";

/// What the probe measured.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Persistence {
    /// The root file system both instances ran on.
    pub setup: String,
    /// Whether the first instance's write and sync succeeded (None: it
    /// did not say).
    pub written: Option<bool>,
    /// Whether the second instance found the word (None: it did not say).
    pub found: Option<bool>,
    /// Written by one instance and found by the next.
    pub kept: bool,
}

impl Persistence {
    /// The table's sentence.
    pub fn sentence(&self) -> String {
        let said = match (self.written, self.found) {
            (Some(true), Some(true)) => {
                format!("kept: the next instance read back what one wrote to {FILE}")
            }
            (Some(true), Some(false)) => {
                format!("none: one instance wrote and synced {FILE}, the next did not find it")
            }
            (Some(false), _) => format!("none: the write to {FILE} failed"),
            _ => "not measured: an instance did not answer".to_string(),
        };
        format!("{said} (measured; {})", self.setup)
    }
}

/// One instance's launch, with its clean-up.
struct Instance {
    spec: LaunchSpec,
    cleanup: Box<dyn Fn()>,
}

/// The word, unique to this probe, so that an old file cannot pass.
fn word() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("w{}x{nanos}", std::process::id())
}

/// Runs the probe on `p` (`None`: the tiny guest, which has no file
/// system), or says why it failed.
pub fn probe(p: &Prepared, ctx: &Context) -> Result<Option<Persistence>, String> {
    let word = word();
    let write = format!("tinyvmm.persist={word}");
    let check = format!("tinyvmm.check={word}");
    let (setup, first, second) = match &p.launcher {
        Launcher::Vmm { .. } if p.id == PathId::TinyvmmTiny => return Ok(None),
        Launcher::Vmm {
            program, timeout, ..
        } if matches!(p.id, PathId::TinyvmmBundle | PathId::QemuBundle) => {
            // The containers' probe, as bundles the VM path runs.
            let rootfs = ctx.scratch.join("persist-rootfs-vm");
            copy_tree(&ctx.kernels.join("rootfs"), &rootfs)?;
            let mut vms = Vec::new();
            for (n, script) in [write_script(&word), check_script(&word)]
                .iter()
                .enumerate()
            {
                let args = ["/bin/sh", "-c", script].map(String::from).to_vec();
                let dir = ctx.scratch.join(format!("persist-bundle-{:?}-{n}", p.id));
                let b = Bundle::write(&dir, &rootfs, &args).map_err(|e| e.to_string())?;
                writable_root(&b.dir.join("config.json"))?;
                let args = super::bundle_paths::launch_args(p.id, ctx, &b.dir)?;
                vms.push(Instance {
                    spec: vm_spec(program, args, *timeout),
                    cleanup: Box::new(|| {}),
                });
            }
            let second = vms.pop().expect("two instances");
            let first = vms.pop().expect("two instances");
            let setup = "a bundle on a writable copy of rootfs/ (root.readonly false): \
                         its read-only image under a tmpfs overlay"
                .to_string();
            (setup, first, second)
        }
        Launcher::Vmm {
            program, timeout, ..
        } if p.id == PathId::TinyvmmDisk => {
            let (kernel, image) = disk::images(ctx)?;
            fs::create_dir_all(&ctx.scratch).map_err(|e| e.to_string())?;
            let copy = ctx.scratch.join("persist-root.ext4");
            fs::copy(&image, &copy).map_err(|e| format!("copying {}: {e}", image.display()))?;
            let vm = |extra: &str| Instance {
                spec: vm_spec(
                    program,
                    disk::args(ctx, &kernel, &copy, true, extra),
                    *timeout,
                ),
                cleanup: Box::new(|| {}),
            };
            let setup = format!(
                "ext4 root on a virtio disk, a writable copy of {}",
                disk::IMAGE
            );
            (setup, vm(&write), vm(&check))
        }
        Launcher::Vmm {
            program,
            args,
            timeout,
            ..
        } => {
            let vm = |extra: &str| -> Result<Instance, String> {
                Ok(Instance {
                    spec: vm_spec(program, append_cmdline(args, extra)?, *timeout),
                    cleanup: Box::new(|| {}),
                })
            };
            let setup = "root file system: the initramfs, in guest RAM".to_string();
            (setup, vm(&write)?, vm(&check)?)
        }
        Launcher::Container(rt, bundle) => {
            let name = rt.kind.name();
            let rootfs = ctx.scratch.join(format!("persist-rootfs-{name}"));
            copy_tree(&bundle.rootfs, &rootfs)?;
            let mut instances = Vec::new();
            for (n, script) in [write_script(&word), check_script(&word)]
                .iter()
                .enumerate()
            {
                let args = ["/bin/sh", "-c", script].map(String::from).to_vec();
                let dir = ctx.scratch.join(format!("persist-bundle-{name}-{n}"));
                let b = Bundle::write(&dir, &rootfs, &args).map_err(|e| e.to_string())?;
                writable_root(&b.dir.join("config.json"))?;
                let id = format!("tinyvmm-persist-{}-{name}-{n}", std::process::id());
                let spec = rt.launch_spec(&b, &id, false, None);
                let rt = rt.clone();
                instances.push(Instance {
                    spec,
                    cleanup: Box::new(move || rt.cleanup(&id)),
                });
            }
            let second = instances.pop().expect("two instances");
            let first = instances.pop().expect("two instances");
            let setup =
                "a writable copy of rootfs/ as the root (root.readonly false), a host directory"
                    .to_string();
            (setup, first, second)
        }
    };
    let out1 = run(&first)?;
    let out2 = run(&second)?;
    let written = answer(
        &out1,
        &format!("tinyvmm-init: persisted {word}"),
        "tinyvmm-init: persist failed",
    );
    let found = answer(
        &out2,
        &format!("tinyvmm-init: check {word} found"),
        &format!("tinyvmm-init: check {word} missing"),
    );
    Ok(Some(Persistence {
        setup,
        written,
        found,
        kept: written == Some(true) && found == Some(true),
    }))
}

/// Launches one instance, waits for it and returns its stdout's end.
fn run(i: &Instance) -> Result<String, String> {
    let rec = measure::launch(&i.spec);
    (i.cleanup)();
    Ok(rec.map_err(|e| format!("launch: {e}"))?.stdout_tail)
}

/// Some(true) if `yes` is a line of `out`, Some(false) if `no` is, else None.
fn answer(out: &str, yes: &str, no: &str) -> Option<bool> {
    let has = |l: &str| out.lines().any(|line| line.trim_end() == l);
    if has(yes) {
        Some(true)
    } else if has(no) {
        Some(false)
    } else {
        None
    }
}

fn vm_spec(program: &Path, args: Vec<String>, timeout: std::time::Duration) -> LaunchSpec {
    LaunchSpec {
        program: program.to_path_buf(),
        args,
        marker: MARKER.into(),
        guest_memory: None,
        pre_exec: None,
        trace: false,
        trace_threads: false,
        timeout,
        cgroup: None,
    }
}

/// `args` with `extra` appended to the kernel command line (tinyvmm's
/// `--cmdline`, QEMU's `-append`).
fn append_cmdline(args: &[String], extra: &str) -> Result<Vec<String>, String> {
    let mut out = args.to_vec();
    let at = out
        .iter()
        .position(|a| a == "--cmdline" || a == "-append")
        .ok_or("no kernel command line to add the probe's option to")?;
    let line = out.get_mut(at + 1).ok_or("--cmdline without a value")?;
    *line = format!("{line} {extra}");
    Ok(out)
}

/// What /init does for `tinyvmm.persist=WORD`, as a shell script.
fn write_script(word: &str) -> String {
    format!(
        "if {{ echo {word} >{FILE}; }} 2>/dev/null && sync; then echo 'tinyvmm-init: persisted {word}'; \
         else echo 'tinyvmm-init: persist failed'; fi"
    )
}

/// What /init does for `tinyvmm.check=WORD`, as a shell script.
fn check_script(word: &str) -> String {
    format!(
        "found=; {{ read -r found <{FILE}; }} 2>/dev/null; if [ \"$found\" = {word} ]; \
         then echo 'tinyvmm-init: check {word} found'; else echo 'tinyvmm-init: check {word} missing'; fi"
    )
}

/// Sets `root.readonly` to false in a bundle's config.json.
fn writable_root(config: &Path) -> Result<(), String> {
    let err = |e: String| format!("{}: {e}", config.display());
    let text = fs::read_to_string(config).map_err(|e| err(e.to_string()))?;
    let mut c: Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    c["root"]["readonly"] = Value::Bool(false);
    let text = serde_json::to_string_pretty(&c).map_err(|e| err(e.to_string()))?;
    fs::write(config, text).map_err(|e| err(e.to_string()))
}

/// `cp -a` of a directory tree (owners, modes, symlinks kept).
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(to);
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .map_err(|e| format!("cp: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("cp -a {} failed: {status}", from.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_from_whole_lines() {
        let out = "x\ntinyvmm-init: persisted w1\nTINYVMM-GUEST-OK\n";
        assert_eq!(
            answer(
                out,
                "tinyvmm-init: persisted w1",
                "tinyvmm-init: persist failed"
            ),
            Some(true)
        );
        assert_eq!(answer(out, "tinyvmm-init: persisted w", "no"), None);
        assert_eq!(
            answer(
                "tinyvmm-init: persist failed\n",
                "a",
                "tinyvmm-init: persist failed"
            ),
            Some(false)
        );
    }

    #[test]
    fn the_sentence_says_what_was_measured() {
        let mut p = Persistence {
            setup: "S".into(),
            written: Some(true),
            found: Some(true),
            kept: true,
        };
        assert!(p.sentence().starts_with("kept:") && p.sentence().ends_with("(measured; S)"));
        p.found = Some(false);
        assert!(p.sentence().starts_with("none: one instance wrote"));
        p.written = Some(false);
        assert!(p.sentence().starts_with("none: the write"));
        p.written = None;
        assert!(p.sentence().starts_with("not measured"));
    }

    #[test]
    fn the_probe_option_goes_on_the_kernel_command_line() {
        let args: Vec<String> = ["run", "--cmdline", "quiet", "--stats"]
            .map(String::from)
            .to_vec();
        assert_eq!(append_cmdline(&args, "x=1").unwrap()[2], "quiet x=1");
        let qemu: Vec<String> = ["-append", "a"].map(String::from).to_vec();
        assert_eq!(append_cmdline(&qemu, "b").unwrap()[1], "a b");
        assert!(append_cmdline(&["run".to_string()], "b").is_err());
    }

    #[test]
    fn the_container_scripts_do_what_init_does() {
        // Run them with the host's sh in a scratch directory standing in
        // for the root: write, then find; a fresh directory: missing.
        let dir = std::env::temp_dir().join(format!("tinyvmm-persist-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let at = |s: String| s.replace(FILE, &format!("{}/f", dir.display()));
        let sh = |script: String| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(at(script))
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(
            sh(check_script("w9")).trim(),
            "tinyvmm-init: check w9 missing"
        );
        assert_eq!(sh(write_script("w9")).trim(), "tinyvmm-init: persisted w9");
        assert_eq!(
            sh(check_script("w9")).trim(),
            "tinyvmm-init: check w9 found"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
