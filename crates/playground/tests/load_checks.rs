//! `playground load` as a CI gate, against a real server: thresholds and the
//! exit code, a run in which nothing succeeds, latencies corrected for
//! coordinated omission, the merge of two generator processes' reports,
//! the warm-up, ramp stages and pipelining.

mod common;

use std::process::{Child, Output, Stdio};

use common::Server;
use common::load::{assert_accounted, playground, run_load, short, strs, temp_file, total};
use serde_json::Value;

/// The exit code of a run that failed its checks.
const FAILED_CHECKS: i32 = 99;

/// Runs a load with `--json`: its output and its report.
fn load_with_report(args: &[&str]) -> (Output, Value) {
    let path = temp_file("json");
    let out = run_load(&[args, &["--json", path.to_str().unwrap()]].concat());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("no report: {}", stderr(&out)));
    let _ = std::fs::remove_file(path);
    (out, serde_json::from_str(&text).unwrap())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ms(report: &Value, histogram: &str, stat: &str) -> f64 {
    report[histogram][stat].as_f64().unwrap_or_else(|| panic!("no {histogram}.{stat} in {report:#}"))
}

#[test]
fn a_crossed_threshold_fails_the_run_and_is_named() {
    let server = Server::start("serve", &[]);
    // One connection asked for a million requests a second falls behind at
    // once: every request goes late by the schedule, which only the
    // corrected latency shows (a slot is given up after 100 ms of lag).
    let args = short(server.port, 1, "1s", &["--rate", "1000000", "--threshold", "p99<1ms", "--threshold", "sent>0"]);
    let (out, r) = load_with_report(&strs(&args));
    assert_eq!(out.status.code(), Some(FAILED_CHECKS), "{}", stderr(&out));
    assert!(stderr(&out).contains("failed: threshold p99<1ms"), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("FAILED  p99<1ms") && text.contains("ok      sent>0"), "{text}");
    assert_eq!(r["failures"], serde_json::json!(["threshold p99<1ms"]), "{r:#}");
    assert_eq!(r["thresholds"][0]["passed"], false);
    assert!(total(&r, "missed_slots") > 0, "{r:#}");
    assert!(ms(&r, "latency_ms", "p50") >= 99.0, "measured from the slot: {r:#}");
    assert!(ms(&r, "latency_uncorrected_ms", "p50") < ms(&r, "latency_ms", "p50"), "{r:#}");
    assert_accounted(&r);

    // The same run within its thresholds exits 0.
    let args = short(server.port, 1, "500ms", &["--threshold", "p99<60s", "--threshold", "errors<=100%"]);
    let (out, r) = load_with_report(&strs(&args));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(r["failures"], serde_json::json!([]));
}

#[test]
fn a_run_in_which_nothing_succeeds_fails() {
    // Nothing listens on the port of a server that has exited.
    let mut server = Server::start("serve", &[]);
    let (tcp, udp) = (server.port.to_string(), server.udp_port.to_string());
    server.signal("KILL");
    let _ = server.wait_exit(std::time::Duration::from_secs(10));
    let quick = ["--conn-interval", "0", "--alive", "600ms", "--reconnect-delay", "100ms", "--connect-timeout", "1s"];
    let (out, r) = load_with_report(&[&["tcp", "2", "127.0.0.1", &tcp][..], &quick].concat());
    assert_eq!(out.status.code(), Some(FAILED_CHECKS), "{}", stdout(&out));
    assert!(stderr(&out).contains("no connection succeeded"), "{}", stderr(&out));
    assert!(total(&r, "connect_errors") >= 2, "{r:#}");
    // Over UDP the datagrams go, and no reply ever comes.
    let (out, r) = load_with_report(&[&["udp", "2", "127.0.0.1", &udp, "--msg-interval", "50ms"][..], &quick].concat());
    assert_eq!(out.status.code(), Some(FAILED_CHECKS), "{}", stdout(&out));
    assert!(stderr(&out).contains("no request succeeded"), "{}", stderr(&out));
    assert_eq!(total(&r, "received"), 0, "{r:#}");
}

