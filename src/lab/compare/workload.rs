//! The workload every path runs, in each path's own option syntax, and the
//! guest boot options a host with emulated guest kernel mode needs.

use serde::Serialize;

use crate::lab::container::bundle;

/// What the workload does, in each path's own option syntax.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// User-mode loop iterations.
    pub loop_iters: u64,
    /// MiB of memory to make resident.
    pub touch_mib: u64,
    /// Exit status.
    pub exit: u8,
}

impl Workload {
    /// Tiny-guest command-line options.
    pub fn tiny_cmdline(&self) -> String {
        format!(
            "tiny.quiet tiny.loop={} tiny.touch={} tiny.exit={}",
            self.loop_iters, self.touch_mib, self.exit
        )
    }

    /// Options the Linux guest's /init passes on to the workload.
    pub fn linux_cmdline(&self) -> String {
        format!(
            "tinyvmm.loop={} tinyvmm.touch={} tinyvmm.exit={}",
            self.loop_iters, self.touch_mib, self.exit
        )
    }

    /// The container's process arguments.
    pub fn container_args(&self) -> Vec<String> {
        [
            bundle::WORKLOAD,
            "--loop",
            &self.loop_iters.to_string(),
            "--touch",
            &self.touch_mib.to_string(),
            "--exit",
            &self.exit.to_string(),
        ]
        .map(String::from)
        .to_vec()
    }
}

/// QEMU's CPU model on hosts whose KVM emulates guest kernel mode (one
/// home: `crate::lab::qemu`, which also adds the kernel options).
pub use crate::lab::qemu::PVM_QEMU_CPU;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_options_match_each_guest() {
        let w = Workload {
            loop_iters: 5,
            touch_mib: 2,
            exit: 3,
        };
        assert_eq!(
            w.tiny_cmdline(),
            "tiny.quiet tiny.loop=5 tiny.touch=2 tiny.exit=3"
        );
        assert_eq!(
            w.linux_cmdline(),
            "tinyvmm.loop=5 tinyvmm.touch=2 tinyvmm.exit=3"
        );
        assert_eq!(
            w.container_args(),
            [
                "/bin/tinyvmm-workload",
                "--loop",
                "5",
                "--touch",
                "2",
                "--exit",
                "3"
            ]
        );
    }
}
