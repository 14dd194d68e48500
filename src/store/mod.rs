//! Message records: what the gateway knows about every message it accepted.
//!
//! The [`Store`] trait is the only way the rest of the gateway reads or
//! changes a record. The embedded implementation lives in [`embedded`]; the
//! ScyllaDB one (cluster profile) implements the same trait and runs the same
//! contract tests (`tests/storage_contract/mod.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::queue::outbox::OutboxEntry;

pub mod embedded;
pub mod journal;
mod write;

/// Errors of a storage backend. The caller answers the client with
/// `ESME_RSYSERR` (or HTTP 503) and logs the error; nothing is acknowledged.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("record {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("storage is shutting down")]
    Closed,
    #[error("storage did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The storage holds its configured maximum of records and none can be
    /// dropped (all in flight): the client gets ESME_RMSGQFUL.
    #[error("storage full: {0} records in flight")]
    Full(u64),
}

/// The life of a message in the gateway (mirrors SMPP `message_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageState {
    /// Stored and queued; has not left for an upstream.
    Accepted,
    /// Submitted to an upstream SMSC; waiting for its receipt.
    Enroute,
    Delivered,
    Undeliverable,
    Expired,
    Rejected,
    /// Cancelled by the client (cancel_sm) before it left.
    Deleted,
}

impl MessageState {
    /// The SMPP `message_state` value (section 5.2.28) for query_sm_resp.
    pub fn smpp_value(self) -> u8 {
        match self {
            MessageState::Enroute => 1,
            MessageState::Delivered => 2,
            MessageState::Expired => 3,
            MessageState::Deleted => 4,
            MessageState::Undeliverable => 5,
            MessageState::Accepted => 6,
            MessageState::Rejected => 8,
        }
    }

    /// `true` once the state can no longer change.
    pub fn is_final(self) -> bool {
        !matches!(self, MessageState::Accepted | MessageState::Enroute)
    }

    pub fn name(self) -> &'static str {
        match self {
            MessageState::Accepted => "ACCEPTED",
            MessageState::Enroute => "ENROUTE",
            MessageState::Delivered => "DELIVERED",
            MessageState::Undeliverable => "UNDELIVERABLE",
            MessageState::Expired => "EXPIRED",
            MessageState::Rejected => "REJECTED",
            MessageState::Deleted => "DELETED",
        }
    }
}

/// An SME address as stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct AddressRecord {
    pub ton: u8,
    pub npi: u8,
    pub addr: Box<str>,
}

/// Everything the gateway keeps about one accepted message: enough to relay
/// it (the submit_sm fields, TLVs as their encoded octets) and to answer
/// query_sm and the REST status call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Our message id, as given in submit_sm_resp.
    pub id: String,
    /// The client (ESME) that submitted it.
    pub system_id: Arc<str>,
    pub service_type: String,
    pub source: AddressRecord,
    pub dest: AddressRecord,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub registered_delivery: u8,
    pub data_coding: u8,
    /// short_message octets (or the message_payload value when that was used).
    pub short_message: Bytes,
    /// The submit's optional parameters, encoded as on the wire, relayed as they came.
    pub tlvs: Bytes,
    /// Number of SMS parts the message counts as (throttling and billing).
    pub parts: u16,
    pub state: MessageState,
    /// Unix milliseconds.
    pub submitted_at_ms: u64,
    pub updated_at_ms: u64,
    /// Scheduled delivery time, if the client asked for one.
    pub schedule_at_ms: Option<u64>,
    /// End of the validity period.
    pub expires_at_ms: Option<u64>,
    /// The upstream SMSC's id for this message, once known.
    pub upstream_id: Option<String>,
    /// Last error: an SMPP status or a network error code.
    pub error_code: Option<u32>,
    /// How many times the relay has tried to submit it.
    pub attempts: u32,
    /// How many of its parts an upstream has accepted (a message cut into
    /// parts, see [`crate::relay::parts`]): the relay goes on from this part
    /// after a retry or a restart. Set by [`Store::update`] from the
    /// update's link (`max(parts_sent, link.part + 1)`), so it only grows.
    pub parts_sent: u16,
    /// The upstream its parts went to (the last link's upstream): the rest
    /// of a partly sent message goes there too.
    pub upstream: Option<String>,
}