fn spawn_generator(args: &[String], json: &std::path::Path) -> Child {
    playground()
        .arg("load")
        .args(args)
        .args(["--progress", "off", "--json", json.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_merged_report_of_two_generators_adds_them_up() {
    let server = Server::start("serve", &[]);
    let (a, b, merged) = (temp_file("json"), temp_file("json"), temp_file("json"));
    let generators = [
        spawn_generator(&short(server.port, 3, "1500ms", &["--msg-interval", "10ms"]), &a),
        spawn_generator(&short(server.port, 5, "1500ms", &["--scenario", "cache", "--msg-interval", "20ms"]), &b),
    ];
    for g in generators {
        let out = g.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = playground()
        .args(["load", "merge", a.to_str().unwrap(), b.to_str().unwrap(), "--json", merged.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("generators         2 reports merged"), "{}", stdout(&out));
    let read = |p: &std::path::Path| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (ra, rb, m) = (read(&a), read(&b), read(&merged));
    for (name, value) in m["totals"].as_object().unwrap() {
        let sum = total(&ra, name) + total(&rb, name);
        assert_eq!(value.as_u64(), Some(sum), "totals.{name}: {:#} + {:#}", ra["totals"], rb["totals"]);
    }
    assert!(total(&m, "received") > 100, "{m:#}");
    assert_eq!((m["generators"].as_u64(), m["connections"].as_u64()), (Some(2), Some(8)));
    for h in ["latency_ms", "latency_uncorrected_ms"] {
        // Recomputed from the merged histograms: every reply of both.
        let count = |r: &Value| r[h]["count"].as_u64().unwrap();
        assert_eq!(count(&m), count(&ra) + count(&rb), "{h}");
        assert_eq!(ms(&m, h, "max"), ms(&ra, h, "max").max(ms(&rb, h, "max")), "{h}");
        let p50 = ms(&m, h, "p50");
        assert!(p50 >= ms(&ra, h, "p50").min(ms(&rb, h, "p50")) && p50 <= ms(&ra, h, "p50").max(ms(&rb, h, "p50")));
    }
    // A merged report merges again, and its thresholds are judged on the whole.
    let out = playground()
        .args(["load", "merge", merged.to_str().unwrap(), a.to_str().unwrap(), "--threshold", "received<10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(FAILED_CHECKS), "{}", stdout(&out));
    assert!(stdout(&out).contains("generators         3 reports merged"), "{}", stdout(&out));
    // What is not a report is named.
    let out = playground().args(["load", "merge", a.to_str().unwrap(), "Cargo.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Cargo.toml is not a report"), "{}", stderr(&out));
    for p in [a, b, merged] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn ramp_stages_with_a_warmup() {
    let server = Server::start("serve", &[]);
    let port = server.port.to_string();
    let (out, r) = load_with_report(&[
        "tcp",
        "1",
        "127.0.0.1",
        &port,
        "--stage",
        "600ms:4conn:200rps",
        "--stage",
        "1s:4conn:200rps",
        "--stage",
        "400ms:0conn",
        "--warmup",
        "600ms",
        "--read-timeout",
        "2s",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((r["connections"].as_u64(), r["peak_connections"].as_u64()), (Some(4), Some(4)), "{r:#}");
    assert!(r["warmup_secs"].as_f64().unwrap() >= 0.6, "{r:#}");
    assert!(stdout(&out).contains("left out of the figures below"), "{}", stdout(&out));
    // The totals are those of the rows after the warm-up.
    let rows = r["timeline"].as_array().unwrap();
    assert!(rows.iter().any(|row| row["warmup"] == true), "{rows:#?}");
    let measured: u64 = rows.iter().filter(|row| row["warmup"] == false).map(|row| row["sent"].as_u64().unwrap()).sum();
    assert_eq!(total(&r, "sent"), measured, "{r:#}");
    assert!(measured > 0 && total(&r, "wrong_replies") == 0, "{r:#}");
    // A request sent in the warm-up and answered after it counts after it
    // (docs/load.md), so the ends may exceed the sends by at most one
    // request in flight per connection at the warm-up's end.
    let answered = ["received", "late_replies", "wrong_replies", "publish_errors", "unanswered"];
    let ends: u64 = answered.iter().map(|n| total(&r, n)).sum();
    assert!((measured..=measured + 4).contains(&ends), "{:#}", r["totals"]);
}

#[test]
fn pipelined_requests_pair_with_their_replies() {
    let server = Server::start("serve", &[]);
    for scenario in ["echo", "cache"] {
        let extra = ["--scenario", scenario, "--msg-interval", "0", "--pipeline", "8"];
        let (out, r) = load_with_report(&strs(&short(server.port, 2, "800ms", &extra)));
        assert!(out.status.success(), "{scenario}: {}", stderr(&out));
        assert!(stdout(&out).contains("up to 8 in flight per connection"), "{}", stdout(&out));
        assert!(total(&r, "received") > 100, "{scenario}: {r:#}");
        assert_eq!(total(&r, "wrong_replies"), 0, "{scenario}: {r:#}");
        assert_accounted(&r);
    }
}
