//! Command-line and environment configuration. Every option is a flag and an
//! environment variable with the names of the original system; `--help`
//! shows each with its default. An invalid value stops start-up with clap's
//! message, which names the option by its variable (e.g. `<IDLE_TIMEOUT>`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
pub use playground_common::kafka::KafkaConnection;
use playground_common::{ProcessOptions, parse_duration};

pub use crate::runtime::RuntimeMode;

/// `playground tcp`.
#[derive(Debug, Args)]
pub struct TcpArgs {
    /// TCP port to listen on.
    #[arg(long, env = "PORT", default_value_t = 40000)]
    pub port: u16,
    #[command(flatten)]
    pub tcp: TcpOptions,
    #[command(flatten)]
    pub common: CommonOptions,
}

/// `playground udp`.
#[derive(Debug, Args)]
pub struct UdpArgs {
    /// UDP port to listen on.
    #[arg(long, env = "PORT", default_value_t = 50000)]
    pub port: u16,
    /// Maximum command length in bytes; longer datagrams are dropped and counted.
    #[arg(long, env = "BUFF_SIZE", default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=65_507))]
    pub buff_size: u32,
    /// Address to bind the UDP sockets to.
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    #[command(flatten)]
    pub udp: UdpOptions,
    #[command(flatten)]
    pub common: CommonOptions,
}

/// `playground serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TCP port to listen on.
    #[arg(long, env = "TCP_PORT", default_value_t = 40000)]
    pub tcp_port: u16,
    /// UDP port to listen on (BUFF_SIZE and BIND_ADDRESS apply to it too).
    #[arg(long, env = "UDP_PORT", default_value_t = 50000)]
    pub udp_port: u16,
    #[command(flatten)]
    pub tcp: TcpOptions,
    #[command(flatten)]
    pub udp: UdpOptions,
    #[command(flatten)]
    pub common: CommonOptions,
}

/// Options of the TCP server.
#[derive(Debug, Clone, Args)]
pub struct TcpOptions {
    /// Maximum command length in bytes; longer lines get `error: line too long`.
    #[arg(long, env = "BUFF_SIZE", default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    pub buff_size: u32,
    /// TCP framing: `line` (one command per `\n`-terminated line), `packet`
    /// (the original's: each read is one command, replies have no line
    /// ending), or `auto` (each connection's first command decides).
    #[arg(long, env = "TCP_FRAMING", value_enum, default_value_t = FramingMode::Auto)]
    pub tcp_framing: FramingMode,
    /// In `auto` framing, how long bytes without a line ending may wait for
    /// the rest of their line before the connection is taken for a packet
    /// client (restarted by every segment that arrives).
    #[arg(long, env = "FRAMING_GRACE", default_value = "10ms", value_parser = parse_duration)]
    pub framing_grace: Duration,
    /// Disconnect a client after this long without a command (e.g. `600`, `10m`).
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// In line framing, time a line has from its first byte to its `\n`;
    /// a client that has not finished it by then gets `error: line timeout`
    /// and is disconnected (a slowloris cannot hold a connection with a line
    /// that never ends).
    #[arg(long, env = "LINE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub line_timeout: Duration,
    /// Maximum simultaneous TCP connections; beyond it clients get `error: server full`.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Broadcast lines a client may fall behind before it is disconnected as too slow.
    #[arg(long, env = "CLIENT_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub client_queue: u32,
    /// Commands per second one connection may run (a token bucket per
    /// connection); beyond it a command gets `error: rate limited` and is
    /// not executed. 0: no limit.
    #[arg(long, env = "COMMAND_RATE", default_value_t = 0)]
    pub command_rate: u32,
    /// Commands one connection may run at once before COMMAND_RATE applies.
    #[arg(long, env = "COMMAND_BURST", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub command_burst: u32,
    /// Broadcasts (`brd`) per second one connection may publish; beyond it
    /// `brd` gets `error: rate limited` and nothing is published. 0: no limit.
    #[arg(long, env = "BRD_RATE", default_value_t = 0)]
    pub brd_rate: u32,
    /// Broadcasts one connection may publish at once before BRD_RATE applies.
    #[arg(long, env = "BRD_BURST", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub brd_burst: u32,
    /// Disconnect a client whose socket accepts no data for this long.
    #[arg(long, env = "WRITE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// After sending `reconnect` at shutdown, wait this long for clients to leave.
    #[arg(long, env = "RECONNECT_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub reconnect_grace: Duration,
    /// Listen backlog: connections the kernel queues before they are accepted.
    #[arg(long, env = "LISTEN_BACKLOG", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub listen_backlog: u32,
    /// Address to bind the client listeners to.
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    #[command(flatten)]
    pub tls: TlsOptions,
}

