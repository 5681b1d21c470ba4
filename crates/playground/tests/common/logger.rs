//! A `playground logger` process for the tests: started on a free admin
//! port with its log in a file, reached as a [`Process`] (readiness,
//! metrics, signals). The logger's own suite adds its Kafka and search
//! engine settings (`tests/logger/shipping.rs`).

use std::process::Command;

use super::free_port;
use super::process::Process;

/// Starts `playground logger` with `env` (on a free admin port, readiness
/// checked every 500 ms), its log in a file named after `name`. It is
/// killed when dropped.
pub fn start(name: &str, env: &[(&str, &str)]) -> Process {
    let admin = free_port();
    let log = std::env::temp_dir().join(format!("playground-test-{name}-{admin}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_playground"));
    cmd.arg("logger")
        .env("ADMIN_PORT", admin.to_string())
        .env("ADMIN_BIND_ADDRESS", "127.0.0.1")
        .env("READINESS_INTERVAL", "500ms")
        .env("ELASTICSEARCH_REPLICAS", "0")
        .env("LOG_LEVEL", "info")
        .envs(env.iter().copied());
    Process::spawn(cmd, admin, log)
}
