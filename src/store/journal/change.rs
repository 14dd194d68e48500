//! A write request made ready for the committer on the caller's thread.
//!
//! The committer is the journal's one serial stage, so what does not need
//! the state is done before a request reaches it: the octets a record keeps
//! are copied out of the session's read buffer ([`own`]), the clock is read,
//! new records are put behind the `Arc` the state keeps them in, and the
//! change's [`Redo`] is built and postcard-encoded. The committer
//! then only decides (a cancel refused while the relay holds the message, a
//! full store), applies the redo and appends the octets already encoded
//! from that same redo, so the journal and the state cannot disagree.

use std::sync::Arc;

use bytes::Bytes;

use super::redo::Redo;
use crate::queue::outbox::OutboxEntry;
use crate::store::write::Op;
use crate::store::MessageRecord;

/// One request's change, encoded.
pub(super) struct Change {
    pub(super) redo: Redo,
    /// `redo`, postcard-encoded.
    pub(super) encoded: Vec<u8>,
    /// For cancel and replace: the system_id that must own the message.
    pub(super) owner: Option<String>,
    /// How much of a batch this change takes (see [`Op::weight`]).
    pub(super) weight: usize,
}

impl Change {
    /// Prepares `op` with `now` as the time the change is made (the due time
    /// of what it queues).
    pub(super) fn prepare(mut op: Op, now: u64) -> Result<Change, postcard::Error> {
        own_op(&mut op);
        let weight = op.weight();
        let size_hint = encoded_size_hint(&op);
        let mut owner = None;
        let redo = match op {
            Op::Enqueue(records) => Redo::Enqueue { now, records },
            Op::Insert(records) => Redo::Insert(records),
            Op::Update(id, update) => Redo::Update { id, update },
            Op::Settle(id, update) => Redo::Settle { id, update },
            Op::SettleMany(settles) => Redo::SettleMany(settles),
            Op::Ack(ids) => Redo::Ack(ids),
            Op::Retry(id, due_at_ms) => Redo::Retry { id, due_at_ms },
            Op::Cancel { id, system_id, at_ms } => {
                owner = Some(system_id);
                Redo::Cancelled { id, at_ms }
            }
            Op::Replace {
                id,
                system_id,
                replacement,
            } => {
                owner = Some(system_id);
                Redo::Replaced { id, replacement }
            }
            Op::RecordReceipt {
                receipt,
                update,
                forward,
            } => Redo::Receipt {
                now,
                receipt: *receipt,
                update: update.map(|u| *u),
                forward,
            },
            Op::Push(entries) => Redo::Push { now, entries },
            Op::AckDelivered { system_id, ids } => Redo::AckDelivered { system_id, ids },
            Op::RetryDelivery {
                system_id,
                id,
                attempts,
                due_at_ms,
            } => Redo::RetryDelivery {
                system_id,
                id,
                attempts,
                due_at_ms,
            },
            Op::Expire(now_ms) => Redo::Expire { now_ms },
        };
        let encoded = postcard::to_extend(&redo, Vec::with_capacity(size_hint))?;
        Ok(Change {
            redo,
            encoded,
            owner,
            weight,
        })
    }
}

/// About the octets `op`'s redo encodes to, a little over for records:
/// a batch of records encoded into a growing `Vec` was copied over and over
/// as it doubled (`realloc` was ~10% of `prepare` in the ingest profile).
fn encoded_size_hint(op: &Op) -> usize {
    /// A record's fixed-size fields and length prefixes, over-estimated.
    const RECORD_FIXED: usize = 96;
    match op {
        Op::Enqueue(records) | Op::Insert(records) => records
            .iter()
            .map(|r| {
                RECORD_FIXED
                    + r.id.len()
                    + r.system_id.len()
                    + r.service_type.len()
                    + r.source.addr.len()
                    + r.dest.addr.len()
                    + r.short_message.len()
                    + r.tlvs.len()
            })
            .sum(),
        Op::SettleMany(settles) => 128 * settles.len(),
        _ => 128,
    }
}

/// Copies `bytes` out of whatever larger buffer it may be a slice of (a
/// session's read buffer): a record lives in memory for hours, and a
/// 30-octet slice must not keep a 64 KiB buffer alive.
fn own(bytes: &mut Bytes) {
    if !bytes.is_empty() {
        *bytes = Bytes::copy_from_slice(bytes);
    }
}

