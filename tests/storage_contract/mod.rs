//! The storage contract: every implementation of [`Store`] + [`Queue`] +
//! [`Outbox`] (embedded, Redis + ScyllaDB) must pass these tests unchanged.
//!
//! Use from an integration test file:
//!
//! ```ignore
//! #[macro_use]
//! mod storage_contract;
//! use storage_contract::Fixture;
//!
//! async fn make() -> Fixture<MyStorage> { ... }
//!
//! storage_contract_tests!(make);
//! ```
//!
//! `make` must return an EMPTY storage of its own (a fresh directory, a fresh
//! key prefix / keyspace): tests run in parallel and count depths. The macro
//! expands into one `#[tokio::test]` per contract function below.

#![allow(dead_code)]

use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use smsmax::ids::MessageIdGenerator;
use smsmax::queue::outbox::{Outbox, OutboxEntry};
use smsmax::queue::Queue;
use smsmax::store::{
    AddressRecord, ChangeOutcome, MessageRecord, MessageState, ReceiptOutcome, ReceiptRecord, Replacement, StateUpdate,
    StorageError, Store, UpstreamLink, UpstreamMatch,
};

/// A storage under test.
pub struct Fixture<S> {
    pub storage: Arc<S>,
    /// Durable commits so far, where the backend counts them: then the
    /// concurrency test checks that concurrent enqueues shared commits.
    pub commits: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
    /// Whatever must live as long as the test (a temporary directory, ...).
    pub guard: Box<dyn Any + Send>,
}

/// Expands into one `#[tokio::test]` per contract test, each calling
/// `storage_contract::<name>(make().await)`.
#[macro_export]
macro_rules! storage_contract_tests {
    ($make:path) => {
        $crate::storage_contract_tests!(@each $make;
            enqueue_then_get_and_reserve,
            reserve_gives_due_entries_in_due_order,
            reserve_respects_due_time,
            lease_hides_an_entry_until_it_runs_out,
            ack_removes,
            retry_reschedules,
            depth_counts_queued_entries,
            insert_get_and_update,
            update_of_unknown_id_is_false,
            cancel_outcomes,
            replace_outcomes,
            concurrent_enqueues_are_durable_unique_and_group_committed,
            close_then_calls_fail_with_closed,
            update_link_is_found_by_upstream,
            a_final_state_is_never_overwritten,
            cancel_and_replace_are_refused_while_the_relay_holds_the_message,
            a_message_is_cancelled_or_relayed_never_both,
            unmatched_receipts_are_kept_oldest_first,
            a_matched_receipt_updates_forwards_and_clears_its_unmatched_copy,
            a_duplicate_receipt_changes_nothing,
            a_receipt_does_not_change_a_final_message,
            outbox_push_reserve_lease_and_ack,
            outbox_retry_delivery_reschedules,
            outbox_depth_and_waiting_clients,
            outbox_expire_removes_old_entries,
            linked_updates_record_parts_sent_and_upstream,
            a_message_with_a_part_sent_cannot_be_cancelled_or_replaced,
            settle_records_the_outcome_and_removes_the_entry,
            settle_many_settles_each_in_order,
        );
    };
    (@each $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                storage_contract::$name($make().await).await;
            }
        )*
    };
}

// ---- helpers ---------------------------------------------------------------

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Fresh, time-ordered ids (the gateway's own generator), unique per test.
pub fn ids() -> MessageIdGenerator {
    MessageIdGenerator::new(rand::random::<u16>())
}

/// A realistic record: 160-octet short_message, owned by `system_id`.
pub fn record(id: String, system_id: &str) -> MessageRecord {
    let now = now_ms();
    MessageRecord {
        id,
        system_id: system_id.into(),
        service_type: String::new(),
        source: AddressRecord {
            ton: 5,
            npi: 0,
            addr: "SMSMax".into(),
        },
        dest: AddressRecord {
            ton: 1,
            npi: 1,
            addr: "447700900123".into(),
        },
        esm_class: 0,
        protocol_id: 0,
        priority_flag: 0,
        registered_delivery: 1,
        data_coding: 0,
        short_message: Bytes::from(vec![b'x'; 160]),
        tlvs: Bytes::from_static(&[0x04, 0x24, 0x00, 0x01, 0x41]),
        parts: 1,
        state: MessageState::Accepted,
        submitted_at_ms: now,
        updated_at_ms: now,
        schedule_at_ms: None,
        expires_at_ms: Some(now + 86_400_000),
        upstream_id: None,
        error_code: None,
        attempts: 0,
        parts_sent: 0,
        upstream: None,
    }
}

fn ids_of(records: &[MessageRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

/// A state change without anything else.
pub fn state_update(state: MessageState) -> StateUpdate {
    StateUpdate {
        state,
        upstream_id: None,
        error_code: None,
        attempts: None,
        link: None,
        at_ms: now_ms(),
    }
}

/// The relay's ENROUTE update after a submit, with its upstream link.
pub fn submitted(upstream: &str, key: &str, part: u16) -> StateUpdate {
    StateUpdate {
        upstream_id: Some(key.to_uppercase()),
        link: Some(UpstreamLink {
            upstream: upstream.to_string(),
            key: key.to_string(),
            part,
        }),
        ..state_update(MessageState::Enroute)
    }
}

/// A receipt from `upstream` for its id `key`, matched or not.
pub fn receipt(upstream: &str, key: &str, matched: Option<UpstreamMatch>, state: MessageState) -> ReceiptRecord {
    ReceiptRecord {
        upstream: upstream.to_string(),
        key: key.to_string(),
        matched,
        state,
        error_code: None,
        received_at_ms: now_ms(),
        text: Bytes::from(format!("id:{key} sub:001 dlvrd:001 stat:{}", state.name())),
    }
}

/// A deliver_sm for `system_id` (a receipt about `message_id`), kept for a day.
pub fn outbox_entry(system_id: &str, message_id: &str) -> OutboxEntry {
    let now = now_ms();
    OutboxEntry {
        id: String::new(),
        system_id: system_id.into(),
        created_at_ms: now,
        expires_at_ms: now + 86_400_000,
        attempts: 0,
        message_id: Some(message_id.to_string()),
        service_type: String::new(),
        source: AddressRecord {
            ton: 1,
            npi: 1,
            addr: "447700900123".into(),
        },
        dest: AddressRecord {
            ton: 5,
            npi: 0,
            addr: "SMSMax".into(),
        },
        esm_class: 0x04,
        protocol_id: 0,
        data_coding: 0,
        short_message: Bytes::from(format!("id:{message_id} stat:DELIVRD")),
        tlvs: Bytes::new(),
    }
}

/// The message ids the entries are about, in order.
fn about(entries: &[OutboxEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.message_id.clone().unwrap_or_default())
        .collect()
}

fn entry_ids(entries: &[OutboxEntry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

const LONG: Duration = Duration::from_secs(600);

// ---- the contract ------------------------------------------------------------

pub async fn enqueue_then_get_and_reserve<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let records: Vec<_> = (0..3).map(|_| record(gen.next_id(), "esme1")).collect();
    s.enqueue(smsmax::queue::shared(records.clone())).await.unwrap();
    for r in &records {
        assert_eq!(
            s.get(&r.id).await.unwrap().as_ref(),
            Some(r),
            "get returns what was enqueued"
        );
    }
    assert_eq!(s.get("no-such-id").await.unwrap(), None);
    let mut got = s.reserve(10, LONG).await.unwrap();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, records, "reserve hands out the enqueued records, intact");
}

pub async fn reserve_gives_due_entries_in_due_order<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let now = now_ms();
    // Enqueued in one order, due in the reverse one (all in the past).
    let mut records = Vec::new();
    for i in 0..5u64 {
        let mut r = record(gen.next_id(), "esme1");
        r.schedule_at_ms = Some(now - 1000 - i * 10);
        records.push(r);
    }
    s.enqueue(smsmax::queue::shared(records.clone())).await.unwrap();
    let first = s.reserve(2, LONG).await.unwrap();
    assert_eq!(ids_of(&first), vec![records[4].id.clone(), records[3].id.clone()]);
    let rest = s.reserve(10, LONG).await.unwrap();
    assert_eq!(
        ids_of(&rest),
        vec![records[2].id.clone(), records[1].id.clone(), records[0].id.clone()]
    );
}

pub async fn reserve_respects_due_time<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let now_rec = record(gen.next_id(), "esme1");
    let mut later = record(gen.next_id(), "esme1");
    let due = now_ms() + 800;
    later.schedule_at_ms = Some(due);
    s.enqueue(smsmax::queue::shared([now_rec.clone(), later.clone()]))
        .await
        .unwrap();
    assert_eq!(s.depth().await.unwrap(), 2);

    let got = s.reserve(10, LONG).await.unwrap();
    assert_eq!(ids_of(&got), vec![now_rec.id.clone()], "only the due one");
    assert!(s.reserve(10, LONG).await.unwrap().is_empty());

    tokio::time::sleep(Duration::from_millis(due.saturating_sub(now_ms()) + 100)).await;
    let got = s.reserve(10, LONG).await.unwrap();
    assert_eq!(ids_of(&got), vec![later.id.clone()], "the scheduled one once due");
}

pub async fn lease_hides_an_entry_until_it_runs_out<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let r = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([r.clone()])).await.unwrap();
    let lease = Duration::from_millis(400);
    assert_eq!(ids_of(&s.reserve(10, lease).await.unwrap()), vec![r.id.clone()]);
    // Leased: nobody else gets it, even many times over.
    for _ in 0..3 {
        assert!(
            s.reserve(10, lease).await.unwrap().is_empty(),
            "a leased entry is not handed out twice"
        );
    }
    assert_eq!(s.depth().await.unwrap(), 1, "a leased entry is still queued");
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    assert_eq!(
        ids_of(&s.reserve(10, LONG).await.unwrap()),
        vec![r.id.clone()],
        "after the lease runs out the entry is handed out again"
    );
    assert!(s.reserve(10, LONG).await.unwrap().is_empty());
}

