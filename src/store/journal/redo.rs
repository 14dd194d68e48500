//! What the journal holds: one [`Redo`] per change, replayed in order at
//! open to rebuild the in-memory state.
//!
//! A redo is deterministic: applying it to the same state always gives the
//! same state, because everything the live change decided from outside the
//! state (the clock, a lease held by the relay, which records retention
//! drops) is written into the redo itself. So one function,
//! [`State::apply`](super::state::State::apply), serves both the live write
//! and the replay, and the two cannot drift apart.
//!
//! Records are postcard-encoded, several to a journal frame (one frame per
//! group commit); a snapshot is a run of `Snapshot*` redos that rebuild the
//! whole state.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::queue::outbox::OutboxEntry;
use crate::store::{MessageRecord, ReceiptRecord, Replacement, StateUpdate, UpstreamMatch};

/// One change to the state. Variant order is part of the file format:
/// append new variants at the end, never reorder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum Redo {
    /// `Queue::enqueue`: records stored and queued, due at their schedule or
    /// `now`. Behind an `Arc` already (the state's form of a record, encoded
    /// as the record itself): the caller allocates it, not the committer.
    Enqueue { now: u64, records: Vec<Arc<MessageRecord>> },
    /// `Store::insert`: records stored (or overwritten), not queued.
    Insert(Vec<Arc<MessageRecord>>),
    /// `Store::update`.
    Update { id: String, update: StateUpdate },
    /// `Queue::settle`: the update, then the queue entry removed.
    Settle { id: String, update: StateUpdate },
    /// `Queue::ack`.
    Ack(Vec<String>),
    /// `Queue::retry`: the entry (if still queued) due again at `due_at_ms`.
    Retry { id: String, due_at_ms: u64 },
    /// cancel_sm that was allowed: DELETED and out of the queue.
    Cancelled { id: String, at_ms: u64 },
    /// replace_sm that was allowed.
    Replaced { id: String, replacement: Replacement },
    /// `Store::record_receipt`; the forwarded entries get their outbox ids
    /// from the state's counter, due at `now`.
    Receipt {
        now: u64,
        receipt: ReceiptRecord,
        update: Option<StateUpdate>,
        forward: Vec<OutboxEntry>,
    },
    /// `Outbox::push`, due at `now`.
    Push { now: u64, entries: Vec<OutboxEntry> },
    /// `Outbox::ack_delivered`.
    AckDelivered { system_id: String, ids: Vec<String> },
    /// `Outbox::retry_delivery`.
    RetryDelivery {
        system_id: String,
        id: String,
        attempts: u32,
        due_at_ms: u64,
    },
    /// `Outbox::expire`.
    Expire { now_ms: u64 },
    /// Retention: final records (with their receipts and links) dropped.
    Prune(Vec<String>),
    /// Snapshot: records, each with its queue entry's due time if queued.
    SnapshotMessages(Vec<(MessageRecord, Option<u64>)>),
    /// Snapshot: upstream links `(upstream, key, match)`.
    SnapshotLinks(Vec<(String, String, UpstreamMatch)>),
    /// Snapshot: matched receipts, each part's in arrival order.
    SnapshotReceipts(Vec<ReceiptRecord>),
    /// Snapshot: unmatched receipts, oldest first.
    SnapshotUnmatched(Vec<ReceiptRecord>),
    /// Snapshot: outbox entries with their due time, and the id counter.
    SnapshotOutbox {
        next_id: u64,
        entries: Vec<(OutboxEntry, u64)>,
    },
    /// `Queue::settle_many`: each as [`Redo::Settle`], in order.
    SettleMany(Vec<(String, StateUpdate)>),
}
