//! The command line of `playground load`. The original client's positional
//! form (`tcp 10000 127.0.0.1 40000`: protocol, connections, host, port)
//! still names what to load; everything else is a flag with the original's
//! value as its default; the values are checked by the parsers in
//! [`super::parse`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use playground_common::parse_duration;

use super::framing::Framing;
use super::parse::{parse_broadcasters, parse_mix, parse_payload, parse_rate, parse_source_ips};
use super::stages::{Stage, parse_stage};
use super::threshold::{Threshold, parse_threshold};

/// Transport to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// TCP connections.
    Tcp,
    /// UDP flows: one socket each, one request per datagram. Cache clients
    /// log in over TCP (`--tcp-port`), since `login` exists only there.
    Udp,
}

impl Protocol {
    /// The server's default port for this transport.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Tcp => 40000,
            Protocol::Udp => 50000,
        }
    }
}

/// What the clients do (`--scenario`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioKind {
    /// Send `msg:` and check the echo.
    Echo,
    /// Log in, then `mcset`/`mcget` random keys and check the values read back.
    Cache,
    /// Log in; some clients broadcast (`--broadcasters`), every client measures
    /// delivery latency and counts what it received. TCP only.
    Broadcast,
    /// A weighted mix of the other scenarios, per client (`--mix`).
    Mix,
    /// Hold the connection open without sending (memory and idle-CPU tests);
    /// `reconnect` is still followed.
    Idle,
}

/// One part of a `--mix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixPart {
    Echo,
    Cache,
    Broadcast,
    Idle,
}

/// `--mix echo=70,cache=20,broadcast=10`: each client is given one scenario,
/// in these proportions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(pub Vec<(MixPart, u32)>);

impl Default for Mix {
    fn default() -> Self {
        Mix(vec![(MixPart::Echo, 70), (MixPart::Cache, 20), (MixPart::Broadcast, 10)])
    }
}

/// How many of the broadcast clients send (`--broadcasters 3` or `10%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Broadcasters {
    Count(u32),
    Percent(f64),
}

impl Broadcasters {
    /// How many of `clients` broadcast clients send; a non-zero share is at
    /// least one client.
    pub fn of(self, clients: u32) -> u32 {
        match self {
            Broadcasters::Count(n) => n.min(clients),
            Broadcasters::Percent(p) => ((clients as f64 * p / 100.0).ceil() as u32).min(clients),
        }
    }
}

/// Local addresses to open connections from, used round-robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIps(pub Vec<IpAddr>);

/// How progress is shown while the load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A live line when stdout and stderr are terminals, plain lines otherwise.
    Auto,
    /// Always the live line.
    Bar,
    /// Periodic plain lines on stderr (`--progress-interval`).
    Plain,
    /// Nothing until the report.
    Off,
}

