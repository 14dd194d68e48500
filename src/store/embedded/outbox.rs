//! The per-client outbox in the embedded storage (the [`Outbox`] trait).
//!
//! | table           | key                          | value |
//! |-----------------|------------------------------|-------|
//! | `outbox`        | entry id                     | postcard [`OutboxEntry`] |
//! | `outbox_index`  | entry id                     | (system_id, due_at_ms, expires_at_ms) |
//! | `outbox_due`    | (system_id, due_at_ms, id)   | `()` |
//! | `outbox_expiry` | (expires_at_ms, id)          | `()` |
//! | `outbox_depth`  | system_id                    | entries waiting (rows with 0 are removed) |
//! | `meta`          | `"outbox_next_id"`           | the next entry id's number |
//!
//! A range scan of `outbox_due` over one client up to "now" gives its due
//! entries oldest first; `outbox_expiry` gives the expired ones in one scan;
//! `outbox_index` finds an entry's keys by id without decoding the entry, so
//! even a corrupt entry can be acked or expired. Entry ids come from a
//! counter kept in the same transaction as the entries: unique across
//! restarts, and time-ordered within one due millisecond.
//!
//! Writes go through the committer like every other (group commit, one
//! fsync per batch); leases live in memory like the message queue's, so a
//! lease lost in a crash hands the entry out again (at-least-once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{engine, EmbeddedStorage, Op, Reply, Tables as All};
use crate::queue::outbox::{Outbox, OutboxEntry};
use crate::smpp_time::now_ms;
use crate::store::StorageError;

type DueKey = (&'static str, u64, &'static str);
type IndexValue = (&'static str, u64, u64);

const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
const OUTBOX_INDEX: TableDefinition<&str, IndexValue> = TableDefinition::new("outbox_index");
const OUTBOX_DUE: TableDefinition<DueKey, ()> = TableDefinition::new("outbox_due");
const OUTBOX_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("outbox_expiry");
const OUTBOX_DEPTH: TableDefinition<&str, u64> = TableDefinition::new("outbox_depth");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const NEXT_ID: &str = "outbox_next_id";

/// The outbox tables, opened in a write transaction.
pub(super) struct Tables<'t> {
    entries: Table<'t, &'static str, &'static [u8]>,
    index: Table<'t, &'static str, IndexValue>,
    due: Table<'t, DueKey, ()>,
    expiry: Table<'t, (u64, &'static str), ()>,
    depth: Table<'t, &'static str, u64>,
    meta: Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    pub(super) fn open(wtx: &'t WriteTransaction) -> Result<Self, StorageError> {
        Ok(Tables {
            entries: wtx.open_table(OUTBOX).map_err(engine)?,
            index: wtx.open_table(OUTBOX_INDEX).map_err(engine)?,
            due: wtx.open_table(OUTBOX_DUE).map_err(engine)?,
            expiry: wtx.open_table(OUTBOX_EXPIRY).map_err(engine)?,
            depth: wtx.open_table(OUTBOX_DEPTH).map_err(engine)?,
            meta: wtx.open_table(META).map_err(engine)?,
        })
    }
}

fn encode(entry: &OutboxEntry) -> Result<Vec<u8>, StorageError> {
    postcard::to_stdvec(entry).map_err(|e| StorageError::Engine(format!("encoding outbox entry {}: {e}", entry.id)))
}

fn decode(id: &str, bytes: &[u8]) -> Result<OutboxEntry, StorageError> {
    postcard::from_bytes(bytes).map_err(|e| StorageError::Corrupt {
        id: id.to_string(),
        reason: e.to_string(),
    })
}

/// New entries with their ids assigned and encoded, not written yet.
pub(super) struct Prepared {
    entries: Vec<(OutboxEntry, Vec<u8>)>,
    due_at_ms: u64,
    next_id: u64,
}

/// Assigns ids to `entries` (due at `now`) and encodes them; writes nothing,
/// so an encoding failure leaves the transaction untouched.
pub(super) fn prepare(
    t: &All<'_>,
    entries: &[OutboxEntry],
    now: u64,
) -> Result<Result<Prepared, StorageError>, StorageError> {
    let mut next_id = t.outbox.meta.get(NEXT_ID).map_err(engine)?.map_or(0, |v| v.value());
    let mut prepared = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut entry = entry.clone();
        entry.id = format!("{next_id:016x}");
        next_id += 1;
        match encode(&entry) {
            Ok(bytes) => prepared.push((entry, bytes)),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(Prepared {
        entries: prepared,
        due_at_ms: now,
        next_id,
    }))
}

