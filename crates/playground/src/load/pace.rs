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

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

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
