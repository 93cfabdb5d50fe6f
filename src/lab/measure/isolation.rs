//! What isolates a workload, read from the host: the namespaces a process
//! is in (`/proc/<pid>/ns/`) and how many system calls the running kernel
//! offers (`/proc/kallsyms`).

use std::fs;

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

#[cfg(test)]
mod tests {
    use super::*;

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