pub async fn ack_removes<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let records: Vec<_> = (0..4).map(|_| record(gen.next_id(), "esme1")).collect();
    s.enqueue(smsmax::queue::shared(records.clone())).await.unwrap();
    let got = s.reserve(2, Duration::from_millis(300)).await.unwrap();
    assert_eq!(got.len(), 2);
    s.ack(&ids_of(&got)).await.unwrap();
    assert_eq!(s.depth().await.unwrap(), 2);
    // Acking an unknown id or an acked one again is harmless.
    s.ack(&[got[0].id.clone(), "no-such-id".to_string()]).await.unwrap();
    assert_eq!(s.depth().await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rest = s.reserve(10, LONG).await.unwrap();
    let acked: HashSet<_> = ids_of(&got).into_iter().collect();
    assert_eq!(rest.len(), 2);
    assert!(
        rest.iter().all(|r| !acked.contains(&r.id)),
        "an acked entry never comes back"
    );
    // The record itself stays (query_sm still answers).
    for r in &got {
        assert!(s.get(&r.id).await.unwrap().is_some());
    }
    s.ack(&ids_of(&rest)).await.unwrap();
    assert_eq!(s.depth().await.unwrap(), 0);
}

pub async fn retry_reschedules<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let a = record(gen.next_id(), "esme1");
    let b = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([a.clone(), b.clone()])).await.unwrap();
    assert_eq!(s.reserve(10, LONG).await.unwrap().len(), 2);

    // a: later; b: right away (its lease ends with the retry).
    let due = now_ms() + 700;
    s.retry(&a.id, due).await.unwrap();
    s.retry(&b.id, now_ms()).await.unwrap();
    assert_eq!(s.depth().await.unwrap(), 2, "retry keeps the entry queued");
    assert_eq!(ids_of(&s.reserve(10, LONG).await.unwrap()), vec![b.id.clone()]);
    tokio::time::sleep(Duration::from_millis(due.saturating_sub(now_ms()) + 100)).await;
    assert_eq!(ids_of(&s.reserve(10, LONG).await.unwrap()), vec![a.id.clone()]);
    s.ack(&[a.id.clone(), b.id.clone()]).await.unwrap();
    assert_eq!(s.depth().await.unwrap(), 0);
}

pub async fn depth_counts_queued_entries<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    assert_eq!(s.depth().await.unwrap(), 0, "a new storage is empty");
    let mut future = record(gen.next_id(), "esme1");
    future.schedule_at_ms = Some(now_ms() + 3_600_000);
    let mut records: Vec<_> = (0..9).map(|_| record(gen.next_id(), "esme1")).collect();
    records.push(future);
    s.enqueue(smsmax::queue::shared(records[..5].to_vec())).await.unwrap();
    s.enqueue(smsmax::queue::shared(records[5..].to_vec())).await.unwrap();
    assert_eq!(s.depth().await.unwrap(), 10, "scheduled entries count too");
    let got = s.reserve(3, LONG).await.unwrap();
    assert_eq!(s.depth().await.unwrap(), 10, "leased entries count too");
    s.ack(&ids_of(&got)).await.unwrap();
    assert_eq!(s.depth().await.unwrap(), 7);
    // Records stored without queueing do not count.
    s.insert(&[record(gen.next_id(), "esme1")]).await.unwrap();
    assert_eq!(s.depth().await.unwrap(), 7);
}

pub async fn insert_get_and_update<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let r = record(gen.next_id(), "esme1");
    s.insert(std::slice::from_ref(&r)).await.unwrap();
    assert_eq!(s.get(&r.id).await.unwrap().as_ref(), Some(&r));

    let update = StateUpdate {
        state: MessageState::Enroute,
        upstream_id: Some("UP-1".into()),
        error_code: None,
        attempts: None,
        link: None,
        at_ms: r.updated_at_ms + 5,
    };
    assert!(s.update(&r.id, update).await.unwrap());
    let got = s.get(&r.id).await.unwrap().unwrap();
    assert_eq!(got.state, MessageState::Enroute);
    assert_eq!(got.upstream_id.as_deref(), Some("UP-1"));
    assert_eq!(got.error_code, None);
    assert_eq!(got.updated_at_ms, r.updated_at_ms + 5);
    assert_eq!(got.short_message, r.short_message, "other fields are kept");

    let update = StateUpdate {
        state: MessageState::Undeliverable,
        upstream_id: None,
        error_code: Some(0x0b),
        attempts: Some(3),
        link: None,
        at_ms: r.updated_at_ms + 9,
    };
    assert!(s.update(&r.id, update).await.unwrap());
    let got = s.get(&r.id).await.unwrap().unwrap();
    assert_eq!(got.state, MessageState::Undeliverable);
    assert_eq!(
        got.upstream_id.as_deref(),
        Some("UP-1"),
        "an update without upstream id keeps it"
    );
    assert_eq!(got.error_code, Some(0x0b));
    assert_eq!(got.attempts, 3, "attempts recorded");
    assert_eq!(got.state, MessageState::Undeliverable);

    // insert overwrites.
    let mut again = r.clone();
    again.attempts = 3;
    s.insert(std::slice::from_ref(&again)).await.unwrap();
    assert_eq!(s.get(&r.id).await.unwrap(), Some(again));
}

