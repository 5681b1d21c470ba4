//! Helpers for integration tests: start the real `playground` binary on free
//! ports, talk to it over real sockets, read its admin endpoints.
#![allow(dead_code)]

pub mod load;
pub mod logger;
pub mod original;
pub mod packet;
pub mod pki;
pub mod process;
pub mod toxi;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

pub use process::Process;

/// A port that was free a moment ago and that this process has not handed
/// out before.
pub fn free_port() -> u16 {
    unused(|| TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
}

/// The first port `pick` offers that no earlier call handed out. The kernel
/// may offer a port it has just freed again: a server's port and its admin
/// port, picked one after the other, once came out the same, and the server
/// could not start.
fn unused(pick: impl Fn() -> u16) -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = pick();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// A port free for both TCP and UDP.
pub fn free_dual_port() -> u16 {
    loop {
        let p = free_port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A port free for UDP.
pub fn free_udp_port() -> u16 {
    unused(|| UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
}

/// (memcached host, memcached port, Kafka brokers) from PLAYGROUND_MEMCACHED
/// and PLAYGROUND_KAFKA, which `scripts/test` sets after starting the
/// services; `None` (the test says so and passes) when they are not set,
/// unless PLAYGROUND_REQUIRE_SERVICES is, which makes that a failure.
pub fn memcached_and_kafka() -> Option<(String, String, String)> {
    match (std::env::var("PLAYGROUND_MEMCACHED"), std::env::var("PLAYGROUND_KAFKA")) {
        (Ok(mc), Ok(kafka)) => {
            let (host, port) = mc.rsplit_once(':').expect("PLAYGROUND_MEMCACHED is host:port");
            Some((host.to_string(), port.to_string(), kafka))
        }
        _ => {
            assert!(
                std::env::var("PLAYGROUND_REQUIRE_SERVICES").is_err(),
                "PLAYGROUND_MEMCACHED and PLAYGROUND_KAFKA must be set (scripts/test does it)"
            );
            eprintln!("skipped: PLAYGROUND_MEMCACHED / PLAYGROUND_KAFKA not set; run scripts/test");
            None
        }
    }
}

/// A well-formed token that no server handed out.
pub const UNKNOWN_TOKEN: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

/// The rows of the command and error tables that hold over TCP and UDP
/// alike, as (request, reply), for a session logged in with token `t`. One
/// protocol, whatever carries it: each transport's test adds only its own
/// rows. In order: `k1` is set before it is read.
pub fn rows_for_both_transports(t: &str) -> Vec<(String, String)> {
    vec![
        ("msg:hello".into(), "hello".into()),
        ("msg:a:b:c".into(), "a:b:c".into()),
        ("msg".into(), "error: something is missing from msg:content".into()),
        ("msg:".into(), "error: something is missing from msg:content".into()),
        (format!("mcset:{t}:k1:v:1"), "success".into()),
        (format!("mcget:{t}:k1"), "v:1".into()),
        (format!("mcset:{t}:k1"), "error: something is missing from mcset:token:key:value".into()),
        (format!("mcset:{UNKNOWN_TOKEN}:k:v"), "error: invalid token".into()),
        (format!("mcset:{t}:{}:v", "k".repeat(65)), "error: either key length > 64 or value length > 256".into()),
        (format!("mcset:{t}:k:{}", "v".repeat(257)), "error: either key length > 64 or value length > 256".into()),
        (format!("mcset:{t}:a b:v"), "error: invalid key".into()),
        (format!("mcget:{t}"), "error: something is missing from mcget:key".into()),
        (format!("mcget:{UNKNOWN_TOKEN}:k1"), "error: invalid token".into()),
        (format!("mcget:{t}:{}", "k".repeat(65)), "error: key length > 64".into()),
        (format!("mcget:{t}:missing"), "error: finding key missing".into()),
    ]
}

/// A running `playground` server, killed when dropped; its process (admin
/// port, log, signals, metrics) is reached through it.
pub struct Server {
    process: Process,
    /// The role's port (TCP for `tcp` and `serve`, UDP for `udp`).
    pub port: u16,
    /// The UDP port (`udp` and `serve`; with `serve` set as UDP_PORT).
    pub udp_port: u16,
}

impl std::ops::Deref for Server {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

impl Server {
    /// Starts `playground <role> <args>` with `env`, on a free port and admin
    /// port, and waits until `/readyz` answers 200.
    pub fn start(role: &str, env: &[(&str, &str)]) -> Server {
        Self::start_with_args(role, &[], env)
    }

    /// Like [`Server::start`] with extra command-line arguments.
    pub fn start_with_args(role: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_wrapped(&[], role, args, env)
    }

    /// Like [`Server::start_with_args`], run through `wrapper` (a command and
    /// its arguments that execute the rest, such as `prlimit --nofile=...`).
    pub fn start_wrapped(wrapper: &[&str], role: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::launch(wrapper, role, args, env, free_dual_port())
    }

    /// Like [`Server::start`] on a given `port` (one another server left,
    /// say).
    pub fn start_on(port: u16, role: &str, env: &[(&str, &str)]) -> Server {
        Self::launch(&[], role, &[], env, port)
    }

    fn launch(wrapper: &[&str], role: &str, args: &[&str], env: &[(&str, &str)], port: u16) -> Server {
        let admin = free_port();
        let port_var = if role == "serve" { "TCP_PORT" } else { "PORT" };
        // `serve` always gets its own UDP port: with SO_REUSEPORT, servers of
        // parallel tests on the default port would silently share it.
        let udp_port = match role {
            "serve" => free_udp_port(),
            "udp" => port,
            _ => 0,
        };
        let log = std::env::temp_dir().join(format!("playground-test-{role}-{port}.log"));
        let bin = env!("CARGO_BIN_EXE_playground");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg(role)
            .args(args)
            .env(port_var, port.to_string())
            .env("ADMIN_PORT", admin.to_string())
            .env("BIND_ADDRESS", "127.0.0.1")
            .env("ADMIN_BIND_ADDRESS", "127.0.0.1")
            .env("UDP_PORT", udp_port.to_string())
            .env("LOG_LEVEL", "info")
            .envs(env.iter().copied());
        let mut server = Server { process: Process::spawn(cmd, admin, log), port, udp_port };
        server.wait_ready();
        server
    }

    /// Checks that `/readyz` turns 503 within a second (after SIGTERM: well
    /// before SIGTERM_TIMEOUT).
    pub fn assert_turns_unready(&self) {
        for _ in 0..40 {
            if self.readyz() == Some(503) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("/readyz must turn 503 after SIGTERM");
    }

    /// A new client connection.
    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// A new UDP client of the server's UDP port, from 127.0.0.1.
    pub fn udp(&self) -> UdpClient {
        UdpClient::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.udp_port)
    }
}

/// A Kafka client configuration for the test broker (SASL/PLAIN, as
/// `scripts/services/kafka` sets it up and as the original connected).
pub fn kafka_config(brokers: &str) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", "user")
        .set("sasl.password", "password");
    config
}

/// A line-oriented client over a real TCP socket.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to 127.0.0.1:`port` with a 10 s read timeout.
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap();
    }

    /// Sends one line.
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Reads one line (without `\n`); `None` on EOF.
    pub fn read_line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => Some(String::from_utf8_lossy(buf.strip_suffix(b"\n").unwrap_or(&buf)).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Sends a line and reads the reply.
    pub fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.read_line().expect("connection closed before a reply")
    }

    /// `login`, returning the token.
    pub fn login(&mut self) -> String {
        let token = self.ask("login");
        assert_eq!(token.len(), 36, "not a token: {token}");
        token
    }

    /// Sets the read timeout.
    pub fn read_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }
}

/// A UDP client over a real socket, connected to one server port so that it
/// only sees that server's datagrams.
pub struct UdpClient {
    pub socket: UdpSocket,
}

impl UdpClient {
    /// A socket bound to `ip` (any 127.x address works on Linux) and
    /// connected to 127.0.0.1:`port`, with a 5 s read timeout.
    pub fn new(ip: IpAddr, port: u16) -> UdpClient {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
        socket.connect(("127.0.0.1", port)).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        UdpClient { socket }
    }

    /// Sends one datagram.
    pub fn send(&self, data: &[u8]) {
        self.socket.send(data).unwrap();
    }

    /// The next datagram, if one arrives within `wait`.
    pub fn recv_within(&self, wait: Duration) -> Option<Vec<u8>> {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 65_536];
        let got = self.socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec());
        self.socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        got
    }

    /// Sends `datagram` and returns the reply without its line ending,
    /// checking that it ends in `\n` exactly when the request did.
    pub fn ask_raw(&self, datagram: &[u8]) -> Vec<u8> {
        self.send(datagram);
        let reply = self.recv_within(Duration::from_secs(5)).unwrap_or_else(|| panic!("no reply to {datagram:?}"));
        if datagram.ends_with(b"\n") {
            assert_eq!(reply.last(), Some(&b'\n'), "a request with a line end gets one: {reply:?}");
            reply[..reply.len() - 1].to_vec()
        } else {
            assert!(!reply.ends_with(b"\n"), "a request without a line end gets none: {reply:?}");
            reply
        }
    }

    /// Sends `datagram` and returns the reply as text without its line ending.
    pub fn ask(&self, datagram: &str) -> String {
        String::from_utf8_lossy(&self.ask_raw(datagram.as_bytes())).into_owned()
    }

    /// Asserts that `datagram` gets no reply.
    pub fn ask_nothing(&self, datagram: &[u8]) {
        self.send(datagram);
        let got = self.recv_within(Duration::from_millis(300));
        assert_eq!(got, None, "expected no reply to {datagram:?}");
    }
}

/// A minimal HTTP/1.0 GET against 127.0.0.1:`port` (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http(port, "GET", path, "")
}

/// A minimal HTTP/1.0 request with a JSON `body` against 127.0.0.1:`port`
/// (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let head = format!("Host: localhost\r\nContent-Type: application/json\r\nContent-Length: {}", body.len());
    write!(s, "{method} {path} HTTP/1.0\r\n{head}\r\n\r\n{body}").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}
