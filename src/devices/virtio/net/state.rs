//! What a snapshot keeps of a virtio-net device: the tap's name and the
//! guest's MAC (the transport saves the queues and the accepted features,
//! and activating the restored device gives the tap its offloads again).
//! Frames in flight are not kept: a frame read from the tap and not yet
//! delivered is lost, as on a wire. A restore attaches the saved tap by
//! name, or the one `restore --net` names (which must exist, as
//! Firecracker requires; `ip=` makes a new one).

use serde::{Deserialize, Serialize};

use super::{Net, NetBackendConfig, NetConfig};
use crate::host::tap::Tap;

/// One network device's configuration in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSnapshot {
    /// The tap it was attached to.
    pub tap: String,
    /// The guest's MAC, if one was offered.
    pub mac: Option<[u8; 6]>,
}

impl NetSnapshot {
    /// The configuration that attaches the restored device: the saved tap,
    /// or `over` (`restore --net`), always with the saved MAC (the guest
    /// has configured itself with it). Err: `over` names another MAC.
    pub fn config(&self, over: Option<NetConfig>) -> Result<NetConfig, String> {
        let Some(over) = over else {
            return Ok(NetConfig {
                backend: NetBackendConfig::Tap(self.tap.clone()),
                mac: self.mac,
            });
        };
        if over.mac.is_some() && over.mac != self.mac {
            return Err("mac= must be the saved device's (the guest uses it)".into());
        }
        Ok(NetConfig {
            backend: over.backend,
            mac: self.mac,
        })
    }
}

impl Net<Tap> {
    /// Its configuration, for a snapshot.
    pub fn save_state(&self) -> NetSnapshot {
        NetSnapshot {
            tap: self.backend.name().to_string(),
            mac: self.mac,
        }
    }
}
