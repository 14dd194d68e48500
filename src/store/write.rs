//! The write requests both embedded engines send to their single committer
//! thread: one [`Op`] per storage call, answered with a [`Reply`] once the
//! batch it went in is durable. The engines differ in how they apply and
//! persist a batch, not in what a request is.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{ChangeOutcome, MessageRecord, ReceiptOutcome, ReceiptRecord, Replacement, StateUpdate, StorageError};
use crate::queue::outbox::OutboxEntry;

pub(super) enum Op {
    Enqueue(Vec<Arc<MessageRecord>>),
    Insert(Vec<Arc<MessageRecord>>),
    Update(String, StateUpdate),
    Cancel {
        id: String,
        system_id: String,
        at_ms: u64,
    },
    Replace {
        id: String,
        system_id: String,
        replacement: Replacement,
    },
    Ack(Vec<String>),
    Settle(String, StateUpdate),
    SettleMany(Vec<(String, StateUpdate)>),
    Retry(String, u64),
    RecordReceipt {
        receipt: Box<ReceiptRecord>,
        update: Option<Box<StateUpdate>>,
        forward: Vec<OutboxEntry>,
    },
    Push(Vec<OutboxEntry>),
    AckDelivered {
        system_id: String,
        ids: Vec<String>,
    },
    RetryDelivery {
        system_id: String,
        id: String,
        attempts: u32,
        due_at_ms: u64,
    },
    Expire(u64),
}

impl Op {
    /// How much of a batch this request takes.
    pub(super) fn weight(&self) -> usize {
        match self {
            Op::Enqueue(r) | Op::Insert(r) => r.len().max(1),
            Op::Ack(ids) | Op::AckDelivered { ids, .. } => ids.len().max(1),
            Op::Push(entries) => entries.len().max(1),
            Op::SettleMany(settles) => settles.len().max(1),
            Op::RecordReceipt { forward, .. } => 1 + forward.len(),
            _ => 1,
        }
    }
}

#[derive(Debug)]
pub(super) enum Reply {
    Done,
    Found(bool),
    /// One answer per message of a [`Op::SettleMany`], in order.
    Founds(Vec<bool>),
    Outcome(ChangeOutcome),
    Receipt(ReceiptOutcome),
    Count(u64),
}

pub(super) struct Request {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<Reply, StorageError>>,
}
