//! `playground load` against a real server: short bounded runs.

mod common;

use std::process::Command;

use common::Server;

fn load(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_playground")).arg("load").args(args).output().unwrap();
    assert!(out.status.success(), "load failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn field(report: &str, name: &str) -> u64 {
    let line = report.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in\n{report}"));
    line[name.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn echo_run_in_the_original_positional_form() {
    let server = Server::start("serve", &[]);
    let port = server.port.to_string();
    let report = load(&[
        "tcp",
        "5",
        "127.0.0.1",
        &port,
        "--conn-interval",
        "1ms",
        "--msg-interval",
        "20ms",
        "--alive",
        "1s",
        "--read-timeout",
        "2s",
    ]);
    let sent = field(&report, "packets sent");
    assert!(sent >= 5, "{report}");
    assert_eq!(field(&report, "packets received"), sent, "{report}");
    assert_eq!(field(&report, "timeouts"), 0, "{report}");
    assert_eq!(field(&report, "wrong replies"), 0, "{report}");
    assert_eq!(field(&report, "connections"), 5, "{report}");
}

#[test]
fn as_fast_as_replies_come_back() {
    let server = Server::start("serve", &[]);
    let port = server.port.to_string();
    let report = load(&[
        "tcp",
        "4",
        "127.0.0.1",
        &port,
        "--conn-interval",
        "0",
        "--msg-interval",
        "0",
        "--alive",
        "500ms",
        "--read-timeout",
        "2s",
    ]);
    assert!(field(&report, "packets received") > 100, "{report}");
    assert_eq!(field(&report, "wrong replies"), 0, "{report}");
}

#[test]
fn a_server_shutdown_shows_up_as_reconnects() {
    let server = Server::start("serve", &[("SIGTERM_TIMEOUT", "0.3"), ("RECONNECT_GRACE", "1s")]);
    let port = server.port.to_string();
    let runner = std::thread::spawn(move || {
        load(&[
            "tcp",
            "3",
            "127.0.0.1",
            &port,
            "--conn-interval",
            "0",
            "--msg-interval",
            "50ms",
            "--alive",
            "2s",
            "--read-timeout",
            "1s",
            "--reconnect-delay",
            "200ms",
        ])
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    server.signal("TERM");
    let report = runner.join().unwrap();
    assert_eq!(field(&report, "reconnects"), 3, "{report}");
    assert!(field(&report, "connections") >= 3, "{report}");
}

#[test]
fn udp_flows_in_the_positional_form() {
    let server = Server::start("udp", &[]);
    let port = server.udp_port.to_string();
    let report = load(&[
        "udp",
        "5",
        "127.0.0.1",
        &port,
        "--conn-interval",
        "1ms",
        "--msg-interval",
        "20ms",
        "--alive",
        "1s",
        "--read-timeout",
        "2s",
    ]);
    let sent = field(&report, "packets sent");
    assert!(sent >= 5 * 40, "{report}");
    // Only a flow's last datagram, still on its way when the flow's time is
    // up, may count as a timeout.
    let timeouts = field(&report, "timeouts");
    assert!(timeouts <= 5, "{report}");
    assert_eq!(field(&report, "packets received") + timeouts, sent, "{report}");
    assert_eq!(field(&report, "wrong replies"), 0, "{report}");
    assert_eq!(field(&report, "connections"), 5, "{report}");
    assert_eq!(server.metric("playground_udp_packets_received_total"), Some(sent as f64));
}

#[test]
fn udp_datagrams_without_a_reply_are_counted_as_timeouts() {
    // A socket that receives and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let report = load(&[
        "udp",
        "2",
        "127.0.0.1",
        &port,
        "--conn-interval",
        "0",
        "--msg-interval",
        "0",
        "--alive",
        "500ms",
        "--read-timeout",
        "100ms",
    ]);
    let sent = field(&report, "packets sent");
    assert!(sent >= 2, "{report}");
    assert_eq!(field(&report, "packets received"), 0, "{report}");
    assert_eq!(field(&report, "timeouts"), sent, "{report}");
    assert!(report.contains("(100.00 %)"), "{report}");
    drop(silent);
}

#[test]
fn udp_as_fast_as_replies_come_back_across_sockets() {
    let server = Server::start("udp", &[("UDP_SOCKETS", "2")]);
    let port = server.udp_port.to_string();
    let report = load(&[
        "udp",
        "8",
        "127.0.0.1",
        &port,
        "--conn-interval",
        "0",
        "--msg-interval",
        "0",
        "--alive",
        "500ms",
        "--read-timeout",
        "2s",
    ]);
    assert!(field(&report, "packets received") > 100, "{report}");
    assert_eq!(field(&report, "wrong replies"), 0, "{report}");
    // A flow's last datagram may still be on its way when its time is up:
    // that one counts as a timeout.
    assert!(field(&report, "timeouts") <= 8, "{report}");
}
