//! The storage contract: every implementation of [`Store`] + [`Queue`]
//! (embedded, Redis + ScyllaDB) must pass these tests unchanged.
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
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use smsmax::ids::MessageIdGenerator;
use smsmax::queue::Queue;
use smsmax::store::{
    AddressRecord, ChangeOutcome, MessageRecord, MessageState, Replacement, StateUpdate, StorageError, Store,
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
        system_id: system_id.to_string(),
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
    }
}

fn ids_of(records: &[MessageRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

const LONG: Duration = Duration::from_secs(600);

// ---- the contract ------------------------------------------------------------

pub async fn enqueue_then_get_and_reserve<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let records: Vec<_> = (0..3).map(|_| record(gen.next_id(), "esme1")).collect();
    s.enqueue(records.clone()).await.unwrap();
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
    s.enqueue(records.clone()).await.unwrap();
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
    s.enqueue(vec![now_rec.clone(), later.clone()]).await.unwrap();
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
    s.enqueue(vec![r.clone()]).await.unwrap();
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
    s.enqueue(records.clone()).await.unwrap();
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
    s.enqueue(vec![a.clone(), b.clone()]).await.unwrap();
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
    s.enqueue(records[..5].to_vec()).await.unwrap();
    s.enqueue(records[5..].to_vec()).await.unwrap();
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
    s.enqueue(vec![a.clone(), b.clone()]).await.unwrap();

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
    s.enqueue(vec![a.clone()]).await.unwrap();
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
                s.enqueue(vec![r]).await.unwrap();
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

pub async fn close_then_calls_fail_with_closed<S: Store + Queue>(f: Fixture<S>) {
    let s = &f.storage;
    let gen = ids();
    let r = record(gen.next_id(), "esme1");
    s.enqueue(vec![r.clone()]).await.unwrap();
    s.close().await.unwrap();

    fn closed<T: std::fmt::Debug>(what: &str, result: Result<T, StorageError>) {
        assert!(
            matches!(result, Err(StorageError::Closed)),
            "{what} after close: {result:?}"
        );
    }
    closed("enqueue", s.enqueue(vec![record(gen.next_id(), "esme1")]).await);
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
}
