//! The OCI bundle: a directory with `config.json` whose `root.path` is the
//! same busybox root filesystem that `kernels/build.sh` packs into the VM's
//! initramfs (`target/kernels/rootfs/`).
//!
//! `config.json` is what `crun spec` writes (runtime-spec 1.0: namespaces
//! pid, network, ipc, uts, mount; capabilities AUDIT_WRITE, KILL,
//! NET_BIND_SERVICE; `noNewPrivileges`; the same mounts, masked and
//! read-only paths), with three changes: `terminal: false` (stdout is our
//! pipe, not a pseudo-terminal), `args` run the workload instead of `sh`,
//! and a tmpfs on `/tmp`, because the root is read-only and the workload's
//! `--touch` writes its file there (in the VM, /init mounts that tmpfs).
//! No seccomp profile: `crun spec` and `runc spec` write none (Docker and
//! Podman add theirs), and the comparison reports what is in force.
//! Spec: <https://github.com/opencontainers/runtime-spec/blob/main/config.md>

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::ContainerError;

/// The workload's path inside the root filesystem.
pub const WORKLOAD: &str = "/bin/tinyvmm-workload";

/// A bundle directory holding `config.json`.
#[derive(Clone, Debug)]
pub struct Bundle {
    /// The bundle directory (`--bundle`).
    pub dir: PathBuf,
    /// The root filesystem, resolved to a real path (runc refuses symlinks).
    pub rootfs: PathBuf,
}

/// Checks a root filesystem and returns its real path: a directory with the
/// workload in it, every symlink on the way resolved.
pub fn check_rootfs(rootfs: &Path) -> Result<PathBuf, ContainerError> {
    let err = |why: &str| ContainerError::Rootfs(rootfs.to_path_buf(), why.to_string());
    let real = fs::canonicalize(rootfs).map_err(|e| err(&e.to_string()))?;
    if !real.is_dir() {
        return Err(err("not a directory"));
    }
    if !real.join(WORKLOAD.trim_start_matches('/')).is_file() {
        return Err(err(
            "has no bin/tinyvmm-workload (built by kernels/build.sh)",
        ));
    }
    Ok(real)
}

/// The `config.json` for `rootfs` (an absolute path) running `args`.
pub fn config(rootfs: &Path, args: &[String], hostname: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.0",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "inheritable": [],
                "permitted": caps, "ambient": caps
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": rootfs, "readonly": true },
        "hostname": hostname,
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] },
            { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "nodev", "mode=1777"] }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

impl Bundle {
    /// Writes `dir/config.json` for `rootfs` running `args`.
    pub fn write(dir: &Path, rootfs: &Path, args: &[String]) -> Result<Bundle, ContainerError> {
        let rootfs = check_rootfs(rootfs)?;
        let werr = |e: std::io::Error| ContainerError::Bundle(dir.to_path_buf(), e.to_string());
        fs::create_dir_all(dir).map_err(werr)?;
        let text = serde_json::to_string_pretty(&config(&rootfs, args, "tinyvmm"))
            .map_err(|e| ContainerError::Bundle(dir.to_path_buf(), e.to_string()))?;
        fs::write(dir.join("config.json"), text).map_err(werr)?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
            rootfs,
        })
    }

    /// Where the instance bundle of container `id` goes.
    pub fn instance_dir(&self, id: &str) -> PathBuf {
        let mut name = self.dir.file_name().unwrap_or_default().to_os_string();
        name.push(format!("-{id}"));
        self.dir.with_file_name(name)
    }

    /// A bundle for one container: this bundle's `config.json` with
    /// `linux.cgroupsPath` set, in `instance_dir(id)`, same root filesystem.
    pub fn instance(&self, id: &str, cgroups_path: &str) -> Result<Bundle, ContainerError> {
        let dir = self.instance_dir(id);
        let err = |e: String| ContainerError::Bundle(dir.clone(), e);
        let text =
            fs::read_to_string(self.dir.join("config.json")).map_err(|e| err(e.to_string()))?;
        let mut config: Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        config["linux"]["cgroupsPath"] = json!(cgroups_path);
        fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
        let text = serde_json::to_string_pretty(&config).map_err(|e| err(e.to_string()))?;
        fs::write(dir.join("config.json"), text).map_err(|e| err(e.to_string()))?;
        Ok(Bundle {
            dir,
            rootfs: self.rootfs.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_rootfs(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tinyvmm-bundle-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("rootfs/bin")).unwrap();
        fs::write(dir.join("rootfs/bin/tinyvmm-workload"), "#!/bin/sh\n").unwrap();
        dir
    }

    #[test]
    fn config_is_crun_spec_with_our_changes() {
        let args = vec![WORKLOAD.to_string(), "--exit".into(), "3".into()];
        let c = config(Path::new("/r"), &args, "h");
        assert_eq!(c["ociVersion"], "1.0.0");
        assert_eq!(c["process"]["terminal"], false);
        assert_eq!(c["process"]["args"], json!(args));
        assert_eq!(c["process"]["noNewPrivileges"], true);
        assert_eq!(c["root"], json!({"path": "/r", "readonly": true}));
        let ns: Vec<_> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "network", "ipc", "uts", "mount"]);
        let dests: Vec<_> = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert!(dests.contains(&"/proc") && dests.contains(&"/tmp"));
        assert!(
            c["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .len()
                == 3
        );
        assert!(c["linux"].get("seccomp").is_none());
    }

    #[test]
    fn bundle_is_written_with_the_real_rootfs_path() {
        let dir = fake_rootfs("write");
        let link = dir.join("link");
        std::os::unix::fs::symlink(dir.join("rootfs"), &link).unwrap();
        let b = Bundle::write(&dir.join("bundle"), &link, &[WORKLOAD.into()]).unwrap();
        let text = fs::read_to_string(b.dir.join("config.json")).unwrap();
        let c: Value = serde_json::from_str(&text).unwrap();
        let root = PathBuf::from(c["root"]["path"].as_str().unwrap());
        assert!(root.is_absolute());
        assert_eq!(root, fs::canonicalize(dir.join("rootfs")).unwrap());
        assert!(
            !fs::symlink_metadata(&root)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rootfs_without_the_workload_is_refused() {
        let dir = fake_rootfs("refused");
        fs::remove_file(dir.join("rootfs/bin/tinyvmm-workload")).unwrap();
        let e = check_rootfs(&dir.join("rootfs")).unwrap_err().to_string();
        assert!(e.contains("tinyvmm-workload"), "{e}");
        let e = check_rootfs(&dir.join("absent")).unwrap_err().to_string();
        assert!(e.contains("absent"), "{e}");
        fs::remove_dir_all(dir).unwrap();
    }
}
