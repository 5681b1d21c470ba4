//! The UDP server over real sockets: every row of the command and error
//! tables that applies to UDP, a token from a TCP `login` used over UDP, no
//! reply to what is not a command, oversize datagrams, the IP check switch,
//! several sockets on one port, metrics and the SIGTERM lifecycle.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{Server, UNKNOWN_TOKEN, UdpClient, http_get, rows_for_both_transports};

/// Both receive paths: one datagram per system call, and batches.
const BATCH_MODES: [&str; 2] = ["1", "32"];

#[test]
fn every_command_and_error_row_with_a_token_from_tcp_login() {
    for batch in BATCH_MODES {
        every_command_and_error_row(batch);
    }
}

fn every_command_and_error_row(batch: &str) {
    let server = Server::start("serve", &[("UDP_BATCH", batch)]);
    // The original's flow: log in over TCP, use the token over UDP.
    let mut tcp = server.connect();
    let t = tcp.login();
    let c = server.udp();
    let mut rows = rows_for_both_transports(&t);
    rows.extend([
        (format!("mcset:{t}:empty:"), "success".into()),
        (format!("mcget:{t}:empty"), "".into()),
        ("mcset:short:k:v".into(), "error: invalid token".into()),
        ("login".into(), "error: login is only available over TCP".into()),
        (format!("brd:{t}:hello"), "error: brd is only available over TCP".into()),
        ("msg:crlf\r\n".into(), "crlf".into()),
        ("msg:lf\n".into(), "lf".into()),
        // One datagram, one line back, whatever is inside.
        ("msg:a\nmsg:b".into(), "error: invalid value".into()),
    ]);
    for (datagram, want) in rows {
        assert_eq!(c.ask(&datagram), want, "for {datagram:?} with UDP_BATCH={batch}");
    }
    // Data written over UDP is read back over TCP, and the other way round.
    assert_eq!(tcp.ask(&format!("mcget:{t}:k1")), "v:1");
    assert_eq!(tcp.ask(&format!("mcset:{t}:k2:from tcp")), "success");
    assert_eq!(c.ask(&format!("mcget:{t}:k2")), "from tcp");
    // Over UDP a token only has to exist: any other port may use it.
    let other = server.udp();
    assert_eq!(other.ask(&format!("mcget:{t}:k1")), "v:1");
    // Bytes that are not UTF-8 come back untouched.
    assert_eq!(c.ask_raw(b"msg:\xff\xfe"), b"\xff\xfe");
}

#[test]
fn datagrams_that_are_not_commands_get_no_reply_and_are_counted() {
    for batch in BATCH_MODES {
        not_commands(batch);
    }
}

fn not_commands(batch: &str) {
    let server = Server::start("udp", &[("UDP_BATCH", batch)]);
    let c = server.udp();
    for datagram in [&b"msgx:hello"[..], b"hello", b"", b"\n", b"MSG:upper", b"\x00\x01"] {
        c.ask_nothing(datagram);
    }
    // The socket still answers commands.
    assert_eq!(c.ask("msg:still here"), "still here");
    assert_eq!(server.metric("playground_udp_packets_dropped_total{reason=\"unknown_command\"}"), Some(6.0));
    assert_eq!(
        server.metric("playground_commands_total{transport=\"udp\",command=\"unknown\",outcome=\"error\"}"),
        Some(6.0)
    );
}

#[test]
fn oversize_datagrams_are_dropped_and_counted() {
    for batch in BATCH_MODES {
        oversize(batch);
    }
}

fn oversize(batch: &str) {
    let server = Server::start("udp", &[("UDP_BATCH", batch)]);
    let c = server.udp();
    let max = format!("msg:{}", "y".repeat(512 - 4));
    assert_eq!(c.ask(&max), "y".repeat(508));
    // A line end does not count against BUFF_SIZE.
    assert_eq!(c.ask(&format!("{max}\r\n")), "y".repeat(508));
    c.ask_nothing(format!("{max}z").as_bytes());
    c.ask_nothing(format!("{max}z\n").as_bytes());
    c.ask_nothing("m".repeat(60_000).as_bytes());
    assert_eq!(c.ask("msg:after"), "after");
    assert_eq!(server.metric("playground_udp_packets_dropped_total{reason=\"oversize\"}"), Some(3.0));

    let small = Server::start("udp", &[("BUFF_SIZE", "16"), ("UDP_BATCH", batch)]);
    let c = small.udp();
    assert_eq!(c.ask("msg:0123456789ab"), "0123456789ab");
    c.ask_nothing(b"msg:0123456789abc");
    assert_eq!(small.metric("playground_udp_packets_dropped_total{reason=\"oversize\"}"), Some(1.0));
}

#[test]
fn udp_check_ip_requires_the_login_ip() {
    let other_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    for (check, from_other_ip) in [("false", "success"), ("true", "error: invalid token")] {
        let server = Server::start("serve", &[("UDP_CHECK_IP", check)]);
        let t = server.connect().login();
        let same_ip = server.udp();
        assert_eq!(same_ip.ask(&format!("mcset:{t}:k:v")), "success", "UDP_CHECK_IP={check}");
        let other = UdpClient::new(other_ip, server.udp_port);
        assert_eq!(other.ask(&format!("mcset:{t}:k:v")), from_other_ip, "UDP_CHECK_IP={check}");
    }
}

