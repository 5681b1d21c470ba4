//! A Service as kube-proxy makes one in iptables mode, in a network namespace
//! of its own: the clients live in the namespace, a virtual IP there has no
//! socket behind it, and the namespace's `nat` table DNATs each new
//! connection to the VIP to one ready endpoint, chosen with
//! `-m statistic --mode random --probability 1/(n-i)` for the i-th of n
//! (each endpoint equally likely). The endpoints are the instances on the
//! host, reached over a veth pair. Changing the endpoints rewrites the
//! Service's chain in one `iptables-restore --noflush` transaction; conntrack
//! keeps established connections on the endpoint they were given.
//!
//! The `ip` and `iptables` commands are run as they are (what kube-proxy
//! itself does): a netlink crate would replace only half of it, since the
//! `statistic` match and iptables-restore's transactions have no Rust API.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// The Service's chain (kube-proxy's KUBE-SVC-<hash>).
pub const CHAIN: &str = "PG-SVC";

/// The namespace, its addresses and the VIP.
#[derive(Debug, Clone)]
pub struct Service {
    pub netns: String,
    /// The host's end of the veth pair: where the instances listen.
    pub host_ip: Ipv4Addr,
    /// The namespace's addresses, for the clients (`playground load --source-ips`).
    pub client_ips: Vec<Ipv4Addr>,
    pub vip: SocketAddrV4,
}

