//! The options of a running process, flattened into every role's arguments:
//! admin HTTP address, instance name, log level and format.

use std::net::IpAddr;

use clap::{Args, ValueEnum};

/// Options every program that runs as a process shares (servers and
/// logger): its admin endpoint, its name and its logs.
#[derive(Debug, Clone, Args)]
pub struct ProcessOptions {
    /// Port of the admin HTTP server (/healthz, /readyz, /metrics).
    #[arg(long, env = "ADMIN_PORT", default_value_t = 8080)]
    pub admin_port: u16,
    /// Address to bind the admin HTTP server to.
    #[arg(long, env = "ADMIN_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub admin_bind_address: IpAddr,
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

impl ProcessOptions {
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

/// The host name, for POD_NAME's default.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "playground".into())
}
