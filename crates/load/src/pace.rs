//! When clients send: every `--msg-interval` on each connection, or a total
//! `--rate` shared by all of them.
//!
//! Both keep to a fixed schedule rather than sleeping a fixed time after
//! each reply, so a run sends what it promises however long replies take.
//! A client that falls far behind (a slow server, a timeout) skips the slots
//! it missed instead of sending them in a burst, and counts them
//! ([`Missed`]): the latency report accounts for them as wrk2 does.
//!
//! The rate is a single atomic "next free slot" number: each client claims
//! the next slot when it is ready to send, whichever client that is, so the
//! total holds while connections ramp up, reconnect or wait for replies.
//! Slot `k` is due when the rate's [`Curve`] has `k` requests under it, so a
//! ramping rate (`--stage`) is kept as exactly as a constant one.
//!
//! [`Schedule`] is one connection's side of that, the same for every
//! transport: what a client does next and when its task must wake follow
//! from whether it may send more now (`--pipeline`) and the next slot.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::script::Script;
use super::stages::Curve;
use super::stats::{Missed, SendTimes};

/// How far in the past a rate slot may lie before it is skipped.
const MAX_RATE_LAG: Duration = Duration::from_millis(100);

/// The sending schedule of a run.
#[derive(Debug)]
pub enum Pacer {
    /// Each connection sends every interval (0: as soon as it has its reply).
    Interval(Duration),
    /// All connections together send as many messages per second as the
    /// curve says (a constant `--rate`, or `--stage` ramps).
    Rate(RateSlots),
}

/// Slots of a total rate, numbered from the start of the run.
#[derive(Debug)]
pub struct RateSlots {
    start: Instant,
    curve: Curve,
    next: AtomicU64,
}

impl Pacer {
    /// A pacer for the `rate` curve of messages per second in total, or else
    /// `interval` per connection.
    pub fn new(rate: Option<Curve>, interval: Duration, start: Instant) -> Pacer {
        match rate {
            Some(curve) => Pacer::Rate(RateSlots { start, curve, next: AtomicU64::new(0) }),
            None => Pacer::Interval(interval),
        }
    }

    /// When a connection whose previous paced message was due at `previous`
    /// may send its next one, seen at `now`, and the slots skipped before it.
    pub fn next(&self, previous: Instant, now: Instant) -> (Instant, Missed) {
        match self {
            Pacer::Interval(d) if d.is_zero() => (now, Missed::default()),
            Pacer::Interval(d) => {
                // Two or more whole intervals behind: go in the latest slot due
                // and skip the ones before it.
                let behind = now.saturating_duration_since(previous).as_nanos() / d.as_nanos();
                let behind = u32::try_from(behind).unwrap_or(u32::MAX);
                if behind >= 2 {
                    (previous + d.saturating_mul(behind), Missed { count: u64::from(behind - 1), period: *d })
                } else {
                    (previous + *d, Missed::default())
                }
            }
            Pacer::Rate(slots) => slots.claim(now),
        }
    }

    /// How far into its interval a client with phase `share` (0 to 1) sends;
    /// a total rate hands out slots to whichever client is ready, so there
    /// it means nothing.
    pub fn phase(&self, share: f64) -> Duration {
        match self {
            Pacer::Interval(d) => d.mul_f64(share.clamp(0.0, 1.0)),
            Pacer::Rate(_) => Duration::ZERO,
        }
    }
}

/// When one connection (or UDP socket) sends its next request.
#[derive(Debug)]
pub struct Schedule {
    /// When the next request may go (None: when the current one is done).
    next: Option<Instant>,
    /// The schedule slot of the last paced request.
    slot: Instant,
    /// Slots skipped since the last request went.
    missed: Missed,
}

impl Schedule {
    /// A schedule whose first request goes at once and whose paced ones
    /// fall `phase` later in their interval than that.
    pub fn starting(now: Instant, phase: Duration) -> Schedule {
        Schedule { next: Some(now), slot: now + phase, missed: Missed::default() }
    }