/// TLS on the TCP listener (docs/security.md): off unless TLS_CERT is set.
#[derive(Debug, Clone, Args)]
pub struct TlsOptions {
    /// PEM certificate chain (leaf first) for TLS on the TCP listener; unset:
    /// plain TCP. Read again when it changes.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of TLS_CERT (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often TLS_CERT and TLS_KEY are checked for changes (modification
    /// time and size) and reloaded.
    #[arg(long, env = "TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_positive_duration)]
    pub tls_reload_interval: Duration,
    /// Time a client has to complete the TLS handshake after connecting.
    #[arg(long, env = "TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub tls_handshake_timeout: Duration,
}

/// A duration that must not be zero (a period or a time limit).
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        Duration::ZERO => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

/// The framing a connection uses, or `Auto` to let its first command decide
/// (the TCP server's codec module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FramingMode {
    /// Line if the first command ends with `\n`, packet if it arrives without
    /// one and nothing follows within FRAMING_GRACE.
    Auto,
    /// Every connection uses line framing.
    Line,
    /// Every connection uses the original's packet framing.
    Packet,
}

/// Options of the UDP server (BUFF_SIZE and BIND_ADDRESS are declared by each
/// role, because `serve` shares them with the TCP server).
#[derive(Debug, Clone, Args)]
pub struct UdpOptions {
    /// Sockets bound to the UDP port with SO_REUSEPORT, each with its own
    /// receive loop and its share of the workers; 0 means one per CPU core.
    /// One by default: the kernel hashes flows over the sockets unevenly and
    /// one socket's workers cannot help another's, which doubled the p99
    /// latency at 64 flows (BENCHMARKS.md). More spread receiving over cores
    /// when one receive loop is the limit. RUNTIME=per-core uses at least one
    /// per runtime.
    #[arg(long, env = "UDP_SOCKETS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub udp_sockets: u32,
    /// Commands handled at once; a command that waits for the cache keeps its
    /// worker busy until it is answered.
    #[arg(long, env = "WORKERS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub workers: u32,
    /// Datagrams that may wait for a free worker when all are busy; beyond it
    /// datagrams are dropped and counted (reason `overload`).
    #[arg(long, env = "UDP_QUEUE", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub udp_queue: u32,
    /// Also require the IP a token was issued to (by `login` over TCP) to be
    /// the datagram's source IP; by default the token only has to exist.
    #[arg(
        long,
        env = "UDP_CHECK_IP",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub udp_check_ip: bool,
    /// Datagrams received per system call (recvmmsg) and replies sent
    /// together (sendmmsg), on Linux; 1 means one recv_from/send_to each.
    #[arg(long, env = "UDP_BATCH", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub udp_batch: u32,
    /// Receive and send buffer asked of the kernel per socket, in bytes (it
    /// absorbs bursts; Linux caps it at net.core.rmem_max / wmem_max).
    #[arg(long, env = "UDP_SOCKET_BUFFER", default_value_t = 4 << 20, value_parser = clap::value_parser!(u32).range(4096..))]
    pub udp_socket_buffer: u32,
    /// Largest reply, on the wire (IP and UDP headers counted), as a multiple
    /// of its request; a larger reply is dropped and counted (reason
    /// `amplification`), so the server cannot be used to amplify traffic
    /// aimed at a spoofed source. The largest legitimate reply is 3.94 times
    /// its request (docs/udp.md).
    #[arg(long, env = "UDP_MAX_AMPLIFICATION", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub udp_max_amplification: u32,
    /// Replies per second one source IP may get (a token bucket per IP);
    /// beyond it datagrams are dropped and counted (reason `rate_limited`).
    /// 0: no limit (behind a load balancer that hides client IPs, every
    /// client would share one bucket).
    #[arg(long, env = "UDP_REPLY_RATE", default_value_t = 0)]
    pub udp_reply_rate: u32,
    /// Replies one source IP may get at once before UDP_REPLY_RATE applies
    /// (the bucket's size).
    #[arg(long, env = "UDP_REPLY_BURST", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub udp_reply_burst: u32,
}