/// Writes what [`prepare`] made.
pub(super) fn write(t: &mut All<'_>, prepared: Prepared) -> Result<(), StorageError> {
    if prepared.entries.is_empty() {
        return Ok(());
    }
    let o = &mut t.outbox;
    let due = prepared.due_at_ms;
    for (entry, bytes) in &prepared.entries {
        let (id, system_id) = (entry.id.as_str(), entry.system_id.as_str());
        o.entries.insert(id, bytes.as_slice()).map_err(engine)?;
        o.index
            .insert(id, (system_id, due, entry.expires_at_ms))
            .map_err(engine)?;
        o.due.insert((system_id, due, id), ()).map_err(engine)?;
        o.expiry.insert((entry.expires_at_ms, id), ()).map_err(engine)?;
        add_depth(o, system_id, 1)?;
    }
    o.meta.insert(NEXT_ID, prepared.next_id).map_err(engine)?;
    Ok(())
}

/// [`Outbox::push`] inside the batch's transaction.
pub(super) fn push(
    t: &mut All<'_>,
    entries: &[OutboxEntry],
    now: u64,
) -> Result<Result<(), StorageError>, StorageError> {
    let prepared = match prepare(t, entries, now)? {
        Ok(prepared) => prepared,
        Err(e) => return Ok(Err(e)),
    };
    write(t, prepared)?;
    Ok(Ok(()))
}

fn add_depth(o: &mut Tables<'_>, system_id: &str, delta: i64) -> Result<(), StorageError> {
    let old = o.depth.get(system_id).map_err(engine)?.map_or(0, |v| v.value());
    let new = old.saturating_add_signed(delta);
    if new == 0 {
        o.depth.remove(system_id).map_err(engine)?;
    } else {
        o.depth.insert(system_id, new).map_err(engine)?;
    }
    Ok(())
}

/// Where an entry is: (system_id, due_at_ms, expires_at_ms).
fn locate(o: &Tables<'_>, id: &str) -> Result<Option<(String, u64, u64)>, StorageError> {
    let value = o.index.get(id).map_err(engine)?;
    Ok(value.map(|v| {
        let (system_id, due, expires) = v.value();
        (system_id.to_string(), due, expires)
    }))
}