    /// What the client does at `now`, its time being up at `end`, when
    /// `full` (as many requests in flight as it may have) or not.
    pub fn step(&self, now: Instant, end: Instant, full: bool) -> Step {
        if full {
            Step::Wait
        } else if now >= end {
            Step::Close
        } else if self.next.is_some_and(|t| t <= now) {
            Step::Send
        } else {
            Step::Wait
        }
    }

    /// The times of the request going at `now`, in the current slot, with
    /// the slots skipped before it (given out once).
    pub fn sending(&mut self, now: Instant) -> SendTimes {
        SendTimes { intended: self.slot.min(now), sent: now, missed: std::mem::take(&mut self.missed) }
    }

    /// Slots skipped and not yet given to a request (the connection ends).
    pub fn take_missed(&mut self) -> u64 {
        std::mem::take(&mut self.missed).count
    }

    /// Holds further requests until [`Schedule::after`].
    pub fn hold(&mut self) {
        self.next = None;
    }

    /// Whether further requests are held.
    pub fn held(&self) -> bool {
        self.next.is_none()
    }

    /// Lets the next request go at `at`, off the pacer's schedule (a retry).
    pub fn retry_at(&mut self, at: Instant) {
        self.next = Some(at);
        self.slot = at;
    }

    /// Schedules the next request (after one was sent, answered or timed
    /// out), if the script has more to say.
    pub fn after(&mut self, pacer: &Pacer, script: &Script, now: Instant) {
        if script.wants_to_send() {
            let (slot, missed) = pacer.next(self.slot, now);
            self.slot = slot;
            self.missed = self.missed.and(missed);
            self.next = Some(slot);
        }
    }

    /// Sets `timer` to when the client's task must wake: the earliest reply
    /// deadline of the requests in flight, or the next send if the client is
    /// not `full` (never after `end`), whichever comes first. A timer
    /// already right is left alone: resetting it costs a trip through the
    /// timer wheel.
    pub fn set_timer(&self, timer: Pin<&mut Sleep>, reply_due: Option<Instant>, full: bool, end: Instant) {
        // While full, only a reply (or its deadline) lets the client go on.
        let send = (!full).then(|| self.next.map_or(end, |t| t.min(end)));
        let wake = match (reply_due, send) {
            (Some(r), Some(s)) => r.min(s),
            (r, s) => r.or(s).unwrap_or(end),
        };
        if timer.deadline() != wake {
            timer.reset(wake);
        }
    }
}

/// What a client does next (see [`Schedule::step`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Its time is up and nothing is in flight: close.
    Close,
    /// Send the next request.
    Send,
    /// Wait for a reply, a timeout or the next slot.
    Wait,
}

/// The latest instant a run can be given: a rate that ends at 0 has no
/// further slots, which are then put out of reach.
const FAR: Duration = Duration::from_secs(366 * 24 * 3600);

