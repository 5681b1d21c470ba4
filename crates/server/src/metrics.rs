//! Prometheus metrics. Names are a contract with the Helm chart's autoscaler
//! rules and dashboard (`deploy/metrics.txt` lists them with their HELP text).
//!
//! Handles are resolved once and kept in structs, so the request path never
//! looks a metric up by name. The counters bumped on every command, byte
//! count and broadcast delivery are [`Tally`]s, and the command latency
//! histogram a [`TallyHistogram`]: counted per thread, so that the cores do
//! not pass their cache lines back and forth on every reply.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use playground_common::metrics::LATENCY_BUCKETS;
use playground_common::tally::{Tally, TallyHistogram};
use playground_protocol::CommandKind;

/// The `command` label of lines that name no command.
const UNKNOWN: &str = "unknown";

/// Buckets of the servers' histograms not named `*duration_seconds`, for
/// the recorder (`playground_common::metrics::install`).
pub const BUCKETS: [(&str, &[f64]); 1] = [(
    "playground_broadcast_delay_seconds",
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
)];

/// Why a memcached operation failed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheFailure {
    /// MEMCACHED_TIMEOUT passed.
    Timeout,
    /// Any other failure: no node, no connection, a protocol error.
    Error,
}

/// memcached client metrics, per operation.
#[derive(Clone)]
pub struct MemcachedMetrics {
    /// `get`, then `set`.
    latency: [Histogram; 2],
    /// `[op][reason]`.
    errors: [[Counter; 2]; 2],
}

/// A memcached operation (the `op` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOp {
    Get = 0,
    Set = 1,
}

impl MemcachedMetrics {
    /// Resolves the handles.
    pub fn new() -> Self {
        let h = |op: &'static str| histogram!("playground_memcached_duration_seconds", "op" => op);
        let e = |op: &'static str| {
            [
                counter!("playground_memcached_errors_total", "op" => op, "reason" => "timeout"),
                counter!("playground_memcached_errors_total", "op" => op, "reason" => "error"),
            ]
        };
        MemcachedMetrics { latency: [h("get"), h("set")], errors: [e("get"), e("set")] }
    }

    /// Records one operation and its failure, if any.
    pub fn record(&self, op: CacheOp, elapsed: Duration, failure: Option<CacheFailure>) {
        self.latency[op as usize].record(elapsed.as_secs_f64());
        if let Some(f) = failure {
            self.errors[op as usize][f as usize].increment(1);
        }
    }
}

impl Default for MemcachedMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Kafka client metrics of the broadcast bus.
#[derive(Clone)]
pub struct KafkaMetrics {
    pub publish_latency: Histogram,
    /// Refused at once: the last probe found Kafka unreachable.
    pub publish_unreachable: Counter,
    /// Sent but not acknowledged (timeout, broker error).
    pub publish_error: Counter,
    pub consume_error: Counter,
    pub delay: Histogram,
}

impl KafkaMetrics {
    /// Resolves the handles.
    pub fn new() -> Self {
        let err = |op: &'static str, reason: &'static str| counter!("playground_kafka_errors_total", "op" => op, "reason" => reason);
        KafkaMetrics {
            publish_latency: histogram!("playground_kafka_publish_duration_seconds"),
            publish_unreachable: err("publish", "unreachable"),
            publish_error: err("publish", "error"),
            consume_error: err("consume", "error"),
            delay: histogram!("playground_broadcast_delay_seconds"),
        }
    }
}

impl Default for KafkaMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-transport command counters and latency histograms.
#[derive(Clone)]
pub struct CommandMetrics {
    ok: Vec<Tally>,
    error: Vec<Tally>,
    latency: Vec<TallyHistogram>,
}

impl CommandMetrics {
    /// Handles for `transport` (`tcp` or `udp`).
    pub fn new(transport: &'static str) -> Self {
        // One label per command kind, in `CommandKind::ALL` order, then `unknown`.
        let labels = || CommandKind::ALL.iter().map(|k| k.word()).chain([UNKNOWN]);
        let per = |outcome: &'static str| {
            labels()
                .map(|c| {
                    let labels = [("transport", transport), ("command", c), ("outcome", outcome)];
                    Tally::new("playground_commands_total", &labels)
                })
                .collect()
        };
        let latency = labels()
            .map(|c| {
                let labels = [("transport", transport), ("command", c)];
                TallyHistogram::new("playground_command_duration_seconds", &labels, &LATENCY_BUCKETS)
            })
            .collect();
        CommandMetrics { ok: per("ok"), error: per("error"), latency }
    }

    /// Records one command; `None` for a line that names no command.
    pub fn record(&self, kind: Option<CommandKind>, ok: bool, elapsed: Duration) {
        let i = kind.map_or(CommandKind::ALL.len(), CommandKind::index);
        if ok { &self.ok[i] } else { &self.error[i] }.increment(1);
        self.latency[i].record(elapsed);
    }
}

