//! What the profiler writes and prints at exit: folded stacks (one line
//! per distinct stack, `outer;...;leaf COUNT`, the format of Brendan
//! Gregg's flame-graph tools), an SVG flame graph drawn by the `inferno`
//! crate, the top functions by samples on stderr, and the boot phases of
//! `--boot-timer`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

use super::ProfileConfig;
use super::probe::{SampleCounts, VcpuProfile};
use super::symbols::Symbols;
use crate::devices::boot_timer::{Marker, MarkerTime};

/// How many functions the exit summary lists.
pub const TOP: usize = 20;
/// The frame that stands for every guest user-mode sample.
pub const USER_FRAME: &str = "[user]";

/// Symbolized stacks (`outer;...;leaf`) and their sample counts, sorted by
/// stack, with every vCPU merged; and the merged counters.
pub fn fold(symbols: &Symbols, profiles: &[VcpuProfile]) -> (BTreeMap<String, u64>, SampleCounts) {
    let mut folded = BTreeMap::new();
    let mut counts = SampleCounts::default();
    for p in profiles {
        counts.merge(&p.counts);
        if p.counts.user > 0 {
            *folded.entry(USER_FRAME.to_string()).or_insert(0) += p.counts.user;
        }
        for (stack, n) in &p.stacks {
            let names: Vec<String> = stack.iter().rev().map(|&a| symbols.name(a)).collect();
            *folded.entry(names.join(";")).or_insert(0) += n;
        }
    }
    (folded, counts)
}

/// The functions with the most samples as the leaf ("self"), most first
/// (ties by name), at most `n`.
pub fn top_functions(folded: &BTreeMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut by_leaf: HashMap<&str, u64> = HashMap::new();
    for (stack, count) in folded {
        let leaf = stack.rsplit(';').next().unwrap_or(stack);
        *by_leaf.entry(leaf).or_insert(0) += count;
    }
    let mut top: Vec<(String, u64)> = by_leaf
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(n);
    top
}

/// Writes the folded stacks and the flame graph, then prints the summary
/// and the top functions. `missed`: sampler ticks a vCPU had not answered
/// by the next one.
pub fn write_profile(
    folded_file: &mut impl Write,
    svg_file: &mut impl Write,
    config: &ProfileConfig,
    symbols: &Symbols,
    profiles: &[VcpuProfile],
    missed: u64,
) {
    let (folded, counts) = fold(symbols, profiles);
    let lines: Vec<String> = folded.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    if let Err(e) = folded_file
        .write_all(text.as_bytes())
        .and_then(|_| folded_file.flush())
    {
        crate::say!("tinyvmm: --profile {}: {e}", config.output.display());
    }
    let svg = config.svg_path();
    if lines.is_empty() {
        crate::say!("tinyvmm: profile: no samples; {} left empty", svg.display());
    } else {
        let mut options = inferno::flamegraph::Options::default();
        options.title = "tinyvmm guest profile".into();
        options.count_name = "samples".into();
        let written = inferno::flamegraph::from_lines(
            &mut options,
            lines.iter().map(String::as_str),
            &mut *svg_file,
        );
        if let Err(e) = written {
            crate::say!("tinyvmm: --profile {}: {e}", svg.display());
        }
    }
    crate::say!(
        "tinyvmm: profile: {} samples at {} Hz ({} in guest user mode), {} stacks; chains: {} by stack scan ({} links guessed), {} broken, {} cut at depth {}; {} not stored (table full), {} register reads failed, {} ticks missed; {:.1} ms spent sampling ({:.1} us a sample); written to {} and {}",
        counts.samples,
        config.hz,
        counts.user,
        folded.len(),
        counts.scanned,
        counts.guessed_links,
        counts.broken_chains,
        counts.deep_chains,
        super::walk::MAX_DEPTH,
        counts.table_full,
        counts.register_errors,
        missed,
        counts.sampling.as_secs_f64() * 1e3,
        counts.sampling.as_secs_f64() * 1e6 / counts.samples.max(1) as f64,
        config.output.display(),
        svg.display()
    );
    let total = counts.samples.max(1) as f64;
    for (i, (name, n)) in top_functions(&folded, TOP).iter().enumerate() {
        crate::say!(
            "tinyvmm: profile top {:>2}: {:>6} {:5.1}%  {name}",
            i + 1,
            n,
            *n as f64 * 100.0 / total
        );
    }
}