pub async fn update_of_unknown_id_is_false<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let update = StateUpdate {
        state: MessageState::Delivered,
        upstream_id: None,
        error_code: None,
        attempts: None,
        link: None,
        at_ms: now_ms(),
    };
    assert!(!s.update("no-such-id", update).await.unwrap());
    assert_eq!(
        s.get("no-such-id").await.unwrap(),
        None,
        "update does not create a record"
    );
}

pub async fn cancel_outcomes<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let a = record(gen.next_id(), "esme1");
    let b = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([a.clone(), b.clone()])).await.unwrap();

    assert_eq!(
        s.cancel("no-such-id", "esme1", now_ms()).await.unwrap(),
        ChangeOutcome::NotFound
    );
    assert_eq!(
        s.cancel(&a.id, "esme2", now_ms()).await.unwrap(),
        ChangeOutcome::NotOwner
    );
    assert_eq!(s.get(&a.id).await.unwrap().unwrap().state, MessageState::Accepted);

    let at = now_ms();
    assert_eq!(s.cancel(&a.id, "esme1", at).await.unwrap(), ChangeOutcome::Changed);
    let got = s.get(&a.id).await.unwrap().unwrap();
    assert_eq!(got.state, MessageState::Deleted);
    assert_eq!(got.updated_at_ms, at);
    assert_eq!(s.depth().await.unwrap(), 1, "a cancelled message leaves the queue");
    assert_eq!(ids_of(&s.reserve(10, LONG).await.unwrap()), vec![b.id.clone()]);
    assert_eq!(
        s.cancel(&a.id, "esme1", now_ms()).await.unwrap(),
        ChangeOutcome::TooLate(MessageState::Deleted)
    );

    let update = StateUpdate {
        state: MessageState::Enroute,
        upstream_id: Some("UP-7".into()),
        error_code: None,
        attempts: None,
        link: None,
        at_ms: now_ms(),
    };
    assert!(s.update(&b.id, update).await.unwrap());
    assert_eq!(
        s.cancel(&b.id, "esme1", now_ms()).await.unwrap(),
        ChangeOutcome::TooLate(MessageState::Enroute)
    );
    assert_eq!(s.get(&b.id).await.unwrap().unwrap().state, MessageState::Enroute);
}

pub async fn replace_outcomes<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let a = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([a.clone()])).await.unwrap();
    let replacement = |text: &'static [u8]| Replacement {
        short_message: Bytes::from_static(text),
        registered_delivery: 0,
        schedule_at_ms: None,
        expires_at_ms: None,
        at_ms: now_ms(),
    };

    assert_eq!(
        s.replace("no-such-id", "esme1", replacement(b"x")).await.unwrap(),
        ChangeOutcome::NotFound
    );
    assert_eq!(
        s.replace(&a.id, "esme2", replacement(b"x")).await.unwrap(),
        ChangeOutcome::NotOwner
    );
    assert_eq!(s.get(&a.id).await.unwrap().unwrap().short_message, a.short_message);

    let r = replacement(b"new text");
    assert_eq!(
        s.replace(&a.id, "esme1", r.clone()).await.unwrap(),
        ChangeOutcome::Changed
    );
    let got = s.get(&a.id).await.unwrap().unwrap();
    assert_eq!(got.short_message, r.short_message);
    assert_eq!(got.registered_delivery, 0);
    assert_eq!(got.state, MessageState::Accepted);
    assert_eq!(got.expires_at_ms, a.expires_at_ms, "no new validity keeps the old one");
    assert_eq!(got.updated_at_ms, r.at_ms);
    assert_eq!(s.depth().await.unwrap(), 1, "a replaced message stays queued");

    // A new schedule moves the queue entry.
    let mut later = replacement(b"later");
    later.schedule_at_ms = Some(now_ms() + 3_600_000);
    assert_eq!(
        s.replace(&a.id, "esme1", later.clone()).await.unwrap(),
        ChangeOutcome::Changed
    );
    assert_eq!(
        s.get(&a.id).await.unwrap().unwrap().schedule_at_ms,
        later.schedule_at_ms
    );
    assert!(
        s.reserve(10, LONG).await.unwrap().is_empty(),
        "rescheduled into the future"
    );
    assert_eq!(s.depth().await.unwrap(), 1);

    let update = StateUpdate {
        state: MessageState::Enroute,
        upstream_id: None,
        error_code: None,
        attempts: None,
        link: None,
        at_ms: now_ms(),
    };
    assert!(s.update(&a.id, update).await.unwrap());
    assert_eq!(
        s.replace(&a.id, "esme1", replacement(b"too late")).await.unwrap(),
        ChangeOutcome::TooLate(MessageState::Enroute)
    );
    assert_eq!(s.get(&a.id).await.unwrap().unwrap().short_message.as_ref(), b"later");
}

pub async fn concurrent_enqueues_are_durable_unique_and_group_committed<S: Store + Queue>(f: Fixture<S>) {
    const TASKS: usize = 50;
    const PER_TASK: usize = 20;
    let s = f.storage.clone();
    let commits_before = f.commits.as_ref().map(|c| c());
    let gen = Arc::new(ids());
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let s = s.clone();
        let gen = gen.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..PER_TASK {
                let r = record(gen.next_id(), "esme1");
                mine.push(r.id.clone());
                s.enqueue(smsmax::queue::shared([r])).await.unwrap();
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let total = TASKS * PER_TASK;
    assert_eq!(all.len(), total);
    for id in &all {
        assert_eq!(
            s.get(id).await.unwrap().map(|r| r.id),
            Some(id.clone()),
            "every acknowledged enqueue is stored"
        );
    }
    assert_eq!(s.depth().await.unwrap(), total as u64);
    let got = s.reserve(total + 10, LONG).await.unwrap();
    let unique: HashSet<_> = ids_of(&got).into_iter().collect();
    assert_eq!(got.len(), total, "each message queued exactly once");
    assert_eq!(unique, all.iter().cloned().collect::<HashSet<_>>());
    if let (Some(commits), Some(before)) = (f.commits.as_ref(), commits_before) {
        let used = commits() - before;
        assert!(
            used < total as u64,
            "group commit: {total} concurrent enqueue calls took {used} commits"
        );
    }
}

pub async fn close_then_calls_fail_with_closed<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let r = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([r.clone()])).await.unwrap();
    s.close().await.unwrap();

    fn closed<T: std::fmt::Debug>(what: &str, result: Result<T, StorageError>) {
        assert!(
            matches!(result, Err(StorageError::Closed)),
            "{what} after close: {result:?}"
        );
    }
    closed(
        "enqueue",
        s.enqueue(smsmax::queue::shared([record(gen.next_id(), "esme1")])).await,
    );
    closed("reserve", s.reserve(10, LONG).await);
    closed("ack", s.ack(std::slice::from_ref(&r.id)).await);
    closed("retry", s.retry(&r.id, now_ms()).await);
    closed("depth", s.depth().await);
    closed("insert", s.insert(std::slice::from_ref(&r)).await);
    closed("get", s.get(&r.id).await);
    let update = StateUpdate {
        state: MessageState::Enroute,
        upstream_id: None,
        error_code: None,
        attempts: None,
        link: None,
        at_ms: now_ms(),
    };
    closed("update", s.update(&r.id, update).await);
    closed("cancel", s.cancel(&r.id, "esme1", now_ms()).await);
    let replacement = Replacement {
        short_message: Bytes::from_static(b"x"),
        registered_delivery: 0,
        schedule_at_ms: None,
        expires_at_ms: None,
        at_ms: now_ms(),
    };
    closed("replace", s.replace(&r.id, "esme1", replacement).await);
    closed("find_by_upstream", s.find_by_upstream("up1", "k1").await);
    let dlr = receipt("up1", "k1", None, MessageState::Delivered);
    closed("record_receipt", s.record_receipt(dlr, None, vec![]).await);
    closed("receipts", s.receipts(&r.id).await);
    closed("unmatched_receipts", s.unmatched_receipts(10).await);
    closed("unmatched_count", s.unmatched_count().await);
    closed("push", s.push(vec![outbox_entry("esme1", &r.id)]).await);
    closed("reserve_for", s.reserve_for("esme1", 10, LONG).await);
    closed("ack_delivered", s.ack_delivered("esme1", &["x".to_string()]).await);
    closed("retry_delivery", s.retry_delivery("esme1", "x", 1, now_ms()).await);
    closed("depth_for", s.depth_for("esme1").await);
    closed("waiting_clients", s.waiting_clients().await);
    closed("expire", s.expire(now_ms()).await);
}

