//! Taking a snapshot of the running VM (`--snapshot-on-marker`,
//! `--snapshot-dir` + SIGUSR1), on the event loop's thread:
//! 1. every vCPU parks at an instruction boundary and saves its own state
//!    (`kvm::pause`), kicked out of `KVM_RUN` if needed;
//! 2. the VM's interrupt controllers, PIT and clock (`kvm::state`);
//! 3. every device (`DeviceManager::save_state`; disks are flushed);
//! 4. guest RAM to the sparse memory file, then the state file last.
//!
//! Then the VM ends (on-marker: exit 0 naming the directory) or runs on.

use std::time::{Duration, Instant};

use super::Vmm;
use crate::config::ConsoleKind;
use crate::exit::VmEnd;
use crate::kvm::state::save_vm;
use crate::kvm::vcpu_handles::VcpuHandles;
use crate::snapshot::{self, MachineConfig, SnapshotState, memory};

/// How long the vCPUs get to park.
const PAUSE_DEADLINE: Duration = Duration::from_secs(5);

/// The name a console kind has in a snapshot.
pub fn console_name(kind: ConsoleKind) -> &'static str {
    match kind {
        ConsoleKind::Virtio => "virtio",
        ConsoleKind::Serial => "serial",
        ConsoleKind::None => "none",
    }
}

impl Vmm {
    /// Pauses the VM, saves it, then ends it (on-marker) or resumes it.
    /// Called by the event loop once a pause was requested.
    pub(super) fn take_snapshot(&self, vcpus: &VcpuHandles) {
        let Some(plan) = &self.config.snapshot else {
            return self.pause.resume();
        };
        let started = Instant::now();
        let result = self.save_snapshot(vcpus);
        let dir = plan.dir.display().to_string();
        match result {
            Ok((written, state_len)) => {
                crate::say!(
                    "tinyvmm: snapshot saved in {dir} in {:.1} ms: state {state_len} bytes, memory {} MiB apparent, {:.1} MiB of data",
                    started.elapsed().as_secs_f64() * 1e3,
                    written.apparent >> 20,
                    written.data as f64 / (1 << 20) as f64
                );
                if plan.on_marker {
                    self.exit.request(VmEnd::Snapshotted(dir));
                } else {
                    self.pause.resume();
                }
            }
            Err(e) if plan.on_marker => {
                self.exit
                    .request(VmEnd::KvmCall(format!("snapshot in {dir}: {e}")));
            }
            Err(e) => {
                crate::say!("tinyvmm: snapshot in {dir} failed: {e}; the VM goes on");
                self.pause.resume();
            }
        }
    }

    fn save_snapshot(&self, vcpus: &VcpuHandles) -> Result<(memory::Written, usize), String> {
        let files = self
            .snapshot_files
            .as_ref()
            .ok_or("no snapshot directory open")?;
        let vcpu_states = self
            .pause
            .wait_parked(vcpus.len(), PAUSE_DEADLINE, || vcpus.interrupt())?;
        let vm = save_vm(self.vm.fd()).map_err(|e| e.to_string())?;
        let devices = self
            .devices
            .save_state()
            .map_err(|e| format!("saving devices: {e}"))?;
        let state = SnapshotState {
            machine: MachineConfig {
                memory: self.config.memory,
                vcpus: self.config.vcpus,
                console: console_name(self.config.console).into(),
                serial: self.config.serial,
            },
            vm,
            vcpus: vcpu_states,
            devices,
        };
        let written = memory::save(self.vm.memory(), files.memory())
            .map_err(|e| format!("writing guest memory: {e}"))?;
        let bytes = snapshot::encode(&state).map_err(|e| e.to_string())?;
        files
            .write_state(&bytes)
            .map_err(|e| format!("writing the state: {e}"))?;
        Ok((written, bytes.len()))
    }
}
