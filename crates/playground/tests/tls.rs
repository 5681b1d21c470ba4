//! TLS on the TCP listener over real sockets, with certificates made by the
//! `openssl` tool: both framings through a rustls client, `openssl s_client`
//! as a client (and its refusal of a certificate from another CA), plain TCP
//! refused without harm, the certificate reloaded when its files change, a
//! bad pair refused at start-up with the reason, and `reconnect` at shutdown
//! in both framings.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::Server;
use common::pki::{Pki, TlsClient, der};

fn tls_server(cert: &Path, key: &Path, extra: &[(&str, &str)]) -> Server {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let env: Vec<_> = [("TLS_CERT", cert), ("TLS_KEY", key)].into_iter().chain(extra.iter().copied()).collect();
    Server::start("serve", &env)
}

#[test]
fn both_framings_work_over_tls() {
    let pki = Pki::new("framings");
    let (cert, key) = pki.server("server");
    let server = tls_server(&cert, &key, &[]);

    // Line framing, with a broadcast pushed between replies.
    let mut line = TlsClient::connect(server.port, &pki.ca()).unwrap();
    assert_eq!(line.peer_der(), der(&cert));
    let t = line.ask("login");
    assert_eq!(t.len(), 36, "{t}");
    assert_eq!(line.ask("msg:over tls"), "over tls");
    line.send_raw(format!("brd:{t}:to all\nmsg:after\n").as_bytes());
    assert_eq!([line.read_line(), line.read_line()], ["to all", "after"]);

    // The original's packet framing: a command without a line ending, a
    // reply without one.
    let mut packet = TlsClient::connect(server.port, &pki.ca()).unwrap();
    packet.send_raw(b"msg:packet");
    assert_eq!(packet.read_some(), b"packet");
    packet.send_raw(b"login");
    assert_eq!(packet.read_some().len(), 36);
    assert_eq!(server.metric("playground_tcp_framing_total{framing=\"packet\"}"), Some(1.0));

    // A plain-TCP client gets a TLS alert, not a reply, and does not
    // disturb the others.
    let mut plain = server.connect();
    plain.send("msg:plain");
    let alert = plain.read_line().unwrap_or_default();
    assert!(alert.starts_with('\u{15}'), "a TLS alert record, not {alert:?}");
    assert_eq!(plain.read_line(), None);
    assert_eq!(server.metric("playground_tcp_tls_handshake_failures_total"), Some(1.0));
    assert_eq!(line.ask("msg:still"), "still");
}

#[test]
fn forced_packet_framing_over_tls() {
    let pki = Pki::new("packet");
    let (cert, key) = pki.server("server");
    let server = tls_server(&cert, &key, &[("TCP_FRAMING", "packet")]);
    let mut c = TlsClient::connect(server.port, &pki.ca()).unwrap();
    // The packet framing trims a trailing line end from each read.
    c.send_raw(b"msg:one\n");
    assert_eq!(c.read_some(), b"one");
}