// ---- upstream links and final states -------------------------------------------

pub async fn update_link_is_found_by_upstream<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let r = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([r.clone()])).await.unwrap();
    assert_eq!(s.find_by_upstream("up1", "abc").await.unwrap(), None);

    assert!(s.update(&r.id, submitted("up1", "abc", 0)).await.unwrap());
    let found = UpstreamMatch {
        id: r.id.clone(),
        part: 0,
    };
    assert_eq!(s.find_by_upstream("up1", "abc").await.unwrap(), Some(found.clone()));
    let got = s.get(&r.id).await.unwrap().unwrap();
    assert_eq!(got.state, MessageState::Enroute);
    assert_eq!(got.upstream_id.as_deref(), Some("ABC"));
    // The match and the record in one call, as the receipt path asks.
    assert_eq!(
        s.find_record_by_upstream("up1", "abc").await.unwrap(),
        Some((found, Some(std::sync::Arc::new(got))))
    );
    assert_eq!(s.find_record_by_upstream("up1", "nope").await.unwrap(), None);
    // Another part of the same message, and the same id at another upstream.
    assert!(s.update(&r.id, submitted("up1", "abd", 1)).await.unwrap());
    assert_eq!(
        s.find_by_upstream("up1", "abd").await.unwrap(),
        Some(UpstreamMatch {
            id: r.id.clone(),
            part: 1
        })
    );
    assert_eq!(
        s.find_by_upstream("up1", "abc").await.unwrap().map(|m| m.part),
        Some(0),
        "each part keeps its own link"
    );
    assert_eq!(
        s.find_by_upstream("up2", "abc").await.unwrap(),
        None,
        "links are per upstream"
    );

    // No link for an unknown id; a final record still gets its link.
    assert!(!s.update("no-such-id", submitted("up1", "zzz", 0)).await.unwrap());
    assert_eq!(s.find_by_upstream("up1", "zzz").await.unwrap(), None);
    assert!(s.update(&r.id, state_update(MessageState::Delivered)).await.unwrap());
    assert!(!s.update(&r.id, submitted("up2", "late", 0)).await.unwrap());
    assert_eq!(
        s.find_by_upstream("up2", "late").await.unwrap().map(|m| m.id),
        Some(r.id.clone())
    );
    assert_eq!(s.get(&r.id).await.unwrap().unwrap().state, MessageState::Delivered);
}

pub async fn a_final_state_is_never_overwritten<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let a = record(gen.next_id(), "esme1");
    let b = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([a.clone(), b.clone()])).await.unwrap();

    assert!(s.update(&a.id, state_update(MessageState::Delivered)).await.unwrap());
    let delivered = s.get(&a.id).await.unwrap().unwrap();
    for state in [
        MessageState::Undeliverable,
        MessageState::Enroute,
        MessageState::Accepted,
        MessageState::Expired,
    ] {
        let update = StateUpdate {
            error_code: Some(0x45),
            attempts: Some(9),
            upstream_id: Some("OTHER".into()),
            ..state_update(state)
        };
        assert!(
            !s.update(&a.id, update).await.unwrap(),
            "update of a final record answers false"
        );
        assert_eq!(
            s.get(&a.id).await.unwrap().as_ref(),
            Some(&delivered),
            "DELIVERED stays as it was after an update to {state:?}"
        );
    }

    // A late relay outcome cannot undo a cancel.
    assert_eq!(
        s.cancel(&b.id, "esme1", now_ms()).await.unwrap(),
        ChangeOutcome::Changed
    );
    assert!(!s.update(&b.id, submitted("up1", "b-up", 0)).await.unwrap());
    assert_eq!(s.get(&b.id).await.unwrap().unwrap().state, MessageState::Deleted);
}

pub async fn cancel_and_replace_are_refused_while_the_relay_holds_the_message<S: Store + Queue + Outbox>(
    f: Fixture<S>,
) {
    let s = &f.storage;
    let gen = ids();
    let a = record(gen.next_id(), "esme1");
    let b = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([a.clone(), b.clone()])).await.unwrap();
    let replacement = || Replacement {
        short_message: Bytes::from_static(b"replaced"),
        registered_delivery: 0,
        schedule_at_ms: None,
        expires_at_ms: None,
        at_ms: now_ms(),
    };
    let lease = Duration::from_millis(400);
    assert_eq!(s.reserve(10, lease).await.unwrap().len(), 2);

    assert_eq!(
        s.cancel(&a.id, "esme1", now_ms()).await.unwrap(),
        ChangeOutcome::InFlight
    );
    assert_eq!(
        s.replace(&b.id, "esme1", replacement()).await.unwrap(),
        ChangeOutcome::InFlight
    );
    assert_eq!(
        s.cancel(&a.id, "esme2", now_ms()).await.unwrap(),
        ChangeOutcome::NotOwner,
        "another client learns nothing"
    );
    assert_eq!(s.get(&a.id).await.unwrap().as_ref(), Some(&a), "untouched while held");
    assert_eq!(s.get(&b.id).await.unwrap().as_ref(), Some(&b), "untouched while held");

    // The relay gives a back (retry): cancel works again.
    s.retry(&a.id, now_ms() + 60_000).await.unwrap();
    assert_eq!(
        s.cancel(&a.id, "esme1", now_ms()).await.unwrap(),
        ChangeOutcome::Changed
    );
    assert_eq!(s.get(&a.id).await.unwrap().unwrap().state, MessageState::Deleted);
    assert_eq!(s.depth().await.unwrap(), 1);

    // b's lease runs out: replace works again, and the next reserve sees it.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    assert_eq!(
        s.replace(&b.id, "esme1", replacement()).await.unwrap(),
        ChangeOutcome::Changed
    );
    let got = s.reserve(10, LONG).await.unwrap();
    assert_eq!(ids_of(&got), vec![b.id.clone()]);
    assert_eq!(got[0].short_message.as_ref(), b"replaced");
}

