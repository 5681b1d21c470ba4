//! Command-line and environment configuration. Every option is a flag and an
//! environment variable with the names of the original system; `--help`
//! shows each with its default. An invalid value stops start-up with clap's
//! message, which names the option by its variable (e.g. `<IDLE_TIMEOUT>`).

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::load::LoadArgs;
use crate::tcp::FramingMode;

/// Serve huge numbers of TCP connections and UDP packets across many
/// instances, with shared state in memcached and broadcasts over Kafka.
#[derive(Debug, Parser)]
#[command(name = "playground", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The roles of the one binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the TCP server (login, msg, mcset, mcget, brd; pushed broadcasts).
    Tcp(TcpArgs),
    /// Run the UDP server (msg, mcset, mcget; one datagram per command).
    Udp(UdpArgs),
    /// Run every server in one process, sharing one cache and one bus: the
    /// quickest way to try playground on one machine.
    Serve(ServeArgs),
    /// Generate load against a server and report what happened.
    Load(LoadArgs),
    /// Index the log topic into Elasticsearch/OpenSearch (nothing lost, nothing duplicated).
    Logger(Box<crate::logger::config::LoggerArgs>),
}

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
    #[command(flatten)]
    pub backends: BackendOptions,
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
    #[command(flatten)]
    pub backends: BackendOptions,
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
    #[command(flatten)]
    pub backends: BackendOptions,
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
    /// Maximum simultaneous TCP connections; beyond it clients get `error: server full`.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Broadcast lines a client may fall behind before it is disconnected as too slow.
    #[arg(long, env = "CLIENT_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub client_queue: u32,
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
}

/// Options of the UDP server (BUFF_SIZE and BIND_ADDRESS are declared by each
/// role, because `serve` shares them with the TCP server).
#[derive(Debug, Clone, Args)]
pub struct UdpOptions {
    /// Sockets bound to the UDP port with SO_REUSEPORT, each with its own
    /// receive loop, so the kernel spreads datagrams over cores; 0 means one
    /// per CPU core.
    #[arg(long, env = "UDP_SOCKETS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
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
}