/// `playground load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Protocol to load.
    #[arg(value_enum)]
    pub protocol: Protocol,
    /// Number of clients (connections, or UDP flows, open at the same time).
    #[arg(default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub connections: u32,
    /// Server host name or address. Several targets separated by commas
    /// (`tcp-a,tcp-b:40001`) are used round-robin, one per client.
    #[arg(default_value = "127.0.0.1")]
    pub host: String,
    /// Server port for targets that name none [default: 40000 for tcp, 50000 for udp].
    pub port: Option<u16>,
    /// With udp: the server's TCP port, where cache clients log in (same host
    /// as their target) [default: 40000].
    #[arg(long)]
    pub tcp_port: Option<u16>,
    /// How requests and replies are delimited over TCP: `packet` drives an
    /// original server exactly as the original client did.
    ///
    /// `line`: each request ends in `\n`, replies are read line by line.
    /// `packet`, the original's framing: requests carry no line ending and
    /// each read is taken as one reply or pushed message (two server writes
    /// that arrive together are counted as a wrong reply and, when it shows,
    /// a merged read). Requests go one at a time either way: with packet
    /// framing, requests written together (pipelined) would reach the server
    /// as one command, so broadcast senders, which write `brd` with a `msg:`
    /// probe, are refused. UDP datagrams carry no line ending either way; the
    /// framing applies to the TCP login of UDP cache clients.
    #[arg(long, env = "LOAD_FRAMING", value_enum, default_value_t = Framing::Line)]
    pub framing: Framing,
    /// What the clients do.
    #[arg(long, value_enum, default_value_t = ScenarioKind::Echo)]
    pub scenario: ScenarioKind,
    /// Weights of `--scenario mix`, e.g. `echo=70,cache=20,broadcast=10` (given alone, it implies mix).
    #[arg(long, value_parser = parse_mix)]
    pub mix: Option<Mix>,
    /// How many broadcast clients send `brd` (the others only listen): a count or a share like `10%`.
    #[arg(long, default_value = "1", value_parser = parse_broadcasters)]
    pub broadcasters: Broadcasters,
    /// Broadcasters send together, all in the same instant of each
    /// `--msg-interval` (a burst: the worst case for fan-out), instead of
    /// spread evenly over it as independent senders would be.
    #[arg(long)]
    pub in_step: bool,
    /// Time between opening two connections.
    #[arg(long, default_value = "15ms", value_parser = parse_duration)]
    pub conn_interval: Duration,
    /// Time between two messages on one connection; 0 sends the next message
    /// as soon as the reply to the previous one arrives.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub msg_interval: Duration,
    /// Total messages per second over all connections, instead of --msg-interval.
    /// With --stage, the rate the first stage ramps from.
    #[arg(long, value_parser = parse_rate, conflicts_with = "msg_interval")]
    pub rate: Option<f64>,
    /// A ramp stage, repeatable: `DURATION:NNNconn:NNNrps` moves the open
    /// connections and the total rate in a straight line to these targets
    /// over DURATION (e.g. `--stage 30s:1000conn:5000rps --stage 1m:1000conn
    /// --stage 10s:0conn:0rps`). A stage without `conn` or `rps` holds the
    /// previous target; connections start at 0, the rate at --rate or 0. With
    /// connection stages, clients live until ramped down or the end of the
    /// stages (--alive and --conn-interval do not apply); the run lasts as
    /// long as the stages.
    #[arg(long = "stage", value_name = "STAGE", value_parser = parse_stage)]
    pub stages: Vec<Stage>,
    /// Leave the first DURATION of the run out of the results (totals,
    /// latencies, rates, thresholds); the timeline still shows it, marked.
    #[arg(long, env = "LOAD_WARMUP", default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Requests in flight at once on each TCP connection, each in its own
    /// send slot (1: wait for each reply, as the original client did).
    #[arg(long, env = "LOAD_PIPELINE", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub pipeline: u32,
    /// A pass/fail check of the results, repeatable, as k6's thresholds:
    /// `p99<50ms`, `p99.9<=200ms`, `max<1s`, `mean<5ms`, `uncorrected.p99<10ms`,
    /// `delivery.p99<100ms`, `errors<0.1%`, `timeouts==0`, `rate>40000`,
    /// `sent_rate>=1000`. A crossed threshold is named and the exit code is 99.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = parse_threshold)]
    pub thresholds: Vec<Threshold>,
    /// How long each connection is kept open.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub alive: Duration,
    /// How long to wait for a reply before counting a timeout.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub read_timeout: Duration,
    /// Stop the whole run after this long, whatever is still open.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Content of each `msg:` (a client number and a sequence number are appended).
    #[arg(long, default_value = "12345", value_parser = parse_payload)]
    pub payload: String,
    /// Delay before reconnecting after `reconnect` or a lost connection.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub reconnect_delay: Duration,
    /// Give up a connection attempt after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Keys each cache client writes and reads back.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub keys: u32,
    /// Bytes of each value the cache clients write.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub value_size: u16,
    /// Broadcasts sent in this last stretch before a client leaves are not
    /// expected to reach it: they may still be on their way.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Local addresses to connect from, round-robin, to pass one address's
    /// ephemeral-port limit: a range `127.0.0.2-127.0.0.50`, a list, or both.
    #[arg(long, value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,
    /// Threads driving the connections [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// How progress is shown while the load runs.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Time between two plain progress lines.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub progress_interval: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also draw the run over time (connections, messages/s, p99 latency,
    /// errors, reconnects) as a PNG picture in this file.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Seed of the random keys and values, to repeat a run exactly.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl LoadArgs {
    /// The scenario actually run: `--mix` alone implies `mix`.
    pub fn scenario(&self) -> ScenarioKind {
        if self.mix.is_some() { ScenarioKind::Mix } else { self.scenario }
    }

    /// The TCP port UDP cache clients log in on.
    pub fn login_port(&self) -> u16 {
        self.tcp_port.unwrap_or(Protocol::Tcp.default_port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn parse(args: &[&str]) -> Result<LoadArgs, clap::Error> {
        crate::Cli::parse_args(args)
    }

    #[test]
    fn the_original_positional_form_and_its_defaults() {
        let a = parse(&["tcp", "10000", "127.0.0.1", "40000"]).unwrap();
        assert_eq!(a.protocol, Protocol::Tcp);
        assert_eq!(a.connections, 10000);
        assert_eq!(a.host, "127.0.0.1");
        assert_eq!(a.port, Some(40000));
        assert_eq!(a.conn_interval, Duration::from_millis(15));
        assert_eq!(a.msg_interval, Duration::from_millis(250));
        assert_eq!(a.alive, Duration::from_secs(60));
        assert_eq!(a.read_timeout, Duration::from_millis(50));
        assert_eq!(a.reconnect_delay, Duration::from_secs(1));
        assert_eq!(a.scenario(), ScenarioKind::Echo);
        assert_eq!(a.rate, None);
        let short = parse(&["tcp"]).unwrap();
        assert_eq!((short.connections, short.host.as_str(), short.port), (1, "127.0.0.1", None));
        let udp = parse(&["udp", "64", "127.0.0.1", "50000", "--scenario", "cache", "--tcp-port", "40001"]).unwrap();
        assert_eq!((udp.protocol, udp.connections, udp.port), (Protocol::Udp, 64, Some(50000)));
        assert_eq!((udp.protocol.default_port(), udp.login_port()), (50000, 40001));
        assert_eq!(parse(&["udp"]).unwrap().login_port(), 40000);
    }

    #[test]
    fn packet_framing_with_the_original_positional_form() {
        let a = parse(&["tcp", "10000", "127.0.0.1", "40000", "--framing", "packet"]).unwrap();
        assert_eq!(
            (a.protocol, a.connections, a.host.as_str(), a.port),
            (Protocol::Tcp, 10000, "127.0.0.1", Some(40000))
        );
        assert_eq!(a.framing, Framing::Packet);
        assert_eq!(parse(&["--framing", "packet", "udp", "5"]).unwrap().framing, Framing::Packet);
        assert_eq!(parse(&["tcp", "10000", "127.0.0.1", "40000"]).unwrap().framing, Framing::Line);
        let err = parse(&["tcp", "--framing", "auto"]).unwrap_err().to_string();
        assert!(err.contains("possible values: line, packet"), "{err}");
    }

    #[test]
    fn flags() {
        let a = parse(&[
            "tcp",
            "10",
            "a,b:41000",
            "--rate",
            "5000",
            "--mix",
            "echo=1,broadcast=1",
            "--broadcasters",
            "10%",
            "--source-ips",
            "127.0.0.2-127.0.0.4,::1",
            "--alive",
            "2s",
            "--json",
            "r.json",
        ])
        .unwrap();
        assert_eq!(a.rate, Some(5000.0));
        assert_eq!(a.scenario(), ScenarioKind::Mix);
        assert_eq!(a.mix, Some(Mix(vec![(MixPart::Echo, 1), (MixPart::Broadcast, 1)])));
        assert_eq!(a.broadcasters, Broadcasters::Percent(10.0));
        assert_eq!(a.source_ips.unwrap().0.len(), 4);
        assert_eq!(a.alive, Duration::from_secs(2));
        assert_eq!(a.json, Some(PathBuf::from("r.json")));
        let b =
            parse(&["tcp", "--stage", "1s:5conn", "--stage", "2s:9rps", "--threshold", "p99<5ms", "--pipeline", "4"])
                .unwrap();
        assert_eq!((b.stages.len(), b.thresholds.len(), b.pipeline), (2, 1, 4));
        assert_eq!(b.warmup, Duration::ZERO);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let cases: &[(&[&str], &str)] = &[
            (&["udpx"], "invalid value"),
            (&["tcp", "0"], "connections"),
            (&["tcp", "-5"], "unexpected argument"),
            (&["tcp", "1", "h", "70000"], "PORT"),
            (&["tcp", "--msg-interval", "soon"], "expected seconds"),
            (&["tcp", "--rate", "0"], "not a rate"),
            (&["tcp", "--rate", "10", "--msg-interval", "1s"], "cannot be used with"),
            (&["tcp", "--mix", "echo=x"], "not a whole number"),
            (&["tcp", "--mix", "chat=1"], "unknown scenario"),
            (&["tcp", "--mix", "echo=0"], "add up to zero"),
            (&["tcp", "--mix", "echo=1,echo=2"], "twice"),
            (&["tcp", "--broadcasters", "150%"], "between 0% and 100%"),
            (&["tcp", "--broadcasters", "many"], "neither a count"),
            (&["tcp", "--source-ips", "127.0.0.9-127.0.0.2"], "ends before it starts"),
            (&["tcp", "--source-ips", "127.0.0.0-127.2.0.0"], "more than 65536"),
            (&["tcp", "--source-ips", "localhost"], "not an IP address"),
            (&["tcp", "--value-size", "300"], "value-size"),
            (&["tcp", "--payload", ""], "non-empty"),
            (&["udp", "--tcp-port", "http"], "tcp-port"),
            (&["tcp", "--threshold", "p99"], "has no comparison"),
            (&["tcp", "--threshold", "latency<5ms"], "unknown metric"),
            (&["tcp", "--stage", "10s"], "names no target"),
            (&["tcp", "--pipeline", "0"], "pipeline"),
            (&["tcp", "--warmup", "soon"], "expected seconds"),
        ];
        for (args, needle) in cases {
            let err = parse(args).expect_err(&format!("{args:?} should fail")).to_string();
            assert!(err.to_lowercase().contains(&needle.to_lowercase()), "{args:?}: {err}");
        }
    }

    #[test]
    fn broadcaster_shares() {
        assert_eq!(Broadcasters::Count(3).of(10), 3);
        assert_eq!(Broadcasters::Count(30).of(10), 10);
        assert_eq!(Broadcasters::Percent(10.0).of(95), 10);
        assert_eq!(Broadcasters::Percent(0.1).of(5), 1);
        assert_eq!(Broadcasters::Percent(0.0).of(5), 0);
    }
}