#[test]
fn several_sockets_share_the_port_and_every_flow_is_answered() {
    let server = Server::start("udp", &[("UDP_SOCKETS", "4"), ("WORKERS", "8"), ("UDP_BATCH", "4")]);
    assert!(server.log().contains("sockets=4"), "{}", server.log());
    let clients: Vec<UdpClient> = (0..32).map(|_| server.udp()).collect();
    for round in 0..5 {
        for (i, c) in clients.iter().enumerate() {
            c.send(format!("msg:{i}-{round}").as_bytes());
        }
        for (i, c) in clients.iter().enumerate() {
            let reply = c.recv_within(Duration::from_secs(5)).expect("a reply");
            // No line end in the request, none in the reply.
            assert_eq!(reply, format!("{i}-{round}").as_bytes());
        }
    }
    assert_eq!(server.metric("playground_udp_packets_received_total"), Some(160.0));
    assert_eq!(server.metric("playground_udp_packets_sent_total"), Some(160.0));
}

#[test]
fn metrics_are_exported_in_prometheus_format() {
    let server = Server::start("udp", &[]);
    let c = server.udp();
    assert_eq!(c.ask("msg:x"), "x");
    assert_eq!(c.ask(&format!("mcget:{UNKNOWN_TOKEN}:k")), "error: invalid token");
    let (status, body) = http_get(server.admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    for line in [
        "playground_udp_packets_received_total 2",
        "playground_udp_packets_sent_total 2",
        "playground_commands_total{transport=\"udp\",command=\"msg\",outcome=\"ok\"} 1",
        "playground_commands_total{transport=\"udp\",command=\"mcget\",outcome=\"error\"} 1",
        "playground_command_duration_seconds_bucket{transport=\"udp\",command=\"msg\"",
        "playground_bytes_received_total{transport=\"udp\"} ",
        "playground_bytes_sent_total{transport=\"udp\"} ",
        "playground_ready 1",
    ] {
        assert!(body.contains(line), "missing {line} in\n{body}");
    }
    // In: "msg:x" and "mcget:{token}:k"; out: "x" and "error: invalid token"
    // (no line end: the requests had none).
    assert_eq!(server.metric("playground_bytes_received_total{transport=\"udp\"}"), Some(5.0 + 44.0));
    assert_eq!(server.metric("playground_bytes_sent_total{transport=\"udp\"}"), Some(1.0 + 20.0));
}

#[test]
fn sigterm_keeps_answering_for_sigterm_timeout_then_exits_zero() {
    let mut server = Server::start("udp", &[("SIGTERM_TIMEOUT", "2")]);
    let c = server.udp();
    assert_eq!(c.ask("msg:before"), "before");
    let signalled = std::time::Instant::now();
    server.signal("TERM");
    server.assert_turns_unready();
    assert_eq!(http_get(server.admin, "/healthz").map(|r| r.0), Some(200));
    // Still answering, new flows included, until SIGTERM_TIMEOUT.
    assert_eq!(c.ask("msg:during"), "during");
    assert_eq!(server.udp().ask("msg:new flow"), "new flow");
    std::thread::sleep(Duration::from_millis(1000).saturating_sub(signalled.elapsed()));
    assert_eq!(c.ask("msg:still"), "still");
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert!(signalled.elapsed() >= Duration::from_secs(2), "exited before SIGTERM_TIMEOUT");
    c.ask_nothing(b"msg:gone");
}

#[test]
fn serve_answers_udp_during_sigterm_timeout_too() {
    let mut server = Server::start("serve", &[("SIGTERM_TIMEOUT", "1"), ("RECONNECT_GRACE", "1s")]);
    let c = server.udp();
    assert_eq!(c.ask("msg:before"), "before");
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(http_get(server.admin, "/readyz").map(|r| r.0), Some(503));
    assert_eq!(c.ask("msg:during"), "during");
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn help_documents_every_udp_option_with_its_variable() {
    for (role, vars) in [
        (
            "udp",
            &[
                "PORT",
                "BUFF_SIZE",
                "BIND_ADDRESS",
                "WORKERS",
                "UDP_SOCKETS",
                "UDP_QUEUE",
                "UDP_CHECK_IP",
                "UDP_BATCH",
                "UDP_SOCKET_BUFFER",
                "UDP_MAX_AMPLIFICATION",
                "UDP_REPLY_RATE",
                "UDP_REPLY_BURST",
                "ADMIN_PORT",
                "SIGTERM_TIMEOUT",
                "POD_NAME",
                "LOG_LEVEL",
                "LOG_FORMAT",
            ][..],
        ),
        ("serve", &["TCP_PORT", "UDP_PORT", "WORKERS", "UDP_SOCKETS", "UDP_QUEUE", "UDP_CHECK_IP", "UDP_BATCH"][..]),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_playground")).args([role, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for var in vars {
            assert!(help.contains(&format!("[env: {var}")), "{role} --help lacks {var}:\n{help}");
        }
    }
}

#[test]
fn a_taken_udp_port_stops_start_up() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_playground"))
        .arg("udp")
        .env("PORT", port.to_string())
        .env("BIND_ADDRESS", "127.0.0.1")
        // Any port: a port picked free beforehand may be taken by another
        // test by the time the server binds it, which fails start-up first.
        .env("ADMIN_PORT", "0")
        .env("ADMIN_BIND_ADDRESS", "127.0.0.1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on UDP port {port}")), "{err}");
}
