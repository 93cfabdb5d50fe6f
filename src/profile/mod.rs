//! The guest profiler (`run --profile`) and the boot phases of
//! `--boot-timer`.
//!
//! A sampler thread wakes N times a second, raises each vCPU's "sample"
//! flag and kicks every vCPU thread out of `KVM_RUN` with the kick signal
//! (`VcpuHandles::sample_kicks`); the vCPU thread's probe (`probe.rs`)
//! reads the registers and the call chain and goes back into the guest.
//! This works where KVM emulates guest kernel mode inside `KVM_RUN`
//! (kvm_pvm): a pending signal ends `KVM_RUN` there as on hardware KVM.
//! At exit the stacks are symbolized (`symbols.rs`) and written as folded
//! stacks and an SVG flame graph, and the top functions are printed
//! (`output.rs`).
//!
//! With `--boot-timer` alone the same sampler runs at `PHASE_HZ` only until
//! the kernel's entry has been seen (or the guest's first boot marker), to
//! time the boot phases.
//!
//! - `walk.rs`: guest page tables and the frame-pointer chain.
//! - `scan.rs`: the chain of code without frame pointers, from the stack.
//! - `symbols.rs`: ELF symbol tables, System.map / kallsyms.
//! - `probe.rs`: the vCPU thread's side.
//! - `output.rs`: folded stacks, flame graph, top functions, boot phases.

pub mod output;
pub mod probe;
pub mod scan;
pub mod symbols;
pub mod walk;

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vm_memory::GuestMemoryMmap;

use crate::config::{KernelSource, VmConfig};
use crate::devices::boot_timer::BootTimer;
use crate::kvm::vcpu_handles::SampleKicks;
use probe::{VcpuProbe, VcpuProfile};
use symbols::Symbols;

/// `--profile-hz` when not given: enough samples in the tiny guest's few
/// milliseconds to show something.
pub const DEFAULT_HZ: u32 = 1000;
/// The highest `--profile-hz` accepted.
pub const MAX_HZ: u32 = 20_000;
/// The sampler's rate while it only looks for the kernel's entry.
pub const PHASE_HZ: u32 = 1000;
/// Ticks a vCPU may owe a sample before it is kicked again.
const RE_KICK_TICKS: u32 = 10;

/// `--profile FILE [--profile-hz N] [--profile-symbols FILE]`, as plain data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileConfig {
    /// Folded stacks go here, the flame graph to this path plus `.svg`.
    pub output: PathBuf,
    /// Samples per second per vCPU.
    pub hz: u32,
    /// A System.map, kallsyms file or ELF to symbolize with, instead of the kernel's own.
    pub symbols: Option<PathBuf>,
}

impl ProfileConfig {
    /// Where the flame graph goes.
    pub fn svg_path(&self) -> PathBuf {
        let mut p = self.output.clone().into_os_string();
        p.push(".svg");
        p.into()
    }
}

/// What the sampler thread and the vCPU probes share.
pub(crate) struct Shared {
    /// Per vCPU: a sample is wanted at its next return from `KVM_RUN`.
    want: Vec<AtomicBool>,
    /// Per vCPU: its thread is in its `KVM_RUN` loop, where a kick cannot
    /// be lost (`signals::with_kick_target`). A kick before that (the
    /// thread still at the start gate or installing its filter) finds no
    /// target and does nothing; the sample would then stay owed, and no
    /// further kick sent, until the guest's first exit to the VMM: in a
    /// Linux boot, seconds (issue 15: `kernel entry` at 8.7 s, 8442 ticks
    /// missed). So the sampler kicks only armed vCPUs.
    armed: Vec<AtomicBool>,
    /// When a vCPU first entered `KVM_RUN`.
    first_run: OnceLock<Instant>,
    /// When a vCPU was first seen in the kernel's text mapping.
    kernel_entry: OnceLock<Instant>,
    /// Each finished probe's profile.
    results: Mutex<Vec<VcpuProfile>>,
    /// Tells the sampler thread to end.
    stop: AtomicBool,
}

