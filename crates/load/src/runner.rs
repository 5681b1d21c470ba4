//! One run: opens the clients on schedule (one every `--conn-interval`, or
//! following the connection stages, closing the newest when they ramp
//! down), samples the timeline once a second and at the end of the
//! warm-up, waits for every client to finish (or for the run to be stopped)
//! and hands the results to the report. Also the life of one client that
//! every transport shares: open, talk, pause, open again.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::args::Protocol;
use super::delivery::Ledger;
use super::framing::Framing;
use super::pace::Pacer;
use super::plan::Plan;
use super::progress::Progress;
use super::report::Report;
use super::script::{Script, ScriptConfig};
use super::stages::{self, Curve};
use super::stats::Stats;
use super::timeline::Timeline;
use super::{tcp, udp};

/// The times a client keeps to.
#[derive(Debug, Clone)]
pub struct Timing {
    pub alive: Duration,
    pub read_timeout: Duration,
    pub reconnect_delay: Duration,
    pub connect_timeout: Duration,
    pub settle: Duration,
}

/// What every client of a run shares.
#[derive(Debug)]
pub struct Context {
    pub stats: Stats,
    pub ledger: Arc<Ledger>,
    pub pacer: Pacer,
    /// Cancelled to stop the run early (Ctrl-C).
    pub cancel: CancellationToken,
    pub start: Instant,
    /// End of the whole run (`--duration`).
    pub deadline: Option<Instant>,
    pub timing: Timing,
    /// How TCP requests and replies are delimited.
    pub framing: Framing,
    /// Requests in flight at once per TCP connection.
    pub pipeline: usize,
}

/// How often the connection stages are followed.
const RAMP_TICK: Duration = Duration::from_millis(10);

impl Context {
    /// Microseconds from the start of the run to `t`: the clock that
    /// broadcast send times are written in.
    pub fn micros(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_micros() as u64
    }

    /// When a client started now is done: `--alive` from now, or the end of
    /// the run if that comes first.
    pub fn client_end(&self) -> Instant {
        let end = Instant::now() + self.timing.alive;
        self.deadline.map_or(end, |d| end.min(d))
    }

    /// Waits the reconnect delay (or until `end`); false if the client is done.
    pub async fn pause(&self, end: Instant, cancelled: Cancelled<'_>) -> bool {
        let until = (Instant::now() + self.timing.reconnect_delay).min(end);
        tokio::select! {
            _ = cancelled => false,
            _ = sleep_until(until) => until < end,
        }
    }
}

/// A client's view of the run being stopped.
pub type Cancelled<'a> = Pin<&'a mut playground_common::quiet::Cancelled>;

/// How a client's connection (or UDP socket) ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client's time is up, or the run was stopped.
    Done,
    /// The server said `reconnect` or `error: server full`, or the connection
    /// was lost: open another after the reconnect delay.
    Again,
}

/// What every simulated client is, whatever its transport.
pub struct Client {
    pub id: u32,
    pub target: SocketAddr,
    pub source: Option<IpAddr>,
    pub script: Script,
    /// How far into its interval its paced messages fall (see `Plan::phases`).
    pub phase: Duration,
    pub ctx: Arc<Context>,
}

/// One client as the run sees it, whatever carries its requests: the
/// transports differ in how they open a link and talk over it, not in when
/// they open, give up or wait to open again.
pub trait Conversation: Sized {
    /// What one connection runs over: a TCP stream, a UDP socket.
    type Link;

    fn client(&self) -> &Client;

    /// Opens a link to the target (an error names it).
    async fn open(&self) -> io::Result<Self::Link>;

