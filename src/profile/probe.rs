//! The profiler's side of a vCPU thread: the vCPU loop calls
//! `VcpuProbe::entering` once before its first `KVM_RUN` and
//! `VcpuProbe::left_kvm_run` after each return from it. When the sampler
//! thread has asked for a sample (a flag per vCPU, then a kick), the probe
//! reads the registers (`KVM_GET_REGS`, `KVM_GET_SREGS`), walks the call
//! chain in guest memory and adds the stack to this vCPU's table; otherwise
//! it costs one atomic swap.
//!
//! Memory stays bounded whatever the guest does: chains are at most
//! `walk::MAX_DEPTH` deep and at most `MAX_STACKS` distinct stacks are kept
//! per vCPU; samples beyond that are counted, not stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use kvm_ioctls::VcpuFd;
use vm_memory::GuestMemoryMmap;

use super::Shared;
use super::scan::scan_chain;
use super::symbols::{KERNEL_TEXT_MAP, Symbols};
use super::walk::{Frame, Paging, WalkEnd, frame_chain};

/// Most distinct stacks one vCPU keeps.
pub const MAX_STACKS: usize = 1 << 16;

/// What one vCPU's samples came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleCounts {
    /// Samples taken (each a kick answered with registers).
    pub samples: u64,
    /// Of those, in guest user mode (`[user]`).
    pub user: u64,
    /// Kernel-mode samples whose frame chain was not one (it ended early).
    pub broken_chains: u64,
    /// Chains cut at the depth limit.
    pub deep_chains: u64,
    /// Kernel-mode samples whose chain came from a stack scan (the leaf
    /// function keeps no frame pointer), and the links of those chains
    /// that were guessed (no direct call to the callee explained them).
    pub scanned: u64,
    /// See `scanned`.
    pub guessed_links: u64,
    /// Samples not stored: the stack table was full.
    pub table_full: u64,
    /// Register reads that failed (the sample is lost).
    pub register_errors: u64,
    /// Time the vCPU thread spent taking samples (registers, chain).
    pub sampling: std::time::Duration,
}

impl SampleCounts {
    /// Adds `o` to these counts.
    pub fn merge(&mut self, o: &SampleCounts) {
        self.samples += o.samples;
        self.user += o.user;
        self.broken_chains += o.broken_chains;
        self.deep_chains += o.deep_chains;
        self.scanned += o.scanned;
        self.guessed_links += o.guessed_links;
        self.table_full += o.table_full;
        self.register_errors += o.register_errors;
        self.sampling += o.sampling;
    }
}

/// One vCPU's profile: raw stacks (leaf first) and how often each was seen.
#[derive(Debug, Default)]
pub struct VcpuProfile {
    /// Kernel-mode stacks, leaf first, with their sample counts.
    pub stacks: HashMap<Vec<u64>, u64>,
    /// The counters.
    pub counts: SampleCounts,
}

/// A vCPU's probe; lives on the vCPU thread, hands its profile back when
/// dropped.
pub struct VcpuProbe {
    pub(super) shared: Arc<Shared>,
    pub(super) index: usize,
    pub(super) memory: GuestMemoryMmap,
    pub(super) symbols: Arc<Symbols>,
    /// Record stacks (`--profile`), or only watch for the kernel's entry.
    pub(super) record: bool,
    pub(super) profile: VcpuProfile,
    pub(super) frames: Vec<u64>,
}

impl VcpuProbe {
    /// Before the first `KVM_RUN`, with this thread's kick target set
    /// (`signals::with_kick_target`): the first guest instruction is near,
    /// and from now on a kick cannot be lost, so the sampler may kick.
    pub fn entering(&mut self) {
        self.shared.first_run.get_or_init(Instant::now);
        self.shared.armed[self.index].store(true, Ordering::Release);
    }

    /// After `KVM_RUN` returned (an exit or a kick): take a sample if one
    /// was asked for.
    pub fn left_kvm_run(&mut self, fd: &VcpuFd) {
        if !self.shared.want[self.index].swap(false, Ordering::AcqRel) {
            return;
        }
        let started = Instant::now();
        self.sample(fd);
        self.profile.counts.sampling += started.elapsed();
    }

    /// One sample: registers, chain, into the table.
    fn sample(&mut self, fd: &VcpuFd) {
        let regs = match fd.get_regs() {
            Ok(r) => r,
            Err(_) => {
                self.profile.counts.register_errors += 1;
                return;
            }
        };
        // Kernel entry: the first time a vCPU runs in the kernel's own
        // text mapping (the top 2 GiB), i.e. at its link address.
        if regs.rip >= KERNEL_TEXT_MAP {
            self.shared.kernel_entry.get_or_init(Instant::now);
        }
        if !self.record {
            return;
        }
        let sregs = match fd.get_sregs() {
            Ok(s) => s,
            Err(_) => {
                self.profile.counts.register_errors += 1;
                return;
            }
        };
        let counts = &mut self.profile.counts;
        counts.samples += 1;
        if sregs.cs.selector & 3 == 3 || sregs.cs.dpl == 3 {
            counts.user += 1;
            return;
        }
        self.frames.clear();
        self.frames.push(regs.rip);
        let paging = Paging {
            cr0: sregs.cr0,
            cr3: sregs.cr3,
            cr4: sregs.cr4,
            efer: sregs.efer,
        };
        if !self.symbols.keeps_frame(regs.rip) {
            let scan = scan_chain(
                &self.memory,
                &paging,
                &self.symbols,
                regs.rip,
                regs.rsp,
                &mut self.frames,
            );
            counts.scanned += 1;
            counts.guessed_links += u64::from(scan.guessed);
        } else {
            let symbols = &self.symbols;
            let judge = |ret: u64| {
                if !symbols.in_text(ret) {
                    Frame::Reject
                } else if symbols.keeps_frame(ret) {
                    Frame::Follow
                } else {
                    Frame::Last
                }
            };
            match frame_chain(&self.memory, &paging, regs.rbp, judge, &mut self.frames) {
                WalkEnd::Complete => {}
                WalkEnd::DepthLimit => counts.deep_chains += 1,
                WalkEnd::Broken => counts.broken_chains += 1,
            }
        }
        let stacks = &mut self.profile.stacks;
        if let Some(n) = stacks.get_mut(self.frames.as_slice()) {
            *n += 1;
        } else if stacks.len() < MAX_STACKS {
            stacks.insert(self.frames.clone(), 1);
        } else {
            counts.table_full += 1;
        }
    }
}

impl Drop for VcpuProbe {
    fn drop(&mut self) {
        // Moved out without building a new table: a HashMap's RandomState
        // would call getrandom, which the vCPU filter forbids.
        let hasher = self.profile.stacks.hasher().clone();
        let stacks = std::mem::replace(&mut self.profile.stacks, HashMap::with_hasher(hasher));
        let profile = VcpuProfile {
            stacks,
            counts: self.profile.counts,
        };
        crate::sync::lock(&self.shared.results).push(profile);
    }
}
