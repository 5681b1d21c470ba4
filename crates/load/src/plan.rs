//! A checked plan of a run, made from the arguments before anything
//! connects: the resolved targets, the local source addresses, and the role
//! of every client. Everything that can be wrong with the input is found
//! here, so a run never stops halfway over a typo.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::net::lookup_host;

use super::args::{LoadArgs, MixPart, Protocol, ScenarioKind};
use super::framing::Framing;
use super::script::Role;
use super::stages;

/// What a run will do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub args: LoadArgs,
    /// Clients at most: the positional count, or the largest of the
    /// connection stages.
    pub clients: u32,
    /// Servers, used round-robin: client `i` always goes to `targets[i % n]`.
    pub targets: Vec<SocketAddr>,
    /// Local addresses, used round-robin like the targets (empty: the kernel picks).
    pub sources: Vec<IpAddr>,
    /// The role of each client, by client number.
    pub roles: Vec<Role>,
    /// Where in its `--msg-interval` each role's paced messages fall, as a
    /// share of the interval, index for index with `roles`.
    pub phases: Vec<f64>,
    /// UDP only: where the clients of each target log in over TCP (the
    /// target's address with `--tcp-port`), index for index with `targets`.
    pub logins: Vec<SocketAddr>,
}

impl Plan {
    /// Resolves the targets and assigns roles; errors say what is wrong.
    pub async fn new(args: &LoadArgs) -> anyhow::Result<Plan> {
        check_durations(args)?;
        check_transport(args)?;
        check_pipeline(args)?;
        let clients = match stages::connections(&args.stages) {
            Some(curve) if curve.max() < 1.0 => bail!("no --stage opens a connection: give one a target like 10conn"),
            Some(curve) => curve.max().ceil() as u32,
            None => args.connections,
        };
        check_warmup(args, clients)?;
        let port = args.port.unwrap_or(args.protocol.default_port());
        let mut targets = Vec::new();
        for item in args.host.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (host, port) = split_host_port(item, port)?;
            let addr = lookup_host((host, port))
                .await
                .with_context(|| format!("cannot resolve `{host}`"))?
                .next()
                .with_context(|| format!("`{host}` resolves to no address"))?;
            targets.push(addr);
        }
        if targets.is_empty() {
            bail!("no target: give a host like 127.0.0.1 or several like host1,host2:40001");
        }
        let sources = args.source_ips.as_ref().map(|s| s.0.clone()).unwrap_or_default();
        if let Some(bad) = sources.iter().find(|s| targets.iter().any(|t| t.is_ipv4() != s.is_ipv4())) {
            bail!("source address {bad} and the targets {targets:?} are not all of the same IP version");
        }
        let roles = assign_roles(args, clients);
        check_framing(args, &roles)?;
        let phases = phases(&roles, args.in_step);
        let logins = match args.protocol {
            Protocol::Tcp => Vec::new(),
            Protocol::Udp => targets.iter().map(|t| SocketAddr::new(t.ip(), args.login_port())).collect(),
        };
        Ok(Plan { args: args.clone(), clients, targets, sources, roles, phases, logins })
    }

    /// Whether `--stage` sets the rate.
    pub fn rate_stages(&self) -> bool {
        self.args.stages.iter().any(|s| s.rate.is_some())
    }

    /// How long the run should take: the stages, or the ramp-up of the
    /// connections and their time alive; `--duration` if shorter.
    pub fn planned(&self) -> Duration {
        planned(&self.args, self.clients)
    }

    /// File descriptors the run needs: one per client plus the process's own,
    /// and over UDP one more per cache client for the TCP connection it logs
    /// in on (they may all log in at once).
    pub fn files_needed(&self) -> u64 {
        let per_client = match self.args.protocol {
            Protocol::Udp if self.roles.contains(&Role::Cache) => 2,
            _ => 1,
        };
        u64::from(self.clients) * per_client + 64
    }

    /// The target and source address of client `id`.
    pub fn endpoints(&self, id: u32) -> (SocketAddr, Option<IpAddr>) {
        let i = id as usize;
        let source = (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()]);
        (self.targets[i % self.targets.len()], source)
    }

    /// Where client `id` logs in over TCP when it loads UDP.
    pub fn login_target(&self, id: u32) -> Option<SocketAddr> {
        (!self.logins.is_empty()).then(|| self.logins[id as usize % self.logins.len()])
    }
}