/// Options every server role shares: the process's, how long it keeps
/// serving once told to stop, its scheduling and its backends.
#[derive(Debug, Clone, Args)]
pub struct CommonOptions {
    #[command(flatten)]
    pub process: ProcessOptions,
    /// Seconds to keep serving after SIGTERM/SIGINT before clients are told to reconnect.
    #[arg(long, env = "SIGTERM_TIMEOUT", default_value = "20", value_parser = parse_duration)]
    pub sigterm_timeout: Duration,
    /// Scheduling: `multi` (one multi-thread runtime) or `per-core` (one
    /// current-thread runtime per core, each with its own listener on the
    /// shared port; a shorter TCP echo tail, but no work stealing: see
    /// docs/performance.md before choosing it).
    #[arg(long, env = "RUNTIME", value_enum, default_value_t = RuntimeMode::Multi)]
    pub runtime: RuntimeMode,
    #[command(flatten)]
    pub backends: BackendOptions,
}

/// Where the cache and the bus live.
#[derive(Debug, Clone, Args)]
pub struct BackendOptions {
    /// Entries the embedded cache holds (used when MEMCACHED_SERVICE is unset).
    #[arg(long, env = "CACHE_CAPACITY", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_capacity: u64,
    /// How long a token issued by `login` stays valid (at most 30 days,
    /// memcached's limit for a relative time to live).
    #[arg(long, env = "TOKEN_TTL", default_value = "20m", value_parser = parse_token_ttl)]
    pub token_ttl: Duration,
    #[command(flatten)]
    pub memcached: MemcachedOptions,
    #[command(flatten)]
    pub kafka: KafkaOptions,
    /// Log events queued for shipping to Kafka before new ones are dropped (and counted).
    #[arg(long, env = "LOG_SHIP_QUEUE", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub log_ship_queue: u32,
}

/// A token's time to live: a duration of 1 s to 30 days.
fn parse_token_ttl(s: &str) -> Result<Duration, String> {
    let ttl = parse_duration(s)?;
    let range = Duration::from_secs(1)..=Duration::from_secs(30 * 24 * 3600);
    if range.contains(&ttl) { Ok(ttl) } else { Err("a token must live between 1s and 30 days".into()) }
}

/// The memcached cache, shared by every instance.
#[derive(Debug, Clone, Args)]
pub struct MemcachedOptions {
    /// memcached host name; every address it resolves to is a cache node
    /// (a headless Kubernetes service gives every pod). Unset: embedded cache.
    #[arg(long, env = "MEMCACHED_SERVICE")]
    pub memcached_service: Option<String>,
    /// memcached port.
    #[arg(long, env = "MEMCACHED_PORT", default_value_t = 11211)]
    pub memcached_port: u16,
    /// Connections kept open to each memcached node, used in turn; each
    /// carries many requests at once (pipelined), so a few are enough and
    /// fewer make larger batches.
    #[arg(long, env = "MEMCACHED_POOL_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub memcached_pool_size: u32,
    /// Requests that may queue to be written on one memcached connection, and
    /// as many written and awaiting their reply; more wait for room (which
    /// comes, or the connection times out and they fail).
    #[arg(long, env = "MEMCACHED_MAX_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub memcached_max_in_flight: u32,
    /// Time memcached has to answer a request once it is written (and to
    /// accept a connection). A connection whose oldest request goes
    /// unanswered that long is closed, and every request on it fails. Time
    /// spent waiting to be written, or for a busy server to read a reply
    /// that came in time, does not count.
    #[arg(long, env = "MEMCACHED_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub memcached_timeout: Duration,
    /// How often MEMCACHED_SERVICE is resolved again to follow nodes coming and going.
    #[arg(long, env = "MEMCACHED_RESOLVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub memcached_resolve_interval: Duration,
}

