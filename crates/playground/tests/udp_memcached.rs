//! Separate `playground tcp` and `playground udp` processes sharing a real
//! memcached: a token from `login` over TCP works over UDP, and client data
//! written through one process is read through the other.
//!
//! It needs a memcached (PLAYGROUND_MEMCACHED=host:port, e.g. started with
//! `scripts/services/memcached start` and `127.0.0.1:11211`) and a binary with
//! the memcached backend (MEMCACHED_SERVICE in `--help`). Without either it
//! says so on stderr and checks nothing, unless PLAYGROUND_REQUIRE_SERVICES is
//! set, in which case it fails.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::Server;

fn binary_has_memcached() -> bool {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_playground")).args(["udp", "--help"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains("[env: MEMCACHED_SERVICE")
}

#[test]
fn a_tcp_login_token_works_over_udp_across_processes_sharing_memcached() {
    // With PLAYGROUND_REQUIRE_SERVICES set (the full test command), not
    // running is a failure rather than a note.
    let required = std::env::var_os("PLAYGROUND_REQUIRE_SERVICES").is_some();
    let Some(memcached) = std::env::var("PLAYGROUND_MEMCACHED").ok().filter(|v| !v.is_empty()) else {
        assert!(!required, "PLAYGROUND_MEMCACHED must be set when PLAYGROUND_REQUIRE_SERVICES is");
        eprintln!("not run: set PLAYGROUND_MEMCACHED=host:port to test against a real memcached");
        return;
    };
    if !binary_has_memcached() {
        assert!(!required, "this binary has no memcached backend (no MEMCACHED_SERVICE option)");
        eprintln!("not run: this binary has no memcached backend (no MEMCACHED_SERVICE option)");
        return;
    }
    let (host, port) = memcached.rsplit_once(':').expect("PLAYGROUND_MEMCACHED is host:port");
    let env = [("MEMCACHED_SERVICE", host), ("MEMCACHED_PORT", port)];
    let tcp = Server::start("tcp", &env);
    let udp = Server::start("udp", &env);
    let second_udp = Server::start("udp", &env);

    let mut c = tcp.connect();
    let t = c.login();
    let u = udp.udp();
    // A key of its own per run: memcached outlives test runs.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let key = format!("udp-test-{}-{nanos}", std::process::id());
    assert_eq!(u.ask(&format!("mcget:{t}:{key}")), format!("error: finding key {key}"));
    assert_eq!(u.ask(&format!("mcset:{t}:{key}:from udp")), "success");
    assert_eq!(c.ask(&format!("mcget:{t}:{key}")), "from udp");
    assert_eq!(c.ask(&format!("mcset:{t}:{key}:from tcp")), "success");
    assert_eq!(u.ask(&format!("mcget:{t}:{key}")), "from tcp");
    // Another udp instance (another pod) sees the same token and data.
    assert_eq!(second_udp.udp().ask(&format!("mcget:{t}:{key}")), "from tcp");
    assert_eq!(u.ask("mcget:0f8fad5b-d9cb-469f-a165-70867728950e:k"), "error: invalid token");
    assert_eq!(u.ask("login"), "error: login is only available over TCP");
    assert_eq!(u.ask("msg:hi"), "hi");
}
