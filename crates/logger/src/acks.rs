//! Acknowledgement order: batches complete in any order (several bulk
//! requests are in flight), but their offsets may only be committed in the
//! order the batches were formed. A batch's offsets are released once it and
//! every batch formed before it are acknowledged, so a commit never runs
//! ahead of an event that is not indexed yet.

use std::collections::{BTreeMap, VecDeque};

/// Highest processed offset per partition.
pub type Offsets = BTreeMap<i32, i64>;

/// Batches formed and not yet released, oldest first.
#[derive(Debug, Default)]
pub struct Acks {
    next: u64,
    pending: VecDeque<(u64, Option<Offsets>)>,
}

impl Acks {
    /// Registers a new batch; returns its sequence number.
    pub fn register(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.pending.push_back((seq, None));
        seq
    }

    /// Batches registered and not yet released.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Records that batch `seq` is acknowledged; returns the offsets that can
    /// now be committed (the merge of every released batch), if any.
    pub fn complete(&mut self, seq: u64, offsets: Offsets) -> Option<Offsets> {
        let front = self.pending.front()?.0;
        let slot = usize::try_from(seq.checked_sub(front)?).ok()?;
        self.pending.get_mut(slot)?.1 = Some(offsets);
        let mut released: Option<Offsets> = None;
        while self.pending.front().is_some_and(|(_, o)| o.is_some()) {
            let Some((_, Some(offsets))) = self.pending.pop_front() else { break };
            released.get_or_insert_with(Offsets::new).extend(offsets);
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offs(pairs: &[(i32, i64)]) -> Offsets {
        pairs.iter().copied().collect()
    }

    #[test]
    fn released_in_formation_order() {
        let mut a = Acks::default();
        let (b0, b1, b2) = (a.register(), a.register(), a.register());
        assert_eq!(a.complete(b1, offs(&[(0, 20), (1, 5)])), None, "b0 still in flight");
        assert_eq!(a.complete(b2, offs(&[(0, 30)])), None);
        assert_eq!(a.outstanding(), 3);
        assert_eq!(a.complete(b0, offs(&[(0, 10), (2, 7)])), Some(offs(&[(0, 30), (1, 5), (2, 7)])));
        assert_eq!(a.outstanding(), 0);
        let b3 = a.register();
        assert_eq!(a.complete(b3, offs(&[(1, 9)])), Some(offs(&[(1, 9)])));
        assert_eq!(a.complete(b3, offs(&[(1, 9)])), None, "unknown batch");
        assert_eq!(a.complete(99, offs(&[(1, 9)])), None, "unknown batch");
    }
}
