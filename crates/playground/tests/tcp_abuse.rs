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
