//! The per-client outbox in the embedded storage (the [`Outbox`] trait).
//!
//! | table           | key                          | value |
//! |-----------------|------------------------------|-------|
//! | `outbox`        | entry id                     | [`Header`] (system_id, due_at_ms, expires_at_ms), then postcard [`OutboxEntry`] |
//! | `outbox_due`    | (system_id, due_at_ms, id)   | `()` |
//! | `outbox_expiry` | (expires_at_ms, id)          | `()` |
//! | `meta`          | `"outbox_next_id"`           | the next entry id's number |
//!
//! A range scan of `outbox_due` over one client up to "now" gives its due
//! entries oldest first; `outbox_expiry` gives the expired ones in one scan.
//! The fixed header in front of each entry says where its keys are, so an
//! entry is found by id without decoding its body, and an entry whose body
//! is corrupt can still be acked or expired.
//!
//! Why so few tables: every write runs on the single committer thread, and
//! a commit costs in proportion to the B-tree pages it dirties. A push, an
//! ack and an expiry each touch three tables (one row in each); a separate
//! id index and a per-client depth counter would add two more rows (and the
//! counter's read-modify-write) to every one of them, on the receipt path's
//! bottleneck, for the sake of `depth_for` and `waiting_clients`, which are
//! not on any hot path. Those two scan `outbox_due` instead: one client's
//! range, or one key per client (each scan skips past the client before).
//!
//! Entry ids come from a counter kept in the same transaction as the
//! entries: unique across restarts, and time-ordered within one due
//! millisecond.
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

const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
const OUTBOX_DUE: TableDefinition<DueKey, ()> = TableDefinition::new("outbox_due");
const OUTBOX_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("outbox_expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const NEXT_ID: &str = "outbox_next_id";

/// The first byte of every `outbox` value. A bare postcard entry (the
/// layout before the header) starts with its id's length, 16, so an entry
/// in that layout reads as corrupt rather than as a wrong header.
const HEADER_FORMAT: u8 = 0xB1;
/// Format byte, due_at_ms, expires_at_ms, system_id length; then system_id.
const HEADER_FIXED: usize = 1 + 8 + 8 + 2;

/// Where an entry's keys are, read from the front of its `outbox` value.
struct Header<'a> {
    system_id: &'a str,
    due_at_ms: u64,
    expires_at_ms: u64,
    /// The postcard [`OutboxEntry`] after the header.
    body: &'a [u8],
}

impl<'a> Header<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let fixed = bytes.get(..HEADER_FIXED)?;
        if fixed[0] != HEADER_FORMAT {
            return None;
        }
        let due_at_ms = u64::from_be_bytes(fixed[1..9].try_into().ok()?);
        let expires_at_ms = u64::from_be_bytes(fixed[9..17].try_into().ok()?);
        let len = usize::from(u16::from_be_bytes(fixed[17..19].try_into().ok()?));
        let rest = &bytes[HEADER_FIXED..];
        let system_id = std::str::from_utf8(rest.get(..len)?).ok()?;
        Some(Header {
            system_id,
            due_at_ms,
            expires_at_ms,
            body: &rest[len..],
        })
    }
}

/// The `outbox` value for `entry`, due at `due_at_ms`.
fn encode(entry: &OutboxEntry, due_at_ms: u64) -> Result<Vec<u8>, StorageError> {
    let failed = |reason: String| StorageError::Engine(format!("encoding outbox entry {}: {reason}", entry.id));
    let len = u16::try_from(entry.system_id.len()).map_err(|_| failed("system_id too long".into()))?;
    let mut bytes =
        Vec::with_capacity(HEADER_FIXED + entry.system_id.len() + 128 + entry.short_message.len() + entry.tlvs.len());
    bytes.push(HEADER_FORMAT);
    bytes.extend_from_slice(&due_at_ms.to_be_bytes());
    bytes.extend_from_slice(&entry.expires_at_ms.to_be_bytes());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(entry.system_id.as_bytes());
    postcard::to_extend(entry, bytes).map_err(|e| failed(e.to_string()))
}

fn decode(id: &str, bytes: &[u8]) -> Result<OutboxEntry, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        id: id.to_string(),
        reason,
    };
    let header = Header::parse(bytes).ok_or_else(|| corrupt("bad outbox entry header".into()))?;
    postcard::from_bytes(header.body).map_err(|e| corrupt(e.to_string()))
}

