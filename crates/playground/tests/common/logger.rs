//! A `playground logger` process for tests that need one next to other
//! programs (the logger's own suite has a richer harness in `logger.rs`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{free_port, http_get};

/// A running logger, killed when dropped.
pub struct Logger {
    child: Child,
    pub admin: u16,
    log: PathBuf,
}

impl Logger {
    /// Starts `playground logger` with `env` (on a free admin port, readiness
    /// checked every 500 ms), its log in a file named after `name`.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Logger {
        let admin = free_port();
        let log = std::env::temp_dir().join(format!("playground-test-{name}-{admin}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_playground"));
        cmd.arg("logger")
            .env("ADMIN_PORT", admin.to_string())
            .env("ADMIN_BIND_ADDRESS", "127.0.0.1")
            .env("READINESS_INTERVAL", "500ms")
            .env("ELASTICSEARCH_REPLICAS", "0")
            .env("LOG_LEVEL", "info")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit());
        Logger { child: cmd.spawn().expect("start playground logger"), admin, log }
    }

    /// The status of `/readyz`, if it answers.
    pub fn readyz(&self) -> Option<u16> {
        http_get(self.admin, "/readyz").map(|(status, _)| status)
    }

    /// The value of an unlabelled metric, if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(self.admin, "/metrics")?;
        body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
