//! The servers' open-files limit, with the real binary started under a low
//! `RLIMIT_NOFILE` (util-linux `prlimit`): the soft limit is raised to the
//! hard one at start, and a hard limit below `MAX_CONNECTIONS` is reported
//! with both numbers.

mod common;

use common::Server;

/// The soft and hard open-files limits of a running process, from
/// `/proc/<pid>/limits`.
fn nofile_of(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let nums: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (nums[0], nums[1])
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_one() {
    let server = Server::start_wrapped(&["prlimit", "--nofile=256:900"], "tcp", &[], &[("MAX_CONNECTIONS", "500")]);
    assert_eq!(nofile_of(server.child.id()), (900, 900));
    let log = server.log();
    assert!(log.contains("Raised the open-files limit"), "{log}");
    assert!(!log.contains("too low for MAX_CONNECTIONS"), "{log}");
    let mut c = server.connect();
    assert_eq!(c.ask("msg:hi"), "hi");
}

#[test]
fn a_hard_limit_below_max_connections_is_reported_with_both_numbers() {
    for role in ["tcp", "serve"] {
        let server = Server::start_wrapped(&["prlimit", "--nofile=128:700"], role, &[], &[("MAX_CONNECTIONS", "5000")]);
        assert_eq!(nofile_of(server.child.id()), (700, 700), "{role}");
        let log = server.log();
        let warning =
            log.lines().find(|l| l.contains("too low for MAX_CONNECTIONS")).unwrap_or_else(|| panic!("{log}"));
        assert!(warning.contains("WARN"), "{warning}");
        assert!(warning.contains("The open-files limit is 700 (hard limit 700)"), "{warning}");
        assert!(warning.contains("MAX_CONNECTIONS=5000"), "{warning}");
        // It still serves, up to what the limit allows.
        assert_eq!(server.connect().ask("msg:hi"), "hi", "{role}");
    }
}
