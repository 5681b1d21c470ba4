//! Admission of one socket's datagrams: a fixed number of worker slots and a
//! bounded queue of datagrams waiting for one, as a single type so that the
//! race between "every slot is busy" and "a worker just finished" is handled
//! in one place. Overload costs a refusal (counted by the caller), never
//! memory.
//!
//! Slots and queue are per socket so that the receive loops of different
//! cores never touch the same counters on the request path.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

/// Worker slots and the queue of items waiting for one.
///
/// A caller that was admitted (`try_admit` true, `wait` giving
/// [`Wait::Drain`], or `release` true) holds one slot and must give it back
/// with [`Admission::release`].
pub struct Admission<T> {
    /// Slots taken. A plain atomic rather than `tokio::sync::Semaphore`:
    /// admission runs for every datagram and never waits, so one
    /// `fetch_add` is all it needs, while `try_acquire_owned` costs a
    /// compare-and-swap loop plus an `Arc` clone and a permit that would have
    /// to travel with the command; nothing ever waits for a slot.
    busy: AtomicUsize,
    workers: usize,
    /// Items waiting for a slot. The mutex is only taken when every slot is
    /// busy; the per-datagram check reads the atomic length instead.
    waiting: Mutex<VecDeque<T>>,
    len: AtomicUsize,
    queue: usize,
}

/// What became of an item that found every slot busy.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    /// The queue was full: the item was dropped.
    Full,
    /// The item waits for a worker that is running.
    Queued,
    /// The item waits, and the caller now holds a slot: it must start a
    /// worker to drain the queue (see [`Admission::wait`]).
    Drain,
}

impl<T> Admission<T> {
    /// `workers` slots and room for `queue` waiting items.
    pub fn new(workers: usize, queue: usize) -> Self {
        Admission {
            busy: AtomicUsize::new(0),
            workers,
            waiting: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            queue,
        }
    }

    /// Takes a slot if one is free.
    pub fn try_admit(&self) -> bool {
        if self.busy.fetch_add(1, SeqCst) < self.workers {
            return true;
        }
        self.busy.fetch_sub(1, SeqCst);
        false
    }

    /// Queues an item that found every slot busy.
    pub fn wait(&self, item: T) -> Wait {
        if !self.push(item) {
            return Wait::Full;
        }
        // A worker may have finished between the full slots and the push,
        // and found the queue empty: make sure someone drains it.
        if self.try_admit() { Wait::Drain } else { Wait::Queued }
    }

    /// Gives a slot back. True when items are waiting and the caller took a
    /// slot again: it must drain the queue (the same race as in `wait`, seen
    /// from the worker's side).
    pub fn release(&self) -> bool {
        self.busy.fetch_sub(1, SeqCst);
        !self.is_empty() && self.try_admit()
    }

    /// The oldest waiting item, for a worker that holds a slot.
    pub fn next_waiting(&self) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let item = waiting.pop_front();
        if item.is_some() {
            self.len.fetch_sub(1, SeqCst);
        }
        item
    }

    fn push(&self, item: T) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.len() >= self.queue {
            return false;
        }
        waiting.push_back(item);
        self.len.fetch_add(1, SeqCst);
        true
    }

    fn is_empty(&self) -> bool {
        self.len.load(SeqCst) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_come_back() {
        let a = Admission::<u32>::new(2, 0);
        assert!(a.try_admit());
        assert!(a.try_admit());
        assert!(!a.try_admit());
        assert!(!a.release(), "nothing waits");
        assert!(a.try_admit());
    }

    #[test]
    fn the_queue_is_bounded_and_drained_in_order() {
        let a = Admission::new(1, 2);
        assert!(a.try_admit());
        assert_eq!(a.wait(1), Wait::Queued);
        assert_eq!(a.wait(2), Wait::Queued);
        assert_eq!(a.wait(3), Wait::Full);
        // The worker finishes: it keeps its slot to drain what waits.
        assert!(a.release());
        assert_eq!(a.next_waiting(), Some(1));
        assert_eq!(a.next_waiting(), Some(2));
        assert_eq!(a.next_waiting(), None);
        assert!(!a.release());
        assert!(a.try_admit(), "the slot is free again");
    }

    #[test]
    fn an_item_queued_after_the_last_worker_left_gets_a_drainer() {
        let a = Admission::new(1, 1);
        // The receive loop found the slot busy, then the worker left before
        // the item was queued.
        assert!(a.try_admit());
        assert!(!a.release());
        assert_eq!(a.wait(7), Wait::Drain);
        assert_eq!(a.next_waiting(), Some(7));
        assert!(!a.release());
    }
}
