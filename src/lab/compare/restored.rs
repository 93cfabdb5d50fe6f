//! The restored paths of `compare` (issue 13): the same workload, started
//! by `tinyvmm restore` from a snapshot made once while the path is
//! prepared, so the table shows what a warm start costs beside a boot and a
//! container.
//!
//! - "tinyvmm + tiny guest (restored)": the tiny guest saved at its boot
//!   marker (before its user-mode payload); each launch restores it and
//!   runs the payload (the workload's loop, touch and exit).
//! - "tinyvmm + Linux (restored)": Linux saved at the initramfs's warm ready
//!   point (`tinyvmm.ready=1`, hvc0); each launch is
//!   `sh -c 'echo request | exec tinyvmm restore DIR ...'`, so the request
//!   line is on the restore's stdin from its spawn (sh's own start, about a
//!   millisecond, is inside the measurement); the guest then runs the
//!   workload and prints its marker line.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::paths::{Context, Launcher, PathId, Prepared};

fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    ["state", "memory"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// Makes the snapshot with `run` + `args` + `--snapshot-on-marker DIR`.
fn snapshot(ctx: &Context, dir: &Path, args: &[String]) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    let out = Command::new(&ctx.tinyvmm)
        .arg("run")
        .args(args)
        .arg("--snapshot-on-marker")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", ctx.tinyvmm.display()))?;
    if out.status.code() != Some(0) {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("making the snapshot failed: {}", err.trim()));
    }
    Ok(())
}

/// Gets a restored path ready (its snapshot made), or says why it cannot run.
pub fn prepare(id: PathId, ctx: &Context) -> Result<Prepared, String> {
    crate::kvm::vm::open_kvm().map_err(|e| format!("/dev/kvm: {e}"))?;
    let mem = ctx.memory.1.clone();
    let dir: PathBuf = ctx.scratch.join(format!("snapshot-{id:?}").to_lowercase());
    let d = dir.display().to_string();
    let mut run: Vec<String> = vec!["--memory".into(), mem];
    let (program, args, timeout) = if id == PathId::TinyvmmTinyRestored {
        run.extend(["--cmdline".into(), ctx.workload.tiny_cmdline()]);
        snapshot(ctx, &dir, &run)?;
        let args = ["restore", &d, "--boot-timer", "--stats"]
            .map(String::from)
            .to_vec();
        (
            ctx.tinyvmm.clone(),
            args,
            std::time::Duration::from_secs(30),
        )
    } else {
        let (k, i) = (
            ctx.kernels.join("vmlinux"),
            ctx.kernels.join("initramfs.cpio"),
        );
        for f in [&k, &i] {
            if !f.is_file() {
                return Err(format!("{} missing (run kernels/build.sh)", f.display()));
            }
        }
        let cmdline = ctx
            .linux_cmdline()
            .replacen("console=ttyS0", "console=hvc0", 1);
        run.extend(["--kernel".into(), k.display().to_string()]);
        run.extend(["--initrd".into(), i.display().to_string()]);
        run.extend(["--cmdline".into(), format!("{cmdline} tinyvmm.ready=1")]);
        snapshot(ctx, &dir, &run)?;
        let script = format!(
            "echo request | exec '{}' restore '{d}' --stats",
            ctx.tinyvmm.display()
        );
        (
            PathBuf::from("/bin/sh"),
            vec!["-c".into(), script],
            ctx.linux_timeout,
        )
    };
    let size = std::fs::metadata(&ctx.tinyvmm)
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(Prepared {
        id,
        binary: (ctx.tinyvmm.clone(), size),
        launcher: Launcher::Vmm {
            program,
            args,
            timeout,
        },
        guest_memory: Some(ctx.memory.0),
        image: (
            disk_bytes(&dir),
            "snapshot: state + sparse memory file (on disk)".into(),
        ),
    })
}