/// The relay reserving while clients cancel: each message ends up either
/// cancelled (answered OK) or handed to the relay as ACCEPTED, never both.
pub async fn a_message_is_cancelled_or_relayed_never_both<S: Store + Queue + Outbox>(f: Fixture<S>) {
    const N: usize = 300;
    const CANCELLERS: usize = 4;
    let s = f.storage.clone();
    let gen = ids();
    let records: Vec<_> = (0..N).map(|_| record(gen.next_id(), "esme1")).collect();
    s.enqueue(smsmax::queue::shared(records.clone())).await.unwrap();
    let all = ids_of(&records);
    let cancelling = Arc::new(std::sync::atomic::AtomicUsize::new(CANCELLERS));

    let relay = {
        let s = s.clone();
        let cancelling = cancelling.clone();
        tokio::spawn(async move {
            let mut relayed = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while tokio::time::Instant::now() < deadline {
                let done = cancelling.load(std::sync::atomic::Ordering::Acquire) == 0;
                let got = s.reserve(3, LONG).await.unwrap();
                if got.is_empty() && done {
                    break;
                }
                relayed.extend(
                    got.into_iter()
                        .filter(|r| r.state == MessageState::Accepted)
                        .map(|r| r.id),
                );
                tokio::task::yield_now().await;
            }
            relayed
        })
    };
    let mut cancellers = Vec::new();
    for c in 0..CANCELLERS {
        let s = s.clone();
        let cancelling = cancelling.clone();
        let mine: Vec<String> = all.iter().skip(c).step_by(CANCELLERS).cloned().collect();
        cancellers.push(tokio::spawn(async move {
            let mut cancelled = Vec::new();
            for id in mine {
                match s.cancel(&id, "esme1", now_ms()).await.unwrap() {
                    ChangeOutcome::Changed => cancelled.push(id),
                    ChangeOutcome::InFlight => {}
                    other => panic!("cancel of a queued message: {other:?}"),
                }
            }
            cancelling.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            cancelled
        }));
    }
    let mut cancelled = HashSet::new();
    for c in cancellers {
        cancelled.extend(c.await.unwrap());
    }
    let relayed: HashSet<String> = relay.await.unwrap().into_iter().collect();
    let both: Vec<_> = cancelled.intersection(&relayed).collect();
    assert!(both.is_empty(), "cancelled (answered OK) and relayed: {both:?}");
    assert_eq!(
        cancelled.len() + relayed.len(),
        N,
        "every message is either cancelled or relayed ({} + {})",
        cancelled.len(),
        relayed.len()
    );
}

// ---- receipts ---------------------------------------------------------------

pub async fn unmatched_receipts_are_kept_oldest_first<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    assert_eq!(s.unmatched_count().await.unwrap(), 0);
    assert!(s.unmatched_receipts(10).await.unwrap().is_empty());

    let base = now_ms();
    let at = |key: &str, ms: u64| ReceiptRecord {
        received_at_ms: base + ms,
        ..receipt("up1", key, None, MessageState::Delivered)
    };
    // Recorded out of arrival order.
    for r in [at("k2", 20), at("k1", 10), at("k3", 30)] {
        assert_eq!(
            s.record_receipt(r, None, vec![]).await.unwrap(),
            ReceiptOutcome::Recorded
        );
    }
    assert_eq!(s.unmatched_count().await.unwrap(), 3);
    let keys = |v: Vec<ReceiptRecord>| v.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(keys(s.unmatched_receipts(10).await.unwrap()), ["k1", "k2", "k3"]);
    assert_eq!(keys(s.unmatched_receipts(2).await.unwrap()), ["k1", "k2"]);
    assert_eq!(
        s.unmatched_receipts(1).await.unwrap(),
        vec![at("k1", 10)],
        "kept as given"
    );

    // The same receipt again is kept once; another state of the same id is kept too.
    assert_eq!(
        s.record_receipt(at("k1", 40), None, vec![]).await.unwrap(),
        ReceiptOutcome::Duplicate
    );
    let enroute = ReceiptRecord {
        state: MessageState::Enroute,
        ..at("k1", 50)
    };
    assert_eq!(
        s.record_receipt(enroute.clone(), None, vec![]).await.unwrap(),
        ReceiptOutcome::Recorded
    );
    assert_eq!(s.unmatched_count().await.unwrap(), 4);
    assert_eq!(s.unmatched_receipts(10).await.unwrap().last(), Some(&enroute));
    assert_eq!(
        s.find_by_upstream("up1", "k1").await.unwrap(),
        None,
        "keeping is not linking"
    );
}

/// An enqueued message the relay submitted to `up1` as `key`.
async fn submitted_message<S: Store + Queue>(s: &S, gen: &MessageIdGenerator, key: &str) -> MessageRecord {
    let r = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([r.clone()])).await.unwrap();
    assert!(s.update(&r.id, submitted("up1", key, 0)).await.unwrap());
    s.ack(std::slice::from_ref(&r.id)).await.unwrap();
    r
}

pub async fn a_matched_receipt_updates_forwards_and_clears_its_unmatched_copy<S: Store + Queue + Outbox>(
    f: Fixture<S>,
) {
    let s = &f.storage;
    let gen = ids();
    let m = submitted_message(s.as_ref(), &gen, "k1").await;
    let other = receipt("up1", "k-other", None, MessageState::Delivered);
    s.record_receipt(other.clone(), None, vec![]).await.unwrap();

    // The receipt came before the link could be used: kept unmatched first.
    let early = receipt("up1", "k1", None, MessageState::Delivered);
    assert_eq!(
        s.record_receipt(early.clone(), None, vec![]).await.unwrap(),
        ReceiptOutcome::Recorded
    );
    assert_eq!(s.unmatched_count().await.unwrap(), 2);

    let found = s.find_by_upstream("up1", "k1").await.unwrap().unwrap();
    let matched = ReceiptRecord {
        matched: Some(found),
        ..early
    };
    let update = StateUpdate {
        error_code: Some(0),
        ..state_update(MessageState::Delivered)
    };
    let forward = outbox_entry("esme1", &m.id);
    let outcome = s
        .record_receipt(matched.clone(), Some(update), vec![forward.clone()])
        .await
        .unwrap();
    assert_eq!(outcome, ReceiptOutcome::Recorded);

    let got = s.get(&m.id).await.unwrap().unwrap();
    assert_eq!(
        got.state,
        MessageState::Delivered,
        "the message took the receipt's state"
    );
    assert_eq!(got.error_code, Some(0));
    assert_eq!(s.receipts(&m.id).await.unwrap(), vec![matched]);
    assert_eq!(s.unmatched_count().await.unwrap(), 1, "the unmatched copy is gone");
    assert_eq!(s.unmatched_receipts(10).await.unwrap(), vec![other]);

    assert_eq!(s.depth_for("esme1").await.unwrap(), 1);
    let entries = s.reserve_for("esme1", 10, LONG).await.unwrap();
    assert_eq!(
        about(&entries),
        vec![m.id.clone()],
        "the client's receipt is in its outbox"
    );
    assert!(!entries[0].id.is_empty(), "push assigns an id");
    assert_eq!(
        OutboxEntry {
            id: String::new(),
            ..entries[0].clone()
        },
        forward,
        "kept as given"
    );
}

pub async fn a_duplicate_receipt_changes_nothing<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let m = submitted_message(s.as_ref(), &gen, "k1").await;
    let found = || {
        Some(UpstreamMatch {
            id: m.id.clone(),
            part: 0,
        })
    };
    let first = receipt("up1", "k1", found(), MessageState::Delivered);
    let update = state_update(MessageState::Delivered);
    assert_eq!(
        s.record_receipt(first.clone(), Some(update), vec![outbox_entry("esme1", &m.id)])
            .await
            .unwrap(),
        ReceiptOutcome::Recorded
    );
    let after_first = s.get(&m.id).await.unwrap().unwrap();

    // The upstream sends it again (other text, other time, same state).
    let again = ReceiptRecord {
        text: Bytes::from_static(b"resent"),
        received_at_ms: first.received_at_ms + 1000,
        ..first.clone()
    };
    let update = StateUpdate {
        error_code: Some(0x45),
        ..state_update(MessageState::Delivered)
    };
    assert_eq!(
        s.record_receipt(again.clone(), Some(update), vec![outbox_entry("esme1", &m.id)])
            .await
            .unwrap(),
        ReceiptOutcome::Duplicate
    );
    assert_eq!(
        s.get(&m.id).await.unwrap(),
        Some(after_first),
        "the message is untouched"
    );
    assert_eq!(
        s.receipts(&m.id).await.unwrap(),
        vec![first.clone()],
        "the first is kept"
    );
    assert_eq!(s.depth_for("esme1").await.unwrap(), 1, "nothing forwarded twice");

    // A copy kept unmatched meanwhile is dropped by its (duplicate) match.
    s.record_receipt(receipt("up1", "k1", None, MessageState::Delivered), None, vec![])
        .await
        .unwrap();
    assert_eq!(s.unmatched_count().await.unwrap(), 1);
    assert_eq!(
        s.record_receipt(again, None, vec![outbox_entry("esme1", &m.id)])
            .await
            .unwrap(),
        ReceiptOutcome::Duplicate
    );
    assert_eq!(s.unmatched_count().await.unwrap(), 0);
    assert_eq!(s.depth_for("esme1").await.unwrap(), 1);

    // Not duplicates: another state of the part, the same state of another part.
    let enroute = ReceiptRecord {
        received_at_ms: first.received_at_ms - 10,
        ..receipt("up1", "k1", found(), MessageState::Enroute)
    };
    let part1 = receipt(
        "up1",
        "k1-part2",
        Some(UpstreamMatch {
            id: m.id.clone(),
            part: 1,
        }),
        MessageState::Delivered,
    );
    for r in [part1.clone(), enroute.clone()] {
        assert_eq!(
            s.record_receipt(r, None, vec![]).await.unwrap(),
            ReceiptOutcome::Recorded
        );
    }
    assert_eq!(
        s.receipts(&m.id).await.unwrap(),
        vec![enroute, first, part1],
        "every receipt, by part, each part's in arrival order"
    );
    assert!(s.receipts("no-such-id").await.unwrap().is_empty());
}

