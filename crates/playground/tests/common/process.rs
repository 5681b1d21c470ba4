//! A `playground` process that a test started (a server or a logger): its
//! admin endpoints, its log file, signals, and a bounded wait for it to be
//! ready or to exit. It is killed when dropped, so a failing test leaves no
//! process behind.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::http_get;

/// A running `playground` process, killed when dropped.
pub struct Process {
    pub child: Child,
    pub admin: u16,
    pub log: PathBuf,
}

impl Process {
    /// Spawns `cmd` with its standard output in the file `log` (started
    /// afresh) and standard error inherited.
    pub fn spawn(mut cmd: Command, admin: u16, log: PathBuf) -> Process {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd.stdout(out).stderr(Stdio::inherit()).spawn().expect("start playground");
        Process { child, admin, log }
    }

    /// The status `/readyz` answers, if it answers.
    pub fn readyz(&self) -> Option<u16> {
        http_get(self.admin, "/readyz").map(|(status, _)| status)
    }

    /// Whether `/readyz` says ready; `None` while it does not answer.
    pub fn ready(&self) -> Option<bool> {
        self.readyz().map(|status| status == 200)
    }

    /// Waits (at most a minute: a logger waits for its partitions) until
    /// `/readyz` returns 200; fails at once if the process exits first (it
    /// says why on stderr and in its log).
    pub fn wait_ready(&mut self) {
        let limit = Duration::from_secs(60);
        let until = Instant::now() + limit;
        while self.ready() != Some(true) {
            self.assert_running();
            assert!(Instant::now() < until, "not ready within {limit:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails the test if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the process exited ({status}); log:\n{}", self.log());
        }
    }

    /// Sends a signal (`TERM`, `KILL`, ...) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "did not exit within {limit:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of an unlabelled or fully labelled metric line, if present.
    pub fn metric(&self, name_with_labels: &str) -> Option<f64> {
        let (_, body) = http_get(self.admin, "/metrics")?;
        metric_in(&body, name_with_labels)
    }

    /// A counter's value: 0 while it is not exported yet (no event has
    /// touched it). Fails the test when `/metrics` does not answer, so a
    /// dead endpoint never passes for a counter at 0.
    pub fn counter(&self, name_with_labels: &str) -> f64 {
        let (_, body) = http_get(self.admin, "/metrics").expect("/metrics answers");
        metric_in(&body, name_with_labels).unwrap_or(0.0)
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value on the line of `body` (Prometheus text) for `name_with_labels`.
fn metric_in(body: &str, name_with_labels: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(name_with_labels)?.strip_prefix(' ')?.trim().parse().ok())
}