#[cfg(test)]
impl MessageRecord {
    /// The storage tests' record: a single-part `hello` from system_id
    /// `esme`, ACCEPTED, no receipt asked for.
    pub(crate) fn example(id: &str) -> MessageRecord {
        MessageRecord {
            id: id.into(),
            system_id: "esme".into(),
            service_type: String::new(),
            source: AddressRecord::default(),
            dest: AddressRecord::default(),
            esm_class: 0,
            protocol_id: 0,
            priority_flag: 0,
            registered_delivery: 0,
            data_coding: 0,
            short_message: Bytes::from_static(b"hello"),
            tlvs: Bytes::new(),
            parts: 1,
            state: MessageState::Accepted,
            submitted_at_ms: 1,
            updated_at_ms: 1,
            schedule_at_ms: None,
            expires_at_ms: None,
            upstream_id: None,
            error_code: None,
            attempts: 0,
            parts_sent: 0,
            upstream: None,
        }
    }
}

/// A state change recorded by the relay or by a receipt.
///
/// A record in a final state ([`MessageState::is_final`]) is never changed
/// again by [`Store::update`]: a late relay outcome cannot undo a cancel_sm,
/// and a duplicate receipt cannot flip DELIVERED to UNDELIVERABLE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateUpdate {
    pub state: MessageState,
    /// The upstream's id as it gave it (shown in status answers).
    pub upstream_id: Option<String>,
    pub error_code: Option<u32>,
    /// New submit attempt count, when the relay made an attempt (`None` keeps it).
    pub attempts: Option<u32>,
    /// Where the message (or one part of it) went: written with the update,
    /// in the same transaction, so a receipt can always be matched once the
    /// relay's outcome is durable.
    pub link: Option<UpstreamLink>,
    pub at_ms: u64,
}

/// The key a receipt is matched by: the upstream's configured name and its
/// id for the message, normalised with that upstream's id style (see
/// `smsmax_protocol::receipt::normalise_message_id`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UpstreamLink {
    pub upstream: String,
    /// The normalised upstream id.
    pub key: String,
    /// Which part of our message this id is for (0 for a single-part message).
    pub part: u16,
}

/// Our message (and part) an upstream id belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UpstreamMatch {
    pub id: String,
    pub part: u16,
}

/// A delivery receipt as the gateway recorded it, matched or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRecord {
    /// The upstream it came from and its normalised id there.
    pub upstream: String,
    pub key: String,
    /// Our message, once matched (`None`: kept as unmatched).
    pub matched: Option<UpstreamMatch>,
    /// The state the receipt reports.
    pub state: MessageState,
    /// The receipt's error (network_error_code or `err:`), when not zero.
    pub error_code: Option<u32>,
    /// Unix milliseconds when it arrived.
    pub received_at_ms: u64,
    /// The receipt's short_message as received (for audits).
    pub text: Bytes,
}

/// What [`Store::record_receipt`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Stored (and, when matched, the message updated and the client's
    /// receipt queued in the outbox).
    Recorded,
    /// The same state was already recorded for this message and part: an
    /// upstream resending a receipt. Nothing changed; nothing forwarded.
    Duplicate,
}

/// New content for replace_sm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    pub short_message: Bytes,
    pub registered_delivery: u8,
    pub schedule_at_ms: Option<u64>,
    pub expires_at_ms: Option<u64>,
    pub at_ms: u64,
}

/// What cancel_sm or replace_sm found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Done: the message had not left.
    Changed,
    /// No such message.
    NotFound,
    /// The message belongs to another client (answered like NotFound, so
    /// one client cannot probe another's ids).
    NotOwner,
    /// Too late: the message is in this state already.
    TooLate(MessageState),
    /// Too late: the relay holds the message right now (it may be on its way
    /// to an upstream), although its state still says ACCEPTED.
    InFlight,
}