fn run(argv: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| format!("cannot run {} (is it installed?)", argv[0]))?;
    if !out.status.success() {
        bail!("{} failed: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Service {
    /// The addresses of a Service in `netns` on the /24 `subnet` (x.y.z.0):
    /// .1 on the host, .2 onwards the clients'.
    pub fn plan(netns: &str, subnet: Ipv4Addr, clients: u8, vip: SocketAddrV4) -> anyhow::Result<Service> {
        if netns.is_empty() || netns.len() > 12 || !netns.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            bail!("namespace name {netns:?}: 1 to 12 letters, digits or '-' (it names the veth pair too)");
        }
        if clients == 0 || clients > 200 {
            bail!("client addresses: 1 to 200, not {clients}");
        }
        let [a, b, c, _] = subnet.octets();
        Ok(Service {
            netns: netns.to_string(),
            host_ip: Ipv4Addr::new(a, b, c, 1),
            client_ips: (0..clients).map(|i| Ipv4Addr::new(a, b, c, 2 + i)).collect(),
            vip,
        })
    }

    fn veth(&self) -> (String, String) {
        (format!("{}-h", self.netns), format!("{}-c", self.netns))
    }

    fn in_ns<'a>(&'a self, argv: &[&'a str]) -> Vec<&'a str> {
        [&["ip", "netns", "exec", self.netns.as_str()][..], argv].concat()
    }

    /// Creates the namespace, the veth pair, the addresses and routes, and
    /// the Service's static rules (no endpoint yet: connections to the VIP are
    /// refused with a reset, as kube-proxy does for a Service without one).
    pub fn create(&self) -> anyhow::Result<()> {
        let (host, ns) = self.veth();
        let host_cidr = format!("{}/24", self.host_ip);
        let ns_s = self.netns.as_str();
        run(&["ip", "netns", "add", ns_s])?;
        let steps: Vec<Vec<String>> = vec![
            vec!["ip", "link", "add", &host, "type", "veth", "peer", "name", &ns, "netns", ns_s],
            vec!["ip", "addr", "add", &host_cidr, "dev", &host],
            vec!["ip", "link", "set", &host, "up"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        for s in &steps {
            run(&s.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        for ip in &self.client_ips {
            let cidr = format!("{ip}/24");
            run(&self.in_ns(&["ip", "addr", "add", &cidr, "dev", &ns]))?;
        }
        let gw = self.host_ip.to_string();
        let first = self.client_ips[0].to_string();
        run(&self.in_ns(&["ip", "link", "set", "lo", "up"]))?;
        run(&self.in_ns(&["ip", "link", "set", &ns, "up"]))?;
        run(&self.in_ns(&["ip", "route", "add", "default", "via", &gw, "src", &first]))?;
        // One client address opens at most ~64,000 connections to the VIP.
        run(&self.in_ns(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"]))?;
        let vip = self.vip.ip().to_string();
        let port = self.vip.port().to_string();
        let mut base = format!("*nat\n:{CHAIN} - [0:0]\n");
        base += &format!("-A OUTPUT -d {vip}/32 -p tcp -m tcp --dport {port} -j {CHAIN}\nCOMMIT\n");
        base += &format!(
            "*filter\n-A OUTPUT -d {vip}/32 -p tcp -m tcp --dport {port} -j REJECT --reject-with tcp-reset\nCOMMIT\n"
        );
        self.restore(&base)
    }

    /// Replaces the endpoints in one transaction.
    pub fn set_endpoints(&self, endpoints: &[SocketAddrV4]) -> anyhow::Result<()> {
        self.restore(&chain_rules(endpoints))
    }

    fn restore(&self, rules: &str) -> anyhow::Result<()> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "iptables-restore", "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run iptables-restore (is iptables installed?)")?;
        child.stdin.take().expect("piped").write_all(rules.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("iptables-restore failed: {}\n{rules}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// The namespace's rules as `iptables-save` prints them.
    pub fn rules(&self) -> anyhow::Result<String> {
        run(&self.in_ns(&["iptables-save", "-t", "nat"]))
    }

    /// Removes the namespace (and with it the veth pair and every rule).
    pub fn delete(&self) -> anyhow::Result<()> {
        run(&["ip", "netns", "delete", &self.netns]).map(|_| ())
    }
}

/// The Service's chain for `endpoints` as iptables-restore input (declaring
/// the chain flushes it): rule i of n matches with probability 1/(n-i), the
/// last always, so each endpoint gets 1/n of the new connections.
pub fn chain_rules(endpoints: &[SocketAddrV4]) -> String {
    let mut out = format!("*nat\n:{CHAIN} - [0:0]\n");
    let n = endpoints.len();
    for (i, ep) in endpoints.iter().enumerate() {
        let pick = if i + 1 < n {
            format!("-m statistic --mode random --probability {:.11} ", 1.0 / (n - i) as f64)
        } else {
            String::new()
        };
        out +=
            &format!("-A {CHAIN} -p tcp -m comment --comment \"endpoint {ep}\" {pick}-j DNAT --to-destination {ep}\n");
    }
    out + "COMMIT\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_gets_one_nth_of_new_connections() {
        let eps: Vec<SocketAddrV4> = (1..=3).map(|p| SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), p)).collect();
        let rules = chain_rules(&eps);
        let lines: Vec<&str> = rules.lines().filter(|l| l.starts_with("-A")).collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("--probability 0.33333333333 -j DNAT --to-destination 10.0.0.1:1"), "{rules}");
        assert!(lines[1].contains("--probability 0.50000000000 -j DNAT --to-destination 10.0.0.1:2"), "{rules}");
        assert!(!lines[2].contains("statistic") && lines[2].ends_with("--to-destination 10.0.0.1:3"), "{rules}");
        // No endpoint: an empty chain, the filter rule refuses.
        assert_eq!(chain_rules(&[]), format!("*nat\n:{CHAIN} - [0:0]\nCOMMIT\n"));
    }

    #[test]
    fn plan_checks_its_names_and_counts() {
        let vip = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 10), 40000);
        let s = Service::plan("pgs-1", Ipv4Addr::new(10, 201, 7, 0), 3, vip).unwrap();
        assert_eq!(s.host_ip, Ipv4Addr::new(10, 201, 7, 1));
        assert_eq!(s.client_ips.last(), Some(&Ipv4Addr::new(10, 201, 7, 4)));
        assert!(Service::plan("a-name-too-long", Ipv4Addr::new(10, 201, 7, 0), 3, vip).is_err());
        assert!(Service::plan("ok", Ipv4Addr::new(10, 201, 7, 0), 0, vip).is_err());
    }
}
