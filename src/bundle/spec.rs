//! The part of an OCI runtime-spec 1.x `config.json` that `run --bundle`
//! reads, with serde (the `oci-spec` crate covers all of it, but brings a
//! builder, getter and enum-string macro stack for the few fields used
//! here; unknown fields are ignored, as the spec allows), and the sorting
//! of every field present into honoured, ignored with a warning, or refused
//! (docs/bundle.md has the list and the reasons).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::BundleError;

/// `config.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub oci_version: String,
    pub process: Option<Process>,
    pub root: Option<Root>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    pub hooks: Option<Value>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub linux: Option<Linux>,
}

/// `process`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    #[serde(default)]
    pub terminal: bool,
    #[serde(default)]
    pub user: User,
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    pub capabilities: Option<Value>,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    #[serde(default)]
    pub no_new_privileges: bool,
    pub apparmor_profile: Option<String>,
    pub oom_score_adj: Option<i64>,
    pub selinux_label: Option<String>,
}

/// `process.user`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    pub umask: Option<u32>,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

/// One of `process.rlimits`.
#[derive(Debug, Deserialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

/// `root`.
#[derive(Debug, Default, Deserialize)]
pub struct Root {
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

/// One of `mounts`.
#[derive(Debug, Default, Deserialize)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

/// `linux`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    pub uid_mappings: Option<Value>,
    pub gid_mappings: Option<Value>,
    pub resources: Option<Resources>,
    pub seccomp: Option<Value>,
    #[serde(default)]
    pub devices: Vec<Value>,
    #[serde(default)]
    pub sysctl: BTreeMap<String, String>,
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    pub personality: Option<Value>,
    pub intel_rdt: Option<Value>,
    pub mount_label: Option<String>,
}

/// One of `linux.namespaces`.
#[derive(Debug, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: Option<String>,
}

/// `linux.resources`: the memory limit sizes the VM; the rest is listed.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub memory: Option<Memory>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `linux.resources.memory`.
#[derive(Debug, Default, Deserialize)]
pub struct Memory {
    pub limit: Option<i64>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Mount types the guest makes itself.
pub const GUEST_MOUNT_TYPES: [&str; 5] = ["proc", "sysfs", "tmpfs", "devpts", "mqueue"];

/// Reads and checks `DIR/config.json`. A missing or unreadable file is 126
/// (a resource we cannot use), a malformed one 125 (bad configuration).
pub fn load(bundle: &Path) -> Result<Spec, BundleError> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path)
        .map_err(|e| BundleError::resource(format!("{}: {e}", path.display())))?;
    let spec: Spec = serde_json::from_slice(&text)
        .map_err(|e| BundleError::config(format!("{}: invalid JSON: {e}", path.display())))?;
    spec.check(&path)?;
    Ok(spec)
}

impl Spec {
    /// What the runtime spec requires and we rely on.
    fn check(&self, path: &Path) -> Result<(), BundleError> {
        let bad = |why: String| Err(BundleError::config(format!("{}: {why}", path.display())));
        if !self.oci_version.starts_with("1.") {
            return bad(format!(
                "ociVersion {:?}: only runtime-spec 1.x is supported",
                self.oci_version
            ));
        }
        let Some(p) = &self.process else {
            return bad("no process".into());
        };
        match &p.args {
            Some(a) if !a.is_empty() && !a[0].is_empty() => {}
            _ => return bad("process.args is missing or empty".into()),
        }
        if !p.cwd.starts_with('/') {
            return bad(format!("process.cwd {:?} is not an absolute path", p.cwd));
        }
        let strings = p.args.iter().flatten().chain(&p.env).chain([&p.cwd]);
        if let Some(s) = strings.into_iter().find(|s| s.contains('\0')) {
            return bad(format!("{s:?} contains a NUL byte"));
        }
        if self.root.as_ref().is_none_or(|r| r.path.is_empty()) {
            return bad("root.path is missing".into());
        }
        for m in &self.mounts {
            if !m.destination.starts_with('/') || m.destination.contains('\x1f') {
                return bad(format!(
                    "mount destination {:?} is not an absolute path",
                    m.destination
                ));
            }
        }
        for ns in self.linux.iter().flat_map(|l| &l.namespaces) {
            if let Some(p) = &ns.path {
                return bad(format!(
                    "joining the existing {} namespace {p:?} is impossible from a VM (refused: the workload would not share it)",
                    ns.kind
                ));
            }
        }
        Ok(())
    }

    /// The process (present: `load` checked it).
    pub fn process(&self) -> &Process {
        self.process.as_ref().expect("checked by load")
    }

    /// What the VM does not honour, one short phrase each (one warning).
    pub fn ignored(&self) -> Vec<String> {
        let p = self.process();
        let mut checks: Vec<(bool, String)> = vec![
            (
                p.apparmor_profile.is_some(),
                "process.apparmorProfile".into(),
            ),
            (p.selinux_label.is_some(), "process.selinuxLabel".into()),
            (p.oom_score_adj.is_some(), "process.oomScoreAdj".into()),
            (
                self.hooks.is_some(),
                "hooks (they would run on the host)".into(),
            ),
            (self.domainname.is_some(), "domainname".into()),
        ];
        for m in &self.mounts {
            let kind = m.kind.as_deref().unwrap_or("");
            if is_bind(m) {
                let src = m.source.as_deref().unwrap_or("");
                checks.push((
                    true,
                    format!("bind mount of the host's {src:?} on {}", m.destination),
                ));
            } else if !GUEST_MOUNT_TYPES.contains(&kind) {
                checks.push((true, format!("{kind} mount on {}", m.destination)));
            }
        }
        if let Some(l) = &self.linux {
            checks.extend([
                (
                    l.uid_mappings.is_some() || l.gid_mappings.is_some(),
                    "linux.uidMappings/gidMappings (ids are the guest's own)".into(),
                ),
                (l.seccomp.is_some(), "linux.seccomp".into()),
                (!l.devices.is_empty(), "linux.devices".into()),
                (l.personality.is_some(), "linux.personality".into()),
                (l.intel_rdt.is_some(), "linux.intelRdt".into()),
                (l.mount_label.is_some(), "linux.mountLabel".into()),
            ]);
            if let Some(r) = &l.resources {
                // crun and runc specs always carry a deny-all device rule
                // list: the guest's devices are the VM's anyway.
                for (k, v) in &r.other {
                    checks.push((
                        k != "devices" && !v.is_null(),
                        format!("linux.resources.{k}"),
                    ));
                }
                for k in r.memory.iter().flat_map(|m| m.other.keys()) {
                    checks.push((true, format!("linux.resources.memory.{k}")));
                }
            }
        }
        checks
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, what)| what)
            .collect()
    }
}

/// A bind mount: type `bind` or a `bind`/`rbind` option.
pub fn is_bind(m: &Mount) -> bool {
    m.kind.as_deref() == Some("bind") || m.options.iter().any(|o| o == "bind" || o == "rbind")
}