/// Kafka for the servers: broadcasts between instances and log shipping.
#[derive(Debug, Clone, Args)]
pub struct KafkaOptions {
    #[command(flatten)]
    pub connection: KafkaConnection,
    /// Topic carrying broadcasts between instances.
    #[arg(long, env = "KAFKA_BCAST_TOPIC", default_value = "broadcasts")]
    pub kafka_bcast_topic: String,
    /// Topic every instance ships its log events to.
    #[arg(long, env = "KAFKA_LOGGING_TOPIC", default_value = "general-logs")]
    pub kafka_logging_topic: String,
    /// Time limit for Kafka to acknowledge a broadcast before `brd` fails.
    #[arg(long, env = "KAFKA_PUBLISH_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub kafka_publish_timeout: Duration,
    /// At start, how long to wait for the broadcast producer and consumer to
    /// be ready before serving anyway (broadcasts then start once Kafka answers).
    #[arg(long, env = "KAFKA_READY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub kafka_ready_timeout: Duration,
    /// Longest time the broker holds an idle broadcast fetch; a broadcast is
    /// answered at once regardless, so this only sets how often an idle
    /// instance asks again.
    #[arg(long, env = "KAFKA_FETCH_WAIT", default_value = "500ms", value_parser = parse_duration)]
    pub kafka_fetch_wait: Duration,
}

#[cfg(test)]
impl TcpOptions {
    /// The options of `playground tcp ARGS` (for tests).
    pub(crate) fn from_args(args: &[&str]) -> TcpOptions {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            tcp: TcpOptions,
        }
        <Cli as clap::Parser>::try_parse_from(["tcp"].iter().chain(args)).unwrap().tcp
    }
}

#[cfg(test)]
mod tests {
    use clap::{Parser, Subcommand};

    use super::*;

    /// The server roles as the binary's command line offers them.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, Subcommand)]
    enum Command {
        Tcp(TcpArgs),
        Udp(UdpArgs),
        Serve(ServeArgs),
    }

    #[test]
    fn defaults_and_invalid_values() {
        let cli = Cli::try_parse_from(["playground", "tcp"]).unwrap();
        let Command::Tcp(args) = cli.command else { panic!() };
        assert_eq!(args.port, 40000);
        assert_eq!(args.tcp.buff_size, 512);
        assert_eq!(args.tcp.idle_timeout, Duration::from_secs(600));
        assert_eq!(args.tcp.line_timeout, Duration::from_secs(30));
        assert_eq!(args.common.sigterm_timeout, Duration::from_secs(20));
        let err = Cli::try_parse_from(["playground", "tcp", "--idle-timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("IDLE_TIMEOUT"), "{err}");
        let err = Cli::try_parse_from(["playground", "tcp", "--port", "70000"]).unwrap_err();
        assert!(err.to_string().contains("PORT"), "{err}");
        assert_eq!(args.tcp.tls.tls_cert, None);
        let err = Cli::try_parse_from(["playground", "tcp", "--tls-cert", "c.pem"]).unwrap_err();
        assert!(err.to_string().contains("TLS_KEY"), "{err}");
        let err = Cli::try_parse_from(["playground", "tcp", "--tls-reload-interval", "0"]).unwrap_err();
        assert!(err.to_string().contains("TLS_RELOAD_INTERVAL"), "{err}");
    }

    #[test]
    fn udp_defaults_and_switches() {
        let cli = Cli::try_parse_from(["playground", "udp"]).unwrap();
        let Command::Udp(args) = cli.command else { panic!() };
        assert_eq!(args.port, 50000);
        assert_eq!(args.buff_size, 512);
        assert_eq!(args.udp.workers, 64);
        assert_eq!(args.udp.udp_sockets, 1);
        assert_eq!(args.udp.udp_batch, 32);
        assert!(!args.udp.udp_check_ip);
        for (flag, want) in
            [(&["--udp-check-ip"][..], true), (&["--udp-check-ip", "yes"], true), (&["--udp-check-ip", "0"], false)]
        {
            let cli = Cli::try_parse_from(["playground", "udp"].iter().chain(flag)).unwrap();
            let Command::Udp(args) = cli.command else { panic!() };
            assert_eq!(args.udp.udp_check_ip, want, "{flag:?}");
        }
        let err = Cli::try_parse_from(["playground", "udp", "--workers", "0"]).unwrap_err();
        assert!(err.to_string().contains("WORKERS"), "{err}");
        let err = Cli::try_parse_from(["playground", "udp", "--udp-check-ip", "perhaps"]).unwrap_err();
        assert!(err.to_string().contains("UDP_CHECK_IP"), "{err}");
        let cli = Cli::try_parse_from(["playground", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!() };
        assert_eq!((args.tcp_port, args.udp_port), (40000, 50000));
    }
}
