//! The command line of `playground scale`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use playground_common::duration::parse_duration;

/// `playground scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[command(subcommand)]
    pub command: ScaleCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScaleCommand {
    /// Run the tcp instances behind a kube-proxy-style Service in a network
    /// namespace, scaled by the chart's HPA over a real Prometheus, until
    /// SIGTERM or SIGINT (then every instance is stopped and the namespace removed).
    Run(Box<RunArgs>),
    /// Draw the PNG plots of a run from Prometheus.
    Plot(PlotArgs),
}

/// `playground scale run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The chart's values file: `<component>.autoscaling` gives minReplicas,
    /// maxReplicas, the target and the behavior.
    #[arg(long, env = "SCALE_VALUES", default_value = "deploy/helm/playground/values.yaml")]
    pub values: PathBuf,
    /// The chart component whose autoscaling is used.
    #[arg(long, env = "SCALE_COMPONENT", default_value = "tcp")]
    pub component: String,
    /// prometheus-adapter's rules as the chart renders them (the ConfigMap's config.yaml).
    #[arg(long, env = "SCALE_ADAPTER_RULES")]
    pub adapter_rules: PathBuf,
    /// The HPA's pod metric.
    #[arg(long, env = "SCALE_METRIC", default_value = "playground_tcp_connections")]
    pub metric: String,
    /// Target average value per pod [default: the values file's].
    #[arg(long, env = "SCALE_TARGET")]
    pub target: Option<f64>,
    /// minReplicas [default: the values file's].
    #[arg(long, env = "SCALE_MIN")]
    pub min: Option<u32>,
    /// maxReplicas [default: the values file's].
    #[arg(long, env = "SCALE_MAX")]
    pub max: Option<u32>,
    /// Changes within this share of the target are not made.
    #[arg(long, env = "SCALE_TOLERANCE", default_value_t = 0.1)]
    pub tolerance: f64,
    /// Time between two syncs of the HPA (kube-controller-manager's
    /// --horizontal-pod-autoscaler-sync-period).
    #[arg(long, env = "SCALE_PERIOD", default_value = "15s", value_parser = parse_duration)]
    pub period: Duration,
    /// Time between two readiness probes of every instance (the endpoints follow them).
    #[arg(long, env = "SCALE_PROBE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub probe_interval: Duration,
    /// Prometheus base URL.
    #[arg(long, env = "SCALE_PROMETHEUS")]
    pub prometheus: String,
    /// The Kubernetes namespace label the instances are scraped with.
    #[arg(long, env = "SCALE_NAMESPACE", default_value = "playground")]
    pub namespace: String,
    /// file_sd targets file of the Prometheus (rewritten as instances come and go).
    #[arg(long, env = "SCALE_TARGETS_FILE")]
    pub targets_file: PathBuf,
    /// The network namespace to create for the Service (removed at the end).
    #[arg(long, env = "SCALE_NETNS", default_value = "pg-scale")]
    pub netns: String,
    /// The /24 of the veth pair: .1 on the host, .2 onwards the clients.
    #[arg(long, env = "SCALE_SUBNET", default_value = "10.201.0.0")]
    pub subnet: Ipv4Addr,
    /// Client addresses in the namespace (each opens at most ~64,000 connections to the VIP).
    #[arg(long, env = "SCALE_CLIENT_IPS", default_value_t = 4)]
    pub client_ips: u8,
    /// The Service's virtual IP and port.
    #[arg(long, env = "SCALE_VIP", default_value = "10.96.0.10:40000")]
    pub vip: SocketAddrV4,
    /// Admin port of this process (/metrics: replicas, desired replicas, memory).
    #[arg(long, env = "SCALE_ADMIN_PORT")]
    pub admin_port: u16,
    /// Where instance logs, the decisions (decisions.jsonl) and `ready` go.
    #[arg(long, env = "SCALE_WORKDIR")]
    pub workdir: PathBuf,
    /// Pod names are `<prefix>-<n>`.
    #[arg(long, env = "SCALE_POD_PREFIX", default_value = "scale-tcp")]
    pub pod_prefix: String,
    /// The `playground` binary to start instances with [default: this one].
    #[arg(long, env = "SCALE_SERVER_BIN")]
    pub server_bin: Option<PathBuf>,
    /// How long a SIGTERMed instance may take to exit at the end before it is killed.
    #[arg(long, env = "SCALE_STOP_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub stop_timeout: Duration,
}

/// `playground scale plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Prometheus base URL.
    #[arg(long)]
    pub prometheus: String,
    /// The Kubernetes namespace label of the run's instances.
    #[arg(long, default_value = "playground")]
    pub namespace: String,
    /// Start and end of the run (Unix seconds).
    #[arg(long)]
    pub start: f64,
    #[arg(long)]
    pub end: f64,
    /// Directory the PNG files are written into.
    #[arg(long)]
    pub out: PathBuf,
}
