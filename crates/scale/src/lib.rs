//! `playground scale`: the chart's autoscaling on one machine. The HPA
//! algorithm with the chart's behavior ([`hpa`], [`behavior`]), a Service as
//! kube-proxy makes one in iptables mode ([`service`]), the replicas
//! ([`instances`]), the autoscaler loop over a real Prometheus and the
//! adapter's query ([`autoscale`], [`prom`]) and the plots of a run
//! ([`plot`]). docs/scale.md tells the experiment this is built for.

pub mod args;
pub mod autoscale;
pub mod behavior;
pub mod hpa;
pub mod instances;
pub mod plot;
pub mod prom;
pub mod service;

pub use args::{ScaleArgs, ScaleCommand};

/// Runs `playground scale`.
pub async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL").unwrap_or_else(|_| "info".into()))
        .try_init();
    match args.command {
        ScaleCommand::Run(a) => autoscale::run(*a).await,
        ScaleCommand::Plot(a) => plot::run(a).await,
    }
}
