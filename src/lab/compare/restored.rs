//! The restored paths of `compare` (issue 13): the same workload, started
//! by `tinyvmm restore` from a snapshot made once while the path is
//! prepared, so the table shows what a warm start costs beside a boot and a
//! container.
//!
//! - "tinyvmm + tiny guest (restored)": the tiny guest saved at its boot
//!   marker (before its user-mode payload); each launch restores it and
//!   runs the payload (the workload's loop, touch and exit).
//! - "tinyvmm + Linux (restored)": Linux saved at the initramfs's warm ready
//!   point (`tinyvmm.ready=1`, hvc0); each launch is `tinyvmm restore DIR`
//!   itself, whose stdin is a pipe already holding the request line (made
//!   in the child before exec, `request_on_stdin`), so every row measures
//!   the VMM and not a wrapper; the guest then runs the workload and
//!   prints its marker line.

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
    let linux = id == PathId::TinyvmmLinuxRestored;
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
        let args = ["restore", &d, "--stats"].map(String::from).to_vec();
        (ctx.tinyvmm.clone(), args, ctx.linux_timeout)
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
            pre_exec: linux.then_some(request_on_stdin as fn() -> std::io::Result<()>),
        },
        guest_memory: Some(ctx.memory.0),
        image: (
            disk_bytes(&dir),
            "snapshot: state + sparse memory file (on disk)".into(),
        ),
    })
}

/// The request a restored Linux waits for.
const REQUEST: &[u8] = b"request\n";

/// In the forked child, before exec: stdin becomes a pipe that already
/// holds the request line, its write end closed (as `echo request |`
/// would leave it). Only pipe, write, dup2 and close: no allocation.
fn request_on_stdin() -> std::io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) writes two descriptors into the array we own.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: writes REQUEST (a static slice) to the pipe just made; 8
    // bytes fit in any pipe's buffer, so the write neither blocks nor
    // comes up short.
    let n = unsafe { libc::write(fds[1], REQUEST.as_ptr().cast(), REQUEST.len()) };
    if n != REQUEST.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: dup2 and close on the two descriptors made above; fd 0 is
    // this child's own stdin, replaced by the read end.
    unsafe {
        libc::close(fds[1]);
        if libc::dup2(fds[0], 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if fds[0] != 0 {
            libc::close(fds[0]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    #[test]
    fn the_request_line_is_on_stdin_and_then_eof() {
        let mut cmd = std::process::Command::new("cat");
        // SAFETY: request_on_stdin only makes system calls (pipe, write,
        // dup2, close) in the forked child.
        unsafe { cmd.pre_exec(super::request_on_stdin) };
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, super::REQUEST);
    }
}