fn own_record(record: &mut MessageRecord) {
    own(&mut record.short_message);
    own(&mut record.tlvs);
}

fn own_entry(entry: &mut OutboxEntry) {
    own(&mut entry.short_message);
    own(&mut entry.tlvs);
}

fn own_op(op: &mut Op) {
    match op {
        // The caller's `Arc`s are its own (a clone only if it kept one).
        Op::Enqueue(batch) | Op::Insert(batch) => batch.iter_mut().for_each(|r| own_record(Arc::make_mut(r))),
        Op::Replace { replacement, .. } => own(&mut replacement.short_message),
        Op::RecordReceipt { receipt, forward, .. } => {
            own(&mut receipt.text);
            forward.iter_mut().for_each(own_entry);
        }
        Op::Push(entries) => entries.iter_mut().for_each(own_entry),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Replacement;

    fn record(short_message: Bytes) -> MessageRecord {
        MessageRecord {
            short_message,
            ..MessageRecord::example("m1")
        }
    }

    #[test]
    fn the_encoded_octets_are_the_redo_the_committer_applies() {
        let change = Change::prepare(Op::Enqueue(vec![Arc::new(record(Bytes::from_static(b"hello")))]), 42).unwrap();
        let (decoded, rest) = postcard::take_from_bytes::<Redo>(&change.encoded).unwrap();
        assert!(rest.is_empty());
        assert_eq!(decoded, change.redo);
        match &change.redo {
            Redo::Enqueue { now, records } => {
                assert_eq!(*now, 42);
                assert_eq!(records.len(), 1);
            }
            other => panic!("unexpected redo {other:?}"),
        }
        assert_eq!(change.weight, 1);
        assert_eq!(change.owner, None);
    }

    #[test]
    fn a_batch_of_new_records_is_encoded_without_growing_its_buffer() {
        let records: Vec<Arc<MessageRecord>> = (0..100)
            .map(|n| MessageRecord {
                schedule_at_ms: Some(u64::MAX),
                expires_at_ms: Some(u64::MAX),
                submitted_at_ms: u64::MAX,
                updated_at_ms: u64::MAX,
                ..record(Bytes::from(vec![b'x'; 160 + n]))
            })
            .map(Arc::new)
            .collect();
        let hint = encoded_size_hint(&Op::Enqueue(records.clone()));
        let change = Change::prepare(Op::Enqueue(records), u64::MAX).unwrap();
        assert!(change.encoded.len() <= hint, "{} > {hint}", change.encoded.len());
        assert!(
            hint < change.encoded.len() * 2,
            "{hint} is far over {}",
            change.encoded.len()
        );
        assert_eq!(change.encoded.capacity(), hint, "the buffer grew");
    }

    #[test]
    fn cancel_and_replace_carry_the_owner_to_check() {
        let cancel = Op::Cancel {
            id: "m1".into(),
            system_id: "acme".into(),
            at_ms: 7,
        };
        let change = Change::prepare(cancel, 0).unwrap();
        assert_eq!(change.owner.as_deref(), Some("acme"));
        assert_eq!(
            change.redo,
            Redo::Cancelled {
                id: "m1".into(),
                at_ms: 7
            }
        );
        let replace = Op::Replace {
            id: "m1".into(),
            system_id: "other".into(),
            replacement: Replacement {
                short_message: Bytes::from_static(b"new"),
                registered_delivery: 1,
                schedule_at_ms: None,
                expires_at_ms: None,
                at_ms: 8,
            },
        };
        let change = Change::prepare(replace, 0).unwrap();
        assert_eq!(change.owner.as_deref(), Some("other"));
        assert!(matches!(change.redo, Redo::Replaced { .. }));
    }

    #[test]
    fn a_record_does_not_keep_the_read_buffer_it_was_sliced_from() {
        let read_buffer = Bytes::from(vec![b'x'; 65536]);
        let range = read_buffer.as_ptr_range();
        let change = Change::prepare(Op::Enqueue(vec![Arc::new(record(read_buffer.slice(100..130)))]), 0).unwrap();
        let Redo::Enqueue { records, .. } = &change.redo else {
            panic!("not an enqueue")
        };
        let kept = &records[0].short_message;
        assert_eq!(kept.as_ref(), &[b'x'; 30][..]);
        assert!(!range.contains(&kept.as_ptr()), "still a slice of the read buffer");
    }
}
