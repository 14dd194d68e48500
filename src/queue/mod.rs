//! The work queue between the client-facing side and the relay.
//!
//! A message is acknowledged to its client only after [`Queue::enqueue`]
//! returned: then it is durable in the message store *and* queued. The
//! embedded implementation ([`crate::store::embedded`]) writes both in one
//! transaction, group-committed; the Redis implementation (cluster profile)
//! inserts into its `Store` first and then adds the stream entry.

pub mod outbox;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use crate::store::{MessageRecord, StateUpdate, StorageError};

/// `records` behind the `Arc`s [`Queue::enqueue`] takes. The gateway's
/// sessions make each record behind its `Arc` as they take the submit: the
/// journal keeps it there, so a batch is neither copied into a growing
/// `Vec` of records nor copied again into the `Arc`s (a tenth of a
/// session's samples in the ingest profile, 4 binds x window 256).
pub fn shared(records: impl IntoIterator<Item = MessageRecord>) -> Vec<Arc<MessageRecord>> {
    records.into_iter().map(Arc::new).collect()
}

/// Durable queue of messages waiting for the relay.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Stores `records` (state ACCEPTED) and queues them, due at their
    /// `schedule_at_ms` (or now). Returns once both are durable. Concurrent
    /// callers share one sync (group commit).
    async fn enqueue(&self, records: Vec<Arc<MessageRecord>>) -> Result<(), StorageError>;

    /// Up to `max` messages that are due, each leased for `lease`: until it
    /// is acked, retried or the lease runs out, nobody else gets it. A lease
    /// lost in a crash returns the message to the queue (at-least-once).
    async fn reserve(&self, max: usize, lease: Duration) -> Result<Vec<MessageRecord>, StorageError>;

    /// Removes messages that are done with (submitted upstream, or final).
    async fn ack(&self, ids: &[String]) -> Result<(), StorageError>;

    /// The relay's outcome for a leased message it is done with: `update`
    /// applied to the record as [`Store::update`](crate::store::Store::update)
    /// does, then the queue entry removed, as one durable step (the embedded
    /// engine: one transaction, one request to its committer instead of
    /// two). `Ok(false)` when the record is unknown or already final; the
    /// entry is removed all the same. On an error neither happened, and the
    /// message returns when its lease runs out.
    async fn settle(&self, id: &str, update: StateUpdate) -> Result<bool, StorageError>;

    /// [`settle`](Self::settle) for several messages, answered in order.
    /// The embedded engines make the whole batch durable as one request to
    /// their committer (the relay settles every message it takes, see
    /// `relay/settler.rs` for what one request each cost); this default
    /// settles them one by one. On an error some may be settled and some not; the
    /// unsettled ones return when their leases run out.
    async fn settle_many(&self, settles: Vec<(String, StateUpdate)>) -> Result<Vec<bool>, StorageError> {
        let mut found = Vec::with_capacity(settles.len());
        for (id, update) in settles {
            found.push(self.settle(&id, update).await?);
        }
        Ok(found)
    }

    /// Puts a leased message back, due at `due_at_ms` (Unix milliseconds).
    async fn retry(&self, id: &str, due_at_ms: u64) -> Result<(), StorageError>;

    /// Messages queued (leased or not).
    async fn depth(&self) -> Result<u64, StorageError>;

    /// Finishes pending commits and syncs; later calls fail with `Closed`.
    async fn close(&self) -> Result<(), StorageError>;

    /// Why this storage can take no more writes until the gateway restarts,
    /// if that happened: the journal engine after a failed write or sync,
    /// when its memory may be ahead of its disk and only a replay can tell
    /// what is stored. `smsmax serve` watches this and shuts down with an
    /// error, so that its supervisor restarts it; a gateway left running
    /// would answer every submit with ESME_RSYSERR until someone noticed.
    /// An engine whose failures are per transaction has none.
    fn failure(&self) -> Option<String> {
        None
    }
}