/// Spreads the broadcasters evenly over the interval: the `k`th of `n`
/// sends `k/n` of an interval after the first. Clients open one after
/// another a `--conn-interval` apart, so without this the broadcasters,
/// which are the first clients, would send within a few milliseconds of
/// each other: one burst of `n` broadcasts per interval rather than the
/// steady rate independent senders make. Other roles keep phase 0.
fn phases(roles: &[Role], in_step: bool) -> Vec<f64> {
    let senders = roles.iter().filter(|r| **r == Role::Broadcaster).count();
    let mut k = 0;
    roles
        .iter()
        .map(|r| match r {
            Role::Broadcaster if !in_step => {
                k += 1;
                (k - 1) as f64 / senders as f64
            }
            _ => 0.0,
        })
        .collect()
}

/// Over UDP the server answers `brd` (and `login`) only with an error, so a
/// broadcast scenario would measure nothing; and `--tcp-port` means nothing
/// over TCP, where clients log in on their own connection.
fn check_transport(args: &LoadArgs) -> anyhow::Result<()> {
    match args.protocol {
        Protocol::Tcp if args.tcp_port.is_some() => {
            bail!("--tcp-port is where udp cache clients log in; tcp clients log in on their own connection")
        }
        Protocol::Tcp => Ok(()),
        Protocol::Udp => {
            let broadcast = match args.scenario() {
                ScenarioKind::Broadcast => true,
                ScenarioKind::Mix => {
                    args.mix.clone().unwrap_or_default().0.iter().any(|(p, w)| *p == MixPart::Broadcast && *w > 0)
                }
                _ => false,
            };
            if broadcast {
                bail!(
                    "broadcast is only available over TCP (the server answers `brd` over UDP with an error): \
                     load it with `playground load tcp ... --scenario broadcast`, or give udp a --mix of echo, \
                     cache and idle (e.g. --mix echo=80,cache=20)"
                );
            }
            Ok(())
        }
    }
}

/// Requests in flight at once need TCP, whose replies come in order, and
/// line framing, where requests written together stay apart.
fn check_pipeline(args: &LoadArgs) -> anyhow::Result<()> {
    if args.pipeline > 1 && args.protocol == Protocol::Udp {
        bail!("--pipeline is for tcp: udp flows send one datagram at a time (use more flows instead)");
    }
    if args.pipeline > 1 && args.framing == Framing::Packet {
        bail!("--pipeline needs --framing line: requests written together reach a packet server as one command");
    }
    Ok(())
}

/// A warm-up must leave some of the run to measure.
fn check_warmup(args: &LoadArgs, clients: u32) -> anyhow::Result<()> {
    let run = planned(args, clients);
    if !args.warmup.is_zero() && args.warmup >= run {
        bail!("--warmup {:?} leaves nothing to measure: the run lasts about {run:?}", args.warmup);
    }
    Ok(())
}

/// How long a run of `clients` should take.
fn planned(args: &LoadArgs, clients: u32) -> Duration {
    let whole = if args.stages.is_empty() {
        let ramp = args.conn_interval.saturating_mul(clients.saturating_sub(1));
        ramp.saturating_add(args.alive)
    } else {
        stages::total(&args.stages)
    };
    args.duration.map_or(whole, |d| d.min(whole))
}

