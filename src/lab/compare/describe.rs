//! What the report says about how each path ran, derived from the path's
//! own configuration and files rather than written down per path: what
//! survives an instance (persistence), how its launcher was started, and
//! what its executable contains.

use std::fs;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::paths::{Launcher, PathId, Prepared};

/// ELF program header type of the dynamic loader's path.
const PT_INTERP: u32 = 3;

impl Prepared {
    /// What outlives one instance, from its configuration: a VM's disk
    /// options and root, a container's `root.readonly` and tmpfs mounts.
    pub fn persistence(&self) -> String {
        match &self.launcher {
            Launcher::Vmm { args, .. } => {
                let has = |opts: &[&str]| args.iter().any(|a| opts.contains(&a.as_str()));
                let read_only = args.iter().any(|a| a.contains("readonly=on"));
                if has(&["--bundle"]) {
                    "none: the bundle's rootfs/ is a disk image attached read-only; root.readonly \
                     false would add a tmpfs overlay in guest RAM, gone at exit"
                        .into()
                } else if has(&["--disk", "-drive"]) && read_only {
                    "none: the root is a disk image attached read-only (readonly=on); the guest cannot write it".into()
                } else if has(&["--disk", "-drive"]) {
                    "a disk image is attached: what the guest writes to it stays on the host".into()
                } else if has(&["--initrd", "-initrd"]) {
                    "none: no disk device; the root file system is the initramfs, in guest RAM; gone at exit".into()
                } else {
                    "none: no disk device; the guest has only its RAM; gone at exit".into()
                }
            }
            Launcher::Container(_, bundle) => {
                let config = fs::read_to_string(bundle.dir.join("config.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok());
                let Some(config) = config else {
                    return "unknown: config.json unreadable".into();
                };
                container_persistence(&config, &bundle.rootfs)
            }
        }
    }

    /// How the launcher runs: its path, and for a runtime its version and
    /// any workaround this host needs (said, not hidden).
    pub fn how(&self) -> String {
        match &self.launcher {
            Launcher::Vmm { program, .. } => program.display().to_string(),
            Launcher::Container(rt, _) => rt.describe(),
        }
    }

    /// What the launcher's executable holds, read from the file.
    pub fn binary_contents(&self) -> String {
        let linking = match elf_is_dynamic(&self.binary.0) {
            Some(true) => "dynamically linked (its shared libraries are not counted)",
            Some(false) => "statically linked",
            None => "not an ELF file we could read",
        };
        match self.id {
            PathId::TinyvmmTiny
            | PathId::TinyvmmLinux
            | PathId::TinyvmmDisk
            | PathId::TinyvmmTinyRestored
            | PathId::TinyvmmLinuxRestored
            | PathId::TinyvmmBundle => format!(
                "{linking}; the VMM alone, with the tiny guest embedded ({} KiB); the lab is in tinyvmm-lab",
                crate::tiny_guest::ELF.len() >> 10
            ),
            _ => linking.to_string(),
        }
    }
}

/// A container's persistence from its `config.json`.
pub fn container_persistence(config: &Value, rootfs: &Path) -> String {
    let readonly = config["root"]["readonly"].as_bool().unwrap_or(false);
    let tmpfs: Vec<&str> = config["mounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["type"] == "tmpfs")
                .filter_map(|m| m["destination"].as_str())
                .collect()
        })
        .unwrap_or_default();
    if readonly {
        format!(
            "none: root file system read-only (config.json root.readonly); writable only on tmpfs ({}); gone at exit",
            tmpfs.join(", ")
        )
    } else {
        format!(
            "writes to the root file system land in {} on the host and stay",
            rootfs.display()
        )
    }
}

/// Whether the ELF file at `path` asks for a dynamic loader (`PT_INTERP`),
/// read with the boot loader's own program-header reader.
pub fn elf_is_dynamic(path: &Path) -> Option<bool> {
    let mut f = fs::File::open(path).ok()?;
    let mut ident = [0u8; 6];
    f.read_exact(&mut ident).ok()?;
    if &ident[..4] != b"\x7fELF" || ident[4] != 2 || ident[5] != 1 {
        return None; // not a little-endian 64-bit ELF
    }
    let headers = crate::arch::x86_64::elf::program_headers(&mut f).ok()?;
    Some(headers.iter().any(|h| h.kind == PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn linking_is_read_from_the_file() {
        assert_eq!(elf_is_dynamic(Path::new("/bin/sh")), Some(true));
        assert_eq!(elf_is_dynamic(Path::new("/etc/passwd")), None);
        if Path::new("/bin/busybox").is_file() {
            // Debian's busybox-static installs a static /bin/busybox.
            let dynamic = elf_is_dynamic(Path::new("/bin/busybox"));
            assert!(dynamic.is_some());
        }
    }

    #[test]
    fn container_persistence_follows_its_config() {
        let ro = json!({"root": {"readonly": true}, "mounts": [
            {"destination": "/tmp", "type": "tmpfs"}, {"destination": "/proc", "type": "proc"}]});
        let text = container_persistence(&ro, Path::new("/r"));
        assert!(
            text.starts_with("none: root file system read-only") && text.contains("(/tmp)"),
            "{text}"
        );
        let rw = json!({"root": {"readonly": false}});
        assert!(container_persistence(&rw, Path::new("/r")).contains("land in /r"));
    }
}
