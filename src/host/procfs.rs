//! The one parser of each /proc format the project reads, for the VMM's own
//! `--stats` and for the lab's measurements alike.
//!
//! Every parser takes the file's text, so tests feed it made-up contents.
//! Sizes are in KiB, as /proc prints them. See proc(5) for the fields:
//! `/proc/<pid>/status` (VmHWM, Threads, Seccomp, CapEff, ...),
//! `/proc/<pid>/smaps_rollup` (Rss, Pss summed over all mappings) and
//! `/proc/<pid>/smaps` (the same per mapping: `mappings`).

use std::fs;

use serde::Serialize;

/// The fields of `/proc/<pid>/status` a comparison reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcStatus {
    /// `Name:` (the command name, at most 15 bytes).
    pub name: String,
    /// `Tgid:` the process (thread group) a thread belongs to.
    pub tgid: Option<i32>,
    /// `VmHWM:` peak resident set size, KiB.
    pub vm_hwm_kib: Option<u64>,
    /// `VmRSS:` current resident set size, KiB.
    pub vm_rss_kib: Option<u64>,
    /// `Threads:` threads in the process.
    pub threads: Option<u64>,
    /// `Seccomp:` 0 disabled, 1 strict, 2 filter.
    pub seccomp: Option<u8>,
    /// `Seccomp_filters:` number of attached filters.
    pub seccomp_filters: Option<u32>,
    /// `NoNewPrivs:`.
    pub no_new_privs: Option<bool>,
    /// `CapEff:` effective capability mask.
    pub cap_eff: Option<u64>,
}

/// Parses the text of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> ProcStatus {
    let mut s = ProcStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Name" => s.name = value.to_string(),
            "Tgid" => s.tgid = value.parse().ok(),
            "VmHWM" => s.vm_hwm_kib = kib(value),
            "VmRSS" => s.vm_rss_kib = kib(value),
            "Threads" => s.threads = value.parse().ok(),
            "Seccomp" => s.seccomp = value.parse().ok(),
            "Seccomp_filters" => s.seccomp_filters = value.parse().ok(),
            "NoNewPrivs" => s.no_new_privs = value.parse::<u8>().ok().map(|v| v != 0),
            "CapEff" => s.cap_eff = u64::from_str_radix(value, 16).ok(),
            _ => {}
        }
    }
    s
}

/// `"1234 kB"` -> 1234.
fn kib(value: &str) -> Option<u64> {
    value
        .strip_suffix("kB")
        .unwrap_or(value)
        .trim()
        .parse()
        .ok()
}

/// The `Anonymous:` KiB of a `/proc/<pid>/smaps_rollup` text: resident
/// pages no file backs (heap, stacks, anonymous mappings such as guest RAM).
pub fn rollup_anonymous_kib(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .and_then(|v| kib(v.trim()))
}

/// Resident and proportional set sizes, KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemSizes {
    /// Resident set size: pages of this process in RAM.
    pub rss_kib: u64,
    /// Proportional set size: each shared page counted 1/N for N sharers.
    pub pss_kib: u64,
}

/// Parses the text of `/proc/<pid>/smaps_rollup`: its `Rss:` and `Pss:`.
pub fn parse_smaps_rollup(text: &str) -> Option<MemSizes> {
    let mut rss = None;
    let mut pss = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Rss:") {
            rss = kib(v.trim());
        } else if let Some(v) = line.strip_prefix("Pss:") {
            pss = kib(v.trim());
        }
    }
    Some(MemSizes {
        rss_kib: rss?,
        pss_kib: pss?,
    })
}

/// One mapping of `/proc/<pid>/smaps`: its address range and sizes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// First host virtual address of the mapping.
    pub start: u64,
    /// One past its last address.
    pub end: u64,
    /// Anonymous: no inode and no name (`[heap]`, `[stack]` have names).
    pub anonymous: bool,
    /// The name of a named anonymous mapping (`[anon:NAME]`).
    pub anon_name: Option<String>,
    /// `VmFlags:` has `dc` (MADV_DONTFORK: not copied into a child), which
    /// tinyvmm and QEMU both set on guest RAM.
    pub dont_fork: bool,
    /// `Size:` KiB.
    pub size_kib: u64,
    /// `Rss:` KiB.
    pub rss_kib: u64,
    /// `Pss:` KiB.
    pub pss_kib: u64,
}

/// Every mapping in the text of `/proc/<pid>/smaps`, in file order.
pub fn mappings(smaps: &str) -> Vec<Mapping> {
    let mut all: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        if let Some(m) = mapping_header(line) {
            all.push(m);
        } else if let Some(m) = all.last_mut() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key == "VmFlags" {
                m.dont_fork = value.split_whitespace().any(|f| f == "dc");
                continue;
            }
            let field = match key {
                "Size" => &mut m.size_kib,
                "Rss" => &mut m.rss_kib,
                "Pss" => &mut m.pss_kib,
                _ => continue,
            };
            *field = kib(value.trim()).unwrap_or(0);
        }
    }
    all
}