/// The tables the outbox writes, opened in a write transaction.
pub(super) struct Tables<'t> {
    entries: Table<'t, &'static str, &'static [u8]>,
    due: Table<'t, DueKey, ()>,
    expiry: Table<'t, (u64, &'static str), ()>,
    meta: Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    pub(super) fn open(wtx: &'t WriteTransaction) -> Result<Self, StorageError> {
        Ok(Tables {
            entries: wtx.open_table(OUTBOX).map_err(engine)?,
            due: wtx.open_table(OUTBOX_DUE).map_err(engine)?,
            expiry: wtx.open_table(OUTBOX_EXPIRY).map_err(engine)?,
            meta: wtx.open_table(META).map_err(engine)?,
        })
    }
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
        match encode(&entry, now) {
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
        let (id, system_id) = (entry.id.as_str(), &*entry.system_id);
        o.entries.insert(id, bytes.as_slice()).map_err(engine)?;
        o.due.insert((system_id, due, id), ()).map_err(engine)?;
        o.expiry.insert((entry.expires_at_ms, id), ()).map_err(engine)?;
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

/// Where an entry's keys are.
struct Location {
    system_id: String,
    due_at_ms: u64,
    expires_at_ms: u64,
}

/// Where entry `id` is, from its header; `None` if there is no such entry.
/// An entry whose header cannot be read (only a damaged file has one) is
/// found by scanning the key tables for its id, so it can still be removed.
fn locate(o: &Tables<'_>, id: &str) -> Result<Option<Location>, StorageError> {
    {
        let Some(value) = o.entries.get(id).map_err(engine)? else {
            return Ok(None);
        };
        if let Some(header) = Header::parse(value.value()) {
            return Ok(Some(Location {
                system_id: header.system_id.to_string(),
                due_at_ms: header.due_at_ms,
                expires_at_ms: header.expires_at_ms,
            }));
        }
    }
    tracing::error!(id, "outbox entry header unreadable; finding its keys by scanning");
    let mut due_key = None;
    for row in o.due.iter().map_err(engine)? {
        let (key, _) = row.map_err(engine)?;
        let (system_id, due, key_id) = key.value();
        if key_id == id {
            due_key = Some((system_id.to_string(), due));
            break;
        }
    }
    let mut expires_at_ms = None;
    for row in o.expiry.iter().map_err(engine)? {
        let (key, _) = row.map_err(engine)?;
        let (expires, key_id) = key.value();
        if key_id == id {
            expires_at_ms = Some(expires);
            break;
        }
    }
    match (due_key, expires_at_ms) {
        (Some((system_id, due_at_ms)), Some(expires_at_ms)) => Ok(Some(Location {
            system_id,
            due_at_ms,
            expires_at_ms,
        })),
        _ => Err(StorageError::Corrupt {
            id: id.to_string(),
            reason: "outbox entry header unreadable and its keys not found".into(),
        }),
    }
}

/// Removes entry `id` of `system_id`; `false` if it is not there (acked or
/// expired already, or another client's: one client cannot ack another's).
pub(super) fn remove(t: &mut All<'_>, system_id: &str, id: &str) -> Result<bool, StorageError> {
    let o = &mut t.outbox;
    match locate(o, id) {
        Ok(Some(at)) if at.system_id == system_id => {
            remove_located(o, id, &at)?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(StorageError::Corrupt { id, reason }) => {
            // Not this batch's fault: the ack cannot find what to remove.
            tracing::error!(id, reason, "outbox entry not acked");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn remove_located(o: &mut Tables<'_>, id: &str, at: &Location) -> Result<(), StorageError> {
    o.entries.remove(id).map_err(engine)?;
    o.due
        .remove((at.system_id.as_str(), at.due_at_ms, id))
        .map_err(engine)?;
    o.expiry.remove((at.expires_at_ms, id)).map_err(engine)?;
    Ok(())
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
    let (old_due, decoded) = {
        let Some(value) = o.entries.get(id).map_err(engine)? else {
            return Ok(Ok(()));
        };
        let Some(header) = Header::parse(value.value()) else {
            return Ok(Err(StorageError::Corrupt {
                id: id.to_string(),
                reason: "bad outbox entry header".into(),
            }));
        };
        if header.system_id != system_id {
            return Ok(Ok(()));
        }
        (header.due_at_ms, decode(id, value.value()))
    };
    let mut entry = match decoded {
        Ok(entry) => entry,
        Err(corrupt) => return Ok(Err(corrupt)),
    };
    entry.attempts = attempts;
    let bytes = match encode(&entry, due_at_ms) {
        Ok(bytes) => bytes,
        Err(e) => return Ok(Err(e)),
    };
    o.entries.insert(id, bytes.as_slice()).map_err(engine)?;
    o.due.remove((system_id, old_due, id)).map_err(engine)?;
    o.due.insert((system_id, due_at_ms, id), ()).map_err(engine)?;
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
        let found = match locate(o, &id) {
            Ok(found) => found,
            Err(StorageError::Corrupt { reason, .. }) => {
                tracing::error!(id, reason, "outbox entry without its keys removed");
                None
            }
            Err(e) => return Err(e),
        };
        match found {
            Some(at) => {
                remove_located(o, &id, &at)?;
                expired.push(id);
            }
            None => {
                tracing::error!(id, "outbox expiry key without an entry removed");
                o.entries.remove(id.as_str()).map_err(engine)?;
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
            let due = rtx.open_table(OUTBOX_DUE).map_err(engine)?;
            let mut depth = 0;
            for row in due.range((system_id.as_str(), 0u64, "")..).map_err(engine)? {
                let (key, _) = row.map_err(engine)?;
                if key.value().0 != system_id {
                    break;
                }
                depth += 1;
            }
            Ok(depth)
        })
        .await
    }

    async fn waiting_clients(&self) -> Result<Vec<String>, StorageError> {
        self.read(|db| {
            let rtx = db.begin_read().map_err(engine)?;
            let due = rtx.open_table(OUTBOX_DUE).map_err(engine)?;
            let mut out: Vec<String> = Vec::new();
            loop {
                // The smallest system_id after the last one found: every key
                // of `last` sorts before `last` + NUL.
                let after = out.last().map(|last| format!("{last}\0")).unwrap_or_default();
                let mut rows = due.range((after.as_str(), 0u64, "")..).map_err(engine)?;
                match rows.next() {
                    Some(row) => {
                        let (key, _) = row.map_err(engine)?;
                        out.push(key.value().0.to_string());
                    }
                    None => return Ok(out),
                }
            }
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use redb::ReadableTableMetadata;

    use super::*;
    use crate::store::AddressRecord;

    fn entry(system_id: &str, expires_at_ms: u64) -> OutboxEntry {
        let address = AddressRecord {
            ton: 1,
            npi: 1,
            addr: "447700900123".into(),
        };
        OutboxEntry {
            id: String::new(),
            system_id: system_id.into(),
            created_at_ms: 1,
            expires_at_ms,
            attempts: 0,
            message_id: Some("m".into()),
            service_type: String::new(),
            source: address.clone(),
            dest: address,
            esm_class: 0x04,
            protocol_id: 0,
            data_coding: 0,
            short_message: Bytes::from_static(b"id:m stat:DELIVRD"),
            tlvs: Bytes::new(),
        }
    }

    /// Replaces entry `id`'s stored value behind the committer's back: its
    /// body with garbage (header kept), or the whole value.
    fn corrupt(storage: &EmbeddedStorage, id: &str, keep_header: bool) {
        let wtx = storage.db.begin_write().unwrap();
        {
            let mut entries = wtx.open_table(OUTBOX).unwrap();
            let old = entries.get(id).unwrap().unwrap().value().to_vec();
            let mut bad = if keep_header {
                let header = Header::parse(&old).unwrap();
                old[..old.len() - header.body.len()].to_vec()
            } else {
                Vec::new()
            };
            bad.extend_from_slice(&[0xff; 3]);
            entries.insert(id, bad.as_slice()).unwrap();
        }
        wtx.commit().unwrap();
    }

    #[tokio::test]
    async fn a_corrupt_entry_can_still_be_acked_and_expired() {
        let dir = tempfile::tempdir().unwrap();
        let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
        let now = now_ms();
        let later = now + 86_400_000;
        storage
            .push(vec![
                entry("c1", later),
                entry("c1", now + 60_000),
                entry("c1", now + 61_000),
                entry("c2", later),
            ])
            .await
            .unwrap();
        let lease = Duration::from_secs(3600);
        let ids = entry_ids(&storage.reserve_for("c1", 10, lease).await.unwrap());
        assert_eq!(ids.len(), 3);
        let c2 = entry_ids(&storage.reserve_for("c2", 10, lease).await.unwrap());
        corrupt(&storage, &ids[0], true);
        corrupt(&storage, &ids[1], true);
        corrupt(&storage, &ids[2], false);
        corrupt(&storage, &c2[0], true);
        assert!(matches!(
            storage.retry_delivery("c1", &ids[0], 1, now).await,
            Err(StorageError::Corrupt { .. })
        ));

        // One client cannot ack another's entry, corrupt or not.
        storage.ack_delivered("c1", &c2).await.unwrap();
        assert_eq!(storage.depth_for("c2").await.unwrap(), 1);
        storage.ack_delivered("c2", &c2).await.unwrap();
        assert_eq!(storage.depth_for("c2").await.unwrap(), 0);

        storage.ack_delivered("c1", &ids[..1]).await.unwrap();
        assert_eq!(storage.depth_for("c1").await.unwrap(), 2);
        assert_eq!(
            storage.expire(now + 70_000).await.unwrap(),
            2,
            "header kept, and no header at all"
        );
        assert_eq!(storage.depth_for("c1").await.unwrap(), 0);
        assert!(storage.waiting_clients().await.unwrap().is_empty());
        let rtx = storage.db.begin_read().unwrap();
        assert!(rtx.open_table(OUTBOX_DUE).unwrap().is_empty().unwrap());
        assert!(rtx.open_table(OUTBOX).unwrap().is_empty().unwrap());
        assert!(rtx.open_table(OUTBOX_EXPIRY).unwrap().is_empty().unwrap());
    }

    fn entry_ids(entries: &[OutboxEntry]) -> Vec<String> {
        entries.iter().map(|e| e.id.clone()).collect()
    }
}
