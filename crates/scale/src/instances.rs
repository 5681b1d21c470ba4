//! The replicas: `playground tcp` processes on the host's end of the
//! Service's veth pair, each with its own port and admin port, started and
//! SIGTERMed as a ReplicaSet would create and delete pods (the newest goes
//! first on a scale-down), their readiness and memory read as the kubelet
//! and cAdvisor would.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// One running (or draining) instance.
#[derive(Debug)]
pub struct Instance {
    pub pod: String,
    pub endpoint: SocketAddrV4,
    pub admin: u16,
    pub pid: u32,
    child: Child,
    /// Whether /readyz said 200 at the last probe.
    pub ready: bool,
    /// Seconds (of the run's clock) at which it was sent SIGTERM.
    pub terminating: Option<f64>,
}

/// A free TCP port on `ip` (released again: the instance binds it next).
fn free_port(ip: Ipv4Addr) -> anyhow::Result<u16> {
    Ok(TcpListener::bind((ip, 0)).with_context(|| format!("no free port on {ip}"))?.local_addr()?.port())
}

/// How instances are started.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub bin: PathBuf,
    pub host_ip: Ipv4Addr,
    pub logdir: PathBuf,
    pub pod_prefix: String,
    pub started: u32,
}

impl Launcher {
    /// Starts the next instance; its output goes to `<logdir>/<pod>.log`.
    pub fn start(&mut self) -> anyhow::Result<Instance> {
        self.started += 1;
        let pod = format!("{}-{}", self.pod_prefix, self.started);
        let port = free_port(self.host_ip)?;
        let admin = free_port(Ipv4Addr::LOCALHOST)?;
        let log = std::fs::File::create(self.logdir.join(format!("{pod}.log")))
            .with_context(|| format!("cannot write logs into {}", self.logdir.display()))?;
        let child = Command::new(&self.bin)
            .arg("tcp")
            .env("PORT", port.to_string())
            .env("ADMIN_PORT", admin.to_string())
            .env("POD_NAME", &pod)
            .env("BIND_ADDRESS", self.host_ip.to_string())
            .env("ADMIN_BIND_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let pid = child.id().context("the instance exited at once")?;
        Ok(Instance {
            pod,
            endpoint: SocketAddrV4::new(self.host_ip, port),
            admin,
            pid,
            child,
            ready: false,
            terminating: None,
        })
    }
}

impl Instance {
    /// Sends SIGTERM (the kubelet's first step of deleting a pod).
    pub fn terminate(&mut self, now: f64) {
        // SAFETY: kill(2) on a child's pid, which is not reaped before `exited` says so.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        self.terminating = Some(now);
    }

    /// The exit status once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits at most `limit` for it to exit, then kills it.
    pub async fn wait(&mut self, limit: Duration) {
        if tokio::time::timeout(limit, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }

    /// GET of the admin port: status and body (status 0 when unreachable).
    pub async fn admin_get(&self, http: &reqwest::Client, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.admin);
        match http.get(url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    /// Its live `playground_tcp_connections` (0 when unreachable).
    pub async fn connections(&self, http: &reqwest::Client) -> f64 {
        let (_, body) = self.admin_get(http, "/metrics").await;
        sample(&body, "playground_tcp_connections").unwrap_or(0.0)
    }
}

/// The value of an unlabelled sample in Prometheus text.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// Resident memory of a process in bytes (VmRSS of /proc/<pid>/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?;
    kib.parse::<u64>().ok().map(|k| k * 1024)
}

/// Kernel memory of TCP sockets, machine-wide, in bytes: the `mem` pages
/// of /proc/net/sockstat's TCP line (buffers of every TCP socket, client
/// ends included: the kernel counts it once for all namespaces).
pub fn kernel_tcp_bytes(sockstat: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(sockstat).ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let pages: u64 = words.windows(2).find(|w| w[0] == "mem")?[1].parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_proc_files_are_read() {
        let text = "# TYPE playground_tcp_connections gauge\nplayground_tcp_connections 17\nplayground_tcp_connections_accepted_total 20\n";
        assert_eq!(sample(text, "playground_tcp_connections"), Some(17.0));
        assert_eq!(sample(text, "absent"), None);
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
        assert!(kernel_tcp_bytes(Path::new("/proc/net/sockstat")).is_some());
    }
}