/// A mapping header line of smaps (`start-end perms offset dev inode
/// [path]`) as an empty `Mapping`; `None` for other lines.
fn mapping_header(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (a, b) = fields.next()?.split_once('-')?;
    let start = u64::from_str_radix(a, 16).ok()?;
    let end = u64::from_str_radix(b, 16).ok()?;
    if fields.next()?.len() != 4 {
        return None; // perms: "rw-p"
    }
    let inode = fields.nth(2)?;
    // The rest of the line is the path (it may contain spaces).
    let path: Vec<&str> = fields.collect();
    let path = (!path.is_empty()).then(|| path.join(" "));
    let anon_name = path
        .as_deref()
        .and_then(|p| p.strip_prefix("[anon:"))
        .and_then(|p| p.strip_suffix(']'))
        .map(str::to_string);
    Some(Mapping {
        start,
        end,
        anonymous: inode == "0" && path.is_none(),
        anon_name,
        ..Mapping::default()
    })
}

/// Reads `/proc/self/<file>` as text.
pub fn read_self(file: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/self/{file}")).ok()
}

/// Reads `/proc/<pid>/<file>` as text.
pub fn read(pid: i32, file: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/{file}")).ok()
}

/// Made-up smaps text for the tests here and in the lab: a file mapping,
/// two anonymous ones (128 MiB and 8 MiB) and a named one.
#[cfg(test)]
pub(crate) const SMAPS: &str = "\
5600-5700 r-xp 00000000 fd:01 1234 /usr/bin/tinyvmm
Size:             131072 kB
Rss:                 100 kB
Pss:                 100 kB
7f00-7f10 rw-p 00000000 00:00 0
Size:             131072 kB
KernelPageSize:        4 kB
Rss:                2048 kB
Pss:                2048 kB
7f20-7f30 rw-p 00000000 00:00 0
Size:               8192 kB
Rss:                  40 kB
Pss:                  40 kB
7ffd-7ffe rw-p 00000000 00:00 0                          [stack]
Size:             131072 kB
Rss:                9999 kB
Pss:                9999 kB
";

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\ttinyvmm-workloa\nUmask:\t0022\nState:\tR (running)\nTgid:\t42\n\
        VmPeak:\t    2000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t    1000 kB\n\
        CapEff:\t0000000020000420\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t3\n";

    #[test]
    fn status_fields_are_parsed() {
        let s = parse_status(STATUS);
        assert_eq!(s.name, "tinyvmm-workloa");
        assert_eq!(s.tgid, Some(42));
        assert_eq!(s.vm_hwm_kib, Some(1234));
        assert_eq!(s.vm_rss_kib, Some(1000));
        assert_eq!(s.cap_eff, Some(0x2000_0420));
        assert_eq!(s.no_new_privs, Some(true));
        assert_eq!((s.seccomp, s.seccomp_filters), (Some(2), Some(3)));
    }

    #[test]
    fn status_of_a_zombie_has_no_memory_fields() {
        let s = parse_status("Name:\tx\nState:\tZ (zombie)\nSeccomp:\t0\n");
        assert_eq!((s.vm_hwm_kib, s.seccomp), (None, Some(0)));
    }

    #[test]
    fn smaps_rollup_gives_rss_and_pss() {
        let t = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:\t   5000 kB\n\
            Pss:\t   3100 kB\nPss_Anon:\t 1000 kB\nShared_Clean:\t 10 kB\n";
        let m = parse_smaps_rollup(t).unwrap();
        assert_eq!((m.rss_kib, m.pss_kib), (5000, 3100));
        assert_eq!(parse_smaps_rollup("Rss: 1 kB\n"), None);
        let rollup = "Rss: 5000 kB\nAnonymous:\t 1200 kB\nAnonHugePages: 0 kB\n";
        assert_eq!(rollup_anonymous_kib(rollup), Some(1200));
        assert_eq!(rollup_anonymous_kib(t), None);
    }

    #[test]
    fn smaps_mappings_carry_range_kind_and_sizes() {
        let all = mappings(SMAPS);
        assert_eq!(all.len(), 4);
        assert_eq!(
            (all[0].start, all[0].end, all[0].anonymous),
            (0x5600, 0x5700, false)
        );
        assert_eq!(
            (all[1].anonymous, all[1].size_kib, all[1].rss_kib),
            (true, 131072, 2048)
        );
        assert_eq!((all[2].rss_kib, all[2].pss_kib), (40, 40));
        assert!(!all[3].anonymous, "[stack] has a name");
    }

    #[test]
    fn mapping_headers_are_told_from_fields() {
        let anon = |l: &str| mapping_header(l).map(|m| m.anonymous);
        assert_eq!(anon("7f00-7f10 rw-p 00000000 00:00 0"), Some(true));
        assert_eq!(
            anon("7f00-7f10 rw-p 00000000 00:00 0   [heap]"),
            Some(false)
        );
        assert_eq!(mapping_header("Rss:   4 kB"), None);
        assert_eq!(mapping_header("VmFlags: rd wr mr mw me ac sd"), None);
    }
}
