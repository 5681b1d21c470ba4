//! `playground load`: opens many connections (TCP) or flows (UDP) to a
//! server, drives traffic, follows `reconnect`, and reports what happened.
//!
//! The original client's positional form and defaults still work:
//! `playground load tcp 10000 127.0.0.1 40000` opens 10,000 connections,
//! one every 15 ms, each sending `msg:` every 250 ms for 60 s;
//! `playground load udp 10000 127.0.0.1 50000` does the same with datagrams.

mod stats;
mod tcp;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use tokio::net::lookup_host;

use crate::config::parse_duration;
pub use stats::{Report, Stats};
pub use tcp::Worker;

/// Transport to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// TCP connections.
    Tcp,
    /// UDP flows, one socket each.
    Udp,
}

/// What each connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Send `msg:` and check the echo.
    Echo,
    /// Hold the connection open without sending (memory and idle-CPU tests);
    /// `reconnect` is still followed.
    Idle,
}

/// `playground load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Protocol to load.
    #[arg(value_enum)]
    pub protocol: Protocol,
    /// Number of connections (TCP) or flows (UDP).
    #[arg(default_value_t = 1)]
    pub connections: u32,
    /// Server host name or address.
    #[arg(default_value = "127.0.0.1")]
    pub host: String,
    /// Server port [default: 40000 for tcp, 50000 for udp].
    pub port: Option<u16>,
    /// What each connection does.
    #[arg(long, value_enum, default_value_t = Scenario::Echo)]
    pub scenario: Scenario,
    /// Time between opening two connections.
    #[arg(long, default_value = "15ms", value_parser = parse_duration)]
    pub conn_interval: Duration,
    /// Time between two messages on one connection; 0 sends the next message
    /// as soon as the reply to the previous one arrives.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub msg_interval: Duration,
    /// How long each connection is kept open.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub alive: Duration,
    /// How long to wait for a reply before counting a timeout.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub read_timeout: Duration,
    /// Stop the whole run after this long, whatever is still open.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Content of each `msg:` (a sequence number is appended).
    #[arg(long, default_value = "12345")]
    pub payload: String,
    /// Delay before reconnecting after `reconnect` or a lost connection (UDP:
    /// before a new socket after the server refused a datagram).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub reconnect_delay: Duration,
}

impl LoadArgs {
    fn port(&self) -> u16 {
        self.port.unwrap_or(match self.protocol {
            Protocol::Tcp => 40000,
            Protocol::Udp => 50000,
        })
    }
}

/// Runs the load and prints the report.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let report = execute(&args).await?;
    println!("{report}");
    Ok(())
}

/// Runs the load and returns its report (used by `run` and by tests).
pub async fn execute(args: &LoadArgs) -> anyhow::Result<Report> {
    let target: SocketAddr = lookup_host((args.host.as_str(), args.port()))
        .await
        .map_err(|e| anyhow::anyhow!("cannot resolve {}: {e}", args.host))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} resolves to no address", args.host))?;
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..args.connections {
        if i > 0 && !args.conn_interval.is_zero() {
            tokio::time::sleep(args.conn_interval).await;
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
        let (id, args, stats) = (i, args.clone(), stats.clone());
        match args.protocol {
            Protocol::Tcp => workers.spawn(tcp::Worker { id, target, args, stats, deadline }.run()),
            Protocol::Udp => workers.spawn(udp::Worker { id, target, args, stats, deadline }.run()),
        };
    }
    while let Some(result) = workers.join_next().await {
        if let Ok(histogram) = result {
            stats.merge_latency(&histogram);
        }
    }
    Ok(stats.report(started.elapsed()))
}
