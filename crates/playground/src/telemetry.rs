//! Logging through `tracing`: human-readable lines by default, JSON with
//! `LOG_FORMAT=json`. Every event carries the instance name.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{CommonOptions, LogFormat};
use crate::logship::ShipLayer;

/// Installs the global subscriber, with the log-shipping layer when given.
/// Fails on an invalid LOG_LEVEL.
pub fn init(opts: &CommonOptions, ship: Option<ShipLayer>) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&opts.log_level)
        .map_err(|e| anyhow::anyhow!("invalid value '{}' for LOG_LEVEL: {e}", opts.log_level))?;
    let registry = tracing_subscriber::registry().with(filter).with(ship);
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