/// With packet framing each write must be one command the server reads
/// alone, and requests go one at a time; a broadcast sender writes `brd`
/// and its `msg:` probe together (a published `brd` gets no reply, the
/// probe's echo tells when it is done), which packet framing cannot carry.
fn check_framing(args: &LoadArgs, roles: &[Role]) -> anyhow::Result<()> {
    if args.framing == Framing::Packet && roles.contains(&Role::Broadcaster) {
        bail!(
            "--framing packet cannot carry broadcast senders: each writes `brd` and a `msg:` probe together, \
             which a packet server reads as one command (requests are never pipelined in packet framing); \
             use --framing line, or --broadcasters 0 to only listen"
        );
    }
    Ok(())
}

/// The longest duration any option takes: beyond it, times would overflow.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Durations must fit a run, and waits that end every exchange at once are
/// mistakes, not tests.
fn check_durations(args: &LoadArgs) -> anyhow::Result<()> {
    let all = [
        ("--conn-interval", args.conn_interval, true),
        ("--msg-interval", args.msg_interval, true),
        ("--alive", args.alive, false),
        ("--read-timeout", args.read_timeout, false),
        ("--reconnect-delay", args.reconnect_delay, true),
        ("--connect-timeout", args.connect_timeout, false),
        ("--settle", args.settle, true),
        ("--progress-interval", args.progress_interval, true),
        ("--warmup", args.warmup, true),
        ("--stage", stages::total(&args.stages), true),
        ("--duration", args.duration.unwrap_or(Duration::from_secs(1)), false),
    ];
    for (name, value, zero_ok) in all {
        if value > MAX_DURATION {
            bail!("{name} {value:?} is too long (at most a year)");
        }
        if value.is_zero() && !zero_ok {
            bail!("{name} must be more than 0");
        }
    }
    Ok(())
}

/// Splits `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
fn split_host_port(item: &str, default_port: u16) -> anyhow::Result<(&str, u16)> {
    let parse_port = |p: &str| p.parse::<u16>().with_context(|| format!("`{p}` in `{item}` is not a port"));
    if let Some(rest) = item.strip_prefix('[') {
        let (host, after) = rest.split_once(']').with_context(|| format!("`{item}`: missing `]`"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, parse_port(p)?)),
            None if after.is_empty() => Ok((host, default_port)),
            None => bail!("`{item}` is not [address]:port"),
        };
    }
    match item.rsplit_once(':') {
        // More than one `:` without brackets is a bare IPv6 address.
        Some((host, _)) if host.contains(':') => Ok((item, default_port)),
        Some((host, p)) => Ok((host, parse_port(p)?)),
        None => Ok((item, default_port)),
    }
}

