//! Receipt matching in the embedded storage: upstream links, the receipts
//! of our messages, and the receipts kept unmatched.
//!
//! | table               | key                                        | value |
//! |---------------------|--------------------------------------------|-------|
//! | `upstream_links`    | (upstream, normalised upstream id)         | postcard [`UpstreamMatch`] |
//! | `receipts`          | (our id, part, state)                      | postcard [`ReceiptRecord`] |
//! | `unmatched_receipts`| (received_at_ms, upstream, id there, state)| postcard [`ReceiptRecord`] |
//! | `unmatched_index`   | (upstream, id there, state)                | received_at_ms of its entry |
//!
//! The state in a key is its SMPP `message_state` value. Keying receipts by
//! state keeps every receipt of a part (ENROUTE, then DELIVERED) and makes an
//! upstream resending one (same message, part and state) a key that exists:
//! the duplicate check is one lookup. Unmatched receipts are keyed by arrival
//! so that [`unmatched`] gives the oldest first with one range scan; the
//! index finds one by what a match knows (upstream, id, state).

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{engine, outbox, update_record, Tables as All};
use crate::queue::outbox::OutboxEntry;
use crate::store::{ReceiptOutcome, ReceiptRecord, StateUpdate, StorageError, UpstreamLink, UpstreamMatch};

type LinkKey = (&'static str, &'static str);
type ReceiptKey = (&'static str, u16, u8);
type UnmatchedKey = (u64, &'static str, &'static str, u8);
type UnmatchedIndexKey = (&'static str, &'static str, u8);

const LINKS: TableDefinition<LinkKey, &[u8]> = TableDefinition::new("upstream_links");
const RECEIPTS: TableDefinition<ReceiptKey, &[u8]> = TableDefinition::new("receipts");
const UNMATCHED: TableDefinition<UnmatchedKey, &[u8]> = TableDefinition::new("unmatched_receipts");
const UNMATCHED_INDEX: TableDefinition<UnmatchedIndexKey, u64> = TableDefinition::new("unmatched_index");

/// The receipt tables, opened in a write transaction.
pub(super) struct Tables<'t> {
    links: Table<'t, LinkKey, &'static [u8]>,
    receipts: Table<'t, ReceiptKey, &'static [u8]>,
    unmatched: Table<'t, UnmatchedKey, &'static [u8]>,
    unmatched_index: Table<'t, UnmatchedIndexKey, u64>,
}

impl<'t> Tables<'t> {
    pub(super) fn open(wtx: &'t WriteTransaction) -> Result<Self, StorageError> {
        Ok(Tables {
            links: wtx.open_table(LINKS).map_err(engine)?,
            receipts: wtx.open_table(RECEIPTS).map_err(engine)?,
            unmatched: wtx.open_table(UNMATCHED).map_err(engine)?,
            unmatched_index: wtx.open_table(UNMATCHED_INDEX).map_err(engine)?,
        })
    }
}

fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_stdvec(value).map_err(|e| StorageError::Engine(format!("encoding {what}: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StorageError> {
    postcard::from_bytes(bytes).map_err(|e| StorageError::Corrupt {
        id: what.to_string(),
        reason: e.to_string(),
    })
}

/// Maps `link` to our message `id` (overwriting an older mapping: the
/// upstream reused its id, and the latest submit is the one its receipts are for).
pub(super) fn link(t: &mut All<'_>, link: &UpstreamLink, id: &str) -> Result<(), StorageError> {
    let found = UpstreamMatch {
        id: id.to_string(),
        part: link.part,
    };
    let bytes = encode(id, &found)?;
    t.receipts
        .links
        .insert((link.upstream.as_str(), link.key.as_str()), bytes.as_slice())
        .map_err(engine)?;
    Ok(())
}

/// [`Store::record_receipt`](crate::store::Store::record_receipt) inside the
/// batch's transaction. Everything that can fail for this request alone (an
/// encoding, a corrupt message record) fails before the first write.
pub(super) fn record(
    t: &mut All<'_>,
    receipt: &ReceiptRecord,
    update: Option<&StateUpdate>,
    forward: &[OutboxEntry],
    now: u64,
) -> Result<Result<ReceiptOutcome, StorageError>, StorageError> {
    let state = receipt.state.smpp_value();
    let copy = (receipt.upstream.as_str(), receipt.key.as_str(), state);
    let Some(matched) = &receipt.matched else {
        // The same receipt again before it could be matched: one copy is enough.
        if t.receipts.unmatched_index.get(copy).map_err(engine)?.is_some() {
            return Ok(Ok(ReceiptOutcome::Duplicate));
        }
        let bytes = match encode(&receipt.key, receipt) {
            Ok(bytes) => bytes,
            Err(e) => return Ok(Err(e)),
        };
        let at = receipt.received_at_ms;
        t.receipts
            .unmatched
            .insert((at, copy.0, copy.1, copy.2), bytes.as_slice())
            .map_err(engine)?;
        t.receipts.unmatched_index.insert(copy, at).map_err(engine)?;
        return Ok(Ok(ReceiptOutcome::Recorded));
    };

    let key = (matched.id.as_str(), matched.part, state);
    if t.receipts.receipts.get(key).map_err(engine)?.is_some() {
        // Recorded already (the upstream sent it twice, or a kept copy is
        // being matched after a resent one was): the copy has nothing left
        // to wait for.
        remove_unmatched(t, copy)?;
        return Ok(Ok(ReceiptOutcome::Duplicate));
    }
    let bytes = match encode(&matched.id, receipt) {
        Ok(bytes) => bytes,
        Err(e) => return Ok(Err(e)),
    };
    let prepared = match outbox::prepare(t, forward, now)? {
        Ok(prepared) => prepared,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(update) = update {
        // `false` (unknown or final message) still records the receipt.
        if let Err(corrupt) = update_record(t, &matched.id, update)? {
            return Ok(Err(corrupt));
        }
    }
    t.receipts.receipts.insert(key, bytes.as_slice()).map_err(engine)?;
    remove_unmatched(t, copy)?;
    outbox::write(t, prepared)?;
    Ok(Ok(ReceiptOutcome::Recorded))
}

/// Removes the unmatched copy of a receipt, if one is kept.
fn remove_unmatched(t: &mut All<'_>, copy: (&str, &str, u8)) -> Result<(), StorageError> {
    let at = t
        .receipts
        .unmatched_index
        .remove(copy)
        .map_err(engine)?
        .map(|v| v.value());
    if let Some(at) = at {
        t.receipts
            .unmatched
            .remove((at, copy.0, copy.1, copy.2))
            .map_err(engine)?;
    }
    Ok(())
}

pub(super) fn find_by_upstream(
    db: &Database,
    upstream: &str,
    key: &str,
) -> Result<Option<UpstreamMatch>, StorageError> {
    let rtx = db.begin_read().map_err(engine)?;
    let links = rtx.open_table(LINKS).map_err(engine)?;
    let value = links.get((upstream, key)).map_err(engine)?;
    value.map(|v| decode(key, v.value())).transpose()
}

/// The receipts of our message `id`, by part, each part's in arrival order.
pub(super) fn of_message(db: &Database, id: &str) -> Result<Vec<ReceiptRecord>, StorageError> {
    let rtx = db.begin_read().map_err(engine)?;
    let receipts = rtx.open_table(RECEIPTS).map_err(engine)?;
    let mut out: Vec<(u16, ReceiptRecord)> = Vec::new();
    for entry in receipts
        .range((id, 0u16, 0u8)..=(id, u16::MAX, u8::MAX))
        .map_err(engine)?
    {
        let (key, value) = entry.map_err(engine)?;
        out.push((key.value().1, decode(id, value.value())?));
    }
    out.sort_by_key(|(part, r)| (*part, r.received_at_ms));
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

/// Up to `max` unmatched receipts, oldest first.
pub(super) fn unmatched(db: &Database, max: usize) -> Result<Vec<ReceiptRecord>, StorageError> {
    let rtx = db.begin_read().map_err(engine)?;
    let unmatched = rtx.open_table(UNMATCHED).map_err(engine)?;
    let mut out = Vec::new();
    for entry in unmatched.iter().map_err(engine)? {
        if out.len() >= max {
            break;
        }
        let (key, value) = entry.map_err(engine)?;
        let (_, upstream, id, _) = key.value();
        // One bad copy must not stop the others from being matched.
        match decode(id, value.value()) {
            Ok(receipt) => out.push(receipt),
            Err(e) => tracing::error!(upstream, id, error = %e, "corrupt unmatched receipt skipped"),
        }
    }
    Ok(out)
}

pub(super) fn unmatched_count(db: &Database) -> Result<u64, StorageError> {
    let rtx = db.begin_read().map_err(engine)?;
    let index = rtx.open_table(UNMATCHED_INDEX).map_err(engine)?;
    index.len().map_err(engine)
}