pub async fn a_receipt_does_not_change_a_final_message<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let m = submitted_message(s.as_ref(), &gen, "k1").await;
    assert!(s.update(&m.id, state_update(MessageState::Expired)).await.unwrap());
    let before = s.get(&m.id).await.unwrap().unwrap();
    let r = receipt(
        "up1",
        "k1",
        s.find_by_upstream("up1", "k1").await.unwrap(),
        MessageState::Delivered,
    );
    assert_eq!(
        s.record_receipt(
            r.clone(),
            Some(state_update(MessageState::Delivered)),
            vec![outbox_entry("esme1", &m.id)]
        )
        .await
        .unwrap(),
        ReceiptOutcome::Recorded
    );
    assert_eq!(s.get(&m.id).await.unwrap(), Some(before), "EXPIRED stays");
    assert_eq!(s.receipts(&m.id).await.unwrap(), vec![r], "the receipt is kept");
    assert_eq!(s.depth_for("esme1").await.unwrap(), 1, "and forwarded as asked");
}

// ---- the outbox ---------------------------------------------------------------

pub async fn outbox_push_reserve_lease_and_ack<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    s.push(vec![
        outbox_entry("esme1", "m1"),
        outbox_entry("esme1", "m2"),
        outbox_entry("esme1", "m3"),
    ])
    .await
    .unwrap();
    s.push(vec![outbox_entry("esme2", "n1")]).await.unwrap();
    assert_eq!(s.depth_for("esme1").await.unwrap(), 3);

    let lease = Duration::from_millis(400);
    let first = s.reserve_for("esme1", 2, lease).await.unwrap();
    assert_eq!(about(&first), ["m1", "m2"], "oldest first");
    let rest = s.reserve_for("esme1", 10, LONG).await.unwrap();
    assert_eq!(about(&rest), ["m3"], "leased entries are not handed out twice");
    assert!(s.reserve_for("esme1", 10, LONG).await.unwrap().is_empty());
    let other = s.reserve_for("esme2", 10, LONG).await.unwrap();
    assert_eq!(about(&other), ["n1"], "each client has its own outbox");
    let mut all: Vec<_> = entry_ids(&first);
    all.extend(entry_ids(&rest));
    all.extend(entry_ids(&other));
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 4, "ids are unique: {all:?}");
    assert_eq!(s.depth_for("esme1").await.unwrap(), 3, "leased entries count");

    s.ack_delivered("esme1", &entry_ids(&first[..1])).await.unwrap();
    assert_eq!(s.depth_for("esme1").await.unwrap(), 2);
    // One client cannot ack another's entries; unknown ids are harmless.
    s.ack_delivered("esme2", &entry_ids(&first[1..])).await.unwrap();
    s.ack_delivered("esme1", &["no-such-id".to_string()]).await.unwrap();
    assert_eq!(s.depth_for("esme1").await.unwrap(), 2);

    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let again = s.reserve_for("esme1", 10, LONG).await.unwrap();
    assert_eq!(entry_ids(&again), entry_ids(&first[1..]), "back once its lease ran out");
    s.ack_delivered("esme1", &[again[0].id.clone(), rest[0].id.clone()])
        .await
        .unwrap();
    assert_eq!(s.depth_for("esme1").await.unwrap(), 0);
    assert_eq!(s.depth_for("esme2").await.unwrap(), 1);
}

pub async fn outbox_retry_delivery_reschedules<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    s.push(vec![outbox_entry("esme1", "a"), outbox_entry("esme1", "b")])
        .await
        .unwrap();
    let got = s.reserve_for("esme1", 10, LONG).await.unwrap();
    assert_eq!(about(&got), ["a", "b"]);
    let (a, b) = (got[0].id.clone(), got[1].id.clone());

    let due = now_ms() + 700;
    s.retry_delivery("esme1", &a, 1, due).await.unwrap();
    s.retry_delivery("esme1", &b, 2, now_ms()).await.unwrap();
    assert_eq!(s.depth_for("esme1").await.unwrap(), 2);
    let now = s.reserve_for("esme1", 10, LONG).await.unwrap();
    assert_eq!(entry_ids(&now), [b.as_str()], "only the one due");
    assert_eq!(now[0].attempts, 2, "attempts recorded");
    tokio::time::sleep(Duration::from_millis(due.saturating_sub(now_ms()) + 100)).await;
    let later = s.reserve_for("esme1", 10, LONG).await.unwrap();
    assert_eq!(entry_ids(&later), [a.as_str()]);
    assert_eq!(later[0].attempts, 1);

    // A retry after the ack does not bring it back.
    s.ack_delivered("esme1", std::slice::from_ref(&a)).await.unwrap();
    s.retry_delivery("esme1", &a, 3, now_ms()).await.unwrap();
    s.retry_delivery("esme1", "no-such-id", 3, now_ms()).await.unwrap();
    assert_eq!(s.depth_for("esme1").await.unwrap(), 1);
    assert!(s.reserve_for("esme1", 10, LONG).await.unwrap().is_empty());
}

pub async fn outbox_depth_and_waiting_clients<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    assert!(s.waiting_clients().await.unwrap().is_empty());
    assert_eq!(s.depth_for("c1").await.unwrap(), 0);
    s.push(vec![
        outbox_entry("c2", "x"),
        outbox_entry("c1", "y"),
        outbox_entry("c1", "z"),
    ])
    .await
    .unwrap();
    let mut waiting = s.waiting_clients().await.unwrap();
    waiting.sort();
    assert_eq!(waiting, ["c1", "c2"]);
    assert_eq!(s.depth_for("c1").await.unwrap(), 2);
    assert_eq!(s.depth_for("c2").await.unwrap(), 1);
    let c2 = s.reserve_for("c2", 10, LONG).await.unwrap();
    s.ack_delivered("c2", &entry_ids(&c2)).await.unwrap();
    assert_eq!(
        s.waiting_clients().await.unwrap(),
        ["c1"],
        "a client with nothing left is not waiting"
    );
    assert_eq!(s.depth_for("c2").await.unwrap(), 0);
}