/// `openssl s_client`, fed lines on stdin, its stdout read line by line.
struct SClient {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl SClient {
    fn start(port: u16, ca: &Path) -> SClient {
        let mut child = s_client(port, ca).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = channel();
        std::thread::spawn(move || stdout.lines().map_while(Result::ok).try_for_each(|l| tx.send(l)));
        SClient { child, stdin, lines }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.lines.recv_timeout(Duration::from_secs(10)).expect("a reply through openssl s_client")
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s_client(port: u16, ca: &Path) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost", "-CAfile"])
        .arg(ca)
        .args(["-verify_return_error", "-verify_hostname", "localhost", "-quiet"])
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn openssl_s_client_is_a_client() {
    let pki = Pki::new("s-client");
    let (cert, key) = pki.server("server");
    let server = tls_server(&cert, &key, &[]);
    let mut c = SClient::start(server.port, &pki.ca());
    let t = c.ask("login");
    assert_eq!(t.len(), 36, "{t}");
    assert_eq!(c.ask("msg:hello from s_client"), "hello from s_client");
    assert_eq!(c.ask(&format!("brd:{t}:shout")), "shout");

    // A client that trusts another CA refuses the server.
    let other = Pki::new("other-ca");
    let mut child = s_client(server.port, &other.ca()).stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "s_client neither failed nor finished");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("verify error") || stderr.contains("certificate verify failed"), "{stderr}");
}

#[test]
fn a_changed_certificate_is_served_without_a_restart() {
    let pki = Pki::new("reload");
    let (cert, key) = pki.server("server");
    let (cert_a, key_a) = (pki.dir.join("a.pem"), pki.dir.join("a.key"));
    std::fs::copy(&cert, &cert_a).unwrap();
    std::fs::copy(&key, &key_a).unwrap();
    let server = tls_server(&cert_a, &key_a, &[("TLS_RELOAD_INTERVAL", "50ms")]);
    let mut before = TlsClient::connect(server.port, &pki.ca()).unwrap();
    assert_eq!(before.peer_der(), der(&cert));

    // A renewed pair, written in place (as a rotated secret is).
    let (renewed, renewed_key) = pki.server("renewed");
    std::fs::copy(&renewed_key, &key_a).unwrap();
    std::fs::copy(&renewed, &cert_a).unwrap();
    let seen = wait_for_certificate(server.port, &pki.ca(), &der(&renewed));
    assert!(seen, "the renewed certificate was not served; log:\n{}", server.log());
    assert_eq!(server.metric("playground_tls_reloads_total{result=\"ok\"}"), Some(1.0));
    // An open connection keeps working.
    assert_eq!(before.ask("msg:old session"), "old session");

    // A key that does not match is refused; the last good pair stays. (The
    // renewal above may have been caught between its two writes: count from
    // here.)
    let errors = || server.metric("playground_tls_reloads_total{result=\"error\"}").unwrap_or(0.0);
    let errors_before = errors();
    let (_, stray_key) = pki.server("stray");
    std::fs::copy(&stray_key, &key_a).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while errors() == errors_before {
        assert!(Instant::now() < until, "the mismatched key was not noticed; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log().contains("is not the key of the certificate"), "{}", server.log());
    let mut after = TlsClient::connect(server.port, &pki.ca()).unwrap();
    assert_eq!(after.peer_der(), der(&renewed));
    assert_eq!(after.ask("msg:new session"), "new session");
}

/// Whether new connections get `want` within 10 s.
fn wait_for_certificate(port: u16, ca: &Path, want: &[u8]) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if TlsClient::connect(port, ca).unwrap().peer_der() == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_bad_pair_stops_start_up_with_the_reason() {
    let pki = Pki::new("bad");
    let (cert, _) = pki.server("server");
    let (_, other_key) = pki.server("other");
    let missing = pki.dir.join("missing.pem");
    for (cert, key, want) in [
        (&cert, &other_key, "is not the key of the certificate"),
        (&missing, &other_key, "TLS_CERT"),
        (&cert, &cert, "TLS_KEY"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_playground"))
            .args(["tcp", "--port", "0", "--admin-port", "0", "--bind-address", "127.0.0.1"])
            .env("TLS_CERT", cert)
            .env("TLS_KEY", key)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains(want), "expected {want:?} in:\n{text}");
    }
}

#[test]
fn shutdown_says_reconnect_over_tls() {
    let pki = Pki::new("shutdown");
    let (cert, key) = pki.server("server");
    let mut server = tls_server(&cert, &key, &[("SIGTERM_TIMEOUT", "0"), ("RECONNECT_GRACE", "2s")]);
    let mut line = TlsClient::connect(server.port, &pki.ca()).unwrap();
    assert_eq!(line.ask("msg:before"), "before");
    let mut packet = TlsClient::connect(server.port, &pki.ca()).unwrap();
    packet.send_raw(b"msg:p");
    assert_eq!(packet.read_some(), b"p");
    server.signal("TERM");
    assert_eq!(line.read_line(), "reconnect");
    assert_eq!(packet.read_some(), b"reconnect");
    drop((line, packet));
    assert!(server.wait_exit(Duration::from_secs(20)).success());
}
