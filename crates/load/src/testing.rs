//! What the drivers' unit tests share: a run context with short timeouts,
//! an echo script, and the counts a run with one late reply must show. Both
//! transports are held to the same account of a late reply, so it is
//! written once.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::delivery::Ledger;
use super::framing::Framing;
use super::pace::Pacer;
use super::runner::{Context, Timing};
use super::script::{Role, Script, ScriptConfig};
use super::stats::Stats;

/// A run starting now, of clients that live 600 ms, send every 10 ms and
/// take a reply later than 100 ms for a timeout, one request at a time.
pub fn context() -> Arc<Context> {
    framed(Framing::Line)
}

/// Like [`context`], with `framing`.
pub fn framed(framing: Framing) -> Arc<Context> {
    with(framing, 1)
}

/// Like [`context`], with `depth` requests in flight per connection.
pub fn pipelined(depth: usize) -> Arc<Context> {
    with(Framing::Line, depth)
}

fn with(framing: Framing, pipeline: usize) -> Arc<Context> {
    let start = Instant::now();
    Arc::new(Context {
        stats: Stats::default(),
        ledger: Arc::new(Ledger::new("t")),
        pacer: Pacer::new(None, Duration::from_millis(10), start),
        cancel: CancellationToken::new(),
        start,
        deadline: None,
        timing: Timing {
            alive: Duration::from_millis(600),
            read_timeout: Duration::from_millis(100),
            reconnect_delay: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(5),
            settle: Duration::ZERO,
        },
        framing,
        pipeline,
    })
}

/// The script of an echo client in `ctx`.
pub fn echo_script(ctx: &Context) -> Script {
    let config = ScriptConfig { payload: "p".into(), keys: 1, value_size: 1, seed: 1 };
    Script::new(Role::Echo, 0, &config, ctx.ledger.clone())
}

/// Checks the counts of a run in which only the first request timed out:
/// its reply came late and was recognised as such, every other request got
/// its own reply, and every connection was closed.
pub fn assert_one_late_reply(ctx: &Context) {
    let c = ctx.stats.count.snapshot();
    assert_eq!((c.timeouts, c.late_replies, c.wrong_replies, c.resets), (1, 1, 0, 0), "{c:?}");
    assert_eq!(c.received + c.late_replies + c.unanswered, c.sent, "{c:?}");
    assert!(c.received > 10, "{c:?}");
    assert_eq!(ctx.stats.open.load(Relaxed), 0);
}