/// The boot phases, each from VMM (process) start.
#[derive(Clone, Debug, Default)]
pub struct Phases {
    /// The first `KVM_RUN`.
    pub first_instruction: Option<Duration>,
    /// The first sample in the kernel's text mapping.
    pub kernel_entry: Option<Duration>,
    /// The VM's boot markers.
    pub markers: Vec<MarkerTime>,
    /// The VM's end.
    pub end: Duration,
}

impl Phases {
    /// (name, time from VMM start) for each phase, in order; `None` when not seen.
    pub fn table(&self) -> Vec<(&'static str, Option<Duration>)> {
        let marker = |want: &[Marker]| {
            self.markers
                .iter()
                .filter(|m| want.contains(&m.marker))
                .map(|m| m.since_process_start)
                .min()
        };
        // The guest's own "kernel start" marker, or the first sample at the
        // kernel's link address, whichever came first.
        let entry = match (marker(&[Marker::KernelStart]), self.kernel_entry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        vec![
            ("VMM start", Some(Duration::ZERO)),
            ("first guest instruction", self.first_instruction),
            ("kernel entry", entry),
            (
                "user space (boot marker)",
                marker(&[Marker::UserSpace, Marker::BootTimer]),
            ),
            ("exit", Some(self.end)),
        ]
    }

    /// The lines `--boot-timer` prints: absolute, and the delta from the
    /// previous phase seen.
    pub fn lines(&self) -> Vec<String> {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut last = Duration::ZERO;
        self.table()
            .into_iter()
            .map(|(name, at)| match at {
                Some(t) => {
                    let delta = t.saturating_sub(last);
                    last = t;
                    format!(
                        "tinyvmm: boot phase: {name:<25} {:>12.3} ms  (+{:.3} ms)",
                        ms(t),
                        ms(delta)
                    )
                }
                None => format!("tinyvmm: boot phase: {name:<25} {:>12}     (not seen)", "-"),
            })
            .collect()
    }
}

/// Prints the boot phases.
pub fn print_phases(p: &Phases) {
    for line in p.lines() {
        crate::say!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_fold_outer_first_and_user_samples_are_one_frame() {
        let symbols =
            Symbols::from_map("ffffffff81000000 T outer\nffffffff81001000 T inner\n").unwrap();
        let mut p = VcpuProfile::default();
        p.stacks
            .insert(vec![0xffff_ffff_8100_1004, 0xffff_ffff_8100_0010], 3);
        p.stacks
            .insert(vec![0xffff_ffff_8100_1008, 0xffff_ffff_8100_0010], 2);
        p.stacks.insert(vec![0x4000], 1);
        p.counts.samples = 10;
        p.counts.user = 4;
        let (folded, counts) = fold(&symbols, &[p]);
        assert_eq!(folded["outer;inner"], 5);
        assert_eq!(folded["0x4000"], 1);
        assert_eq!(folded[USER_FRAME], 4);
        assert_eq!(counts.samples, 10);
        let top = top_functions(&folded, 2);
        assert_eq!(top, [("inner".to_string(), 5), (USER_FRAME.to_string(), 4)]);
    }

    #[test]
    fn phases_show_deltas_and_missing_ones() {
        let ms = Duration::from_millis;
        let p = Phases {
            first_instruction: Some(ms(2)),
            kernel_entry: Some(ms(5)),
            markers: vec![MarkerTime {
                marker: Marker::BootTimer,
                since_process_start: ms(100),
                since_build_start: ms(99),
            }],
            end: ms(150),
        };
        let lines = p.lines();
        assert_eq!(lines.len(), 5);
        assert!(
            lines[2].contains("kernel entry") && lines[2].contains("5.000 ms  (+3.000 ms)"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains("100.000 ms  (+95.000 ms)"),
            "{}",
            lines[3]
        );
        let none = Phases {
            end: ms(1),
            ..Phases::default()
        };
        assert!(none.lines()[2].contains("not seen"));
    }
}
