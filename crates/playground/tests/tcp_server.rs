//! The TCP server over real sockets: every row of the command and error
//! tables, broadcasts, framing limits, connection limits, idle timeout, slow
//! readers, metrics and the SIGTERM lifecycle.

mod common;

use std::time::Duration;

use common::{Server, UNKNOWN_TOKEN, http_get, rows_for_both_transports};

#[test]
fn every_command_and_error_row() {
    let server = Server::start("serve", &[]);
    let mut c = server.connect();
    let t = c.login();
    let mut rows = rows_for_both_transports(&t);
    rows.extend([
        ("brd".into(), "error: token or message missing, brd:token:message".into()),
        (format!("brd:{t}"), "error: token or message missing, brd:token:message".into()),
        ("brd:abc:hi".into(), "error: invalid token length".into()),
        (format!("brd:{UNKNOWN_TOKEN}:hi"), "error: invalid token, re-login".into()),
        ("msgx:hello".into(), "error: unknown command".into()),
        ("".into(), "error: unknown command".into()),
        ("msg:crlf\r".into(), "crlf".into()),
    ]);
    for (line, want) in rows {
        assert_eq!(c.ask(&line), want, "for {line:?}");
    }
    // The token is bound to its connection.
    let mut other = server.connect();
    assert_eq!(other.ask(&format!("mcget:{t}:k1")), "error: invalid token");
    // Client data is shared between tokens.
    let t2 = other.login();
    assert_eq!(other.ask(&format!("mcget:{t2}:k1")), "v:1");
}

#[test]
fn a_broadcast_reaches_every_client_the_sender_too() {
    let server = Server::start("serve", &[]);
    let mut a = server.connect();
    let mut b = server.connect();
    let t = a.login();
    assert_eq!(b.ask("msg:ready"), "ready");
    a.send(&format!("brd:{t}:hello: everyone"));
    assert_eq!(a.read_line().unwrap(), "hello: everyone");
    assert_eq!(b.read_line().unwrap(), "hello: everyone");
    // The sender's next reply is its own, not a leftover.
    assert_eq!(a.ask("msg:after"), "after");
}

#[test]
fn a_long_line_is_refused_and_the_connection_stays_usable() {
    let server = Server::start("serve", &[]);
    let mut c = server.connect();
    assert_eq!(c.ask(&"x".repeat(600)), "error: line too long");
    assert_eq!(c.ask("msg:still here"), "still here");
    let max = format!("msg:{}", "y".repeat(512 - 4));
    assert_eq!(c.ask(&max), "y".repeat(508));
    assert_eq!(c.ask(&format!("{max}z")), "error: line too long");
    // Several commands in one write are answered in order.
    c.send_raw(b"msg:1\nmsg:2\r\nmsg:3\n");
    assert_eq!([c.read_line(), c.read_line(), c.read_line()], [Some("1".into()), Some("2".into()), Some("3".into())]);
    // Bytes that are not UTF-8 are echoed untouched.
    c.send_raw(b"msg:\xff\xfe\n");
    let mut raw = [0u8; 3];
    std::io::Read::read_exact(&mut c.stream, &mut raw).unwrap();
    assert_eq!(&raw, b"\xff\xfe\n");
}

#[test]
fn buff_size_is_configurable() {
    let server = Server::start("serve", &[("BUFF_SIZE", "16")]);
    let mut c = server.connect();
    assert_eq!(c.ask("msg:0123456789ab"), "0123456789ab");
    assert_eq!(c.ask("msg:0123456789abc"), "error: line too long");
}

