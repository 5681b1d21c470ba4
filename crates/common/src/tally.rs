//! Counters bumped on every command or packet, counted per thread and
//! added up when `/metrics` is rendered.
//!
//! A `metrics` counter is one atomic that every core adds to (two with the
//! Prometheus exporter, which also counts the counter's updates): at
//! 100,000 replies a second on two cores, the cache lines holding the
//! counters a reply bumps move between the cores on nearly every reply
//! (docs/performance.md, "Counters without shared cache lines"). A
//! [`Tally`] is a slot in an array of counts that only its own thread
//! writes, a plain load and store with no lock prefix; [`collect`], called
//! on each render, adds the threads' counts up and sets the exported
//! counter to the sum. A scrape therefore sees every count made before it,
//! as with a shared counter. `metrics` has no per-thread counter (its
//! exporters keep one atomic per metric), hence this module.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use metrics::{Label, counter};

/// How many distinct counters may be tallied: the servers use about
/// thirty, a fixed set named in code.
pub const SLOTS: usize = 64;

/// A counter kept per thread; clone it freely (it is an index).
#[derive(Debug, Clone, Copy)]
pub struct Tally {
    slot: usize,
}

/// One thread's counts.
struct Shard([AtomicU64; SLOTS]);

/// The counters' names, the live threads' shards, and what threads that
/// ended had counted.
struct Registry {
    keys: Vec<(&'static str, Vec<(&'static str, &'static str)>)>,
    shards: Vec<Arc<Shard>>,
    retired: [u64; SLOTS],
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { keys: Vec::new(), shards: Vec::new(), retired: [0; SLOTS] });

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
            *kept += count.load(Relaxed);
        }
        registry.shards.retain(|shard| !Arc::ptr_eq(shard, &self.0));
    }
}

thread_local! {
    static LOCAL: Local = Local::new();
}

impl Tally {
    /// The tally of counter `name` with `labels`; the same name and labels
    /// give the same tally.
    ///
    /// # Panics
    /// When more than [`SLOTS`] distinct counters are tallied: the set is
    /// fixed in code, so that is a programming error.
    pub fn new(name: &'static str, labels: &[(&'static str, &'static str)]) -> Tally {
        let mut registry = registry();
        let key = (name, labels.to_vec());
        let slot = match registry.keys.iter().position(|k| *k == key) {
            Some(slot) => slot,
            None => {
                assert!(registry.keys.len() < SLOTS, "more than {SLOTS} tallied counters");
                registry.keys.push(key);
                registry.keys.len() - 1
            }
        };
        Tally { slot }
    }

    /// Adds `n`.
    #[inline]
    pub fn increment(self, n: u64) {
        let counted = LOCAL.try_with(|local| {
            let count = &local.0.0[self.slot];
            // Only this thread writes its shard: no read-modify-write needed.
            count.store(count.load(Relaxed).wrapping_add(n), Relaxed);
        });
        if counted.is_err() {
            // The thread is ending and its shard is already retired.
            registry().retired[self.slot] += n;
        }
    }
}

/// Sets every tallied counter of the installed recorder to its sum over
/// threads; called before `/metrics` is rendered.
pub fn collect() {
    let registry = registry();
    for (slot, (name, labels)) in registry.keys.iter().enumerate() {
        let labels: Vec<Label> = labels.iter().map(|&(k, v)| Label::from_static_parts(k, v)).collect();
        counter!(*name, labels).absolute(registry.sum(slot));
    }
}

impl Registry {
    /// What every thread, live or ended, counted in `slot`.
    fn sum(&self, slot: usize) -> u64 {
        self.retired[slot] + self.shards.iter().map(|shard| shard.0[slot].load(Relaxed)).sum::<u64>()
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
