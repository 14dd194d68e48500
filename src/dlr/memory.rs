//! An in-memory [`Store`] and [`Outbox`] for the correlator's unit tests:
//! the receipts contract of the traits (links written by `update`,
//! `record_receipt` with duplicates and unmatched copies), nothing durable,
//! and a switch that makes every call fail like a broken backend.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;

use crate::{
    queue::outbox::{Outbox, OutboxEntry},
    store::{
        ChangeOutcome, MessageRecord, ReceiptOutcome, ReceiptRecord, Replacement, StateUpdate, StorageError, Store,
        UpstreamMatch,
    },
};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Every call fails while set.
    pub failing: AtomicBool,
    /// `receipts` pauses this long after reading (like a slow backend), so
    /// that concurrent handlers of one message really interleave.
    pub receipts_pause_ms: AtomicU64,
}

#[derive(Default)]
struct State {
    records: HashMap<String, MessageRecord>,
    links: HashMap<(String, String), UpstreamMatch>,
    receipts: Vec<ReceiptRecord>,
    unmatched: Vec<ReceiptRecord>,
    outbox: Vec<OutboxEntry>,
    next_entry: u64,
}

impl MemoryStore {
    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, StorageError> {
        if self.failing.load(Relaxed) {
            return Err(StorageError::Engine("failing on purpose".into()));
        }
        Ok(self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn unsupported<T>() -> Result<T, StorageError> {
    Err(StorageError::Engine("not used by these tests".into()))
}

#[async_trait]
impl Store for MemoryStore {
    async fn insert(&self, records: &[MessageRecord]) -> Result<(), StorageError> {
        let mut state = self.state()?;
        for r in records {
            state.records.insert(r.id.clone(), r.clone());
        }
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<MessageRecord>, StorageError> {
        Ok(self.state()?.records.get(id).cloned())
    }

    async fn update(&self, id: &str, update: StateUpdate) -> Result<bool, StorageError> {
        let mut state = self.state()?;
        let Some(record) = state.records.get_mut(id) else {
            return Ok(false);
        };
        if !record.state.is_final() {
            record.state = update.state;
            record.error_code = update.error_code.or(record.error_code);
            if update.upstream_id.is_some() {
                record.upstream_id = update.upstream_id;
            }
            if let Some(link) = &update.link {
                record.parts_sent = record.parts_sent.max(link.part.saturating_add(1));
                record.upstream = Some(link.upstream.clone());
            }
            record.updated_at_ms = update.at_ms;
        }
        if let Some(link) = update.link.filter(|l| !l.key.is_empty()) {
            let m = UpstreamMatch {
                id: id.to_string(),
                part: link.part,
            };
            state.links.insert((link.upstream, link.key), m);
        }
        Ok(true)
    }

    async fn cancel(&self, _id: &str, _system_id: &str, _at_ms: u64) -> Result<ChangeOutcome, StorageError> {
        unsupported()
    }

    async fn replace(&self, _id: &str, _system_id: &str, _r: Replacement) -> Result<ChangeOutcome, StorageError> {
        unsupported()
    }

    async fn find_by_upstream(&self, upstream: &str, key: &str) -> Result<Option<UpstreamMatch>, StorageError> {
        Ok(self
            .state()?
            .links
            .get(&(upstream.to_string(), key.to_string()))
            .cloned())
    }

    async fn record_receipt(
        &self,
        receipt: ReceiptRecord,
        update: Option<StateUpdate>,
        forward: Vec<OutboxEntry>,
    ) -> Result<ReceiptOutcome, StorageError> {
        let mut state = self.state()?;
        let Some(matched) = receipt.matched.clone() else {
            state.unmatched.push(receipt);
            return Ok(ReceiptOutcome::Recorded);
        };
        if state
            .receipts
            .iter()
            .any(|r| r.matched.as_ref() == Some(&matched) && r.state == receipt.state)
        {
            return Ok(ReceiptOutcome::Duplicate);
        }
        state
            .unmatched
            .retain(|u| !(u.upstream == receipt.upstream && u.key == receipt.key));
        if let (Some(update), Some(record)) = (update, state.records.get_mut(&matched.id)) {
            if !record.state.is_final() {
                record.state = update.state;
                record.error_code = update.error_code;
            }
        }
        state.receipts.push(receipt);
        for mut entry in forward {
            state.next_entry += 1;
            entry.id = state.next_entry.to_string();
            state.outbox.push(entry);
        }
        Ok(ReceiptOutcome::Recorded)
    }

    async fn receipts(&self, id: &str) -> Result<Vec<ReceiptRecord>, StorageError> {
        let found = self
            .state()?
            .receipts
            .iter()
            .filter(|r| r.matched.as_ref().is_some_and(|m| m.id == id))
            .cloned()
            .collect();
        let pause = self.receipts_pause_ms.load(Relaxed);
        if pause > 0 {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        Ok(found)
    }

    async fn unmatched_receipts(&self, max: usize) -> Result<Vec<ReceiptRecord>, StorageError> {
        Ok(self.state()?.unmatched.iter().take(max).cloned().collect())
    }

    async fn unmatched_count(&self) -> Result<u64, StorageError> {
        Ok(self.state()?.unmatched.len() as u64)
    }
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn push(&self, entries: Vec<OutboxEntry>) -> Result<(), StorageError> {
        let mut state = self.state()?;
        for mut entry in entries {
            state.next_entry += 1;
            entry.id = state.next_entry.to_string();
            state.outbox.push(entry);
        }
        Ok(())
    }

    /// Every entry of `system_id` (no leases: the tests only look).
    async fn reserve_for(
        &self,
        system_id: &str,
        max: usize,
        _lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StorageError> {
        Ok(self
            .state()?
            .outbox
            .iter()
            .filter(|e| e.system_id == system_id)
            .take(max)
            .cloned()
            .collect())
    }

    async fn ack_delivered(&self, _system_id: &str, _ids: &[String]) -> Result<(), StorageError> {
        unsupported()
    }

    async fn retry_delivery(&self, _s: &str, _id: &str, _attempts: u32, _due_at_ms: u64) -> Result<(), StorageError> {
        unsupported()
    }

    async fn depth_for(&self, system_id: &str) -> Result<u64, StorageError> {
        Ok(self.state()?.outbox.iter().filter(|e| e.system_id == system_id).count() as u64)
    }

    async fn waiting_clients(&self) -> Result<Vec<String>, StorageError> {
        unsupported()
    }

    async fn expire(&self, _now_ms: u64) -> Result<u64, StorageError> {
        unsupported()
    }
}