impl RateSlots {
    /// Claims the next free slot, skipping those further back than the
    /// allowed lag.
    fn claim(&self, now: Instant) -> (Instant, Missed) {
        let lagging = now.saturating_duration_since(self.start).saturating_sub(MAX_RATE_LAG).as_secs_f64();
        // Slot k is due when k requests are due; the small margin keeps a
        // slot due exactly at the floor from being skipped by rounding.
        let floor = (self.curve.integral(lagging) - 1e-6).ceil().max(0.0) as u64;
        let (mut slot, mut skipped) = (0, 0);
        let _ = self.next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
            slot = next.max(floor);
            skipped = slot - next;
            Some(slot + 1)
        });
        let t = self.curve.time_of(slot as f64);
        let offset = if t.is_finite() { Duration::from_nanos((t * 1e9).round() as u64).min(FAR) } else { FAR };
        let rate = self.curve.value(t.min(FAR.as_secs_f64()));
        let period = if rate > 0.0 { Duration::from_secs_f64(1.0 / rate) } else { Duration::ZERO };
        (self.start + offset, Missed { count: skipped, period })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn interval_keeps_its_schedule_and_skips_when_far_behind() {
        let t0 = Instant::now();
        let p = Pacer::new(None, 250 * MS, t0);
        let none = Missed::default();
        assert_eq!(p.next(t0, t0 + 10 * MS), (t0 + 250 * MS, none));
        // A slow reply does not push the schedule back...
        assert_eq!(p.next(t0, t0 + 300 * MS), (t0 + 250 * MS, none));
        // ...but a whole missed interval is skipped, not sent in a burst, and counted.
        assert_eq!(p.next(t0, t0 + 600 * MS), (t0 + 500 * MS, Missed { count: 1, period: 250 * MS }));
        let asap = Pacer::new(None, Duration::ZERO, t0);
        assert_eq!(asap.next(t0, t0 + 7 * MS), (t0 + 7 * MS, none));
    }

    #[test]
    fn a_schedule_sends_one_request_at_a_time_and_closes_when_idle() {
        let t0 = Instant::now();
        let end = t0 + 1000 * MS;
        let mut s = Schedule::starting(t0, Duration::ZERO);
        assert_eq!(s.step(t0, end, false), Step::Send);
        assert_eq!(s.sending(t0 + MS).intended, t0);
        s.hold();
        assert_eq!(s.step(t0, end, false), Step::Wait, "held until the reply");
        s.after(&Pacer::new(None, 250 * MS, t0), &testing::echo_script(&testing::context()), t0 + 10 * MS);
        assert_eq!(s.step(t0 + 100 * MS, end, false), Step::Wait);
        assert_eq!(s.step(t0 + 250 * MS, end, true), Step::Wait, "a request in flight");
        assert_eq!(s.step(t0 + 250 * MS, end, false), Step::Send);
        assert_eq!(s.step(end, end, true), Step::Wait, "the last reply is awaited");
        assert_eq!(s.step(end, end, false), Step::Close);
    }

    #[test]
    fn a_phase_moves_the_paced_requests_but_not_the_first() {
        let t0 = Instant::now();
        let end = t0 + 1000 * MS;
        let pacer = Pacer::new(None, 200 * MS, t0);
        let mut s = Schedule::starting(t0, pacer.phase(0.25));
        assert_eq!(s.step(t0, end, false), Step::Send, "the login goes at once");
        assert_eq!(s.sending(t0).intended, t0);
        s.hold();
        s.after(&pacer, &testing::echo_script(&testing::context()), t0 + 5 * MS);
        assert_eq!(s.step(t0 + 249 * MS, end, false), Step::Wait);
        assert_eq!(s.step(t0 + 250 * MS, end, false), Step::Send, "an interval plus a quarter of one");
        assert_eq!(Pacer::new(Some(Curve::constant(10.0)), 200 * MS, t0).phase(0.5), Duration::ZERO);
    }

    #[test]
    fn rate_hands_out_consecutive_slots_to_everyone() {
        let t0 = Instant::now();
        let p = Pacer::new(Some(Curve::constant(1000.0)), 250 * MS, t0);
        let slots: Vec<Instant> = (0..5).map(|_| p.next(t0, t0).0).collect();
        let want: Vec<Instant> = (0..5).map(|i| t0 + i * MS).collect();
        assert_eq!(slots, want);
        // After a pause longer than the allowed lag, old slots are skipped and counted.
        assert_eq!(p.next(t0, t0 + 1000 * MS), (t0 + 900 * MS, Missed { count: 895, period: MS }));
        assert_eq!(p.next(t0, t0 + 1000 * MS), (t0 + 901 * MS, Missed { count: 0, period: MS }));
    }

    #[test]
    fn a_ramping_rate_spaces_its_slots_by_the_ramp() {
        let t0 = Instant::now();
        let stage = crate::stages::parse_stage("1s:1000rps").unwrap();
        let p = Pacer::new(crate::stages::rate(&[stage], 0.0), 250 * MS, t0);
        let slots: Vec<Duration> = (0..=500).map(|_| p.next(t0, t0).0 - t0).collect();
        // k requests are due at sqrt(k / 500) s: the rate rises by 1000/s each second.
        let near = |d: Duration, secs: f64| (d.as_secs_f64() - secs).abs() < 1e-6;
        assert!(near(slots[125], 0.5) && near(slots[500], 1.0), "{:?} {:?}", slots[125], slots[500]);
        assert!(slots[2] - slots[1] > slots[500] - slots[499], "slots come closer as the rate rises");
    }
}
