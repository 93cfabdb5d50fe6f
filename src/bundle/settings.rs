//! The settings file for the guest's init (`/tinyvmm/settings` in the
//! generated initramfs): records `key NUL value NUL`, read by
//! guest/init/src/settings.rs. Mount options are turned into MS_* flags
//! and a data string here, on the host, where they are tested.

use super::BundleError;
use super::spec::{GUEST_MOUNT_TYPES, Spec, is_bind};

/// The settings bytes for `spec`.
pub fn encode(spec: &Spec) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    let mut put = |key: &str, value: &str| {
        out.extend_from_slice(key.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    };
    let p = spec.process();
    for a in p.args.iter().flatten() {
        put("arg", a);
    }
    for e in &p.env {
        put("env", e);
    }
    put("cwd", &p.cwd);
    put("uid", &p.user.uid.to_string());
    put("gid", &p.user.gid.to_string());
    for g in &p.user.additional_gids {
        put("group", &g.to_string());
    }
    if let Some(m) = p.user.umask {
        put("umask", &m.to_string());
    }
    put("terminal", if p.terminal { "1" } else { "0" });
    put("nonewprivs", if p.no_new_privileges { "1" } else { "0" });
    if let Some(caps) = &p.capabilities {
        put("caps", &capability_masks(caps)?);
    }
    for r in &p.rlimits {
        let res = rlimit_resource(&r.kind).ok_or_else(|| {
            BundleError::config(format!("process.rlimits: unknown type {:?}", r.kind))
        })?;
        put("rlimit", &format!("{res} {} {}", r.soft, r.hard));
    }
    let root = spec.root.as_ref().expect("checked by load");
    put("readonly", if root.readonly { "1" } else { "0" });
    if let Some(h) = &spec.hostname {
        put("hostname", h);
    }
    for m in &spec.mounts {
        let kind = m.kind.as_deref().unwrap_or("");
        if is_bind(m) || !GUEST_MOUNT_TYPES.contains(&kind) {
            continue; // listed in the warning
        }
        let (flags, data) = mount_options(&m.options);
        let source = m.source.as_deref().unwrap_or(kind);
        let fields = [
            m.destination.as_str(),
            kind,
            source,
            &flags.to_string(),
            &data,
        ];
        put("mount", &fields.join("\x1f"));
    }
    if let Some(l) = &spec.linux {
        for (k, v) in &l.sysctl {
            put("sysctl", &format!("{k}\x1f{v}"));
        }
        for m in &l.masked_paths {
            put("masked", m);
        }
        for r in &l.readonly_paths {
            put("readonlypath", r);
        }
    }
    Ok(out)
}

/// Capability names in number order (linux/capability.h, up to
/// CAP_CHECKPOINT_RESTORE = 40).
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// `process.capabilities` as five masks, "bounding effective permitted
/// inheritable ambient" (a set that is absent is empty, as in crun).
fn capability_masks(caps: &serde_json::Value) -> Result<String, BundleError> {
    let mut masks = Vec::new();
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        let mut mask = 0u64;
        for name in caps
            .get(set)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap_or("");
            let bit = name
                .strip_prefix("CAP_")
                .and_then(|n| CAPABILITIES.iter().position(|c| *c == n))
                .ok_or_else(|| {
                    BundleError::config(format!(
                        "process.capabilities.{set}: unknown capability {name:?}"
                    ))
                })?;
            mask |= 1 << bit;
        }
        masks.push(mask.to_string());
    }
    Ok(masks.join(" "))
}

/// `RLIMIT_*` by its runtime-spec name.
fn rlimit_resource(name: &str) -> Option<u32> {
    let r = match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    };
    Some(r)
}

/// mount(8)-style options as MS_* flags and the file system's data
/// string; propagation options mean nothing in the guest and are dropped.
pub fn mount_options(options: &[String]) -> (u64, String) {
    let mut flags: u64 = 0;
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" | "tmpcopyup" => (0, 0),
            other => {
                data.push(other.to_string());
                (0, 0)
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_become_flags_and_data() {
        let o = |v: &[&str]| mount_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let (f, d) = o(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(f, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(d, "mode=755,size=65536k");
        let (f, d) = o(&["ro", "rw", "rprivate", "nodev"]);
        assert_eq!(f, libc::MS_NODEV);
        assert_eq!(d, "");
    }

    #[test]
    fn capabilities_become_masks() {
        let caps = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_CHECKPOINT_RESTORE"],
            "effective": ["CAP_KILL"]
        });
        assert_eq!(
            capability_masks(&caps).unwrap(),
            format!("{} 32 0 0 0", 1u64 | 32 | 1 << 40)
        );
        let bad = serde_json::json!({"bounding": ["CAP_FLY"]});
        assert_eq!(capability_masks(&bad).unwrap_err().code, 125);
    }

    #[test]
    fn rlimit_names_are_the_spec_ones() {
        assert_eq!(rlimit_resource("RLIMIT_NOFILE"), Some(libc::RLIMIT_NOFILE));
        assert_eq!(rlimit_resource("NOFILE"), None);
    }
}
