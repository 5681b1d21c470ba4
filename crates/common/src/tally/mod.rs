//! Counters and latency histograms recorded on every command or packet,
//! kept per thread and added up when `/metrics` is rendered.
//!
//! A `metrics` counter is one atomic that every core adds to (two with the
//! Prometheus exporter, which also counts the counter's updates), and a
//! `metrics` histogram appends each sample to one shared list (two atomic
//! read-modify-writes and an epoch fence): at 100,000 replies a second on
//! two cores, the cache lines a reply writes move between the cores on
//! nearly every reply (docs/performance.md, "Counters without shared cache
//! lines"). A [`Tally`] is a slot in an array of counts that only its own
//! thread writes, a plain load and store with no lock prefix; a
//! [`TallyHistogram`] is a run of such slots, one per bucket and one for the
//! sum. [`collect`], called on each render, sets the exported counters to
//! the threads' sums, and [`histogram::render`] writes the histograms in
//! the exporter's own format. A scrape therefore sees every count made
//! before it, as with shared metrics. `metrics` has no per-thread counter or
//! histogram (its exporters keep shared storage per metric), hence this
//! module.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use metrics::{Label, counter};

pub mod histogram;

pub use histogram::TallyHistogram;

/// How many slots the counters and histograms may take together: the
/// servers' fixed set, named in code, takes about 240 (a histogram takes
/// one per bucket, one for the overflow and one for the sum).
pub const SLOTS: usize = 384;

/// A counter kept per thread; clone it freely (it is an index).
#[derive(Debug, Clone, Copy)]
pub struct Tally {
    slot: usize,
}

/// A metric's name and labels.
type Key = (&'static str, Vec<(&'static str, &'static str)>);

/// One thread's counts.
struct Shard([AtomicU64; SLOTS]);

/// What was registered, the live threads' shards, and what threads that
/// ended had counted.
struct Registry {
    /// Each counter's key and slot.
    counters: Vec<(Key, usize)>,
    /// Each histogram's key, bucket bounds and first slot.
    histograms: Vec<(Key, &'static [f64], usize)>,
    /// The first slot not yet taken.
    next: usize,
    shards: Vec<Arc<Shard>>,
    retired: [u64; SLOTS],
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    counters: Vec::new(),
    histograms: Vec::new(),
    next: 0,
    shards: Vec::new(),
    retired: [0; SLOTS],
});

fn registry() -> MutexGuard<'static, Registry> {
    // The registry's state is valid after any panic: every change is one push or one add.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A thread's shard, registered on its first count and retired (its
/// counts kept) when the thread ends.
struct Local(Arc<Shard>);

impl Local {
    fn new() -> Local {
        let shard = Arc::new(Shard(std::array::from_fn(|_| AtomicU64::new(0))));
        registry().shards.push(shard.clone());
        Local(shard)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let mut registry = registry();
        for (kept, count) in registry.retired.iter_mut().zip(&self.0.0) {
            *kept = kept.wrapping_add(count.load(Relaxed));
        }
        registry.shards.retain(|shard| !Arc::ptr_eq(shard, &self.0));
    }
}

thread_local! {
    static LOCAL: Local = Local::new();
}

/// Adds each `(slot, n)` to this thread's counts.
#[inline]
fn add<const N: usize>(counts: [(usize, u64); N]) {
    let counted = LOCAL.try_with(|local| {
        for (slot, n) in counts {
            let count = &local.0.0[slot];
            // Only this thread writes its shard: no read-modify-write needed.
            count.store(count.load(Relaxed).wrapping_add(n), Relaxed);
        }
    });
    if counted.is_err() {
        // The thread is ending and its shard is already retired.
        let mut registry = registry();
        for (slot, n) in counts {
            registry.retired[slot] = registry.retired[slot].wrapping_add(n);
        }
    }
}

impl Registry {
    /// Takes `n` slots.
    ///
    /// # Panics
    /// When more than [`SLOTS`] are taken: the set of tallied metrics is
    /// fixed in code, so that is a programming error.
    fn take(&mut self, n: usize) -> usize {
        assert!(self.next + n <= SLOTS, "tallied metrics need more than {SLOTS} slots");
        self.next += n;
        self.next - n
    }

    /// What every thread, live or ended, counted in `slot`.
    fn sum(&self, slot: usize) -> u64 {
        self.shards.iter().fold(self.retired[slot], |sum, shard| sum.wrapping_add(shard.0[slot].load(Relaxed)))
    }
}

impl Tally {
    /// The tally of counter `name` with `labels`; the same name and labels
    /// give the same tally.
    ///
    /// # Panics
    /// When the tallied metrics take more than [`SLOTS`] slots.
    pub fn new(name: &'static str, labels: &[(&'static str, &'static str)]) -> Tally {
        let mut registry = registry();
        let key = (name, labels.to_vec());
        let slot = match registry.counters.iter().find(|(k, _)| *k == key) {
            Some(&(_, slot)) => slot,
            None => {
                let slot = registry.take(1);
                registry.counters.push((key, slot));
                slot
            }
        };
        Tally { slot }
    }

    /// Adds `n`.
    #[inline]
    pub fn increment(self, n: u64) {
        add([(self.slot, n)]);
    }
}

/// Sets every tallied counter of the installed recorder to its sum over
/// threads; called before `/metrics` is rendered.
pub fn collect() {
    let registry = registry();
    for ((name, labels), slot) in &registry.counters {
        let labels: Vec<Label> = labels.iter().map(|&(k, v)| Label::from_static_parts(k, v)).collect();
        counter!(*name, labels).absolute(registry.sum(*slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sum of `tally` over threads, as [`collect`] exports it.
    fn sum(tally: Tally) -> u64 {
        registry().sum(tally.slot)
    }

    /// Counts made on threads that ended are kept, as are the live ones'.
    #[test]
    fn counts_from_every_thread_add_up_including_ended_threads() {
        let tally = Tally::new("playground_test_tally_total", &[("kind", "a")]);
        let same = Tally::new("playground_test_tally_total", &[("kind", "a")]);
        let other = Tally::new("playground_test_tally_total", &[("kind", "b")]);
        assert_eq!(tally.slot, same.slot);
        assert_ne!(tally.slot, other.slot);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        tally.increment(1);
                    }
                    same.increment(5);
                })
            })
            .collect();
        tally.increment(2);
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(sum(tally), 4 * 1005 + 2);
        assert_eq!(sum(other), 0);
    }
}