/// Token checks by where they were answered.
#[derive(Clone)]
pub struct TokenCheckMetrics {
    /// By the connection that was issued the token.
    pub connection: Counter,
    /// By a cache lookup.
    pub cache: Counter,
}

impl TokenCheckMetrics {
    /// Resolves the handles.
    pub fn new() -> Self {
        let by = |source: &'static str| counter!("playground_token_checks_total", "source" => source);
        TokenCheckMetrics { connection: by("connection"), cache: by("cache") }
    }
}

impl Default for TokenCheckMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters of the TCP server.
#[derive(Clone)]
pub struct TcpMetrics {
    pub connections: Gauge,
    pub accepted: Counter,
    pub rejected_full: Counter,
    pub idle_disconnects: Counter,
    pub slow_disconnects: Counter,
    pub line_timeout_disconnects: Counter,
    /// Commands refused by the connection's COMMAND_RATE.
    pub rate_limited_command: Counter,
    /// `brd` refused by the connection's BRD_RATE.
    pub rate_limited_brd: Counter,
    pub delivered: Tally,
    pub bytes_in: Tally,
    pub bytes_out: Tally,
    pub framing_line: Counter,
    pub framing_packet: Counter,
    /// Packet reads that were not a command (no reply, as the original).
    pub packets_ignored: Counter,
    pub tls_handshake_failures: Counter,
}

impl TcpMetrics {
    /// Resolves the handles.
    pub fn new() -> Self {
        TcpMetrics {
            connections: gauge!("playground_tcp_connections"),
            accepted: counter!("playground_tcp_connections_accepted_total"),
            rejected_full: counter!("playground_tcp_connections_rejected_total", "reason" => "server_full"),
            idle_disconnects: counter!("playground_tcp_disconnects_total", "reason" => "idle"),
            slow_disconnects: counter!("playground_tcp_disconnects_total", "reason" => "slow_reader"),
            line_timeout_disconnects: counter!("playground_tcp_disconnects_total", "reason" => "line_timeout"),
            rate_limited_command: counter!("playground_tcp_rate_limited_total", "limit" => "command"),
            rate_limited_brd: counter!("playground_tcp_rate_limited_total", "limit" => "brd"),
            delivered: Tally::new("playground_broadcasts_delivered_total", &[]),
            bytes_in: Tally::new("playground_bytes_received_total", &[("transport", "tcp")]),
            bytes_out: Tally::new("playground_bytes_sent_total", &[("transport", "tcp")]),
            framing_line: counter!("playground_tcp_framing_total", "framing" => "line"),
            framing_packet: counter!("playground_tcp_framing_total", "framing" => "packet"),
            packets_ignored: counter!("playground_tcp_packets_ignored_total"),
            tls_handshake_failures: counter!("playground_tcp_tls_handshake_failures_total"),
        }
    }

    /// Counts a connection's framing once it is known.
    pub fn framing(&self, packet: bool) {
        if packet { &self.framing_packet } else { &self.framing_line }.increment(1);
    }
}

impl Default for TcpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters of the UDP server.
#[derive(Clone)]
pub struct UdpMetrics {
    pub received: Tally,
    pub sent: Tally,
    /// Longer than BUFF_SIZE.
    pub dropped_oversize: Counter,
    /// Not a known command: never answered, so spoofed sources get nothing.
    pub dropped_unknown: Counter,
    /// Every worker busy and the queue full.
    pub dropped_overload: Counter,
    /// The reply could not be sent.
    pub dropped_send_error: Counter,
    /// The reply was larger than UDP_MAX_AMPLIFICATION times its request.
    pub dropped_amplification: Counter,
    /// The source IP had used up its UDP_REPLY_RATE.
    pub dropped_rate_limited: Counter,
    pub bytes_in: Tally,
    pub bytes_out: Tally,
}

impl UdpMetrics {
    /// Resolves the handles.
    pub fn new() -> Self {
        let dropped = |reason: &'static str| counter!("playground_udp_packets_dropped_total", "reason" => reason);
        UdpMetrics {
            received: Tally::new("playground_udp_packets_received_total", &[]),
            sent: Tally::new("playground_udp_packets_sent_total", &[]),
            dropped_oversize: dropped("oversize"),
            dropped_unknown: dropped("unknown_command"),
            dropped_overload: dropped("overload"),
            dropped_send_error: dropped("send_error"),
            dropped_amplification: dropped("amplification"),
            dropped_rate_limited: dropped("rate_limited"),
            bytes_in: Tally::new("playground_bytes_received_total", &[("transport", "udp")]),
            bytes_out: Tally::new("playground_bytes_sent_total", &[("transport", "udp")]),
        }
    }
}

impl Default for UdpMetrics {
    fn default() -> Self {
        Self::new()
    }
}
