//! The TCP server against hostile clients, over real sockets: a line must
//! be completed within LINE_TIMEOUT of its first byte (slowloris), and
//! per-connection token buckets bound commands and broadcasts.

mod common;

use std::time::{Duration, Instant};

use common::Server;

/// Sends `bytes` one at a time, `every` apart, while the connection lasts;
/// returns how many were sent.
fn drip(mut stream: std::net::TcpStream, bytes: &[u8], every: Duration) -> usize {
    use std::io::Write;
    for (i, b) in bytes.iter().enumerate() {
        if stream.write_all(&[*b]).is_err() {
            return i;
        }
        std::thread::sleep(every);
    }
    bytes.len()
}

#[test]
fn a_line_not_completed_within_line_timeout_ends_the_connection() {
    let server = Server::start("tcp", &[("LINE_TIMEOUT", "1s")]);
    let mut c = server.connect();
    // A complete line first: the connection uses line framing.
    assert_eq!(c.ask("msg:first"), "first");
    // A line completed in time is answered, however it was cut.
    c.send_raw(b"msg:sl");
    std::thread::sleep(Duration::from_millis(300));
    c.send_raw(b"ow\n");
    assert_eq!(c.read_line().as_deref(), Some("slow"));
    // Slowloris: a byte every 100 ms never completes the line.
    let started = Instant::now();
    let writer = c.stream.try_clone().unwrap();
    let dripper = std::thread::spawn(move || drip(writer, &[b'x'; 100], Duration::from_millis(100)));
    assert_eq!(c.read_line().as_deref(), Some("error: line timeout"));
    assert_eq!(c.read_line(), None);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(dripper.join().unwrap() < 100, "the connection must be closed while bytes still come");
    assert_eq!(server.metric("playground_tcp_disconnects_total{reason=\"line_timeout\"}"), Some(1.0));
}

#[test]
fn an_over_long_line_must_end_within_line_timeout_too() {
    let server = Server::start("tcp", &[("LINE_TIMEOUT", "1s"), ("TCP_FRAMING", "line"), ("BUFF_SIZE", "16")]);
    let mut c = server.connect();
    c.send_raw(&[b'y'; 100]);
    assert_eq!(c.read_line().as_deref(), Some("error: line too long"));
    // The rest of that line never comes: the connection ends.
    assert_eq!(c.read_line().as_deref(), Some("error: line timeout"));
    assert_eq!(c.read_line(), None);
    // A connection that has sent nothing is not held to it (IDLE_TIMEOUT is).
    let mut quiet = server.connect();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(quiet.ask("msg:still here"), "still here");
}

#[test]
fn commands_over_the_connection_rate_limit_get_an_error_and_are_not_executed() {
    let server = Server::start("serve", &[("COMMAND_RATE", "1"), ("COMMAND_BURST", "5")]);
    let mut c = server.connect();
    let t = c.login();
    // Twenty commands in one write: the burst left after `login` runs, the
    // rest are refused, each with its error line; none is lost silently.
    let batch: String = (0..20).map(|i| format!("mcset:{t}:rl{i}:v\n")).collect();
    c.send_raw(batch.as_bytes());
    let replies: Vec<String> = (0..20).map(|_| c.read_line().expect("a reply per command")).collect();
    let ok = replies.iter().filter(|r| *r == "success").count();
    let limited = replies.iter().filter(|r| *r == "error: rate limited").count();
    assert_eq!(ok + limited, 20, "{replies:?}");
    assert!((4..=5).contains(&ok), "{replies:?}");
    // A refused mcset stored nothing.
    let mut other = server.connect();
    let u = other.login();
    assert_eq!(other.ask(&format!("mcget:{u}:rl19")), "error: finding key rl19");
    let metric = "playground_tcp_rate_limited_total{limit=\"command\"}";
    assert_eq!(server.metric(metric), Some(limited as f64));
    // Another connection has its own bucket.
    assert_eq!(other.ask("msg:own bucket"), "own bucket");
}

#[test]
fn a_broadcast_flood_reaches_receivers_only_up_to_the_brd_limit() {
    let server = Server::start("serve", &[("BRD_RATE", "1"), ("BRD_BURST", "10")]);
    // The figure: 500 other receivers.
    let mut receivers: Vec<common::Client> = (0..500).map(|_| server.connect()).collect();
    for r in &mut receivers {
        r.login();
    }
    let mut flooder = server.connect();
    let t = flooder.login();
    let flood: String = (0..1000).map(|i| format!("brd:{t}:flood{i}\n")).collect();
    let mut writer = flooder.stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || std::io::Write::write_all(&mut writer, flood.as_bytes()).unwrap());
    // The flooder reads its own copies and an error per refused line.
    let (mut own, mut limited) = (0, 0);
    while own + limited < 1000 {
        match flooder.read_line().expect("a line per command").as_str() {
            "error: rate limited" => limited += 1,
            line => {
                assert!(line.starts_with("flood"), "{line}");
                own += 1;
            }
        }
    }
    sending.join().unwrap();
    assert!((10..=11).contains(&own), "{own} broadcasts got through");
    // Another sender is not limited by the flooder's bucket, and every
    // receiver gets its message right after the flood's few lines.
    let mut sender = server.connect();
    let s = sender.login();
    sender.send(&format!("brd:{s}:after the flood"));
    for r in &mut receivers {
        let mut before = 0;
        loop {
            let line = r.read_line().expect("a broadcast");
            if line == "after the flood" {
                break;
            }
            assert!(line.starts_with("flood"), "{line}");
            before += 1;
        }
        assert_eq!(before, own, "every receiver got exactly the broadcasts that were let through");
    }
    let metric = "playground_tcp_rate_limited_total{limit=\"brd\"}";
    assert_eq!(server.metric(metric), Some(limited as f64));
}
