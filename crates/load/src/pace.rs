//! When clients send: every `--msg-interval` on each connection, or a total
//! `--rate` shared by all of them.
//!
//! Both keep to a fixed schedule rather than sleeping a fixed time after
//! each reply, so a run sends what it promises however long replies take.
//! A client that falls far behind (a slow server, a timeout) skips the slots
//! it missed instead of sending them in a burst.
//!
//! The rate is a single atomic "next free slot": each client claims the next
//! slot when it is ready to send, whichever client that is, so the total
//! holds while connections ramp up, reconnect or wait for replies.
//!
//! [`Schedule`] is one connection's side of that, the same for every
//! transport: requests go one at a time, so what a client does next and when
//! its task must wake follow from the request in flight and the next slot.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::script::Script;

/// How far in the past a rate slot may lie before it is skipped.
const MAX_RATE_LAG: Duration = Duration::from_millis(100);

/// The sending schedule of a run.
#[derive(Debug)]
pub enum Pacer {
    /// Each connection sends every interval (0: as soon as it has its reply).
    Interval(Duration),
    /// All connections together send `1 / period` messages per second.
    Rate(RateSlots),
}

/// Slots of a total rate, counted in nanoseconds from `start`.
#[derive(Debug)]
pub struct RateSlots {
    start: Instant,
    period_ns: u64,
    next_ns: AtomicU64,
}

impl Pacer {
    /// A pacer for `rate` messages per second in total, or else `interval`
    /// per connection.
    pub fn new(rate: Option<f64>, interval: Duration, start: Instant) -> Pacer {
        match rate {
            Some(r) => {
                Pacer::Rate(RateSlots { start, period_ns: ((1e9 / r) as u64).max(1), next_ns: AtomicU64::new(0) })
            }
            None => Pacer::Interval(interval),
        }
    }

    /// When a connection whose previous paced message was due at `previous`
    /// may send its next one, seen at `now`.
    pub fn next(&self, previous: Instant, now: Instant) -> Instant {
        match self {
            Pacer::Interval(d) if d.is_zero() => now,
            Pacer::Interval(d) => {
                let next = previous + *d;
                if next + *d < now { now } else { next }
            }
            Pacer::Rate(slots) => slots.claim(now),
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
}

impl Schedule {
    /// A schedule whose first request goes at once.
    pub fn starting(now: Instant) -> Schedule {
        Schedule { next: Some(now), slot: now }
    }

    /// What the client does at `now`, with or without a request `in_flight`
    /// (sent, and within its read timeout), its time being up at `end`.
    pub fn step(&self, now: Instant, end: Instant, in_flight: bool) -> Step {
        if in_flight {
            Step::Wait
        } else if now >= end {
            Step::Close
        } else if self.next.is_some_and(|t| t <= now) {
            Step::Send
        } else {
            Step::Wait
        }
    }

    /// Holds further requests until the one going now is done.
    pub fn hold(&mut self) {
        self.next = None;
    }

    /// Lets the next request go at `at`, off the pacer's schedule (a retry).
    pub fn retry_at(&mut self, at: Instant) {
        self.next = Some(at);
    }

    /// Schedules the request after the one just finished (replied or timed
    /// out), if the script has more to say.
    pub fn after(&mut self, pacer: &Pacer, script: &Script, now: Instant) {
        if script.wants_to_send() {
            self.slot = pacer.next(self.slot, now);
            self.next = Some(self.slot);
        }
    }

    /// Sets `timer` to when the client's task must wake: the reply deadline
    /// of the request in flight, if any, else the next send, and never after
    /// `end`. A timer already right is left alone: resetting it costs a trip
    /// through the timer wheel.
    pub fn set_timer(&self, timer: Pin<&mut Sleep>, reply_due: Option<Instant>, end: Instant) {
        let wake = reply_due.unwrap_or_else(|| self.next.map_or(end, |t| t.min(end)));
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

impl RateSlots {
    /// Claims the next free slot.
    fn claim(&self, now: Instant) -> Instant {
        let now_ns = now.saturating_duration_since(self.start).as_nanos() as u64;
        let floor = now_ns.saturating_sub(MAX_RATE_LAG.as_nanos() as u64);
        let mut slot = 0;
        let _ = self.next_ns.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
            slot = next.max(floor);
            Some(slot + self.period_ns)
        });
        self.start + Duration::from_nanos(slot)
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
        assert_eq!(p.next(t0, t0 + 10 * MS), t0 + 250 * MS);
        // A slow reply does not push the schedule back...
        assert_eq!(p.next(t0, t0 + 300 * MS), t0 + 250 * MS);
        // ...but a whole missed interval is skipped, not sent in a burst.
        assert_eq!(p.next(t0, t0 + 600 * MS), t0 + 600 * MS);
        let asap = Pacer::new(None, Duration::ZERO, t0);
        assert_eq!(asap.next(t0, t0 + 7 * MS), t0 + 7 * MS);
    }

    #[test]
    fn a_schedule_sends_one_request_at_a_time_and_closes_when_idle() {
        let t0 = Instant::now();
        let end = t0 + 1000 * MS;
        let mut s = Schedule::starting(t0);
        assert_eq!(s.step(t0, end, false), Step::Send);
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
    fn rate_hands_out_consecutive_slots_to_everyone() {
        let t0 = Instant::now();
        let p = Pacer::new(Some(1000.0), 250 * MS, t0);
        let slots: Vec<Instant> = (0..5).map(|_| p.next(t0, t0)).collect();
        let want: Vec<Instant> = (0..5).map(|i| t0 + i * MS).collect();
        assert_eq!(slots, want);
        // After a pause longer than the allowed lag, old slots are skipped.
        assert_eq!(p.next(t0, t0 + 1000 * MS), t0 + 900 * MS);
        assert_eq!(p.next(t0, t0 + 1000 * MS), t0 + 901 * MS);
    }
}
