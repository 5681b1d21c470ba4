//! `playground load` against a real server: short, bounded runs of every
//! scenario, the server's shutdown in the middle of a run, several targets,
//! the JSON and PNG outputs, Ctrl-C, and bad input.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use common::load::{
    assert_accounted, assert_refused, field, load, load_json, playground, positional_echo, short, strs, temp_file,
    total,
};

#[test]
fn echo_run_in_the_original_positional_form() {
    let server = Server::start("serve", &[]);
    let report = positional_echo("tcp", server.port);
    let sent = field(&report, "packets sent");
    assert!(sent >= 5, "{report}");
    assert_eq!(field(&report, "packets received"), sent, "{report}");
    assert_eq!(field(&report, "timeouts"), 0, "{report}");
    assert_eq!(field(&report, "wrong replies"), 0, "{report}");
    assert_eq!(field(&report, "connections"), 5, "{report}");
    assert!(report.contains("latency ms") && report.contains("p99.9") && report.contains("timeline"), "{report}");
}

#[test]
fn as_fast_as_replies_come_back() {
    let server = Server::start("serve", &[]);
    let r = load_json(&strs(&short(server.port, 4, "500ms", &["--msg-interval", "0"])));
    assert!(total(&r, "received") > 100, "{r:#}");
    assert_eq!(total(&r, "wrong_replies"), 0, "{r:#}");
}

#[test]
fn cache_scenario_reads_back_what_it_wrote() {
    let server = Server::start("serve", &[]);
    let r = load_json(&strs(&short(server.port, 5, "1500ms", &["--scenario", "cache", "--msg-interval", "10ms"])));
    let sent = total(&r, "sent");
    assert!(sent > 50, "{r:#}");
    assert_accounted(&r);
    assert_eq!(total(&r, "received"), sent, "{r:#}");
    assert_eq!(total(&r, "wrong_replies"), 0, "{r:#}");
    assert!(r["broadcast"].is_null(), "no broadcast section without broadcasts");
}