/// Gives every client a role. A mix interleaves its parts smoothly (weighted
/// round-robin), so the proportions hold at any moment of the ramp-up, not
/// only once every connection is open. Of the broadcast clients, the first
/// ones send, so broadcasts start as early as possible.
pub fn assign_roles(args: &LoadArgs, clients: u32) -> Vec<Role> {
    let n = clients as usize;
    let parts: Vec<(MixPart, u32)> = match args.scenario() {
        ScenarioKind::Echo => vec![(MixPart::Echo, 1)],
        ScenarioKind::Cache => vec![(MixPart::Cache, 1)],
        ScenarioKind::Broadcast => vec![(MixPart::Broadcast, 1)],
        ScenarioKind::Idle => vec![(MixPart::Idle, 1)],
        ScenarioKind::Mix => args.mix.clone().unwrap_or_default().0,
    };
    let total: i64 = parts.iter().map(|(_, w)| i64::from(*w)).sum();
    let mut current = vec![0i64; parts.len()];
    let mut kinds = Vec::with_capacity(n);
    for _ in 0..n {
        for (c, (_, w)) in current.iter_mut().zip(&parts) {
            *c += i64::from(*w);
        }
        let best = (0..parts.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i))).unwrap_or(0);
        current[best] -= total;
        kinds.push(parts[best].0);
    }
    let broadcast_clients = kinds.iter().filter(|k| **k == MixPart::Broadcast).count() as u32;
    let mut senders_left = args.broadcasters.of(broadcast_clients);
    kinds
        .into_iter()
        .map(|k| match k {
            MixPart::Echo => Role::Echo,
            MixPart::Cache => Role::Cache,
            MixPart::Idle => Role::Idle,
            MixPart::Broadcast if senders_left > 0 => {
                senders_left -= 1;
                Role::Broadcaster
            }
            MixPart::Broadcast => Role::Listener,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    fn args(extra: &[&str]) -> LoadArgs {
        crate::Cli::parse_args(&[&["tcp"], extra].concat()).unwrap()
    }

    fn assign_roles_of(args: &LoadArgs) -> Vec<Role> {
        assign_roles(args, args.connections)
    }

    fn count(roles: &[Role], r: Role) -> usize {
        roles.iter().filter(|x| **x == r).count()
    }

    #[tokio::test]
    async fn broadcasters_are_spread_over_the_interval_unless_in_step() {
        let spread =
            Plan::new(&args(&["8", "127.0.0.1:1", "--scenario", "broadcast", "--broadcasters", "4"])).await.unwrap();
        assert_eq!(spread.phases, [0.0, 0.25, 0.5, 0.75, 0.0, 0.0, 0.0, 0.0]);
        let together =
            Plan::new(&args(&["8", "127.0.0.1:1", "--scenario", "broadcast", "--broadcasters", "4", "--in-step"]))
                .await
                .unwrap();
        assert!(together.phases.iter().all(|p| *p == 0.0));
    }

    #[test]
    fn mix_proportions_hold_during_the_ramp() {
        let roles = assign_roles_of(&args(&["100", "--mix", "echo=70,cache=20,broadcast=10", "--broadcasters", "2"]));
        assert_eq!(count(&roles, Role::Echo), 70);
        assert_eq!(count(&roles, Role::Cache), 20);
        assert_eq!(count(&roles, Role::Broadcaster), 2);
        assert_eq!(count(&roles, Role::Listener), 8);
        let first_ten = &roles[..10];
        assert_eq!(count(first_ten, Role::Echo), 7, "{first_ten:?}");
        assert_eq!(count(first_ten, Role::Cache), 2, "{first_ten:?}");
    }

    #[test]
    fn single_scenarios() {
        assert!(assign_roles_of(&args(&["5"])).iter().all(|r| *r == Role::Echo));
        let b = assign_roles_of(&args(&["10", "--scenario", "broadcast", "--broadcasters", "30%"]));
        assert_eq!(&b[..4], &[Role::Broadcaster, Role::Broadcaster, Role::Broadcaster, Role::Listener]);
        let mix_default = assign_roles_of(&args(&["10", "--scenario", "mix"]));
        assert_eq!(count(&mix_default, Role::Echo), 7);
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("h", 1).unwrap(), ("h", 1));
        assert_eq!(split_host_port("h:2", 1).unwrap(), ("h", 2));
        assert_eq!(split_host_port("[::1]:3", 1).unwrap(), ("::1", 3));
        assert_eq!(split_host_port("[::1]", 1).unwrap(), ("::1", 1));
        assert_eq!(split_host_port("::1", 1).unwrap(), ("::1", 1));
        assert!(split_host_port("h:http", 1).is_err());
        assert!(split_host_port("[::1", 1).is_err());
    }

    #[tokio::test]
    async fn targets_round_robin_and_families_must_match() {
        let plan = Plan::new(&args(&["4", "127.0.0.1:1,127.0.0.2", "9"])).await.unwrap();
        assert_eq!(plan.endpoints(0).0, "127.0.0.1:1".parse().unwrap());
        assert_eq!(plan.endpoints(1).0, "127.0.0.2:9".parse().unwrap());
        assert_eq!(plan.endpoints(2).0, "127.0.0.1:1".parse().unwrap());
        let err = Plan::new(&args(&["1", "127.0.0.1", "--source-ips", "::1"])).await.unwrap_err();
        assert!(err.to_string().contains("same IP version"), "{err}");
        let err = Plan::new(&args(&["1", ","])).await.unwrap_err();
        assert!(err.to_string().contains("no target"), "{err}");
        let err = Plan::new(&args(&["1", "--read-timeout", "0"])).await.unwrap_err();
        assert!(err.to_string().contains("--read-timeout must be more than 0"), "{err}");
        let err = Plan::new(&args(&["1", "--alive", "100000h"])).await.unwrap_err();
        assert!(err.to_string().contains("--alive"), "{err}");
        let err = Plan::new(&args(&["1", "--tcp-port", "40000"])).await.unwrap_err();
        assert!(err.to_string().contains("--tcp-port"), "{err}");
    }

    #[tokio::test]
    async fn stages_warmup_and_pipelining_are_checked() {
        let staged = Plan::new(&args(&["--stage", "1s:10conn", "--stage", "2s:40conn:100rps"])).await.unwrap();
        assert_eq!((staged.clients, staged.roles.len(), staged.rate_stages()), (40, 40, true));
        assert_eq!(staged.planned(), Duration::from_secs(3));
        assert_eq!(staged.files_needed(), 40 + 64);
        for (extra, needle) in [
            (&["--stage", "1s:0conn:10rps"][..], "no --stage opens a connection"),
            (&["--alive", "2s", "--warmup", "2s"], "leaves nothing to measure"),
            (&["--stage", "1s:5conn", "--warmup", "1s"], "leaves nothing to measure"),
            (&["--pipeline", "4", "--framing", "packet"], "--pipeline needs --framing line"),
        ] {
            let err = Plan::new(&args(extra)).await.unwrap_err().to_string();
            assert!(err.contains(needle), "{extra:?}: {err}");
        }
        let err = Plan::new(&udp(&["--pipeline", "2"])).await.unwrap_err().to_string();
        assert!(err.contains("--pipeline is for tcp"), "{err}");
    }

    fn udp(extra: &[&str]) -> LoadArgs {
        crate::Cli::parse_args(&[&["udp"], extra].concat()).unwrap()
    }

    #[tokio::test]
    async fn udp_logs_in_on_the_tcp_port_of_each_target_and_refuses_broadcasts() {
        let plan = Plan::new(&udp(&["3", "127.0.0.1,127.0.0.2:50001", "--tcp-port", "40001"])).await.unwrap();
        assert_eq!(plan.endpoints(0).0, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(plan.login_target(0), Some("127.0.0.1:40001".parse().unwrap()));
        assert_eq!(plan.login_target(1), Some("127.0.0.2:40001".parse().unwrap()));
        assert_eq!(Plan::new(&args(&["1"])).await.unwrap().login_target(0), None);
        for refused in [&["--scenario", "broadcast"][..], &["--scenario", "mix"], &["--mix", "echo=1,broadcast=1"]] {
            let err = Plan::new(&udp(refused)).await.unwrap_err().to_string();
            assert!(err.contains("broadcast is only available over TCP"), "{refused:?}: {err}");
        }
        assert!(Plan::new(&udp(&["--mix", "echo=1,cache=1,broadcast=0"])).await.is_ok());
    }

    #[tokio::test]
    async fn packet_framing_refuses_only_broadcast_senders() {
        for refused in [&["--scenario", "broadcast"][..], &["4", "--mix", "echo=1,broadcast=1"]] {
            let err = Plan::new(&args(&[refused, &["--framing", "packet"]].concat())).await.unwrap_err().to_string();
            assert!(err.contains("--framing packet cannot carry broadcast senders"), "{refused:?}: {err}");
        }
        for fine in [&["--scenario", "broadcast", "--broadcasters", "0"][..], &["--scenario", "cache"], &[]] {
            assert!(Plan::new(&args(&[fine, &["--framing", "packet"]].concat())).await.is_ok(), "{fine:?}");
        }
        assert!(Plan::new(&udp(&["--scenario", "cache", "--framing", "packet"])).await.is_ok());
    }
}
