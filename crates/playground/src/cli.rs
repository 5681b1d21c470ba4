//! The command line of the one `playground` binary: one subcommand per
//! program, each with the arguments its own crate declares.

use clap::{Parser, Subcommand};
use playground_load::LoadCommand;
use playground_logger::config::LoggerArgs;
use playground_scale::ScaleArgs;
use playground_server::config::{ServeArgs, TcpArgs, UdpArgs};

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
    /// Generate load against a server and report what happened, or merge
    /// the reports of several load generators (`load merge`).
    Load(LoadCommand),
    /// Index the log topic into Elasticsearch/OpenSearch (nothing lost, nothing duplicated).
    Logger(Box<LoggerArgs>),
    /// Scale tcp instances behind a kube-proxy-style Service with the chart's
    /// HPA over Prometheus, or plot such a run (docs/scale.md).
    Scale(ScaleArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_parses_and_help_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
        for role in ["tcp", "udp", "serve", "logger"] {
            assert!(Cli::try_parse_from(["playground", role]).is_ok(), "{role}");
        }
        let cli = Cli::try_parse_from(["playground", "load", "tcp", "10", "127.0.0.1", "40000"]).unwrap();
        let Command::Load(load) = cli.command else { panic!("load") };
        assert_eq!(load.run.map(|a| a.connections), Some(10));
        let cli = Cli::try_parse_from(["playground", "load", "merge", "a.json", "b.json"]).unwrap();
        let Command::Load(load) = cli.command else { panic!("load merge") };
        assert!(load.tool.is_some() && load.run.is_none());
    }
}
