//! The queue's due index: published, unleased entries in `(due, seq)` order,
//! which `reserve` takes from the front.
//!
//! Nearly every entry is a message just enqueued: due now, with a sequence
//! number above every other's, so it belongs at the very end. Those are
//! appended to a run of fixed-size chunks (a push, no search); only the
//! others (scheduled for later, retried, back from a lease) go to a
//! B-tree. Inserting every entry into one B-tree was ~20% of the
//! committer's work per enqueued message in the ingest profile (4 binds x
//! window 256). Chunks, not one `VecDeque`: a deque that doubles copies
//! every entry at once with the state locked (tried: the ingest's p99.9
//! went from ~6 to ~10 ms); a new chunk costs one allocation.
//!
//! An entry is removed from the B-tree at once, but not from the middle of
//! the run: it stays there, stale, until `pop_due` reaches it, and the
//! caller tells stale entries by their sequence number (as it does for
//! entries removed before they were published; see `QueuePlace`). The run
//! only takes entries that were due when they came, so the relay reaches
//! them soon.

use std::collections::{BTreeMap, VecDeque};

use super::id::Id;

/// Entries per chunk of the run.
const CHUNK: usize = 4096;

#[derive(Default)]
pub(super) struct DueIndex {
    /// Entries that were due on arrival and came in order: ascending, in
    /// chunks of at most `CHUNK`; each chunk is consumed from its front.
    in_order: VecDeque<VecDeque<(u64, u64, Id)>>,
    /// Every other entry: (due, seq) -> id.
    out_of_order: BTreeMap<(u64, u64), Id>,
}

impl DueIndex {
    /// Adds the entry `(due_at_ms, seq)` of message `id`; `now_ms` is the
    /// wall clock.
    pub(super) fn insert(&mut self, due_at_ms: u64, seq: u64, id: Id, now_ms: u64) {
        let after_last = self
            .in_order
            .back()
            .and_then(|chunk| chunk.back())
            .is_none_or(|&(due, last, _)| (due, last) < (due_at_ms, seq));
        if due_at_ms > now_ms || !after_last {
            self.out_of_order.insert((due_at_ms, seq), id);
            return;
        }
        match self.in_order.back_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push_back((due_at_ms, seq, id)),
            _ => {
                let mut chunk = VecDeque::with_capacity(CHUNK);
                chunk.push_back((due_at_ms, seq, id));
                self.in_order.push_back(chunk);
            }
        }
    }

    /// Removes the entry `(due_at_ms, seq)`, or leaves it to be dropped as
    /// stale when reached (see the module docs).
    pub(super) fn remove(&mut self, due_at_ms: u64, seq: u64) {
        self.out_of_order.remove(&(due_at_ms, seq));
    }

    /// Takes the first entry if it is due by `wall_ms`: its sequence number
    /// and message id. The caller checks it is not stale.
    pub(super) fn pop_due(&mut self, wall_ms: u64) -> Option<(u64, Id)> {
        let front = self
            .in_order
            .front()
            .and_then(|chunk| chunk.front())
            .map(|&(due, seq, _)| (due, seq));
        let first = self.out_of_order.first_key_value().map(|(&key, _)| key);
        let from_run = match (front, first) {
            (Some(front), Some(first)) => front < first,
            (front, _) => front.is_some(),
        };
        if from_run {
            if front.is_some_and(|(due, _)| due > wall_ms) {
                return None;
            }
            let chunk = self.in_order.front_mut()?;
            let (_, seq, id) = chunk.pop_front()?;
            if chunk.is_empty() {
                self.in_order.pop_front();
            }
            Some((seq, id))
        } else {
            let entry = self.out_of_order.first_entry()?;
            if entry.key().0 > wall_ms {
                return None;
            }
            let ((_, seq), id) = entry.remove_entry();
            Some((seq, id))
        }
    }

    /// Entries held, stale ones included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.in_order.iter().map(VecDeque::len).sum::<usize>() + self.out_of_order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Id {
        Id::new(&format!("{n:x}"))
    }

    fn drain(index: &mut DueIndex, wall_ms: u64) -> Vec<u64> {
        std::iter::from_fn(|| index.pop_due(wall_ms).map(|(seq, _)| seq)).collect()
    }

    #[test]
    fn entries_come_out_in_due_then_sequence_order_wherever_they_are_held() {
        let mut index = DueIndex::default();
        // Due now, in order: the run.
        index.insert(100, 1, id(1), 100);
        index.insert(100, 2, id(2), 100);
        index.insert(101, 4, id(4), 101);
        // Scheduled later, a retry due earlier, a lease back: the tree.
        index.insert(500, 5, id(5), 101);
        index.insert(100, 3, id(3), 101);
        index.insert(50, 0, id(0), 101);
        assert_eq!(index.out_of_order.len(), 3);
        assert_eq!(drain(&mut index, 200), [0, 1, 2, 3, 4]);
        // Not due yet: stays.
        assert_eq!(drain(&mut index, 499), Vec::<u64>::new());
        assert_eq!(drain(&mut index, 500), [5]);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn a_removed_entry_is_gone_from_the_tree_and_stale_in_the_run() {
        let mut index = DueIndex::default();
        index.insert(100, 1, id(1), 100);
        index.insert(900, 2, id(2), 100);
        index.remove(100, 1);
        index.remove(900, 2);
        assert_eq!(index.len(), 1, "the run's entry stays until reached");
        assert_eq!(drain(&mut index, 1000), [1], "the caller drops it by its seq");
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn an_entry_due_later_does_not_hold_up_the_run() {
        let mut index = DueIndex::default();
        index.insert(10_000, 1, id(1), 100);
        // Later entries due now still take the fast path.
        for seq in 2..100 {
            index.insert(100 + seq, seq, id(seq), 100 + seq);
        }
        assert_eq!(index.out_of_order.len(), 1);
        assert_eq!(drain(&mut index, 1_000).len(), 98);
        assert_eq!(drain(&mut index, 10_000), [1]);
    }

    #[test]
    fn the_run_spans_chunks_in_order() {
        let mut index = DueIndex::default();
        let n = 3 * CHUNK as u64 + 5;
        for seq in 0..n {
            index.insert(7, seq, id(seq), 7);
        }
        assert_eq!(index.in_order.len(), 4);
        assert!(index.out_of_order.is_empty());
        assert_eq!(drain(&mut index, 7), (0..n).collect::<Vec<_>>());
        assert!(index.in_order.is_empty(), "emptied chunks are let go");
    }
}
