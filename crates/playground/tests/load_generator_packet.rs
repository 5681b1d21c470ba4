//! `playground load --framing packet`, the original client's framing: against
//! a stand-in with the original server's framing ([`PacketEcho`]), and
//! against playground's server in packet mode.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::Server;
use common::load::{assert_accounted, field, load, load_json, playground, short, strs, total};
use common::packet::PacketEcho;

/// [`short`] with packet framing.
fn packet(port: u16, connections: u32, alive: &str, extra: &[&str]) -> Vec<String> {
    short(port, connections, alive, &[extra, &["--framing", "packet"]].concat())
}

#[test]
fn packet_framing_drives_a_server_with_the_original_framing() {
    let server = PacketEcho::start(Some(5));
    let port = server.port.to_string();
    // The original's positional form, and its framing.
    let args = packet(server.port, 3, "1500ms", &["--msg-interval", "20ms", "--reconnect-delay", "100ms"]);
    assert_eq!(&args[..4], ["tcp", "3", "127.0.0.1", &port]);
    let r = load_json(&strs(&args));
    assert_eq!(r["framing"], "packet");
    assert_eq!(server.line_ends.load(Relaxed), 0, "requests go without a line end");
    assert!(total(&r, "received") >= 3 * 5, "{r:#}");
    assert_eq!((total(&r, "wrong_replies"), total(&r, "merged_reads"), total(&r, "resets")), (0, 0, 0), "{r:#}");
    // Each connection is told to reconnect after 5 echoes, and comes back.
    assert!(total(&r, "reconnects") >= 3, "{r:#}");
    // A `reconnect` that comes as the run ends is followed by no new connection.
    let opened = total(&r, "connections_opened");
    assert!(opened > 3 && opened <= 3 + total(&r, "reconnects"), "{r:#}");
    assert_eq!(total(&r, "sent"), server.commands.load(Relaxed), "{r:#}");
    assert_accounted(&r);

    // The environment variable does as the flag.
    let out = playground()
        .args(["load", "tcp", "1", "127.0.0.1", &port, "--alive", "300ms", "--read-timeout", "2s", "--progress", "off"])
        .env("LOAD_FRAMING", "packet")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.lines().next().unwrap_or_default().ends_with("packet framing"), "{report}");
    assert_eq!(field(&report, "wrong replies"), 0, "{report}");
    assert_eq!(server.line_ends.load(Relaxed), 0);
}

/// Needs playground's server packet mode (`--tcp-framing`, `TCP_FRAMING`):
/// a server forced to packet framing and one that detects it, the cache
/// scenario, a shutdown's `reconnect`, and the TCP login of UDP cache flows.
#[test]
fn packet_framing_against_the_playground_server() {
    let forced = Server::start_with_args("tcp", &["--tcp-framing", "packet"], &[]);
    let auto = Server::start("tcp", &[]);
    for server in [&forced, &auto] {
        let report = load(&strs(&packet(server.port, 4, "1s", &["--msg-interval", "20ms"])));
        assert!(field(&report, "packets received") > 0, "{report}");
        for zero in ["timeouts", "wrong replies", "  merged reads", "unanswered", "resets"] {
            assert_eq!(field(&report, zero), 0, "{zero}: {report}");
        }
    }
    let r = load_json(&strs(&packet(forced.port, 4, "1s", &["--scenario", "cache", "--msg-interval", "10ms"])));
    assert_eq!((total(&r, "received"), total(&r, "wrong_replies")), (total(&r, "sent"), 0), "{r:#}");

    let env = [("TCP_FRAMING", "packet"), ("SIGTERM_TIMEOUT", "0.3"), ("RECONNECT_GRACE", "1s")];
    let stopping = Server::start("tcp", &env);
    let args = packet(stopping.port, 3, "2s", &["--msg-interval", "50ms", "--reconnect-delay", "200ms"]);
    let runner = std::thread::spawn(move || load(&strs(&args)));
    std::thread::sleep(Duration::from_millis(500));
    stopping.signal("TERM");
    let report = runner.join().unwrap();
    assert_eq!(field(&report, "reconnects"), 3, "{report}");

    let serve = Server::start("serve", &[("TCP_FRAMING", "packet")]);
    let (udp, tcp) = (serve.udp_port.to_string(), serve.port.to_string());
    let flows = ["udp", "4", "127.0.0.1", &udp, "--tcp-port", &tcp, "--scenario", "cache", "--framing", "packet"];
    let timing = ["--conn-interval", "0", "--msg-interval", "10ms", "--alive", "1s", "--read-timeout", "2s"];
    let r = load_json(&[&flows[..], &timing].concat());
    assert!(total(&r, "received") > 20, "{r:#}");
    assert_eq!(total(&r, "wrong_replies"), 0, "{r:#}");
    assert_accounted(&r);
}