    /// Talks over `link` until it is lost, the client's time is up at `end`
    /// or the run is stopped.
    async fn converse(&mut self, link: Self::Link, end: Instant, cancelled: Cancelled<'_>) -> Ended;

    /// Runs until the client's time is up or `stop` (the run stopped, or
    /// the stages ramping down), opening a new link after the reconnect
    /// delay whenever one fails or is lost. A stop ends the client even
    /// while a link is opening: a TCP connect may otherwise hold it for the
    /// whole connect timeout.
    async fn run(mut self, stop: CancellationToken) {
        let ctx = self.client().ctx.clone();
        let end = ctx.client_end();
        let cancelled = playground_common::quiet::Cancelled::new(stop.clone());
        tokio::pin!(cancelled);
        while Instant::now() < end && !stop.is_cancelled() {
            let attempt = tokio::select! {
                biased;
                _ = &mut cancelled => return,
                r = self.open() => r,
            };
            let link = match attempt {
                Ok(l) => l,
                Err(e) => {
                    ctx.stats.connect_failed(e.to_string());
                    if !ctx.pause(end, cancelled.as_mut()).await {
                        return;
                    }
                    continue;
                }
            };
            ctx.stats.opened();
            let ended = self.converse(link, end, cancelled.as_mut()).await;
            ctx.stats.closed();
            if ended == Ended::Done || !ctx.pause(end, cancelled.as_mut()).await {
                return;
            }
        }
    }
}

/// Runs `plan` until every client is done or `cancel` is cancelled.
pub async fn execute(plan: &Plan, cancel: CancellationToken, progress: Progress) -> Report {
    let args = &plan.args;
    let start = Instant::now();
    let rate = stages::rate(&args.stages, args.rate.unwrap_or(0.0)).or_else(|| args.rate.map(Curve::constant));
    let connections = stages::connections(&args.stages);
    let staged = (!args.stages.is_empty()).then(|| stages::total(&args.stages));
    let length = match (args.duration, staged) {
        (Some(d), Some(s)) => Some(d.min(s)),
        (d, s) => d.or(s),
    };
    // Marks this run's broadcasts and keys, apart from other runs on the same server.
    let tag = run_tag();
    let ctx = Arc::new(Context {
        stats: Stats::default(),
        ledger: Arc::new(Ledger::new(&tag)),
        pacer: Pacer::new(rate, args.msg_interval, start),
        cancel: cancel.clone(),
        start,
        deadline: length.map(|d| start + d),
        timing: Timing {
            // Staged clients live until ramped down or the end of the stages.
            alive: if connections.is_some() { length.unwrap_or(args.alive) } else { args.alive },
            read_timeout: args.read_timeout,
            reconnect_delay: args.reconnect_delay,
            connect_timeout: args.connect_timeout,
            settle: args.settle,
        },
        framing: args.framing,
        pipeline: args.pipeline as usize,
    });
    let scripts = ScriptConfig {
        payload: args.payload.as_str().into(),
        keys: args.keys,
        value_size: usize::from(args.value_size),
        seed: args.seed.unwrap_or_else(|| fastrand::u64(..)),
    };
    let sampling = CancellationToken::new();
    let monitor = tokio::spawn(monitor(ctx.clone(), progress, sampling.clone(), args.warmup));

    let clients = TaskTracker::new();
    let spawn = |id: u32, stop: CancellationToken| {
        let (target, source) = plan.endpoints(id);
        let index = id as usize % plan.roles.len();
        let script = Script::new(plan.roles[index], id, &scripts, ctx.ledger.clone());
        let phase = ctx.pacer.phase(plan.phases[index]);
        let client = Client { id, target, source, script, phase, ctx: ctx.clone() };
        match (args.protocol, plan.login_target(id)) {
            (Protocol::Udp, Some(login)) => clients.spawn(udp::Client { client, login }.run(stop)),
            _ => clients.spawn(tcp::Client(client).run(stop)),
        };
    };
    match (&connections, ctx.deadline) {
        (Some(curve), Some(end)) => follow(curve, plan.clients, start, end, &cancel, spawn).await,
        _ => open_on_schedule(plan, &ctx, &cancel, spawn).await,
    }
    clients.close();
    clients.wait().await;
    let elapsed = start.elapsed();
    sampling.cancel();
    let timeline = monitor.await.unwrap_or_default();
    Report::new(plan, &ctx, timeline, elapsed, cancel.is_cancelled())
}

/// Opens client after client, one every `--conn-interval`, each living
/// `--alive`.
async fn open_on_schedule(
    plan: &Plan,
    ctx: &Context,
    cancel: &CancellationToken,
    spawn: impl Fn(u32, CancellationToken),
) {
    for id in 0..plan.clients {
        // Opening times follow a fixed schedule: the timer's millisecond
        // granularity then only batches openings, it does not slow them.
        let Some(at) = plan.args.conn_interval.checked_mul(id).and_then(|d| ctx.start.checked_add(d)) else { break };
        if ctx.deadline.is_some_and(|d| at >= d) {
            break;
        }
        if at > Instant::now() {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = sleep_until(at) => {}
            }
        }
        if cancel.is_cancelled() {
            break;
        }
        spawn(id, cancel.clone());
    }
}