/// The output files, created during the build (the run-time sandbox
/// opens nothing).
struct Outputs {
    config: ProfileConfig,
    folded: File,
    svg: File,
}

/// The profiler of one VM.
pub struct Profiler {
    shared: Arc<Shared>,
    symbols: Arc<Symbols>,
    memory: GuestMemoryMmap,
    outputs: Option<Outputs>,
    phases: bool,
    hz: u32,
    process_start: Instant,
    sampler: Option<JoinHandle<u64>>,
}

impl Profiler {
    /// The profiler `config` asks for (`--profile`, or `--boot-timer` for
    /// the phases), or none. Reads the symbols and creates the output
    /// files; an unusable argument is an error naming it.
    pub fn new(
        config: &VmConfig,
        memory: &GuestMemoryMmap,
        process_start: Instant,
    ) -> Result<Option<Profiler>, String> {
        let (symbols, outputs, hz) = match &config.profile {
            None if !config.boot_timer => return Ok(None),
            None => (Symbols::default(), None, PHASE_HZ),
            Some(p) => {
                let symbols = load_symbols(p, &config.kernel)?;
                let create = |path: PathBuf| {
                    File::create(&path).map_err(|e| format!("--profile {}: {e}", path.display()))
                };
                let outputs = Outputs {
                    folded: create(p.output.clone())?,
                    svg: create(p.svg_path())?,
                    config: p.clone(),
                };
                (symbols, Some(outputs), p.hz)
            }
        };
        let shared = Arc::new(Shared {
            want: (0..config.vcpus).map(|_| AtomicBool::new(false)).collect(),
            armed: (0..config.vcpus).map(|_| AtomicBool::new(false)).collect(),
            first_run: OnceLock::new(),
            kernel_entry: OnceLock::new(),
            results: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        Ok(Some(Profiler {
            shared,
            symbols: Arc::new(symbols),
            memory: memory.clone(),
            outputs,
            phases: config.boot_timer,
            hz,
            process_start,
            sampler: None,
        }))
    }

    /// The probe for vCPU `index`.
    pub fn probe(&self, index: u8) -> VcpuProbe {
        VcpuProbe {
            shared: self.shared.clone(),
            index: usize::from(index),
            memory: self.memory.clone(),
            symbols: self.symbols.clone(),
            record: self.outputs.is_some(),
            profile: VcpuProfile::default(),
            frames: Vec::with_capacity(walk::MAX_DEPTH + 1),
        }
    }

    /// Starts the sampler thread (before the run-time sandbox, which
    /// forbids new threads). Without `--profile` it ends once the kernel's
    /// entry is known (seen in a sample, or the guest's own 0x40 marker) or
    /// the guest writes any boot marker.
    pub fn start(&mut self, kicks: SampleKicks, timer: Arc<BootTimer>) -> std::io::Result<()> {
        let shared = self.shared.clone();
        let period = Duration::from_nanos(1_000_000_000 / u64::from(self.hz.max(1)));
        let until_entry = self.outputs.is_none();
        let (running, started) = std::sync::mpsc::sync_channel(0);
        let thread = std::thread::Builder::new()
            .name("profiler".into())
            .spawn(move || {
                // The thread's own start-up (name, robust list, rseq) is
                // done: the run-time filter may now go on.
                let _ = running.send(());
                let mut missed = 0u64;
                // Ticks in a row at which some vCPU still owed a sample.
                let mut owed = 0u32;
                let mut next = Instant::now() + period;
                while !shared.stop.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next = (next + period).max(Instant::now());
                    // Any boot marker ends the phase sampler too: a guest
                    // in user space (or the tiny guest, whose code is never
                    // at a kernel address) has no kernel entry left to
                    // show, and kicking an idle guest 1000 times a second
                    // cost the VMM ~10% of a core (tests/lifecycle.rs).
                    if until_entry
                        && (shared.kernel_entry.get().is_some() || !timer.marks().is_empty())
                    {
                        break;
                    }
                    // A vCPU still owing the last sample is not kicked again
                    // (the guest always gets to run between two samples),
                    // unless it has owed it for RE_KICK_TICKS ticks: then the
                    // kick was lost (a pause completing an exit clears
                    // `immediate_exit`), and one more costs one `EINTR`.
                    let mut due = false;
                    let mut owing = false;
                    for (want, armed) in shared.want.iter().zip(&shared.armed) {
                        if !armed.load(Ordering::Acquire) {
                            continue;
                        }
                        if want.swap(true, Ordering::AcqRel) {
                            missed += 1;
                            owing = true;
                        } else {
                            due = true;
                        }
                    }
                    owed = if owing { owed + 1 } else { 0 };
                    if owed >= RE_KICK_TICKS {
                        owed = 0;
                        due = true;
                    }
                    if due && !kicks.kick_all() {
                        break;
                    }
                }
                missed
            })?;
        let _ = started.recv();
        self.sampler = Some(thread);
        Ok(())
    }

    /// Stops the sampler, and with `--profile` writes the folded stacks and
    /// the flame graph and prints the top functions; with `--boot-timer`,
    /// prints the boot phases. `markers` are the VM's boot markers, `end`
    /// when it ended. Call after the vCPU threads have been joined.
    pub fn finish(mut self, markers: &[crate::devices::boot_timer::MarkerTime], end: Instant) {
        self.shared.stop.store(true, Ordering::Release);
        let missed = self.sampler.take().and_then(|t| t.join().ok()).unwrap_or(0);
        if self.phases {
            let since =
                |t: Option<&Instant>| t.map(|t| t.saturating_duration_since(self.process_start));
            output::print_phases(&output::Phases {
                first_instruction: since(self.shared.first_run.get()),
                kernel_entry: since(self.shared.kernel_entry.get()),
                markers: markers.to_vec(),
                end: end.saturating_duration_since(self.process_start),
            });
        }
        if let Some(mut out) = self.outputs.take() {
            let profiles = std::mem::take(&mut *crate::sync::lock(&self.shared.results));
            output::write_profile(
                &mut out.folded,
                &mut out.svg,
                &out.config,
                &self.symbols,
                &profiles,
                missed,
            );
        }
    }
}

/// The symbols for `--profile`: `--profile-symbols` if given (System.map,
/// kallsyms or an ELF), else the kernel's own ELF symbol table (the tiny
/// guest's for the embedded one). A kernel without one (stripped, or a
/// bzImage) gives an empty table and one warning line: the profile then
/// shows addresses.
fn load_symbols(p: &ProfileConfig, kernel: &KernelSource) -> Result<Symbols, String> {
    if let Some(path) = &p.symbols {
        let bad = |e: String| format!("--profile-symbols {}: {e}", path.display());
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        return if bytes.starts_with(b"\x7fELF") {
            match Symbols::from_elf(&bytes).map_err(bad)? {
                s if s.is_empty() => Err(bad("the ELF file has no symbol table".into())),
                s => Ok(s),
            }
        } else {
            Symbols::from_map(&String::from_utf8_lossy(&bytes)).map_err(bad)
        };
    }
    let symbols = match kernel {
        KernelSource::Embedded => Symbols::from_elf(crate::tiny_guest::ELF)?,
        KernelSource::File(path) => {
            // The kernel was read and checked by the loader already; a
            // file that is not an ELF is a bzImage, which has no symbols.
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Symbols::from_elf(&bytes).unwrap_or_default()
        }
    };
    if symbols.is_empty() {
        crate::say!(
            "tinyvmm: warning: --profile: the kernel has no symbol table; the profile shows addresses (give its System.map with --profile-symbols)"
        );
    }
    Ok(symbols)
}
