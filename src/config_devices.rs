//! The device options of `tinyvmm run` (`--disk`, `--net`, `--vsock`), each parsed
//! from its key=value text (`crate::options`) into the device's plain-data
//! configuration, with one error line naming the option.

use super::ConfigError;

/// Parses one `--disk path=FILE[,readonly=on|off][,direct=on|off][,id=NAME]`.
pub fn parse_disk(
    text: &str,
) -> Result<crate::devices::virtio::block::disk::DiskConfig, ConfigError> {
    let o = crate::options::Options::parse("--disk", text, &["path", "readonly", "direct", "id"])
        .map_err(ConfigError::Path)?;
    Ok(crate::devices::virtio::block::disk::DiskConfig {
        path: o.required("path").map_err(ConfigError::Path)?.into(),
        readonly: o.on_off("readonly", false).map_err(ConfigError::Path)?,
        direct: o.on_off("direct", false).map_err(ConfigError::Path)?,
        id: match o.get("id") {
            Some(id) if id.len() > crate::devices::virtio::block::disk::ID_BYTES => {
                return Err(ConfigError::Path(format!(
                    "--disk {text:?}: id {id:?} is longer than 20 bytes (virtio-blk's serial)"
                )));
            }
            id => id.map(str::to_string),
        },
    })
}

/// Parses one `--net tap=NAME[,mac=MAC]` or `--net ip=ADDR/PREFIX[,mac=MAC]`.
pub fn parse_net(text: &str) -> Result<crate::devices::virtio::net::NetConfig, ConfigError> {
    use crate::devices::virtio::net::{NetBackendConfig, NetConfig, parse_mac};
    let bad = |why: String| ConfigError::Path(format!("--net {text:?}: {why}"));
    let o = crate::options::Options::parse("--net", text, &["tap", "ip", "mac"])
        .map_err(ConfigError::Path)?;
    let backend = match (o.get("tap"), o.get("ip")) {
        (Some(name), None) if !name.is_empty() && name.len() < 16 => {
            NetBackendConfig::Tap(name.to_string())
        }
        (Some(_), None) => return Err(bad("tap= takes an interface name of 1 to 15 bytes".into())),
        (None, Some(ip)) => {
            let (addr, prefix) = ip
                .split_once('/')
                .and_then(|(a, p)| Some((a.parse().ok()?, p.parse::<u8>().ok()?)))
                .filter(|&(_, p)| (1..=30).contains(&p))
                .ok_or_else(|| {
                    bad(format!(
                        "ip={ip:?}: expected ADDR/PREFIX such as 10.0.2.1/24 (prefix 1 to 30)"
                    ))
                })?;
            NetBackendConfig::Create { addr, prefix }
        }
        _ => return Err(bad("give exactly one of tap=NAME or ip=ADDR/PREFIX".into())),
    };
    let mac = o.get("mac").map(parse_mac).transpose().map_err(bad)?;
    Ok(NetConfig { backend, mac })
}

/// Parses `--vsock cid=N,socket=PATH`: the guest's context id (3 and up,
/// below 2^32: Linux's `sockaddr_vm` has 32 bits) and the host socket path,
/// short enough for `PATH_<port>` to fit a Unix socket address.
pub fn parse_vsock(text: &str) -> Result<crate::devices::virtio::vsock::VsockConfig, ConfigError> {
    use crate::devices::virtio::vsock::host::{PORT_SUFFIX_MAX, SUN_PATH_MAX};
    let o = crate::options::Options::parse("--vsock", text, &["cid", "socket"])
        .map_err(ConfigError::Path)?;
    let cid_text = o.required("cid").map_err(ConfigError::Path)?;
    let cid = cid_text
        .parse::<u64>()
        .ok()
        .filter(|c| (3..u64::from(u32::MAX)).contains(c))
        .ok_or_else(|| {
            ConfigError::Path(format!(
                "--vsock {text:?}: cid {cid_text:?} must be a number from 3 to 4294967294 (0-2 are reserved)"
            ))
        })?;
    let socket = o.required("socket").map_err(ConfigError::Path)?;
    if socket.len() + PORT_SUFFIX_MAX > SUN_PATH_MAX {
        return Err(ConfigError::Path(format!(
            "--vsock {text:?}: the socket path is longer than {} bytes (PATH_<port> must fit a Unix socket address)",
            SUN_PATH_MAX - PORT_SUFFIX_MAX
        )));
    }
    Ok(crate::devices::virtio::vsock::VsockConfig {
        cid,
        socket: socket.into(),
    })
}
