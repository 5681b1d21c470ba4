//! Both runtime modes (RUNTIME=multi and per-core) serve the same protocol:
//! connections spread over the per-core listeners still receive every
//! broadcast, UDP sockets on every runtime answer, tokens work across
//! transports, MAX_CONNECTIONS holds for the whole process, and shutdown
//! still tells every client to reconnect. With PLAYGROUND_MEMCACHED set,
//! the same again on memcached (a cache client per runtime).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{Client, Server, UdpClient};

/// Clients per server: enough that the kernel puts some on every listener.
const CLIENTS: usize = 24;

fn exercise(runtime: &str, backend: &[(&str, &str)]) {
    let mut env = vec![("RUNTIME", runtime), ("SIGTERM_TIMEOUT", "0"), ("RECONNECT_GRACE", "5s")];
    env.extend_from_slice(backend);
    let mut s = Server::start("serve", &env);
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| s.connect()).collect();
    let mut tokens = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.ask(&format!("msg:hello {i}")), format!("hello {i}"), "{runtime}");
        let t = c.login();
        let key = format!("rt-{runtime}-{}-{i}", std::process::id());
        assert_eq!(c.ask(&format!("mcset:{t}:{key}:v{i}")), "success", "{runtime}");
        assert_eq!(c.ask(&format!("mcget:{t}:{key}")), format!("v{i}"), "{runtime}");
        tokens.push((t, key));
    }
    // A broadcast from one connection reaches every connection, whichever
    // runtime accepted it.
    clients[0].send(&format!("brd:{}:to every core", tokens[0].0));
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.read_line().as_deref(), Some("to every core"), "{runtime}: client {i}");
    }
    // Datagrams from many source ports land on every UDP socket; each answers.
    for (i, (t, key)) in tokens.iter().enumerate() {
        let u = UdpClient::new(IpAddr::V4(Ipv4Addr::LOCALHOST), s.udp_port);
        assert_eq!(u.ask(&format!("mcget:{t}:{key}")), format!("v{i}"), "{runtime}");
    }
    // Shutdown reaches every connection.
    s.signal("TERM");
    for (i, c) in clients.iter_mut().enumerate() {
        c.read_timeout(Duration::from_secs(10));
        assert_eq!(c.read_line().as_deref(), Some("reconnect"), "{runtime}: client {i}");
    }
    drop(clients);
    assert!(s.wait_exit(Duration::from_secs(20)).success(), "{runtime}");
}

#[test]
fn both_runtimes_serve_every_command_on_the_embedded_backends() {
    for runtime in ["multi", "per-core"] {
        exercise(runtime, &[]);
    }
}

#[test]
fn both_runtimes_serve_every_command_on_memcached() {
    let Ok(mc) = std::env::var("PLAYGROUND_MEMCACHED") else {
        assert!(std::env::var("PLAYGROUND_REQUIRE_SERVICES").is_err(), "PLAYGROUND_MEMCACHED must be set");
        eprintln!("skipped: PLAYGROUND_MEMCACHED not set; run scripts/test");
        return;
    };
    let (host, port) = mc.rsplit_once(':').expect("PLAYGROUND_MEMCACHED is host:port");
    for runtime in ["multi", "per-core"] {
        exercise(runtime, &[("MEMCACHED_SERVICE", host), ("MEMCACHED_PORT", port)]);
    }
}

#[test]
fn max_connections_holds_across_the_per_core_listeners() {
    let s = Server::start("tcp", &[("RUNTIME", "per-core"), ("MAX_CONNECTIONS", "3")]);
    let mut held: Vec<Client> = (0..3).map(|_| s.connect()).collect();
    for c in &mut held {
        assert_eq!(c.ask("msg:in"), "in");
    }
    for _ in 0..4 {
        let mut refused = s.connect();
        assert_eq!(refused.read_line().as_deref(), Some("error: server full"));
    }
}

#[test]
fn an_unknown_runtime_is_refused_by_name() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_playground"))
        .args(["tcp", "--runtime", "threads"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RUNTIME"), "{}", String::from_utf8_lossy(&out.stderr));
}