/// Durable message records.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts (or overwrites) records; returns once they are durable.
    async fn insert(&self, records: &[MessageRecord]) -> Result<(), StorageError>;
    /// The record with this id.
    async fn get(&self, id: &str) -> Result<Option<MessageRecord>, StorageError>;
    /// Records a state change; `false` if the id is unknown or the record is
    /// final already (left as it is: there is nothing left to do for it).
    /// The update's [`UpstreamLink`] is written for every known id, final or
    /// not: the upstream has the message under that id either way. A link
    /// also sets the record's `parts_sent` to `max(parts_sent, part + 1)`
    /// and its `upstream` (unless final). A link with an empty key records
    /// only that progress (the upstream gave no id a receipt could match).
    async fn update(&self, id: &str, update: StateUpdate) -> Result<bool, StorageError>;
    /// cancel_sm: ACCEPTED -> DELETED, only for the owner, atomically; refused
    /// with [`ChangeOutcome::InFlight`] while the relay holds the message
    /// (leased by [`Queue::reserve`](crate::queue::Queue::reserve)), and
    /// with `TooLate(Enroute)` once a part of it left (`parts_sent > 0`).
    async fn cancel(&self, id: &str, system_id: &str, at_ms: u64) -> Result<ChangeOutcome, StorageError>;
    /// replace_sm: new content while ACCEPTED, no part sent and not held by
    /// the relay, only for the owner, atomically.
    async fn replace(&self, id: &str, system_id: &str, replacement: Replacement)
        -> Result<ChangeOutcome, StorageError>;

    /// The message an upstream id belongs to (written by an [`update`](Store::update)
    /// carrying a [`UpstreamLink`]).
    async fn find_by_upstream(&self, upstream: &str, key: &str) -> Result<Option<UpstreamMatch>, StorageError>;

    /// [`find_by_upstream`](Store::find_by_upstream) and the matched
    /// message's record ([`get`](Store::get)), which the receipt path needs
    /// for every receipt; an engine that can answer both in one step
    /// overrides this. `Some((match, None))`: a link to a record that is gone.
    ///
    /// Shared, not copied: an engine that keeps records in memory hands out
    /// its own (the receipt path only reads it, and drops it before it
    /// records the receipt, so the engine can then change it in place).
    async fn find_record_by_upstream(
        &self,
        upstream: &str,
        key: &str,
    ) -> Result<Option<(UpstreamMatch, Option<Arc<MessageRecord>>)>, StorageError> {
        let Some(found) = self.find_by_upstream(upstream, key).await? else {
            return Ok(None);
        };
        let record = self.get(&found.id).await?.map(Arc::new);
        Ok(Some((found, record)))
    }

    /// Records a receipt, atomically with its consequences, durable when it
    /// returns:
    /// - unmatched (`receipt.matched == None`): kept under (upstream, key,
    ///   state) in the unmatched receipts, nothing else; the same (upstream,
    ///   key, state) kept already gives [`ReceiptOutcome::Duplicate`] (one
    ///   copy is enough; an ENROUTE and a DELIVERED receipt are both kept);
    /// - matched: a receipt with the same state already recorded for that
    ///   message and part gives [`ReceiptOutcome::Duplicate`] and changes
    ///   nothing, except that an unmatched copy of it (same upstream, key and
    ///   state) is dropped: it has nothing left to wait for; otherwise the
    ///   receipt is stored under (id, part, state) (every state a part goes
    ///   through is kept), the unmatched copy under (upstream, key, state)
    ///   removed, `update` applied to the message (unless it is final
    ///   already, like [`update`](Store::update)) and `forward` (the client's
    ///   receipt) pushed to the outbox.
    async fn record_receipt(
        &self,
        receipt: ReceiptRecord,
        update: Option<StateUpdate>,
        forward: Vec<OutboxEntry>,
    ) -> Result<ReceiptOutcome, StorageError>;

    /// The receipts recorded for one of our messages, by part, each part's
    /// in arrival order.
    async fn receipts(&self, id: &str) -> Result<Vec<ReceiptRecord>, StorageError>;

    /// Up to `max` unmatched receipts, oldest first (retried at start, shown to operators).
    async fn unmatched_receipts(&self, max: usize) -> Result<Vec<ReceiptRecord>, StorageError>;

    /// How many unmatched receipts are kept.
    async fn unmatched_count(&self) -> Result<u64, StorageError>;
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn a_record_fits_the_320_octet_allocation() {
        // The journal keeps every record in an `Arc` (two counters, 16
        // octets): 304 + 16 is jemalloc's 320-octet size class; one octet
        // more and every queued message takes 384.
        assert!(
            std::mem::size_of::<MessageRecord>() <= 304,
            "{}",
            std::mem::size_of::<MessageRecord>()
        );
    }
}
