//! The UDP server against hostile datagrams, over real sockets: one datagram
//! gets at most one line back whatever it holds, no reply is larger on the
//! wire than UDP_MAX_AMPLIFICATION times its request (IP and UDP headers
//! counted), and UDP_REPLY_RATE bounds the replies one source IP gets.

mod common;

use std::time::Duration;

use common::{Server, UNKNOWN_TOKEN};

/// IPv4 and UDP headers: what every datagram costs on the wire beyond its payload.
const IPV4_UDP_HEADERS: usize = 28;
/// IPv6 and UDP headers.
const IPV6_UDP_HEADERS: usize = 48;
/// The bound the server keeps by default (docs/udp.md).
const DEFAULT_BOUND: f64 = 4.0;

#[test]
fn a_datagram_with_line_feeds_inside_gets_one_line_back() {
    let server = Server::start("serve", &[]);
    let t = server.connect().login();
    let c = server.udp();
    for datagram in [
        "msg:a\nmsg:b".to_string(),
        "msg:a\nmsg:b\n".into(),
        "msg:a\n\n".into(),
        "msg:\n\nmsg:b".into(),
        format!("mcset:{t}:k:a\nmcget:{t}:k"),
        format!("mcget:{t}:k\nmsg:b"),
        format!("mcget:{t}:k\n\n"),
        format!("brd:{t}:a\nb"),
        format!("mcset:{UNKNOWN_TOKEN}\n:k:v"),
    ] {
        c.send(datagram.as_bytes());
        let reply = c.recv_within(Duration::from_secs(5)).unwrap_or_else(|| panic!("no reply to {datagram:?}"));
        let body = reply.strip_suffix(b"\n").unwrap_or(&reply);
        assert!(!body.contains(&b'\n'), "{datagram:?} got more than one line: {:?}", String::from_utf8_lossy(&reply));
        assert!(body.starts_with(b"error: "), "{datagram:?} got {:?}", String::from_utf8_lossy(&reply));
    }
    // A datagram whose first line is not a command alone is not a command:
    // no reply at all.
    c.ask_nothing(b"login\nmsg:b");
    c.ask_nothing(b"msg\nmsg:b\n");
}

/// Every kind of reply the UDP server sends, with the smallest request that
/// gets it (the worst ratio): (kind, request).
fn reply_kinds(t: &str) -> Vec<(&'static str, String)> {
    vec![
        ("msg echo", "msg:x".into()),
        ("msg echo, 508 bytes", format!("msg:{}", "y".repeat(508))),
        ("error: msg missing", "msg".into()),
        ("error: msg missing", "msg:".into()),
        ("error: tcp only (login)", "login".into()),
        ("error: tcp only (brd)", "brd".into()),
        ("error: mcset missing", "mcset".into()),
        ("error: mcget missing", "mcget".into()),
        ("error: invalid token", "mcget:x:k".into()),
        ("error: invalid value", "msg:a\nb".into()),
        ("error: invalid key", format!("mcget:{t}:a b")),
        ("error: key length > 64", format!("mcget:{t}:{}", "k".repeat(65))),
        ("error: too long", format!("mcset:{t}:k:{}", "v".repeat(257))),
        ("error: finding key", format!("mcget:{t}:q")),
        ("mcset success", format!("mcset:{t}:k:v")),
        ("mcget, 1-byte value", format!("mcget:{t}:k")),
        ("mcget, 256-byte value", format!("mcget:{t}:b")),
    ]
}

#[test]
fn no_reply_is_larger_on_the_wire_than_the_bound_times_its_request() {
    let server = Server::start("serve", &[]);
    let mut tcp = server.connect();
    let t = tcp.login();
    assert_eq!(tcp.ask(&format!("mcset:{t}:b:{}", "v".repeat(256))), "success");
    let c = server.udp();
    // The table in docs/udp.md (`-- --nocapture` prints it).
    println!("| reply kind | request bytes | reply bytes | wire factor IPv4 | wire factor IPv6 |");
    println!("|---|---|---|---|---|");
    for (kind, request) in reply_kinds(&t) {
        for datagram in [request.clone(), format!("{request}\n")] {
            c.send(datagram.as_bytes());
            let reply = c.recv_within(Duration::from_secs(5)).unwrap_or_else(|| panic!("no reply to {datagram:?}"));
            let factor = (reply.len() + IPV4_UDP_HEADERS) as f64 / (datagram.len() + IPV4_UDP_HEADERS) as f64;
            let v6 = (reply.len() + IPV6_UDP_HEADERS) as f64 / (datagram.len() + IPV6_UDP_HEADERS) as f64;
            println!("| {kind} | {} | {} | {factor:.2} | {v6:.2} |", datagram.len(), reply.len());
            assert!(factor <= DEFAULT_BOUND, "{kind}: {datagram:?} got {} bytes ({factor:.2}x)", reply.len());
        }
    }
}

#[test]
fn a_reply_over_the_bound_is_dropped_and_counted() {
    let server = Server::start("serve", &[("UDP_MAX_AMPLIFICATION", "2")]);
    let mut tcp = server.connect();
    let t = tcp.login();
    assert_eq!(tcp.ask(&format!("mcset:{t}:b:{}", "v".repeat(256))), "success");
    let c = server.udp();
    // 44 bytes in, 256 out: 284 / 72 on the wire, more than 2x.
    c.ask_nothing(format!("mcget:{t}:b").as_bytes());
    // 3 bytes in, 45 out: 73 / 31 on the wire, more than 2x.
    c.ask_nothing(b"msg");
    // Within the bound: answered.
    assert_eq!(c.ask("msg:hello"), "hello");
    assert_eq!(c.ask(&format!("mcget:{t}:{UNKNOWN_TOKEN}")), format!("error: finding key {UNKNOWN_TOKEN}"));
    assert_eq!(server.metric("playground_udp_packets_dropped_total{reason=\"amplification\"}"), Some(2.0));
}

#[test]
fn replies_to_one_source_ip_are_rate_limited() {
    let server = Server::start("udp", &[("UDP_REPLY_RATE", "1"), ("UDP_REPLY_BURST", "3")]);
    let c = server.udp();
    for i in 0..10 {
        c.send(format!("msg:{i}").as_bytes());
    }
    let mut answered = 0;
    while c.recv_within(Duration::from_millis(500)).is_some() {
        answered += 1;
    }
    // The burst, and at most one more token earned while the test runs.
    assert!((3..=4).contains(&answered), "{answered} replies");
    let dropped = server.metric("playground_udp_packets_dropped_total{reason=\"rate_limited\"}");
    assert_eq!(dropped, Some((10 - answered) as f64));
    // Another port of the same IP shares the bucket, and datagrams that get
    // no reply anyway spend no tokens.
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..5 {
        server.udp().send(b"not a command");
    }
    assert_eq!(server.udp().ask("msg:later"), "later");
}
