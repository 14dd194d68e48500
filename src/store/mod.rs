//! Message records: what the gateway knows about every message it accepted.
//!
//! The [`Store`] trait is the only way the rest of the gateway reads or
//! changes a record. The embedded implementation lives in [`embedded`]; the
//! ScyllaDB one (cluster profile) implements the same trait and runs the same
//! contract tests (`tests/storage_contract/mod.rs`).

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub mod embedded;

/// Errors of a storage backend. The caller answers the client with
/// `ESME_RSYSERR` (or HTTP 503) and logs the error; nothing is acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("record {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("storage is shutting down")]
    Closed,
    #[error("storage did not answer within {0:?}")]
    Timeout(std::time::Duration),
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
    pub addr: String,
}

/// Everything the gateway keeps about one accepted message: enough to relay
/// it (the submit_sm fields, TLVs as their encoded octets) and to answer
/// query_sm and the REST status call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Our message id, as given in submit_sm_resp.
    pub id: String,
    /// The client (ESME) that submitted it.
    pub system_id: String,
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
}

/// A state change recorded by the relay or by a receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateUpdate {
    pub state: MessageState,
    pub upstream_id: Option<String>,
    pub error_code: Option<u32>,
    /// New submit attempt count, when the relay made an attempt (`None` keeps it).
    pub attempts: Option<u32>,
    pub at_ms: u64,
}

/// New content for replace_sm.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

/// Durable message records.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts (or overwrites) records; returns once they are durable.
    async fn insert(&self, records: &[MessageRecord]) -> Result<(), StorageError>;
    /// The record with this id.
    async fn get(&self, id: &str) -> Result<Option<MessageRecord>, StorageError>;
    /// Records a state change; `false` if the id is unknown.
    async fn update(&self, id: &str, update: StateUpdate) -> Result<bool, StorageError>;
    /// cancel_sm: ACCEPTED -> DELETED, only for the owner, atomically.
    async fn cancel(&self, id: &str, system_id: &str, at_ms: u64) -> Result<ChangeOutcome, StorageError>;
    /// replace_sm: new content while ACCEPTED, only for the owner, atomically.
    async fn replace(&self, id: &str, system_id: &str, replacement: Replacement)
        -> Result<ChangeOutcome, StorageError>;
}