#[test]
fn broadcast_scenario_checks_every_delivery() {
    let server = Server::start("serve", &[]);
    let r = load_json(&strs(&short(
        server.port,
        6,
        "2s",
        &["--scenario", "broadcast", "--broadcasters", "2", "--msg-interval", "50ms", "--settle", "300ms"],
    )));
    let published = total(&r, "published");
    assert!(published >= 20, "{r:#}");
    assert_eq!(total(&r, "publish_errors"), 0, "{r:#}");
    assert_eq!(total(&r, "wrong_replies"), 0, "{r:#}");
    // Every one of the 6 clients receives every broadcast, the senders too.
    assert!(total(&r, "deliveries") >= published * 5, "{r:#}");
    let check = &r["broadcast"]["check"];
    assert_eq!(check["clients"], 6, "{check:#}");
    assert!(check["expected"].as_u64().unwrap() >= published * 4, "{check:#}");
    assert_eq!(check["missing"], 0, "{check:#}");
    assert_eq!(check["per_client"].as_array().unwrap().len(), 6, "{check:#}");
    assert!(r["broadcast"]["delivery_latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{r:#}");
    assert_accounted(&r);
}

#[test]
fn mix_runs_every_part() {
    let server = Server::start("serve", &[]);
    let r = load_json(&strs(&short(
        server.port,
        8,
        "1500ms",
        &["--mix", "echo=2,cache=1,broadcast=1", "--msg-interval", "20ms", "--settle", "300ms"],
    )));
    assert_eq!(r["scenario"], "mix echo=2,cache=1,broadcast=1");
    assert_eq!(total(&r, "wrong_replies"), 0, "{r:#}");
    assert!(total(&r, "received") > 100, "{r:#}");
    assert!(total(&r, "published") > 10, "{r:#}");
    assert_eq!(r["broadcast"]["check"]["clients"], 8, "echo and cache clients receive broadcasts too");
    assert_eq!(r["broadcast"]["check"]["missing"], 0, "{r:#}");
    assert_accounted(&r);
}

#[test]
fn idle_clients_only_hold_their_connections() {
    let server = Server::start("serve", &[]);
    let r = load_json(&strs(&short(server.port, 3, "700ms", &["--scenario", "idle"])));
    assert_eq!(total(&r, "sent"), 0);
    assert_eq!(total(&r, "connections_opened"), 3);
    assert_eq!(r["peak_connections"], 3, "{r:#}");
}

#[test]
fn a_total_rate_is_kept_whatever_the_connection_count() {
    let server = Server::start("serve", &[]);
    let r = load_json(&strs(&short(server.port, 10, "2s", &["--rate", "200"])));
    let sent = total(&r, "sent") as f64;
    // 2 s at 200/s, plus the first message of each connection, which is not paced.
    assert!((350.0..=450.0).contains(&sent), "sent {sent}");
    assert_eq!(r["pacing"], "200 msg/s in total");
}

#[test]
fn json_report_content() {
    let server = Server::start("serve", &[]);
    let r = load_json(&strs(&short(server.port, 4, "2200ms", &["--msg-interval", "25ms"])));
    assert_eq!((r["protocol"].as_str(), r["scenario"].as_str()), (Some("tcp"), Some("echo")));
    assert_eq!(r["targets"][0], format!("127.0.0.1:{}", server.port));
    assert_eq!(r["interrupted"], false);
    assert_accounted(&r);
    let sent = total(&r, "sent");
    let lat = &r["latency_ms"];
    // Every right reply is timed; the corrected figures also count the send
    // slots skipped before a replied request.
    let replies = total(&r, "received") + total(&r, "late_replies");
    assert_eq!(r["latency_uncorrected_ms"]["count"].as_u64(), Some(replies), "{r:#}");
    let count = lat["count"].as_u64().unwrap();
    assert!((replies..=replies + total(&r, "missed_slots")).contains(&count), "{r:#}");
    let (p50, p99, max) = (lat["p50"].as_f64().unwrap(), lat["p99"].as_f64().unwrap(), lat["max"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{lat:#}");
    // The timeline: one row per second, whose counts add up to the totals.
    let rows = r["timeline"].as_array().unwrap();
    assert!(rows.len() >= 2, "{rows:#?}");
    assert_eq!(rows[0]["t"].as_f64().unwrap().round(), 1.0);
    assert_eq!(rows[0]["connections"], 4);
    assert_eq!(rows.iter().map(|s| s["sent"].as_u64().unwrap()).sum::<u64>(), sent);
    // Rates are reported, not asserted: timing is never a test assertion here
    // (the pacing itself is unit-tested in load::pace).
    assert!(rows[1]["sent_per_sec"].as_f64().unwrap() > 0.0, "{rows:#?}");
}

#[test]
fn plot_is_a_png_picture() {
    let server = Server::start("serve", &[]);
    let png = temp_file("png");
    load(&strs(&short(server.port, 3, "1500ms", &["--msg-interval", "20ms", "--plot", png.to_str().unwrap()])));
    let bytes = std::fs::read(&png).unwrap();
    let _ = std::fs::remove_file(&png);
    assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn several_targets_share_the_clients_round_robin() {
    let (a, b) = (Server::start("serve", &[]), Server::start("serve", &[]));
    let targets = format!("127.0.0.1:{},127.0.0.1:{}", a.port, b.port);
    let r = load_json(&["tcp", "6", &targets, "--conn-interval", "0", "--alive", "800ms", "--read-timeout", "2s"]);
    assert_eq!(total(&r, "wrong_replies"), 0);
    for server in [&a, &b] {
        assert_eq!(server.metric("playground_tcp_connections_accepted_total"), Some(3.0));
    }
}

#[test]
fn connections_from_many_source_addresses() {
    let server = Server::start("serve", &[]);
    let r = load_json(&strs(&short(server.port, 6, "800ms", &["--source-ips", "127.0.0.2-127.0.0.4"])));
    assert_eq!((total(&r, "connections_opened"), total(&r, "connect_errors")), (6, 0), "{r:#}");
    assert_eq!(r["source_ips"], 3);
    assert_eq!(total(&r, "wrong_replies"), 0);
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
    std::thread::sleep(Duration::from_millis(500));
    server.signal("TERM");
    let report = runner.join().unwrap();
    assert_eq!(field(&report, "reconnects"), 3, "{report}");
    assert!(field(&report, "connections") >= 3, "{report}");
}

#[test]
fn clients_come_back_to_a_restarted_server_and_the_run_completes() {
    let mut first = Server::start("serve", &[("SIGTERM_TIMEOUT", "0.2"), ("RECONNECT_GRACE", "1s")]);
    let port = first.port;
    let args = short(port, 4, "4s", &["--msg-interval", "50ms", "--reconnect-delay", "300ms"]);
    let runner = std::thread::spawn(move || load_json(&strs(&args)));
    std::thread::sleep(Duration::from_millis(800));
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(10)).success());
    let _second = Server::start_on(port, "serve", &[]);
    let r = runner.join().unwrap();
    assert_eq!(total(&r, "reconnects"), 4, "{r:#}");
    assert!(total(&r, "connections_opened") >= 8, "every client came back: {r:#}");
    assert_accounted(&r);
    assert_eq!(total(&r, "wrong_replies"), 0, "{r:#}");
    // Some second after the restart shows every client back and answered.
    // Which one depends on scheduling (the run's last seconds may already be
    // winding down), so no particular row is named.
    let rows = r["timeline"].as_array().unwrap();
    let later = &rows[rows.len() / 2..];
    assert!(later.iter().any(|row| row["connections"] == 4 && row["received"].as_u64().unwrap_or(0) > 0), "{rows:#?}");
}

fn spawn_load(args: &[&str]) -> Child {
    playground().arg("load").args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

#[test]
fn ctrl_c_prints_the_report_so_far() {
    let server = Server::start("serve", &[]);
    let args = short(server.port, 3, "60s", &["--msg-interval", "20ms"]);
    let child = spawn_load(&strs(&args));
    std::thread::sleep(Duration::from_millis(1200));
    let started = Instant::now();
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    // The run was set for 60 s: ending well before proves Ctrl-C stopped it.
    assert!(started.elapsed() < Duration::from_secs(30), "Ctrl-C did not stop the run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.contains("interrupted"), "{report}");
    assert!(field(&report, "packets received") > 0, "{report}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopping"));
}

#[test]
fn plain_progress_lines_when_not_on_a_terminal() {
    let server = Server::start("serve", &[]);
    let args = short(server.port, 2, "2500ms", &["--progress-interval", "1s"]);
    let out = playground().arg("load").args(strs(&args)).output().unwrap();
    let progress = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = progress.lines().filter(|l| l.contains("conns |")).collect();
    assert!(lines.len() >= 2, "{progress}");
    assert!(lines[0].contains("2 conns") && lines[0].contains("msg/s") && lines[0].contains("p99"), "{progress}");
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&["tcp", "0"], "CONNECTIONS"),
        (&["tcp", "1", "no-such-host.invalid", "1"], "cannot resolve"),
        (&["tcp", "1", "127.0.0.1", "1", "--source-ips", "192.0.2.1"], "cannot use source address 192.0.2.1"),
        (&["tcp", "1", "127.0.0.1", "1", "--plot", "out.svg"], "png"),
        (&["tcp", "1", "127.0.0.1", "1", "--mix", "echo=1,video=2"], "unknown scenario"),
        (&["tcp", "1", "127.0.0.1", "1", "--scenario", "broadcast", "--framing", "packet"], "--broadcasters 0"),
    ];
    assert_refused(cases);
}

#[test]
fn too_few_open_files_is_explained_and_a_low_soft_limit_raised() {
    let server = Server::start("serve", &[]);
    let bin = env!("CARGO_BIN_EXE_playground");
    let sh = |script: String| Command::new("sh").arg("-c").arg(script).output().unwrap();
    // Hard limit too low: a clear message before anything connects.
    let out = sh(format!("ulimit -n 256 && {bin} load tcp 1000 127.0.0.1 {} --alive 1s", server.port));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("1000 connections need about") && err.contains("ulimit -n"), "{err}");
    // Only the soft limit low: raised to the hard one, and the run goes.
    let out = sh(format!(
        "ulimit -Sn 256 && ulimit -Hn 4096 && {bin} load tcp 400 127.0.0.1 {} --conn-interval 0 --alive 1s --read-timeout 5s --progress off",
        server.port
    ));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(field(&report, "connections"), 400, "{report}");
}
