//! playground as a drop-in for the original system: its clients' packet
//! framing over TCP (the original's own test sequence, replayed), byte-
//! identical UDP replies, tokens shared with the original through one
//! memcached, and line and packet clients side by side on one server.
//!
//! The tests with backends need PLAYGROUND_MEMCACHED (host:port) and
//! PLAYGROUND_KAFKA (host:port, SASL/PLAIN user/password), which
//! `scripts/test` sets after starting the services. Without them they say so
//! and pass, unless PLAYGROUND_REQUIRE_SERVICES=1 (as in CI).

mod common;

use std::io::Write;
use std::time::Duration;

use common::original::{
    PacketClient, REPLY_WAIT, SILENCE, kafka_records, memcached_get, publish_like_the_original,
    store_token_like_the_original,
};
use common::{Client, Server, UNKNOWN_TOKEN, memcached_and_kafka};

/// Starts `role` against the real memcached and Kafka, on a broadcast topic
/// of the test's own.
fn start(role: &str, (host, port, kafka): &(String, String, String), topic: &str) -> Server {
    Server::start(
        role,
        &[
            ("MEMCACHED_SERVICE", host),
            ("MEMCACHED_PORT", port),
            ("KAFKA_BROKERS", kafka),
            ("KAFKA_SASL_USER", "user"),
            ("KAFKA_SASL_PASSWORD", "password"),
            ("KAFKA_BCAST_TOPIC", topic),
            ("SIGTERM_TIMEOUT", "0"),
            ("RECONNECT_GRACE", "1s"),
        ],
    )
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Sends `brd` until the bus takes it (a new topic may take a moment to
/// exist), then returns the one read the sender gets: its own message.
fn broadcast(c: &mut PacketClient, token: &str, message: &str) -> String {
    for attempt in 0..20 {
        let got = c.ask(&format!("brd:{token}:{message}-{attempt}"));
        if got != "error: broadcast unavailable" {
            return got.strip_suffix(&format!("-{attempt}")).map(str::to_string).unwrap_or(got);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the bus never took a broadcast");
}

/// The original's TCP test sequence, step by step, in its packet framing:
/// every command written without a line ending, each reply one read.
#[test]
fn the_originals_tcp_test_sequence_in_packet_framing() {
    let Some(services) = memcached_and_kafka() else { return };
    let server = start("tcp", &services, &unique("original-seq"));
    let mut c = PacketClient::connect(server.port);
    let long_key = "k".repeat(80);
    let long_value = "v".repeat(400);

    assert_eq!(c.ask("msg:hello"), "hello", "echo");
    assert_eq!(c.ask("msg"), "error: something is missing from msg:content", "echo without content");
    let t = c.ask("login");
    assert_eq!(t.len(), 36, "login returns exactly the 36 bytes of a UUID: {t:?}");
    assert!(uuid::Uuid::parse_str(&t).is_ok(), "{t:?}");
    // Stored the original's way: under the token, the owner's ip:port as value.
    let owner = memcached_get(&services.0, &services.1, &t);
    assert_eq!(owner, Some(c.local_addr().to_string()), "token stored under itself");
    assert_eq!(broadcast(&mut c, &t, "to everyone"), "to everyone", "brd reaches its sender");
    assert_eq!(c.ask(&format!("brd:{t}")), "error: token or message missing, brd:token:message");
    assert_eq!(c.ask("brd:short:hi"), "error: invalid token length");
    assert_eq!(c.ask(&format!("brd:{UNKNOWN_TOKEN}:hi")), "error: invalid token, re-login");
    assert_eq!(c.ask(&format!("mcset:{t}:key:value")), "success");
    assert_eq!(c.ask(&format!("mcset:{t}:key")), "error: something is missing from mcset:token:key:value");
    let too_long = "error: either key length > 64 or value length > 256";
    assert_eq!(c.ask(&format!("mcset:{t}:{long_key}:value")), too_long, "80-byte key");
    assert_eq!(c.ask(&format!("mcset:{t}:key:{long_value}")), too_long, "400-byte value");
    assert_eq!(c.ask(&format!("mcset:{UNKNOWN_TOKEN}:key:value")), "error: invalid token");
    assert_eq!(c.ask(&format!("mcget:{t}:key")), "value");
    assert_eq!(c.ask(&format!("mcget:{t}:nokey")), "error: finding key nokey");
    assert_eq!(c.ask(&format!("mcget:{t}")), "error: something is missing from mcget:key");
    assert_eq!(c.ask(&format!("mcget:{t}:{long_key}")), "error: key length > 64");
    assert_eq!(c.ask(&format!("mcget:{UNKNOWN_TOKEN}:key")), "error: invalid token");
    c.ask_nothing("this is not a command");
    // Surrounding whitespace is trimmed, as the original did.
    assert_eq!(c.ask(" msg:still here \r\n"), "still here");
    // A packet never pushes a second line to line clients.
    assert_eq!(c.ask(&format!("brd:{t}:hi\nreconnect")), "error: invalid value");
    assert_eq!(server.metric("playground_tcp_packets_ignored_total"), Some(1.0));
    assert_eq!(server.metric("playground_tcp_framing_total{framing=\"packet\"}"), Some(1.0));
}

/// The original's UDP test sequence with a token written straight into
/// memcached (36 characters, not a UUID), every reply byte-identical to the
/// original's: no line ending, because the requests have none.
#[test]
fn the_originals_udp_test_sequence_with_a_token_written_into_memcached() {
    let Some(services) = memcached_and_kafka() else { return };
    let server = start("udp", &services, &unique("original-udp"));
    let token: String = unique("udptoken").chars().take(36).collect();
    assert_eq!(token.len(), 36);
    store_token_like_the_original(&services.0, &services.1, &token, "127.0.0.1:40000");
    let c = server.udp();
    let long_key = "k".repeat(80);
    let too_long = "error: either key length > 64 or value length > 256";

    assert_eq!(c.ask("msg:hello"), "hello");
    assert_eq!(c.ask("msg"), "error: something is missing from msg:content");
    assert_eq!(c.ask(&format!("mcset:{token}:key:value")), "success");
    assert_eq!(c.ask(&format!("mcset:{token}:key")), "error: something is missing from mcset:token:key:value");
    assert_eq!(c.ask(&format!("mcset:{token}:{long_key}:value")), too_long);
    assert_eq!(c.ask(&format!("mcset:{token}:key:{}", "v".repeat(400))), too_long);
    assert_eq!(c.ask(&format!("mcset:{UNKNOWN_TOKEN}:key:value")), "error: invalid token");
    assert_eq!(c.ask(&format!("mcget:{token}:key")), "value");
    assert_eq!(c.ask(&format!("mcget:{token}:nokey")), "error: finding key nokey");
    assert_eq!(c.ask(&format!("mcget:{token}")), "error: something is missing from mcget:key");
    assert_eq!(c.ask(&format!("mcget:{token}:{long_key}")), "error: key length > 64");
    assert_eq!(c.ask(&format!("mcget:{UNKNOWN_TOKEN}:key")), "error: invalid token");
    c.ask_nothing(b"this is not a command");
    // `nc -u` users end their datagrams with a line end, and get one back.
    assert_eq!(c.ask("msg:from nc\n"), "from nc");
}

/// A tcp and a udp instance sharing one memcached honour a token stored the
/// original's way, and each other's client data.
#[test]
fn tcp_and_udp_instances_share_a_token_written_the_originals_way() {
    let Some(services) = memcached_and_kafka() else { return };
    let topic = unique("original-share");
    let tcp = start("tcp", &services, &topic);
    let udp = start("udp", &services, &topic);
    let mut c = PacketClient::connect(tcp.port);
    // The original's login stored the connection's own ip:port.
    let token = uuid::Uuid::new_v4().to_string();
    store_token_like_the_original(&services.0, &services.1, &token, &c.local_addr().to_string());
    let key = unique("shared");
    assert_eq!(c.ask(&format!("mcset:{token}:{key}:from tcp")), "success");
    assert_eq!(udp.udp().ask(&format!("mcget:{token}:{key}")), "from tcp");
    assert_eq!(memcached_get(&services.0, &services.1, &format!("c-{key}")).as_deref(), Some("from tcp"));
    // Bound to its connection over TCP, as before.
    let mut other = PacketClient::connect(tcp.port);
    assert_eq!(other.ask(&format!("mcget:{token}:{key}")), "error: invalid token");
}

/// A line client and a packet client on one server both receive one
/// broadcast, and the shutdown notice, each in its own framing.
#[test]
fn line_and_packet_clients_side_by_side() {
    let Some(services) = memcached_and_kafka() else { return };
    let mut server = start("tcp", &services, &unique("original-mixed"));
    let mut line = server.connect();
    let t = line.login();
    let mut packet = PacketClient::connect(server.port);
    assert_eq!(packet.ask("msg:ready"), "ready");
    let mut sent = None;
    for attempt in 0..20 {
        line.send(&format!("brd:{t}:hello both {attempt}"));
        let got = line.read_line().expect("a reply or the broadcast");
        if got != "error: broadcast unavailable" {
            sent = Some(got);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let sent = sent.expect("the bus never took a broadcast");
    assert!(sent.starts_with("hello both"), "{sent}");
    assert_eq!(packet.read_within(REPLY_WAIT), Some(sent), "the packet client gets the message bare");
    assert_eq!(server.metric("playground_tcp_framing_total{framing=\"line\"}"), Some(1.0));
    assert_eq!(server.metric("playground_tcp_framing_total{framing=\"packet\"}"), Some(1.0));

    server.signal("TERM");
    assert_eq!(line.read_line().as_deref(), Some("reconnect"));
    assert_eq!(packet.read_within(REPLY_WAIT).as_deref(), Some("reconnect"));
    assert!(server.wait_exit(Duration::from_secs(15)).success());
}

/// A line whose first segments arrive apart, each within the grace period of
/// the one before (but all of them together longer than it), is a line.
#[test]
fn a_first_line_split_over_segments_is_never_taken_for_a_packet() {
    let server = Server::start("tcp", &[("FRAMING_GRACE", "300ms")]);
    let mut c = server.connect();
    c.stream.set_nodelay(true).unwrap();
    for segment in ["ms", "g:sp", "lit ", "li"] {
        c.stream.write_all(segment.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    c.send_raw(b"ne\n");
    assert_eq!(c.read_line().as_deref(), Some("split line"));
    // Line framing for the rest of the connection: pipelining works.
    c.send_raw(b"msg:a\nmsg:b\n");
    assert_eq!(c.read_line().as_deref(), Some("a"));
    assert_eq!(c.read_line().as_deref(), Some("b"));
    assert_eq!(server.metric("playground_tcp_framing_total{framing=\"line\"}"), Some(1.0));
    assert_eq!(server.metric("playground_tcp_framing_total{framing=\"packet\"}"), Some(0.0));
}

/// In the default `auto` mode the framing is per connection; `line` and
/// `packet` force one for every connection.
#[test]
fn framing_modes() {
    let auto = Server::start("tcp", &[]);
    let mut p = PacketClient::connect(auto.port);
    let token = p.ask("login");
    assert_eq!(token.len(), 36, "{token:?}");
    // Every read is one whole command, however many came before and
    // however long they were (up to BUFF_SIZE).
    for i in 0..60 {
        let content = format!("{i}-{}", "x".repeat(i * 37 % 500));
        assert_eq!(p.ask(&format!("msg:{content}")), content);
    }
    let mut l = auto.connect();
    assert_eq!(l.ask("msg:line"), "line");
    // A connection that has sent nothing gets pushed lines as it always did.
    let mut listener = auto.connect();
    // Its handler subscribes to broadcasts when it starts: wait for it.
    while auto.metric("playground_tcp_connections") != Some(3.0) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(p.ask(&format!("brd:{token}:pushed")), "pushed");
    assert_eq!(listener.read_line().as_deref(), Some("pushed"));
    assert_eq!(l.read_line().as_deref(), Some("pushed"));

    let line = Server::start("tcp", &[("TCP_FRAMING", "line")]);
    let mut c = PacketClient::connect(line.port);
    c.send("msg:waits for its line end");
    assert_eq!(c.read_within(SILENCE), None);
    assert_eq!(c.ask("\n"), "waits for its line end\n");

    let packet = Server::start("tcp", &[("TCP_FRAMING", "packet")]);
    let mut c = PacketClient::connect(packet.port);
    assert_eq!(c.ask("msg:at once\n"), "at once");
    let mut nc = Client::connect(packet.port);
    nc.send_raw(b"msg:no line end either");
    nc.read_timeout(REPLY_WAIT);
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut nc.stream, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"no line end either");
}

/// Broadcasts cross the bus in the original's record format both ways: what
/// playground publishes is keyed by the sender's address with the message as
/// value, and what an original instance publishes reaches playground's
/// clients, so a mixed fleet shares one topic.
#[test]
fn broadcasts_on_kafka_are_the_originals_records() {
    let Some(services) = memcached_and_kafka() else { return };
    let topic = unique("original-records");
    let server = start("tcp", &services, &topic);
    let mut packet = PacketClient::connect(server.port);
    let t = packet.ask("login");
    let sent = broadcast(&mut packet, &t, "from playground");
    assert_eq!(sent, "from playground");
    let records = kafka_records(&services.2, &topic);
    let sender = packet.local_addr().to_string();
    assert!(
        records.iter().any(|(k, v)| k == sender.as_bytes() && v.starts_with(b"from playground")),
        "no record keyed {sender}: {records:?}"
    );

    let mut line = server.connect();
    assert_eq!(line.ask("msg:listening"), "listening");
    publish_like_the_original(&services.2, &topic, "10.1.2.3:45678", "from the original");
    assert_eq!(packet.read_within(REPLY_WAIT).as_deref(), Some("from the original"));
    assert_eq!(line.read_line().as_deref(), Some("from the original"));
}