pub async fn outbox_expire_removes_old_entries<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    let now = now_ms();
    let with_expiry = |id: &str, at: u64| OutboxEntry {
        expires_at_ms: at,
        ..outbox_entry("esme1", id)
    };
    s.push(vec![
        with_expiry("young", now + 100_000),
        with_expiry("old", now - 1),
        with_expiry("soon", now + 1000),
    ])
    .await
    .unwrap();
    assert_eq!(s.depth_for("esme1").await.unwrap(), 3);
    let got = s.reserve_for("esme1", 10, LONG).await.unwrap();
    assert_eq!(about(&got), ["young", "soon"], "an entry past its age is not delivered");

    assert_eq!(s.expire(now).await.unwrap(), 1);
    assert_eq!(s.depth_for("esme1").await.unwrap(), 2);
    assert_eq!(s.expire(now).await.unwrap(), 0, "counted once");
    assert_eq!(
        s.expire(now + 1000).await.unwrap(),
        1,
        "leased or not, at the expiry time"
    );
    assert_eq!(s.depth_for("esme1").await.unwrap(), 1);
    assert_eq!(s.waiting_clients().await.unwrap(), ["esme1"]);
    // An ack of an expired entry is harmless.
    s.ack_delivered("esme1", &entry_ids(&got)).await.unwrap();
    assert_eq!(s.depth_for("esme1").await.unwrap(), 0);
    assert!(s.waiting_clients().await.unwrap().is_empty());
}

/// The relay's update after part `part` of a message went to `upstream`
/// (ACCEPTED while parts remain).
fn part_sent(upstream: &str, key: &str, part: u16) -> StateUpdate {
    StateUpdate {
        state: MessageState::Accepted,
        attempts: Some(1),
        ..submitted(upstream, key, part)
    }
}

pub async fn linked_updates_record_parts_sent_and_upstream<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let r = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([r.clone()])).await.unwrap();
    let got = s.get(&r.id).await.unwrap().unwrap();
    assert_eq!((got.parts_sent, got.upstream.clone()), (0, None));

    assert!(s.update(&r.id, part_sent("up1", "p0", 0)).await.unwrap());
    let got = s.get(&r.id).await.unwrap().unwrap();
    assert_eq!((got.parts_sent, got.upstream.as_deref()), (1, Some("up1")));
    assert_eq!(got.state, MessageState::Accepted, "parts remain: still ACCEPTED");
    assert_eq!(s.find_by_upstream("up1", "p0").await.unwrap().map(|m| m.part), Some(0));

    // A retry (no link) keeps the progress; a late update for an earlier
    // part never lowers it.
    let mut retry = state_update(MessageState::Accepted);
    retry.attempts = Some(2);
    assert!(s.update(&r.id, retry).await.unwrap());
    assert_eq!(s.get(&r.id).await.unwrap().unwrap().parts_sent, 1);
    assert!(s.update(&r.id, part_sent("up1", "p1", 1)).await.unwrap());
    assert!(s.update(&r.id, part_sent("up1", "p0", 0)).await.unwrap());
    assert_eq!(s.get(&r.id).await.unwrap().unwrap().parts_sent, 2);

    // A part accepted without a usable id: progress only, no link.
    assert!(s.update(&r.id, part_sent("up1", "", 2)).await.unwrap());
    assert_eq!(s.get(&r.id).await.unwrap().unwrap().parts_sent, 3);
    assert_eq!(s.find_by_upstream("up1", "").await.unwrap(), None);

    // The last part: ENROUTE.
    assert!(s.update(&r.id, submitted("up1", "p3", 3)).await.unwrap());
    let got = s.get(&r.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.parts_sent, got.upstream.as_deref()),
        (MessageState::Enroute, 4, Some("up1"))
    );
    // Survives a reserve (the relay reads what the store has).
    let other = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([other.clone()])).await.unwrap();
    assert!(s.update(&other.id, part_sent("up2", "q0", 0)).await.unwrap());
    let reserved = s.reserve(10, LONG).await.unwrap();
    let again = reserved.iter().find(|m| m.id == other.id).expect("still queued");
    assert_eq!((again.parts_sent, again.upstream.as_deref()), (1, Some("up2")));
}

pub async fn a_message_with_a_part_sent_cannot_be_cancelled_or_replaced<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let r = record(gen.next_id(), "esme1");
    s.enqueue(smsmax::queue::shared([r.clone()])).await.unwrap();
    assert!(s.update(&r.id, part_sent("up1", "p0", 0)).await.unwrap());
    assert_eq!(
        s.cancel(&r.id, "esme1", now_ms()).await.unwrap(),
        ChangeOutcome::TooLate(MessageState::Enroute)
    );
    let replacement = Replacement {
        short_message: Bytes::from_static(b"new text"),
        registered_delivery: 0,
        schedule_at_ms: None,
        expires_at_ms: None,
        at_ms: now_ms(),
    };
    assert_eq!(
        s.replace(&r.id, "esme1", replacement).await.unwrap(),
        ChangeOutcome::TooLate(MessageState::Enroute)
    );
    let got = s.get(&r.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, &got.short_message),
        (MessageState::Accepted, &r.short_message)
    );
    assert_eq!(s.depth().await.unwrap(), 1, "still queued for its next part");
}

pub async fn settle_records_the_outcome_and_removes_the_entry<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let records: Vec<_> = (0..3).map(|_| record(gen.next_id(), "esme1")).collect();
    s.enqueue(smsmax::queue::shared(records.clone())).await.unwrap();
    let got = s.reserve(3, LONG).await.unwrap();
    assert_eq!(got.len(), 3);

    // Submitted: ENROUTE with its link, out of the queue, in one step.
    assert!(s.settle(&got[0].id, submitted("up1", "k0", 0)).await.unwrap());
    let r = s.get(&got[0].id).await.unwrap().unwrap();
    assert_eq!(r.state, MessageState::Enroute);
    assert_eq!(
        s.find_by_upstream("up1", "k0").await.unwrap().map(|m| m.id),
        Some(got[0].id.clone())
    );
    assert_eq!(s.depth().await.unwrap(), 2);

    // Final already (a cancel won): false, and the entry goes all the same.
    assert!(s.update(&got[1].id, state_update(MessageState::Deleted)).await.unwrap());
    assert!(!s.settle(&got[1].id, submitted("up1", "k1", 0)).await.unwrap());
    assert_eq!(s.get(&got[1].id).await.unwrap().unwrap().state, MessageState::Deleted);
    assert_eq!(s.depth().await.unwrap(), 1);

    // An unknown id changes nothing.
    assert!(!s
        .settle("no-such-id", state_update(MessageState::Rejected))
        .await
        .unwrap());
    assert_eq!(s.depth().await.unwrap(), 1);

    // Only the one not settled can be reserved again.
    s.retry(&got[2].id, 0).await.unwrap();
    let again = s.reserve(10, LONG).await.unwrap();
    assert_eq!(ids_of(&again), vec![got[2].id.clone()]);
}

pub async fn settle_many_settles_each_in_order<S: Store + Queue + Outbox>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let records: Vec<_> = (0..4).map(|_| record(gen.next_id(), "esme1")).collect();
    s.enqueue(smsmax::queue::shared(records.clone())).await.unwrap();
    let got = s.reserve(4, LONG).await.unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(s.settle_many(Vec::new()).await.unwrap(), Vec::<bool>::new());

    // got[1] is final already (a cancel won).
    assert!(s.update(&got[1].id, state_update(MessageState::Deleted)).await.unwrap());
    let answers = s
        .settle_many(vec![
            (got[0].id.clone(), submitted("up1", "k0", 0)),
            (got[1].id.clone(), submitted("up1", "k1", 0)),
            ("no-such-id".to_string(), state_update(MessageState::Rejected)),
            (got[2].id.clone(), state_update(MessageState::Rejected)),
        ])
        .await
        .unwrap();
    assert_eq!(answers, vec![true, false, false, true]);
    assert_eq!(s.get(&got[0].id).await.unwrap().unwrap().state, MessageState::Enroute);
    assert_eq!(
        s.find_by_upstream("up1", "k0").await.unwrap().map(|m| m.id),
        Some(got[0].id.clone())
    );
    assert_eq!(s.get(&got[1].id).await.unwrap().unwrap().state, MessageState::Deleted);
    assert_eq!(s.get(&got[2].id).await.unwrap().unwrap().state, MessageState::Rejected);
    // Only got[3], not in the batch, is still queued.
    assert_eq!(s.depth().await.unwrap(), 1);
    s.retry(&got[3].id, 0).await.unwrap();
    let again = s.reserve(10, LONG).await.unwrap();
    assert_eq!(ids_of(&again), vec![got[3].id.clone()]);
}

