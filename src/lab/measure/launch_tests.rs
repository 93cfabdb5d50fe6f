//! Unit tests of `launch.rs`.

use super::*;

fn sh(script: &str, trace: bool) -> LaunchSpec {
    LaunchSpec {
        cgroup: None,
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        marker: "MARK".into(),
        guest_memory: None,
        pre_exec: None,
        trace,
        trace_threads: trace,
        timeout: Duration::from_secs(20),
    }
}

#[test]
fn marker_and_exit_are_timed_in_order() {
    let r = launch(&sh("echo MARK; sleep 0.05; exit 7", false)).unwrap();
    assert_eq!(r.ending, Ending::Exited(7));
    let m = r.marker.expect("marker seen");
    assert!(m < r.exit, "{m:?} {:?}", r.exit);
    assert!(r.exit >= Duration::from_millis(50));
    assert!(r.root_maxrss_kib.unwrap() > 0);
    assert!(r.stdout_tail.contains("MARK"));
}

#[test]
fn tracing_reads_every_process_of_the_tree_at_exit() {
    let r = launch(&sh("echo MARK; /bin/sh -c 'exit 0'; exit 3", true)).unwrap();
    assert_eq!(r.ending, Ending::Exited(3));
    assert_eq!(r.processes.len(), 2, "{:?}", r.processes);
    let root = r.processes.iter().find(|p| p.root).unwrap();
    assert!(root.status.vm_hwm_kib.unwrap() > 0);
    assert!(root.mem.unwrap().pss_kib > 0);
    assert!(r.processes.iter().all(|p| p.namespaces_apart.is_empty()));
}

#[test]
fn missing_marker_and_stderr_are_reported() {
    let r = launch(&sh("echo oops >&2; exit 1", false)).unwrap();
    assert_eq!((r.marker, r.ending), (None, Ending::Exited(1)));
    assert_eq!(r.stderr_tail.trim(), "oops");
}

#[test]
fn a_hung_process_is_killed_at_the_timeout() {
    let mut s = sh("exec sleep 30", true);
    s.timeout = Duration::from_millis(200);
    let r = launch(&s).unwrap();
    assert_eq!(r.ending, Ending::TimedOut);
    assert!(r.exit < Duration::from_secs(5));
}

#[test]
fn many_at_once() {
    let specs: Vec<_> = (0..4)
        .map(|i| sh(&format!("echo MARK; exit {i}"), false))
        .collect();
    let rs = launch_all(&specs).unwrap();
    let endings: Vec<_> = rs.iter().map(|r| r.ending).collect();
    assert_eq!(endings, (0..4).map(Ending::Exited).collect::<Vec<_>>());
    assert!(rs.iter().all(|r| r.marker.is_some()));
}