#[test]
fn the_server_refuses_connections_beyond_its_maximum() {
    let server = Server::start("serve", &[("MAX_CONNECTIONS", "2")]);
    let mut a = server.connect();
    let mut b = server.connect();
    assert_eq!(a.ask("msg:a"), "a");
    assert_eq!(b.ask("msg:b"), "b");
    let mut c = server.connect();
    assert_eq!(c.read_line().as_deref(), Some("error: server full"));
    assert_eq!(c.read_line(), None);
    // A flood of refusals is counted one by one but logged in summaries.
    for _ in 0..30 {
        assert_eq!(server.connect().read_line().as_deref(), Some("error: server full"));
    }
    assert_eq!(server.metric("playground_tcp_connections_rejected_total{reason=\"server_full\"}"), Some(31.0));
    let logged = server.log().matches("Refusing connections: server full").count();
    assert!((1..31).contains(&logged), "{logged} log lines for 31 refusals");
    drop(a);
    // Once a slot frees up, a new client gets in (bounded retries).
    let mut ok = false;
    for _ in 0..50 {
        let mut d = server.connect();
        d.read_timeout(Duration::from_secs(2));
        d.send("msg:in");
        if d.read_line().as_deref() == Some("in") {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok, "a freed slot was never reused");
    assert_eq!(
        server.metric("playground_tcp_connections_rejected_total{reason=\"server_full\"}").map(|v| v >= 1.0),
        Some(true)
    );
}

#[test]
fn idle_clients_are_disconnected() {
    let server = Server::start("serve", &[("IDLE_TIMEOUT", "500ms")]);
    let mut c = server.connect();
    assert_eq!(c.ask("msg:x"), "x");
    assert_eq!(c.read_line(), None, "an idle connection must be closed by the server");
    assert_eq!(server.metric("playground_tcp_disconnects_total{reason=\"idle\"}"), Some(1.0));
}

#[test]
fn a_slow_reader_is_disconnected_without_delaying_others() {
    let server = Server::start("serve", &[("CLIENT_QUEUE", "1024"), ("WRITE_TIMEOUT", "1s"), ("BUFF_SIZE", "2048")]);
    let mut slow = server.connect();
    let mut fast = server.connect();
    assert_eq!(slow.ask("msg:x"), "x");
    let t = fast.login();
    // 30 MB of broadcasts: far more than the kernel buffers of a client that
    // never reads. The fast client (also the sender) reads every line, in
    // batches, so it never falls more than a batch behind.
    let body = "b".repeat(1500);
    let (batches, per_batch) = (200, 100);
    for b in 0..batches {
        for i in 0..per_batch {
            fast.send(&format!("brd:{t}:{body}{b}-{i}"));
        }
        for i in 0..per_batch {
            assert_eq!(fast.read_line().unwrap(), format!("{body}{b}-{i}"));
        }
    }
    assert_eq!(fast.ask("msg:still fast"), "still fast");
    let mut disconnected = false;
    for _ in 0..100 {
        if server.metric("playground_tcp_disconnects_total{reason=\"slow_reader\"}") == Some(1.0) {
            disconnected = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(disconnected, "the slow reader must be disconnected and counted");
    drop(slow);
}

#[test]
fn a_client_that_pipelines_broadcasts_gets_them_all_and_stays_connected() {
    // More broadcasts in one write than CLIENT_QUEUE holds: the sender's own
    // copies must be pushed while its commands run, not pile up until it is
    // taken for a slow reader.
    let server = Server::start("serve", &[("CLIENT_QUEUE", "1024")]);
    let mut c = server.connect();
    let t = c.login();
    let count = 3000;
    let batch: String = (0..count).map(|i| format!("brd:{t}:m{i}\n")).collect();
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || std::io::Write::write_all(&mut writer, batch.as_bytes()).unwrap());
    for i in 0..count {
        assert_eq!(c.read_line().as_deref(), Some(format!("m{i}").as_str()), "broadcast {i}");
    }
    sender.join().unwrap();
    assert_eq!(c.ask("msg:still here"), "still here");
    assert_eq!(server.metric("playground_tcp_disconnects_total{reason=\"slow_reader\"}"), Some(0.0));
}

#[test]
fn listeners_get_a_burst_of_broadcasts_whole_in_order_and_counted() {
    // Broadcasts that arrive together are pushed to a listening connection
    // in one write: every line must still arrive whole, once, in order.
    let server = Server::start("serve", &[("CLIENT_QUEUE", "1024")]);
    let mut listeners: Vec<_> = (0..3).map(|_| server.connect()).collect();
    for l in &mut listeners[1..] {
        assert_eq!(l.ask("msg:a line client"), "a line client");
    }
    let mut sender = server.connect();
    let t = sender.login();
    let count = 500;
    let batch: String = (0..count).map(|i| format!("brd:{t}:burst {i}\n")).collect();
    sender.send_raw(batch.as_bytes());
    for (n, l) in listeners.iter_mut().enumerate() {
        for i in 0..count {
            assert_eq!(l.read_line().as_deref(), Some(format!("burst {i}").as_str()), "listener {n}, broadcast {i}");
        }
        assert_eq!(l.ask("msg:after"), "after");
    }
    // The sender gets its own copies too (a `brd` that succeeds has no reply).
    for i in 0..count {
        assert_eq!(sender.read_line().as_deref(), Some(format!("burst {i}").as_str()), "sender, broadcast {i}");
    }
    assert_eq!(server.metric("playground_broadcasts_delivered_total"), Some(f64::from(4 * count)));
}

#[test]
fn sigterm_drains_then_sends_reconnect_and_exits_zero() {
    let mut server = Server::start("serve", &[("SIGTERM_TIMEOUT", "2"), ("RECONNECT_GRACE", "2s")]);
    let mut c = server.connect();
    assert_eq!(c.ask("msg:before"), "before");
    assert_eq!(http_get(server.admin, "/healthz").map(|r| r.0), Some(200));
    server.signal("TERM");
    // Readiness fails at once (well before SIGTERM_TIMEOUT).
    server.assert_turns_unready();
    // Still serving, new clients included.
    assert_eq!(c.ask("msg:during"), "during");
    let mut late = server.connect();
    assert_eq!(late.ask("msg:late"), "late");
    // Then `reconnect` arrives, and the process exits 0.
    assert_eq!(c.read_line().as_deref(), Some("reconnect"));
    assert_eq!(late.read_line().as_deref(), Some("reconnect"));
    drop(c);
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    drop(late);
    assert!(server.log().contains("Telling clients to reconnect"));
}

/// A client that never stops sending still gets broadcasts and, at
/// shutdown, `reconnect`, over a real socket. (The connection reads its
/// socket before it looks at the rest; the unit test
/// `a_socket_that_never_runs_dry_still_hears_of_shutdown` holds the look
/// that makes this so when tokio's budget alone would not.)
#[test]
fn a_client_that_never_stops_sending_still_gets_broadcasts_and_reconnect() {
    use std::io::{BufRead, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut server = Server::start("serve", &[("SIGTERM_TIMEOUT", "1"), ("RECONNECT_GRACE", "2s")]);
    let mut sender = server.connect();
    let token = sender.login();
    let stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (mut stream, stop) = (stream.try_clone().unwrap(), stop.clone());
        move || {
            let chunk = "msg:x\n".repeat(4096);
            let until = std::time::Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                if stream.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
            }
        }
    });
    let mut lines = std::io::BufReader::new(stream).lines();
    let (mut replies, mut broadcast, mut told) = (0u64, false, false);
    while let Some(Ok(line)) = lines.next() {
        match line.as_str() {
            "x" => replies += 1,
            "hello" => {
                broadcast = true;
                server.signal("TERM");
            }
            "reconnect" => {
                told = true;
                break;
            }
            other => panic!("unexpected line {other:?}"),
        }
        if replies == 20_000 {
            sender.send(&format!("brd:{token}:hello"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    drop(lines);
    writer.join().unwrap();
    assert!(replies >= 20_000, "only {replies} replies before the end");
    assert!(broadcast, "the busy client never got the broadcast ({replies} replies)");
    assert!(told, "the busy client was never told to reconnect ({replies} replies)");
    drop(sender);
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn metrics_are_exported_in_prometheus_format() {
    let server = Server::start("serve", &[]);
    let mut c = server.connect();
    assert_eq!(c.ask("msg:x"), "x");
    let (status, body) = http_get(server.admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    for name in [
        "playground_tcp_connections ",
        "playground_tcp_connections_accepted_total ",
        "playground_commands_total{transport=\"tcp\",command=\"msg\",outcome=\"ok\"} 1",
        "playground_command_duration_seconds_bucket{transport=\"tcp\",command=\"msg\"",
        "playground_broadcasts_delivered_total ",
        "playground_bytes_received_total{transport=\"tcp\"} ",
        "playground_bytes_sent_total{transport=\"tcp\"} ",
        "playground_ready 1",
        // HELP lines come from deploy/metrics.txt.
        "# HELP playground_tcp_connections TCP client connections currently established\n",
        "# HELP playground_ready 1 while the instance takes new traffic, 0 once it drains\n",
    ] {
        assert!(body.contains(name), "missing {name} in\n{body}");
    }
    assert_eq!(server.metric("playground_tcp_connections"), Some(1.0));
}

#[test]
fn an_invalid_setting_stops_start_up_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_playground"))
        .arg("tcp")
        .env("IDLE_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("IDLE_TIMEOUT"), "{err}");
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_playground")).arg("tcp").env("PORT", "x").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORT"));
}

#[test]
fn help_documents_every_option_with_its_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_playground")).args(["tcp", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "PORT",
        "BUFF_SIZE",
        "IDLE_TIMEOUT",
        "LINE_TIMEOUT",
        "MAX_CONNECTIONS",
        "CLIENT_QUEUE",
        "WRITE_TIMEOUT",
        "COMMAND_RATE",
        "COMMAND_BURST",
        "BRD_RATE",
        "BRD_BURST",
        "RECONNECT_GRACE",
        "ADMIN_PORT",
        "SIGTERM_TIMEOUT",
        "POD_NAME",
        "LOG_LEVEL",
        "LOG_FORMAT",
    ] {
        assert!(help.contains(&format!("[env: {var}")), "--help lacks {var}:\n{help}");
    }
}
