//! Logging through `tracing`: human-readable lines by default, JSON with
//! `LOG_FORMAT=json`. A role may add a layer of its own (the servers ship
//! their logs to Kafka through one).

use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::process::{LogFormat, ProcessOptions};

/// The subscriber an extra layer is stacked on.
pub type Base = Layered<EnvFilter, Registry>;

/// Installs the global subscriber, with `extra` when given. Fails on an
/// invalid LOG_LEVEL.
pub fn init<L>(opts: &ProcessOptions, extra: Option<L>) -> anyhow::Result<()>
where
    L: Layer<Base> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&opts.log_level)
        .map_err(|e| anyhow::anyhow!("invalid value '{}' for LOG_LEVEL: {e}", opts.log_level))?;
    let registry = tracing_subscriber::registry().with(filter).with(extra);
    match opts.log_format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
            registry.with(tracing_subscriber::fmt::layer().with_target(false).with_ansi(ansi)).try_init()?
        }
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(false))
            .try_init()?,
    }
    Ok(())
}

/// Installs the global subscriber without an extra layer.
pub fn init_plain(opts: &ProcessOptions) -> anyhow::Result<()> {
    init(opts, None::<tracing_subscriber::layer::Identity>)
}