/// Removes entry `id` of `system_id`; `false` if it is not there (acked or
/// expired already, or another client's: one client cannot ack another's).
pub(super) fn remove(t: &mut All<'_>, system_id: &str, id: &str) -> Result<bool, StorageError> {
    let o = &mut t.outbox;
    match locate(o, id)? {
        Some((owner, due, expires)) if owner == system_id => {
            remove_located(o, id, &owner, due, expires)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn remove_located(o: &mut Tables<'_>, id: &str, system_id: &str, due: u64, expires: u64) -> Result<(), StorageError> {
    o.entries.remove(id).map_err(engine)?;
    o.index.remove(id).map_err(engine)?;
    o.due.remove((system_id, due, id)).map_err(engine)?;
    o.expiry.remove((expires, id)).map_err(engine)?;
    add_depth(o, system_id, -1)
}

/// [`Outbox::retry_delivery`] inside the batch's transaction: an entry that
/// is gone (acked or expired meanwhile) stays gone.
pub(super) fn reschedule(
    t: &mut All<'_>,
    system_id: &str,
    id: &str,
    attempts: u32,
    due_at_ms: u64,
) -> Result<Result<(), StorageError>, StorageError> {
    let o = &mut t.outbox;
    let Some((owner, old_due, expires)) = locate(o, id)? else {
        return Ok(Ok(()));
    };
    if owner != system_id {
        return Ok(Ok(()));
    }
    let entry = match o.entries.get(id).map_err(engine)? {
        Some(value) => decode(id, value.value()),
        None => Err(StorageError::Corrupt {
            id: id.to_string(),
            reason: "indexed outbox entry missing".into(),
        }),
    };
    let mut entry = match entry {
        Ok(entry) => entry,
        Err(corrupt) => return Ok(Err(corrupt)),
    };
    entry.attempts = attempts;
    let bytes = match encode(&entry) {
        Ok(bytes) => bytes,
        Err(e) => return Ok(Err(e)),
    };
    o.entries.insert(id, bytes.as_slice()).map_err(engine)?;
    o.due.remove((owner.as_str(), old_due, id)).map_err(engine)?;
    o.due.insert((owner.as_str(), due_at_ms, id), ()).map_err(engine)?;
    o.index
        .insert(id, (owner.as_str(), due_at_ms, expires))
        .map_err(engine)?;
    Ok(Ok(()))
}

/// [`Outbox::expire`] inside the batch's transaction: the ids removed.
pub(super) fn expire(t: &mut All<'_>, now_ms: u64) -> Result<Vec<String>, StorageError> {
    let o = &mut t.outbox;
    let mut keys = Vec::new();
    for row in o.expiry.range(..(now_ms.saturating_add(1), "")).map_err(engine)? {
        let (key, _) = row.map_err(engine)?;
        let (expires, id) = key.value();
        keys.push((expires, id.to_string()));
    }
    let mut expired = Vec::with_capacity(keys.len());
    for (expires_key, id) in keys {
        match locate(o, &id)? {
            Some((system_id, due, expires)) => {
                remove_located(o, &id, &system_id, due, expires)?;
                expired.push(id);
            }
            None => {
                tracing::error!(id, "outbox expiry key without an entry removed");
                o.expiry.remove((expires_key, id.as_str())).map_err(engine)?;
            }
        }
    }
    Ok(expired)
}

/// [`Outbox::reserve_for`] on a read snapshot.
fn reserve(
    db: &Database,
    leases: &Mutex<HashMap<String, Instant>>,
    system_id: &str,
    max: usize,
    lease: Duration,
) -> Result<Vec<OutboxEntry>, StorageError> {
    // Held across the snapshot, as in the message queue's reserve: an ack
    // that committed but has not ended its lease yet keeps the entry leased
    // until this snapshot no longer shows it.
    let mut leases = leases.lock().map_err(|_| engine("outbox lease table poisoned"))?;
    let now = Instant::now();
    leases.retain(|_, until| *until > now);
    let rtx = db.begin_read().map_err(engine)?;
    let due = rtx.open_table(OUTBOX_DUE).map_err(engine)?;
    let entries = rtx.open_table(OUTBOX).map_err(engine)?;
    let wall = now_ms();
    let until = now + lease;
    let mut out = Vec::new();
    for row in due
        .range((system_id, 0u64, "")..(system_id, wall.saturating_add(1), ""))
        .map_err(engine)?
    {
        if out.len() >= max {
            break;
        }
        let (key, _) = row.map_err(engine)?;
        let (_, _, id) = key.value();
        if leases.contains_key(id) {
            continue;
        }
        let Some(value) = entries.get(id).map_err(engine)? else {
            tracing::error!(id, "outbox entry missing behind its due key; skipped");
            continue;
        };
        match decode(id, value.value()) {
            // Past its age: not delivered any more; `expire` counts it.
            Ok(entry) if entry.expires_at_ms <= wall => {}
            Ok(entry) => out.push(entry),
            Err(corrupt) => {
                // Lease the bad one so the next reserve gets past it.
                leases.insert(id.to_string(), until);
                return Err(corrupt);
            }
        }
    }
    for entry in &out {
        leases.insert(entry.id.clone(), until);
    }
    Ok(out)
}

#[async_trait]
impl Outbox for EmbeddedStorage {
    async fn push(&self, entries: Vec<OutboxEntry>) -> Result<(), StorageError> {
        if entries.is_empty() {
            return self.check_open();
        }
        self.write(Op::Push(entries)).await.map(|_| ())
    }

    async fn reserve_for(
        &self,
        system_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StorageError> {
        if max == 0 {
            return self.check_open().map(|_| Vec::new());
        }
        let leases = self.outbox_leases.clone();
        let system_id = system_id.to_string();
        self.read(move |db| reserve(db, &leases, &system_id, max, lease)).await
    }

    async fn ack_delivered(&self, system_id: &str, ids: &[String]) -> Result<(), StorageError> {
        if ids.is_empty() {
            return self.check_open();
        }
        let op = Op::AckDelivered {
            system_id: system_id.to_string(),
            ids: ids.to_vec(),
        };
        self.write(op).await.map(|_| ())
    }

    async fn retry_delivery(
        &self,
        system_id: &str,
        id: &str,
        attempts: u32,
        due_at_ms: u64,
    ) -> Result<(), StorageError> {
        let op = Op::RetryDelivery {
            system_id: system_id.to_string(),
            id: id.to_string(),
            attempts,
            due_at_ms,
        };
        self.write(op).await.map(|_| ())
    }

    async fn depth_for(&self, system_id: &str) -> Result<u64, StorageError> {
        let system_id = system_id.to_string();
        self.read(move |db| {
            let rtx = db.begin_read().map_err(engine)?;
            let depth = rtx.open_table(OUTBOX_DEPTH).map_err(engine)?;
            let value = depth.get(system_id.as_str()).map_err(engine)?;
            Ok(value.map_or(0, |v| v.value()))
        })
        .await
    }

    async fn waiting_clients(&self) -> Result<Vec<String>, StorageError> {
        self.read(|db| {
            let rtx = db.begin_read().map_err(engine)?;
            let depth = rtx.open_table(OUTBOX_DEPTH).map_err(engine)?;
            let mut out = Vec::new();
            for row in depth.iter().map_err(engine)? {
                let (system_id, _) = row.map_err(engine)?;
                out.push(system_id.value().to_string());
            }
            Ok(out)
        })
        .await
    }

    async fn expire(&self, now_ms: u64) -> Result<u64, StorageError> {
        match self.write(Op::Expire(now_ms)).await? {
            Reply::Count(n) => Ok(n),
            _ => Err(engine("unexpected answer to expire")),
        }
    }
}