/// Options every server role shares.
#[derive(Debug, Clone, Args)]
pub struct CommonOptions {
    /// Port of the admin HTTP server (/healthz, /readyz, /metrics).
    #[arg(long, env = "ADMIN_PORT", default_value_t = 8080)]
    pub admin_port: u16,
    /// Address to bind the admin HTTP server to.
    #[arg(long, env = "ADMIN_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub admin_bind_address: IpAddr,
    /// Seconds to keep serving after SIGTERM/SIGINT before clients are told to reconnect.
    #[arg(long, env = "SIGTERM_TIMEOUT", default_value = "20", value_parser = parse_duration)]
    pub sigterm_timeout: Duration,
    /// Instance name in logs [default: the host name].
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Log filter (`info`, `debug`, `playground=debug,info`, ...).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format on standard output.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl CommonOptions {
    /// The instance name: POD_NAME, else the host name.
    pub fn instance_name(&self) -> String {
        self.pod_name.clone().unwrap_or_else(host_name)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the cache and the bus live.
#[derive(Debug, Clone, Args)]
pub struct BackendOptions {
    /// Entries the embedded cache holds (used when MEMCACHED_SERVICE is unset).
    #[arg(long, env = "CACHE_CAPACITY", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_capacity: u64,
    #[command(flatten)]
    pub memcached: MemcachedOptions,
    #[command(flatten)]
    pub kafka: KafkaOptions,
    /// Log events queued for shipping to Kafka before new ones are dropped (and counted).
    #[arg(long, env = "LOG_SHIP_QUEUE", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub log_ship_queue: u32,
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
    /// Connections kept open to each memcached node.
    #[arg(long, env = "MEMCACHED_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub memcached_pool_size: u32,
    /// Time limit for one memcached operation (connecting included).
    #[arg(long, env = "MEMCACHED_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub memcached_timeout: Duration,
    /// How often MEMCACHED_SERVICE is resolved again to follow nodes coming and going.
    #[arg(long, env = "MEMCACHED_RESOLVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub memcached_resolve_interval: Duration,
}

/// How to reach Kafka: the same variables configure every role.
#[derive(Debug, Clone, Args)]
pub struct KafkaConnection {
    /// Comma-separated Kafka bootstrap brokers (`host:port,...`). Servers: unset
    /// means the embedded bus and no log shipping. Logger: defaults to localhost:9092.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Kafka security protocol [default: sasl_plaintext when KAFKA_SASL_USER is set, else plaintext].
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", value_enum, ignore_case = true)]
    pub kafka_security_protocol: Option<KafkaSecurity>,
    /// SASL mechanism, used with sasl_plaintext and sasl_ssl.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_enum, ignore_case = true, default_value_t = SaslMechanism::Plain)]
    pub kafka_sasl_mechanism: SaslMechanism,
    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USER")]
    pub kafka_sasl_user: Option<String>,
    /// SASL password (prefer the environment or a Kubernetes Secret to the flag).
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,
    /// PEM file of the CA that signed the brokers' certificates (ssl, sasl_ssl)
    /// [default: the system's trust store].
    #[arg(long, env = "KAFKA_SSL_CA_FILE")]
    pub kafka_ssl_ca_file: Option<std::path::PathBuf>,
}

impl KafkaConnection {
    /// The protocol in effect (see the option's default).
    pub fn security_protocol(&self) -> KafkaSecurity {
        self.kafka_security_protocol.unwrap_or(if self.kafka_sasl_user.is_some() {
            KafkaSecurity::SaslPlaintext
        } else {
            KafkaSecurity::Plaintext
        })
    }
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
}

/// Kafka security protocols (librdkafka's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum KafkaSecurity {
    Plaintext,
    SaslPlaintext,
    Ssl,
    SaslSsl,
}

impl KafkaSecurity {
    /// librdkafka's spelling.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            KafkaSecurity::Plaintext => "plaintext",
            KafkaSecurity::SaslPlaintext => "sasl_plaintext",
            KafkaSecurity::Ssl => "ssl",
            KafkaSecurity::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the protocol authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, KafkaSecurity::SaslPlaintext | KafkaSecurity::SaslSsl)
    }
}

/// SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's spelling.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The host name, for POD_NAME's default.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "playground".into())
}

/// Parses a duration: plain seconds (`20`, `0.5`) or with a unit (`250ms`, `10m`, `1h 5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{e}"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected seconds or a duration like 250ms, 30s, 10m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15ms"), Ok(Duration::from_millis(15)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn defaults_and_invalid_values() {
        let cli = Cli::try_parse_from(["playground", "tcp"]).unwrap();
        let Command::Tcp(args) = cli.command else { panic!() };
        assert_eq!(args.port, 40000);
        assert_eq!(args.tcp.buff_size, 512);
        assert_eq!(args.tcp.idle_timeout, Duration::from_secs(600));
        assert_eq!(args.common.sigterm_timeout, Duration::from_secs(20));
        let err = Cli::try_parse_from(["playground", "tcp", "--idle-timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("IDLE_TIMEOUT"), "{err}");
        let err = Cli::try_parse_from(["playground", "tcp", "--port", "70000"]).unwrap_err();
        assert!(err.to_string().contains("PORT"), "{err}");
    }

    #[test]
    fn udp_defaults_and_switches() {
        let cli = Cli::try_parse_from(["playground", "udp"]).unwrap();
        let Command::Udp(args) = cli.command else { panic!() };
        assert_eq!(args.port, 50000);
        assert_eq!(args.buff_size, 512);
        assert_eq!(args.udp.workers, 64);
        assert_eq!(args.udp.udp_sockets, 0);
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
