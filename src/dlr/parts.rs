//! Receipts of messages the relay sent in several parts (an upstream with
//! `long_messages = "udh"` or `"sar"`): every part has its own upstream id
//! and its own receipt.
//!
//! - [`aggregate`]: the message's outcome once every part has a final
//!   receipt: DELIVERED if every part was delivered, else the state (and
//!   error) of the first part, in part order, that was not. A part's outcome
//!   is its first final receipt (a carrier that later sends another final
//!   state for the same part does not change what the client was told).
//! - [`IdLocks`]: receipts of the same message handled one at a time. The
//!   correlator handles many PDUs at once; without it, the final receipts of
//!   the last two parts handled together would each read the other part as
//!   not final yet, and no one would record the message's outcome or send
//!   the client its one receipt under `part_policy = "final"`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::store::{MessageState, ReceiptRecord, StorageError};

/// One part's final receipt, as far as the aggregate is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartOutcome {
    pub part: u16,
    pub state: MessageState,
    pub error_code: Option<u32>,
}

/// The message's outcome when each of its parts `0..total` has a final
/// receipt among `recorded` (receipts of one message, each part's in
/// arrival order) and `current` (the receipt being handled, after them);
/// `None` while a part has none. The outcome's `part` is the part it comes
/// from (the last part when every part was delivered).
pub fn aggregate(total: u16, recorded: &[ReceiptRecord], current: PartOutcome) -> Option<PartOutcome> {
    let mut first_final: Vec<Option<PartOutcome>> = vec![None; usize::from(total)];
    let recorded = recorded.iter().filter_map(|r| {
        r.matched.as_ref().map(|m| PartOutcome {
            part: m.part,
            state: r.state,
            error_code: r.error_code,
        })
    });
    for outcome in recorded.chain(std::iter::once(current)) {
        if !outcome.state.is_final() {
            continue;
        }
        if let Some(slot @ None) = first_final.get_mut(usize::from(outcome.part)) {
            *slot = Some(outcome);
        }
    }
    let outcomes: Vec<PartOutcome> = first_final.into_iter().collect::<Option<_>>()?;
    outcomes
        .iter()
        .find(|o| o.state != MessageState::Delivered)
        .or(outcomes.last())
        .copied()
}

/// A lock per message id, held while one of its receipts is handled.
///
/// Bounded: an entry exists only while a receipt of that id is being
/// handled or waits for the lock, so there are never more entries than
/// receipts in hand (the correlator's `concurrency`). Waiting is bounded by
/// the caller's timeout.
#[derive(Debug, Default)]
pub struct IdLocks {
    locks: Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>,
}

/// Holds the lock of one id; dropping it releases the lock (and removes the
/// entry when no one else wants it).
pub struct IdGuard {
    locks: Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>,
    id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl IdLocks {
    /// Waits (at most `limit`) for the lock of `id`.
    pub async fn lock(&self, id: &str, limit: Duration) -> Result<IdGuard, StorageError> {
        let mutex = {
            let mut locks = self
                .locks
                .lock()
                .map_err(|_| StorageError::Engine("id lock map poisoned".into()))?;
            locks.entry(id.to_string()).or_default().clone()
        };
        // Built before waiting: a wait that times out still drops its entry.
        let mut held = IdGuard {
            locks: self.locks.clone(),
            id: id.to_string(),
            guard: None,
        };
        let guard = tokio::time::timeout(limit, mutex.lock_owned())
            .await
            .map_err(|_| StorageError::Timeout(limit))?;
        held.guard = Some(guard);
        Ok(held)
    }

    /// Ids with an entry now (for tests).
    pub fn len(&self) -> usize {
        self.locks.lock().map(|l| l.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for IdGuard {
    fn drop(&mut self) {
        // Under the map's lock (where every clone of an entry is made): once
        // our guard is gone, the map's own reference being the only one
        // means nobody holds or waits for this id.
        let Ok(mut locks) = self.locks.lock() else { return };
        self.guard = None;
        if locks.get(&self.id).is_some_and(|m| Arc::strong_count(m) == 1) {
            locks.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UpstreamMatch;
    use bytes::Bytes;

    fn recorded(part: u16, state: MessageState, error_code: Option<u32>) -> ReceiptRecord {
        ReceiptRecord {
            upstream: "carrier".into(),
            key: format!("k{part}"),
            matched: Some(UpstreamMatch { id: "m".into(), part }),
            state,
            error_code,
            received_at_ms: 1,
            text: Bytes::new(),
        }
    }

    fn current(part: u16, state: MessageState, error_code: Option<u32>) -> PartOutcome {
        PartOutcome {
            part,
            state,
            error_code,
        }
    }

    use MessageState::{Delivered, Enroute, Expired, Undeliverable};

    #[test]
    fn every_part_must_be_final() {
        let r = [recorded(0, Delivered, None), recorded(1, Enroute, None)];
        assert_eq!(
            aggregate(3, &r, current(2, Delivered, None)),
            None,
            "part 1 is not final"
        );
        assert_eq!(aggregate(2, &[], current(0, Delivered, None)), None);
        assert_eq!(aggregate(3, &r, current(2, Enroute, None)), None);
    }

    #[test]
    fn all_delivered_is_delivered() {
        let r = [recorded(1, Delivered, None), recorded(0, Delivered, None)];
        assert_eq!(
            aggregate(3, &r, current(2, Delivered, None)),
            Some(current(2, Delivered, None))
        );
    }

    #[test]
    fn the_first_failed_part_in_part_order_decides() {
        let r = [
            recorded(2, Undeliverable, Some(11)),
            recorded(0, Delivered, None),
            recorded(1, Enroute, None),
        ];
        assert_eq!(
            aggregate(3, &r, current(1, Expired, Some(22))),
            Some(current(1, Expired, Some(22))),
            "part 1 comes before part 2, although it arrived later"
        );
        let r = [recorded(0, Delivered, None), recorded(1, Delivered, None)];
        assert_eq!(
            aggregate(3, &r, current(2, Undeliverable, Some(7))),
            Some(current(2, Undeliverable, Some(7)))
        );
    }

    #[test]
    fn a_part_keeps_its_first_final_state() {
        let r = [recorded(0, Delivered, None), recorded(1, Delivered, None)];
        assert_eq!(
            aggregate(2, &r, current(0, Undeliverable, Some(1))),
            Some(current(1, Delivered, None)),
            "a second final receipt for part 0 changes nothing"
        );
    }

    #[test]
    fn parts_beyond_the_total_are_ignored() {
        let r = [recorded(0, Delivered, None), recorded(5, Undeliverable, None)];
        assert_eq!(
            aggregate(2, &r, current(1, Delivered, None)),
            Some(current(1, Delivered, None))
        );
    }

    #[tokio::test]
    async fn one_receipt_of_an_id_at_a_time_and_entries_go_away() {
        let locks = IdLocks::default();
        let a = locks.lock("m", Duration::from_secs(1)).await.unwrap();
        let other = locks.lock("n", Duration::from_secs(1)).await.unwrap();
        assert!(matches!(
            locks.lock("m", Duration::from_millis(20)).await,
            Err(StorageError::Timeout(_))
        ));
        assert_eq!(locks.len(), 2, "the timed-out wait left no extra entry");
        drop(other);
        assert_eq!(locks.len(), 1);
        let locks = Arc::new(locks);
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.lock("m", Duration::from_secs(5)).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits while the lock is held");
        drop(a);
        waiter.await.unwrap().unwrap();
        assert!(locks.is_empty());
    }
}
