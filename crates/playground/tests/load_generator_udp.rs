//! `playground load udp` against real servers (`playground udp` and the UDP
//! side of `playground serve`): exact counts in the original positional
//! form, flat-out runs, datagrams nobody answers, the cache scenario with its
//! TCP login, several targets, and the scenarios UDP cannot carry.

mod common;

use common::Server;
use common::load::{
    assert_accounted, assert_refused, field, load_json, load_json_exiting, positional_echo, temp_file, total,
};

#[test]
fn udp_echo_in_the_original_positional_form() {
    let server = Server::start("udp", &[]);
    let report = positional_echo("udp", server.udp_port);
    assert!(report.starts_with("playground load: udp echo, 5 connections"), "{report}");
    let sent = field(&report, "packets sent");
    // 1 s at one datagram every 20 ms, for each of 5 flows.
    assert!((5 * 40..=5 * 51).contains(&sent), "{report}");
    assert_eq!(field(&report, "packets received"), sent, "{report}");
    for zero in ["timeouts", "late replies", "wrong replies", "unanswered", "resets"] {
        assert_eq!(field(&report, zero), 0, "{zero}: {report}");
    }
    assert_eq!(field(&report, "connections"), 5, "{report}");
    assert_eq!(server.metric("playground_udp_packets_received_total"), Some(sent as f64));
}

#[test]
fn udp_as_fast_as_replies_come_back() {
    let server = Server::start("serve", &[]);
    let port = server.udp_port.to_string();
    let r = load_json(&[
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
    assert_eq!((r["protocol"].as_str(), r["scenario"].as_str()), (Some("udp"), Some("echo")), "{r:#}");
    assert_eq!(r["targets"][0], format!("127.0.0.1:{port}"));
    assert_eq!(r["pacing"], "next message on each reply");
    assert!(total(&r, "received") > 100, "{r:#}");
    assert_eq!(total(&r, "received"), total(&r, "sent"), "{r:#}");
    assert_eq!(total(&r, "wrong_replies"), 0, "{r:#}");
    assert_eq!(r["latency_ms"]["count"].as_u64(), Some(total(&r, "received")));
    assert_accounted(&r);
}

#[test]
fn udp_datagrams_never_answered_are_timeouts() {
    // A socket that reads and never answers: no ICMP error, just silence.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    // Nothing succeeds: the run fails its checks (exit code 99), and reports.
    let args = [
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
    ];
    let r = load_json_exiting(&args, 99);
    let sent = total(&r, "sent");
    assert!((4..=12).contains(&sent), "two flows, a datagram every 100 ms for 500 ms: {r:#}");
    assert_eq!(total(&r, "received"), 0, "{r:#}");
    assert_eq!(total(&r, "timeouts"), sent, "{r:#}");
    assert_eq!(r["timeout_percent"], 100.0, "{r:#}");
    assert_eq!(total(&r, "resets"), 0, "{r:#}");
    assert_accounted(&r);
    drop(silent);
}

#[test]
fn udp_cache_logs_in_over_tcp_then_reads_back_over_datagrams() {
    let server = Server::start("serve", &[]);
    let (udp, tcp) = (server.udp_port.to_string(), server.port.to_string());
    let r = load_json(&[
        "udp",
        "4",
        "127.0.0.1",
        &udp,
        "--tcp-port",
        &tcp,
        "--scenario",
        "cache",
        "--conn-interval",
        "0",
        "--msg-interval",
        "10ms",
        "--alive",
        "1500ms",
        "--read-timeout",
        "2s",
    ]);
    assert_eq!((r["protocol"].as_str(), r["scenario"].as_str()), (Some("udp"), Some("cache")), "{r:#}");
    let sent = total(&r, "sent");
    assert!(sent > 100, "{r:#}");
    assert_eq!(total(&r, "received"), sent, "{r:#}");
    assert_eq!(total(&r, "wrong_replies"), 0, "{r:#}");
    assert_accounted(&r);
    // One TCP login per flow; everything else went as datagrams.
    assert_eq!(server.metric("playground_tcp_connections_accepted_total"), Some(4.0));
    assert_eq!(server.metric("playground_udp_packets_received_total"), Some((sent - 4) as f64));
}

#[test]
fn udp_flows_spread_over_several_targets() {
    let (a, b) = (Server::start("udp", &[]), Server::start("udp", &[]));
    let targets = format!("127.0.0.1:{},127.0.0.1:{}", a.udp_port, b.udp_port);
    let png = temp_file("png");
    let r = load_json(&[
        "udp",
        "4",
        &targets,
        "--mix",
        "echo=3,idle=1",
        "--conn-interval",
        "0",
        "--msg-interval",
        "20ms",
        "--alive",
        "1s",
        "--read-timeout",
        "2s",
        "--plot",
        png.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&png).unwrap();
    let _ = std::fs::remove_file(&png);
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(r["targets"].as_array().unwrap().len(), 2, "{r:#}");
    assert_eq!(total(&r, "connections_opened"), 4, "{r:#}");
    assert_eq!(total(&r, "wrong_replies"), 0, "{r:#}");
    let per_server: Vec<f64> =
        [&a, &b].iter().map(|s| s.metric("playground_udp_packets_received_total").unwrap_or(0.0)).collect();
    // Three echo flows and an idle one, alternating between the targets.
    assert!(per_server.iter().all(|&n| n > 0.0), "{per_server:?}");
    assert_eq!(per_server.iter().sum::<f64>(), total(&r, "sent") as f64);
}

#[test]
fn udp_refuses_what_only_tcp_carries() {
    let cases: &[(&[&str], &str)] = &[
        (&["udp", "2", "127.0.0.1", "50000", "--scenario", "broadcast"], "broadcast is only available over TCP"),
        (&["udp", "2", "--mix", "echo=1,broadcast=1"], "broadcast is only available over TCP"),
        (&["tcp", "2", "--tcp-port", "40000"], "--tcp-port"),
    ];
    assert_refused(cases);
}