// ---- durability across a reopen ------------------------------------------
//
// Not in the macro: each backend calls these from its own test file with an
// `open` that opens the storage on the same directory (or keyspace) again.

/// Enqueues `n` records from 10 concurrent tasks; returns their ids.
pub async fn enqueue_concurrently<S: Queue>(storage: &Arc<S>, n: usize) -> HashSet<String> {
    let gen = Arc::new(ids());
    let mut tasks = Vec::new();
    for t in 0..10 {
        let storage = storage.clone();
        let gen = gen.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in (t..n).step_by(10) {
                let batch: Vec<_> = (0..1 + i % 3).map(|_| record(gen.next_id(), "esme1")).collect();
                mine.extend(batch.iter().map(|r| r.id.clone()));
                storage.enqueue(smsmax::queue::shared(batch)).await.unwrap();
            }
            mine
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(all.insert(id));
        }
    }
    all
}

pub async fn assert_all_queued_once<S: Store + Queue>(storage: &Arc<S>, expected: &HashSet<String>) {
    assert_eq!(storage.depth().await.unwrap(), expected.len() as u64);
    let got = storage
        .reserve(expected.len() + 100, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(got.len(), expected.len(), "each message queued exactly once");
    let got_ids: HashSet<_> = got.iter().map(|r| r.id.clone()).collect();
    assert_eq!(&got_ids, expected);
    for r in &got {
        assert_eq!(r.state, MessageState::Accepted);
        assert_eq!(storage.get(&r.id).await.unwrap().as_ref(), Some(r));
    }
}

/// Enqueued messages are all there, queued once, after a close and a reopen.
pub async fn enqueued_messages_survive_close_and_reopen<S, F, Fut>(open: F)
where
    S: Store + Queue + Outbox,
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    let storage = open().await;
    let expected = enqueue_concurrently(&storage, 600).await;
    storage.close().await.unwrap();
    drop(storage);

    let storage = open().await;
    assert_all_queued_once(&storage, &expected).await;
    storage.close().await.unwrap();
}

/// ... and after a drop without close (as good as a crash): acked ones stay
/// gone from the queue but readable, leased ones come back.
pub async fn enqueued_messages_survive_a_drop_without_close<S, F, Fut>(open: F)
where
    S: Store + Queue + Outbox,
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    let storage = open().await;
    let expected = enqueue_concurrently(&storage, 300).await;
    let leased = storage.reserve(50, Duration::from_secs(3600)).await.unwrap();
    let acked: Vec<String> = leased[..20].iter().map(|r| r.id.clone()).collect();
    storage.ack(&acked).await.unwrap();
    drop(storage);

    let storage = open().await;
    let mut remaining = expected.clone();
    for id in &acked {
        remaining.remove(id);
        assert!(storage.get(id).await.unwrap().is_some(), "acked records stay readable");
    }
    assert_all_queued_once(&storage, &remaining).await;
}

/// Links, receipts (matched and unmatched) and outbox entries written before
/// a crash are all there after it; outbox leases are not (at-least-once),
/// and new outbox ids do not collide with old ones.
pub async fn receipts_links_and_outbox_survive_a_drop_without_close<S, F, Fut>(open: F)
where
    S: Store + Queue + Outbox,
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    let storage = open().await;
    let gen = ids();
    let m = record(gen.next_id(), "esme1");
    let settled = record(gen.next_id(), "esme1");
    storage
        .enqueue(smsmax::queue::shared([m.clone(), settled.clone()]))
        .await
        .unwrap();
    assert!(storage.update(&m.id, submitted("up1", "k1", 0)).await.unwrap());
    storage.ack(std::slice::from_ref(&m.id)).await.unwrap();
    assert_eq!(
        storage
            .settle_many(vec![(settled.id.clone(), submitted("up1", "k2", 0))])
            .await
            .unwrap(),
        vec![true]
    );
    let unmatched = receipt("up1", "k-unknown", None, MessageState::Delivered);
    storage.record_receipt(unmatched.clone(), None, vec![]).await.unwrap();
    let found = UpstreamMatch {
        id: m.id.clone(),
        part: 0,
    };
    let matched = receipt("up1", "k1", Some(found.clone()), MessageState::Delivered);
    let outcome = storage
        .record_receipt(
            matched.clone(),
            Some(state_update(MessageState::Delivered)),
            vec![outbox_entry("esme1", &m.id)],
        )
        .await
        .unwrap();
    assert_eq!(outcome, ReceiptOutcome::Recorded);
    storage
        .push(vec![outbox_entry("esme2", "a"), outbox_entry("esme2", "b")])
        .await
        .unwrap();
    let leased = storage
        .reserve_for("esme2", 10, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(leased.len(), 2);
    let old_ids: HashSet<String> = leased.iter().map(|e| e.id.clone()).collect();
    drop(storage); // no close: as good as a crash

    let storage = open().await;
    assert_eq!(storage.find_by_upstream("up1", "k1").await.unwrap(), Some(found));
    assert_eq!(
        storage.find_by_upstream("up1", "k2").await.unwrap().map(|m| m.id),
        Some(settled.id.clone())
    );
    assert_eq!(
        storage.get(&settled.id).await.unwrap().unwrap().state,
        MessageState::Enroute
    );
    assert_eq!(storage.depth().await.unwrap(), 0);
    assert_eq!(
        storage.get(&m.id).await.unwrap().unwrap().state,
        MessageState::Delivered
    );
    assert_eq!(storage.receipts(&m.id).await.unwrap(), vec![matched.clone()]);
    assert_eq!(storage.unmatched_count().await.unwrap(), 1);
    assert_eq!(storage.unmatched_receipts(10).await.unwrap(), vec![unmatched]);
    assert_eq!(
        storage
            .record_receipt(matched, None, vec![outbox_entry("esme1", &m.id)])
            .await
            .unwrap(),
        ReceiptOutcome::Duplicate
    );
    let mut waiting = storage.waiting_clients().await.unwrap();
    waiting.sort();
    assert_eq!(waiting, ["esme1", "esme2"]);
    assert_eq!(storage.depth_for("esme1").await.unwrap(), 1);
    let again = storage
        .reserve_for("esme2", 10, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|e| e.id.clone()).collect::<HashSet<_>>(),
        old_ids,
        "leases are lost with the crash"
    );
    storage.push(vec![outbox_entry("esme2", "c")]).await.unwrap();
    let new = storage
        .reserve_for("esme2", 10, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(new.len(), 1);
    assert!(!old_ids.contains(&new[0].id), "a new id, not a reused one");
    storage.close().await.unwrap();
    drop(storage);

    let storage = open().await;
    assert_eq!(storage.depth_for("esme2").await.unwrap(), 3);
    assert_eq!(storage.unmatched_count().await.unwrap(), 1);
    assert_eq!(storage.receipts(&m.id).await.unwrap().len(), 1);
    storage.close().await.unwrap();
}