/// Keeps as many clients open as the connection stages say until `end`:
/// opens new ones (with new numbers) as the curve rises and stops the
/// newest as it falls.
async fn follow(
    curve: &Curve,
    most: u32,
    start: Instant,
    end: Instant,
    cancel: &CancellationToken,
    spawn: impl Fn(u32, CancellationToken),
) {
    let mut open: Vec<CancellationToken> = Vec::new();
    let mut next_id = 0u32;
    while Instant::now() < end && !cancel.is_cancelled() {
        let target = (curve.value(start.elapsed().as_secs_f64()).round() as usize).min(most as usize);
        while open.len() < target {
            let stop = cancel.child_token();
            spawn(next_id, stop.clone());
            open.push(stop);
            next_id = next_id.wrapping_add(1);
        }
        while open.len() > target {
            open.pop().into_iter().for_each(|stop| stop.cancel());
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = sleep_until((Instant::now() + RAMP_TICK).min(end)) => {}
        }
    }
}

/// Samples the timeline every second, and shows progress, until `stop`.
/// The samples fall on whole seconds after the end of the warm-up, so that
/// one of them ends it.
async fn monitor(ctx: Arc<Context>, mut progress: Progress, stop: CancellationToken, warmup: Duration) -> Timeline {
    let mut timeline = Timeline::default();
    let second = Duration::from_secs(1);
    let first = match warmup.subsec_nanos() {
        0 => second,
        n => Duration::from_nanos(n.into()),
    };
    let warmed = ctx.start + warmup;
    let mut tick = tokio::time::interval_at(ctx.start + first, second);
    // Late samples keep to the grid, so the warm-up's end stays on it.
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut warming = !warmup.is_zero();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            due = tick.tick() => {
                let at = ctx.start.elapsed();
                warming = warming && due <= warmed;
                if let Some(second) = timeline.sample_stats(at, &ctx.stats, warming).cloned() {
                    progress.update(&second, &timeline, ctx.stats.count.snapshot(), at);
                }
                warming = warming && due < warmed;
            }
        }
    }
    timeline.sample_stats(ctx.start.elapsed(), &ctx.stats, warming);
    progress.finish();
    timeline
}

/// A tag for one run, unlike any other run's: from std's `RandomState`,
/// whose keys come from the operating system's randomness. With the
/// clock-seeded `fastrand`, the two load processes of one `scripts/scale`
/// run once had the same tag: each took the other's broadcasts for
/// duplicates of its own (and none as another run's), and their clients
/// shared memcached keys, so they read each other's values.
fn run_tag() -> String {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    format!("{:08x}", random as u32)
}

#[cfg(test)]
mod tests {
    /// Tags made at once, on threads of their own, all differ.
    #[test]
    fn run_tags_made_together_differ() {
        let tags: Vec<String> = (0..8)
            .map(|_| std::thread::spawn(super::run_tag))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let distinct: std::collections::BTreeSet<_> = tags.iter().collect();
        assert_eq!(distinct.len(), tags.len(), "{tags:?}");
        assert!(tags.iter().all(|t| t.len() == 8 && t.chars().all(|c| c.is_ascii_hexdigit())));
    }
}
