//! Running `playground load` from tests: its text report, its JSON report,
//! and the checks every run's figures must pass.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// The binary under test.
pub fn playground() -> Command {
    Command::new(env!("CARGO_BIN_EXE_playground"))
}

/// Runs `playground load <args>` without progress output.
pub fn run_load(args: &[&str]) -> Output {
    playground().arg("load").args(args).args(["--progress", "off"]).output().unwrap()
}

/// Runs a load that must succeed; returns its text report.
pub fn load(args: &[&str]) -> String {
    let out = run_load(args);
    assert!(out.status.success(), "load failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A file name in the temp directory, unique to this test process.
pub fn temp_file(ext: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("playground-load-{}-{n}.{ext}", std::process::id()))
}

/// Runs a load with `--json` and returns the parsed report.
pub fn load_json(args: &[&str]) -> Value {
    load_json_exiting(args, 0)
}

/// Runs a load with `--json` that must exit with `code` (99: its results
/// failed their checks); returns the parsed report.
pub fn load_json_exiting(args: &[&str], code: i32) -> Value {
    let path = temp_file("json");
    let out = run_load(&[args, &["--json", path.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(code), "load: {}", String::from_utf8_lossy(&out.stderr));
    let report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(path);
    report
}

/// `totals.<name>` of a JSON report.
pub fn total(report: &Value, name: &str) -> u64 {
    report["totals"][name].as_u64().unwrap_or_else(|| panic!("no totals.{name} in {report:#}"))
}

/// Every request sent ends up answered (in time or late), wrong, refused or unanswered.
pub fn assert_accounted(r: &Value) {
    let answered = ["received", "late_replies", "wrong_replies", "publish_errors", "unanswered"];
    let ends: u64 = answered.iter().map(|n| total(r, n)).sum();
    assert_eq!(total(r, "sent"), ends, "{:#}", r["totals"]);
}

/// Runs the original client's positional form over `protocol` ("tcp" or
/// "udp") against `port`: 5 connections, one a millisecond, each sending
/// every 20 ms for 1 s. Returns the text report.
pub fn positional_echo(protocol: &str, port: u16) -> String {
    let port = port.to_string();
    load(&[
        protocol,
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
    ])
}

/// A short run against `port`: no pause between connections, generous read
/// timeout (debug builds on a busy machine), plus `extra`.
pub fn short(port: u16, connections: u32, alive: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["tcp", &connections.to_string(), "127.0.0.1", &port.to_string()].iter().map(|s| s.to_string()).collect();
    for a in ["--conn-interval", "0", "--alive", alive, "--read-timeout", "2s"].iter().chain(extra) {
        args.push(a.to_string());
    }
    args
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Checks that each `(args, needle)` load is refused, with an error that
/// names `needle`, and without a panic.
pub fn assert_refused(cases: &[(&[&str], &str)]) {
    for (args, needle) in cases {
        let out = run_load(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// The first number on the text report's line that starts with `name`.
pub fn field(report: &str, name: &str) -> u64 {
    let line = report.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in\n{report}"));
    line[name.len()..].split_whitespace().next().unwrap().parse().unwrap()
}
