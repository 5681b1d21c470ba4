//! One memcached round trip per cache command, against a real memcached:
//! a token is checked without the cache on the connection that logged in,
//! through memcached everywhere else, and never outlives memcached's entry.
//! `playground_token_checks_total{source}` tells which way each check went.
//! The requests of many clients share one memcached connection, and every
//! reply reaches its own request.
//!
//! Needs PLAYGROUND_MEMCACHED (host:port); without it the tests say so and
//! pass, unless PLAYGROUND_REQUIRE_SERVICES is set.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

/// memcached's (host, port), or `None` when not configured.
fn memcached() -> Option<(String, String)> {
    let Ok(mc) = std::env::var("PLAYGROUND_MEMCACHED") else {
        assert!(std::env::var("PLAYGROUND_REQUIRE_SERVICES").is_err(), "PLAYGROUND_MEMCACHED must be set");
        eprintln!("skipped: PLAYGROUND_MEMCACHED not set; run scripts/test");
        return None;
    };
    let (host, port) = mc.rsplit_once(':').expect("PLAYGROUND_MEMCACHED is host:port");
    Some((host.to_string(), port.to_string()))
}

/// `playground serve` (TCP and UDP over one executor) on memcached.
fn server(mc: &(String, String), extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("MEMCACHED_SERVICE", mc.0.as_str()), ("MEMCACHED_PORT", mc.1.as_str())];
    env.extend_from_slice(extra);
    Server::start("serve", &env)
}

/// One memcached text-protocol command and its reply up to `END`/`STORED`.
fn memcached_raw(mc: &(String, String), command: &str) -> String {
    let stream = TcpStream::connect(format!("{}:{}", mc.0, mc.1)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (&stream).write_all(command.as_bytes()).unwrap();
    let mut reader = BufReader::new(&stream);
    let mut reply = String::new();
    while !["END\r\n", "STORED\r\n", "ERROR\r\n"].iter().any(|end| reply.ends_with(end)) {
        assert_ne!(reader.read_line(&mut reply).unwrap(), 0, "memcached closed: {reply}");
    }
    reply
}

fn checks(s: &Server, source: &str) -> f64 {
    s.metric(&format!("playground_token_checks_total{{source=\"{source}\"}}")).unwrap_or(0.0)
}

#[test]
fn the_connection_that_logged_in_is_not_asked_about_its_own_token() {
    let Some(mc) = memcached() else { return };
    let s = server(&mc, &[]);
    let mut c = s.connect();
    let t = c.login();
    let key = format!("session-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(c.ask(&format!("mcset:{t}:{key}:v")), "success");
    assert_eq!(c.ask(&format!("mcget:{t}:{key}")), "v");
    c.send(&format!("brd:{t}:to all"));
    assert_eq!(c.read_line().as_deref(), Some("to all"));
    assert_eq!((checks(&s, "connection"), checks(&s, "cache")), (3.0, 0.0));
    // The token is stored in memcached, bound to the connection, as before.
    let owner = c.stream.local_addr().unwrap().to_string();
    assert!(memcached_raw(&mc, &format!("get {t}\r\n")).contains(&format!("\r\n{owner}\r\n")));

    // Elsewhere it goes through memcached: another connection is refused,
    // a datagram is served.
    let mut other = s.connect();
    assert_eq!(other.ask(&format!("mcget:{t}:{key}")), "error: invalid token");
    assert_eq!(s.udp().ask(&format!("mcget:{t}:{key}")), "v");
    assert_eq!((checks(&s, "connection"), checks(&s, "cache")), (3.0, 2.0));
}

#[test]
fn a_token_stored_by_another_server_is_checked_in_memcached() {
    let Some(mc) = memcached() else { return };
    let s = server(&mc, &[]);
    let mut c = s.connect();
    // As the original (or another instance) would have stored it for this connection.
    let token = uuid::Uuid::new_v4().hyphenated().to_string();
    let owner = c.stream.local_addr().unwrap().to_string();
    let set = format!("set {token} 0 60 {}\r\n{owner}\r\n", owner.len());
    assert_eq!(memcached_raw(&mc, &set), "STORED\r\n");
    let key = format!("session-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(c.ask(&format!("mcset:{token}:{key}:from elsewhere")), "success");
    assert_eq!(c.ask(&format!("mcget:{token}:{key}")), "from elsewhere");
    assert_eq!((checks(&s, "connection"), checks(&s, "cache")), (0.0, 2.0));
}

#[test]
fn a_token_is_refused_once_memcached_no_longer_holds_it() {
    let Some(mc) = memcached() else { return };
    let s = server(&mc, &[("TOKEN_TTL", "3s")]);
    let mut c = s.connect();
    let t = c.login();
    assert_eq!(c.ask(&format!("mcget:{t}:nothing")), "error: finding key nothing");
    assert_eq!(checks(&s, "connection"), 1.0);
    // Wait (bounded) for memcached to expire the token, then ask again.
    let until = Instant::now() + Duration::from_secs(15);
    while memcached_raw(&mc, &format!("get {t}\r\n")) != "END\r\n" {
        assert!(Instant::now() < until, "memcached still holds a token issued for 3 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.ask(&format!("mcget:{t}:nothing")), "error: invalid token");
    assert_eq!(c.ask(&format!("mcset:{t}:k:v")), "error: invalid token");
    assert_eq!((checks(&s, "connection"), checks(&s, "cache")), (1.0, 2.0));
    // A new login works as before.
    let t2 = c.login();
    assert_eq!(c.ask(&format!("mcget:{t2}:nothing")), "error: finding key nothing");
}

#[test]
fn many_clients_share_one_memcached_connection_and_each_gets_its_own_reply() {
    let Some(mc) = memcached() else { return };
    let s = server(&mc, &[("MEMCACHED_POOL_SIZE", "1")]);
    let run = uuid::Uuid::new_v4().simple().to_string();
    std::thread::scope(|scope| {
        for client in 0..16 {
            let (s, run) = (&s, &run);
            scope.spawn(move || {
                let mut c = s.connect();
                let t = c.login();
                let keys: Vec<String> = (0..50).map(|i| format!("pipe-{run}-{client}-{i}")).collect();
                // Every line in one write, so many requests are in flight at once.
                let sets: String = keys.iter().map(|k| format!("mcset:{t}:{k}:value of {k}\n")).collect();
                c.send_raw(sets.as_bytes());
                for k in &keys {
                    assert_eq!(c.read_line().unwrap(), "success", "mcset of {k}");
                }
                let gets: String = keys.iter().map(|k| format!("mcget:{t}:{k}\nmcget:{t}:{k}-missing\n")).collect();
                c.send_raw(gets.as_bytes());
                for k in &keys {
                    assert_eq!(c.read_line().unwrap(), format!("value of {k}"));
                    assert_eq!(c.read_line().unwrap(), format!("error: finding key {k}-missing"));
                }
            });
        }
    });
    // Stored as the original's client stores values (flags 0), so it reads them too.
    let key = format!("pipe-{run}-0-0");
    let expected = format!("VALUE c-{key} 0 {}\r\nvalue of {key}\r\nEND\r\n", "value of ".len() + key.len());
    assert_eq!(memcached_raw(&mc, &format!("get c-{key}\r\n")), expected);
}
