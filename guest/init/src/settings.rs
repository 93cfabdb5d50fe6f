//! The settings file the VMM writes into the initramfs (`/tinyvmm/settings`):
//! records `key NUL value NUL`, in order; repeated keys (arg, env, group,
//! rlimit, mount, sysctl) accumulate. A mount's value is five fields joined
//! by 0x1f: destination, type, source, flags (decimal MS_* bits), data.
//! The writer is `src/bundle/settings.rs` in the main crate; docs/bundle.md
//! lists every key.

/// One mount to make under the new root.
#[derive(Debug, Default)]
pub struct Mount {
    pub dest: String,
    pub fstype: String,
    pub source: String,
    pub flags: u64,
    pub data: String,
}

/// What the workload needs, as the VMM sent it.
#[derive(Debug, Default)]
pub struct Settings {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: Option<u32>,
    pub terminal: bool,
    pub readonly: bool,
    pub hostname: Option<String>,
    pub no_new_privileges: bool,
    /// (resource, soft, hard)
    pub rlimits: Vec<(u32, u64, u64)>,
    pub mounts: Vec<Mount>,
    /// (name with dots, value)
    pub sysctls: Vec<(String, String)>,
    pub masked: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// Capability masks: bounding, effective, permitted, inheritable, ambient.
    pub caps: Option<[u64; 5]>,
}

fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("settings: {key} {v:?} is not a number"))
}

/// Parses the settings file.
pub fn parse(bytes: &[u8]) -> Result<Settings, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "settings: not UTF-8".to_string())?;
    let mut fields = text.split('\0');
    let mut s = Settings {
        cwd: "/".into(),
        ..Settings::default()
    };
    while let Some(key) = fields.next() {
        if key.is_empty() {
            break;
        }
        let v = fields
            .next()
            .ok_or_else(|| format!("settings: {key} has no value"))?;
        match key {
            "arg" => s.args.push(v.into()),
            "env" => s.env.push(v.into()),
            "cwd" => s.cwd = v.into(),
            "uid" => s.uid = num(key, v)?,
            "gid" => s.gid = num(key, v)?,
            "group" => s.groups.push(num(key, v)?),
            "umask" => s.umask = Some(num(key, v)?),
            "terminal" => s.terminal = v == "1",
            "readonly" => s.readonly = v == "1",
            "hostname" => s.hostname = Some(v.into()),
            "nonewprivs" => s.no_new_privileges = v == "1",
            "masked" => s.masked.push(v.into()),
            "readonlypath" => s.readonly_paths.push(v.into()),
            "caps" => {
                let masks: Vec<u64> = v
                    .split(' ')
                    .map(|m| num(key, m))
                    .collect::<Result<_, _>>()?;
                let masks = masks
                    .try_into()
                    .map_err(|_| format!("settings: caps {v:?}"))?;
                s.caps = Some(masks);
            }
            "rlimit" => {
                let p: Vec<&str> = v.split(' ').collect();
                let [r, soft, hard] = p[..] else {
                    return Err(format!("settings: rlimit {v:?}"));
                };
                s.rlimits
                    .push((num(key, r)?, num(key, soft)?, num(key, hard)?));
            }
            "sysctl" => {
                let (k, val) = v
                    .split_once('\x1f')
                    .ok_or_else(|| format!("settings: sysctl {v:?}"))?;
                s.sysctls.push((k.into(), val.into()));
            }
            "mount" => {
                let p: Vec<&str> = v.split('\x1f').collect();
                let [dest, fstype, source, flags, data] = p[..] else {
                    return Err(format!("settings: mount {v:?}"));
                };
                s.mounts.push(Mount {
                    dest: dest.into(),
                    fstype: fstype.into(),
                    source: source.into(),
                    flags: num(key, flags)?,
                    data: data.into(),
                });
            }
            _ => return Err(format!("settings: unknown key {key:?}")),
        }
    }
    if s.args.is_empty() {
        return Err("settings: no arg".into());
    }
    Ok(s)
}
