//! Readers of the /proc figures a measurement needs, and their parsers.
//!
//! Every parser takes the file's text, so tests feed it made-up contents.
//! Sizes are in KiB, as /proc prints them. See proc(5) for the fields:
//! `/proc/<pid>/status` (VmHWM, Seccomp, CapEff, ...),
//! `/proc/<pid>/smaps_rollup` (Rss, Pss summed over all mappings) and
//! `/proc/<pid>/smaps` (the same per mapping).

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

/// In the text of `/proc/<pid>/smaps`, the resident and proportional size
/// of the anonymous mapping of exactly `size_bytes`: a VMM's guest RAM
/// (tinyvmm and QEMU both map guest memory as one private anonymous
/// region of the guest's size when it fits below the 3 GiB MMIO gap). Of
/// several such mappings, the one with the most resident pages.
pub fn anon_mapping_of_size(smaps: &str, size_bytes: u64) -> Option<MemSizes> {
    /// The mapping being read: anonymous?, Size, Rss, Pss.
    #[derive(Default)]
    struct Mapping {
        anon: bool,
        size: Option<u64>,
        rss: Option<u64>,
        pss: Option<u64>,
    }
    let want_kib = size_bytes / 1024;
    let mut best: Option<MemSizes> = None;
    let mut current: Option<Mapping> = None;
    let mut finish = |m: Option<Mapping>| {
        if let Some(Mapping {
            anon: true,
            size: Some(size),
            rss: Some(rss),
            pss: Some(pss),
        }) = m
        {
            if size == want_kib && best.is_none_or(|b| rss > b.rss_kib) {
                best = Some(MemSizes {
                    rss_kib: rss,
                    pss_kib: pss,
                });
            }
        }
    };
    for line in smaps.lines() {
        if let Some(anon) = mapping_header(line) {
            finish(current.take());
            current = Some(Mapping {
                anon,
                ..Mapping::default()
            });
        } else if let Some(m) = current.as_mut() {
            if let Some(v) = line.strip_prefix("Size:") {
                m.size = kib(v.trim());
            } else if let Some(v) = line.strip_prefix("Rss:") {
                m.rss = kib(v.trim());
            } else if let Some(v) = line.strip_prefix("Pss:") {
                m.pss = kib(v.trim());
            }
        }
    }
    finish(current.take());
    best
}

/// For a mapping header line of smaps (`start-end perms offset dev inode
/// [path]`), whether the mapping is anonymous; `None` for other lines.
fn mapping_header(line: &str) -> Option<bool> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let (a, b) = range.split_once('-')?;
    if !a.chars().chain(b.chars()).all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let perms = fields.next()?;
    if perms.len() != 4 {
        return None;
    }
    let inode = fields.nth(2)?;
    let path = fields.next();
    Some(inode == "0" && path.is_none())
}

/// The namespaces a process is in: `(kind, "kind:[inode]")`, from the
/// symbolic links in `/proc/<pid>/ns/`.
pub fn namespaces(pid: i32) -> Vec<(String, String)> {
    ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"]
        .iter()
        .filter_map(|kind| {
            let link = fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
            Some((kind.to_string(), link.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Namespace kinds in which `pid` differs from this process.
pub fn namespaces_apart_from_us(pid: i32) -> Vec<String> {
    let ours = namespaces(std::process::id() as i32);
    namespaces(pid)
        .into_iter()
        .filter(|(kind, link)| ours.iter().any(|(k, l)| k == kind && l != link))
        .map(|(kind, _)| kind)
        .collect()
}

/// Counts the system-call entry points of the running kernel in the text
/// of `/proc/kallsyms`: distinct `__x64_sys_*` functions, without
/// `sys_ni_syscall` (the "not implemented" stub) and compiler-split parts
/// (`.cold`). A process with seccomp off can reach every one of them.
pub fn count_syscalls(kallsyms: &str) -> usize {
    let mut names: Vec<&str> = kallsyms
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter_map(|sym| sym.strip_prefix("__x64_sys_"))
        .filter(|name| !name.contains('.') && *name != "ni_syscall")
        .collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

/// `count_syscalls` of this host's `/proc/kallsyms`, if readable.
pub fn host_syscalls() -> Option<usize> {
    let n = count_syscalls(&fs::read_to_string("/proc/kallsyms").ok()?);
    (n > 0).then_some(n)
}

/// Reads `/proc/<pid>/<file>` as text.
pub fn read(pid: i32, file: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/{file}")).ok()
}

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
    }

    const SMAPS: &str = "\
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

    #[test]
    fn guest_mapping_is_the_anonymous_one_of_guest_size() {
        let m = anon_mapping_of_size(SMAPS, 128 << 20).unwrap();
        assert_eq!((m.rss_kib, m.pss_kib), (2048, 2048));
        assert_eq!(anon_mapping_of_size(SMAPS, 8 << 20).unwrap().rss_kib, 40);
        assert_eq!(anon_mapping_of_size(SMAPS, 256 << 20), None);
    }

    #[test]
    fn mapping_headers_are_told_from_fields() {
        assert_eq!(
            mapping_header("7f00-7f10 rw-p 00000000 00:00 0"),
            Some(true)
        );
        assert_eq!(
            mapping_header("7f00-7f10 rw-p 00000000 00:00 0   [heap]"),
            Some(false)
        );
        assert_eq!(mapping_header("Rss:   4 kB"), None);
        assert_eq!(mapping_header("VmFlags: rd wr mr mw me ac sd"), None);
    }

    #[test]
    fn syscalls_are_counted_once_each() {
        let k = "ffffffff812fc970 T __x64_sys_read\nffffffff812fc980 T __x64_sys_write\n\
            ffffffff8120ed26 t __x64_sys_setitimer.cold\nffffffff8120ed30 T __x64_sys_setitimer\n\
            ffffffff8120ed40 T __x64_sys_ni_syscall\nffffffff812fc970 T __x64_sys_read\n\
            ffffffff812fc990 T __ia32_sys_read\n";
        assert_eq!(count_syscalls(k), 3);
    }

    #[test]
    fn our_own_namespaces_are_readable() {
        let ns = namespaces(std::process::id() as i32);
        assert!(ns.iter().any(|(k, l)| k == "mnt" && l.starts_with("mnt:[")));
        assert!(namespaces_apart_from_us(std::process::id() as i32).is_empty());
    }
}
