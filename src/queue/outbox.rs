//! The per-client outbox: deliver_sm (receipts and mobile-originated
//! messages) waiting for a client's receiver or transceiver session.
//!
//! Entries are durable: a client that is not bound gets them when it binds,
//! until each entry's `expires_at_ms` (the configured maximum age), after
//! which [`Outbox::expire`] removes and counts them. Delivery is
//! at-least-once: an entry is removed only by [`Outbox::ack_delivered`] after the
//! client's deliver_sm_resp; a lease lost in a crash returns it.
//!
//! The embedded implementation is [`crate::store::embedded`]; the cluster
//! profile keeps it in Redis streams (one per system_id).

use std::time::Duration;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{AddressRecord, StorageError};

/// One deliver_sm waiting for a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Assigned by [`Outbox::push`] (empty before); unique in the outbox.
    pub id: String,
    /// The client it is for (shared with the message's record).
    pub system_id: Arc<str>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Dropped (and counted) when still undelivered at this time.
    pub expires_at_ms: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Our message id this receipt is about (`None` for a mobile-originated message).
    pub message_id: Option<String>,
    pub service_type: String,
    pub source: AddressRecord,
    pub dest: AddressRecord,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub data_coding: u8,
    pub short_message: Bytes,
    /// Optional parameters, encoded as on the wire.
    pub tlvs: Bytes,
}

/// Durable per-client queues of deliver_sm.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Makes `entries` durable, due now; assigns their ids. Returns once synced.
    async fn push(&self, entries: Vec<OutboxEntry>) -> Result<(), StorageError>;

    /// Up to `max` due entries of `system_id`, oldest first, each leased for
    /// `lease`: nobody else gets it until it is acked, retried or the lease ends.
    async fn reserve_for(&self, system_id: &str, max: usize, lease: Duration)
        -> Result<Vec<OutboxEntry>, StorageError>;

    /// Removes delivered (or permanently refused) entries.
    async fn ack_delivered(&self, system_id: &str, ids: &[String]) -> Result<(), StorageError>;

    /// Puts a leased entry back, due at `due_at_ms`, with `attempts` recorded.
    async fn retry_delivery(
        &self,
        system_id: &str,
        id: &str,
        attempts: u32,
        due_at_ms: u64,
    ) -> Result<(), StorageError>;

    /// Entries waiting for `system_id` (leased or not).
    async fn depth_for(&self, system_id: &str) -> Result<u64, StorageError>;

    /// The clients that have entries waiting.
    async fn waiting_clients(&self) -> Result<Vec<String>, StorageError>;

    /// Removes every entry whose `expires_at_ms` is at or before `now_ms`;
    /// returns how many (each is logged by the caller and counted).
    async fn expire(&self, now_ms: u64) -> Result<u64, StorageError>;
}
