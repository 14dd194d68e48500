//! The storage contract and the storage-level durability tests for the
//! embedded (redb) storage.

#[macro_use]
mod storage_contract;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use smsmax::queue::outbox::Outbox;
use smsmax::queue::Queue;
use smsmax::store::embedded::EmbeddedStorage;
use smsmax::store::{MessageState, ReceiptOutcome, ReceiptRecord, StateUpdate, Store, UpstreamMatch};
use storage_contract::{ids, outbox_entry, receipt, record, state_update, submitted, Fixture};
use tempfile::TempDir;

async fn make() -> Fixture<EmbeddedStorage> {
    let dir = TempDir::new().unwrap();
    let storage = EmbeddedStorage::open(dir.path(), 4096).await.unwrap();
    let counted = storage.clone();
    Fixture {
        storage,
        commits: Some(Arc::new(move || counted.stats().commits)),
        guard: Box::new(dir),
    }
}

storage_contract_tests!(make);

/// Enqueues `n` records from 10 concurrent tasks; returns their ids.
async fn enqueue_concurrently(storage: &Arc<EmbeddedStorage>, n: usize) -> HashSet<String> {
    let gen = Arc::new(ids());
    let mut tasks = Vec::new();
    for t in 0..10 {
        let storage = storage.clone();
        let gen = gen.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in (t..n).step_by(10) {
                // Alternate single records and small batches.
                let batch: Vec<_> = (0..1 + i % 3).map(|_| record(gen.next_id(), "esme1")).collect();
                mine.extend(batch.iter().map(|r| r.id.clone()));
                storage.enqueue(batch).await.unwrap();
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

async fn assert_all_queued_once(storage: &EmbeddedStorage, expected: &HashSet<String>) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueued_messages_survive_close_and_reopen() {
    let dir = TempDir::new().unwrap();
    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    let expected = enqueue_concurrently(&storage, 600).await;
    storage.close().await.unwrap();
    drop(storage);

    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    assert_all_queued_once(&storage, &expected).await;
    storage.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueued_messages_survive_a_drop_without_close() {
    let dir = TempDir::new().unwrap();
    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    let expected = enqueue_concurrently(&storage, 300).await;
    // Leased and acked state before the "crash": acked ones stay gone,
    // leased ones come back.
    let leased = storage.reserve(50, Duration::from_secs(3600)).await.unwrap();
    let acked: Vec<String> = leased[..20].iter().map(|r| r.id.clone()).collect();
    storage.ack(&acked).await.unwrap();
    drop(storage);

    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    let mut remaining = expected.clone();
    for id in &acked {
        remaining.remove(id);
        assert!(storage.get(id).await.unwrap().is_some(), "acked records stay readable");
    }
    assert_all_queued_once(&storage, &remaining).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_batch_caps_one_commit() {
    let dir = TempDir::new().unwrap();
    let storage = EmbeddedStorage::open(dir.path(), 8).await.unwrap();
    let expected = enqueue_concurrently(&storage, 200).await;
    let stats = storage.stats();
    assert!(stats.largest_batch <= 8, "{stats:?}");
    assert!(stats.commits < stats.write_requests, "{stats:?}");
    assert_eq!(stats.records_written, expected.len() as u64);
    assert_all_queued_once(&storage, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_open_of_the_same_directory_fails_cleanly() {
    let dir = TempDir::new().unwrap();
    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    let err = EmbeddedStorage::open(dir.path(), 64).await.unwrap_err();
    assert!(matches!(err, smsmax::store::StorageError::Engine(_)), "{err:?}");
    storage.close().await.unwrap();
    assert!(matches!(
        storage.insert(&[]).await,
        Err(smsmax::store::StorageError::Closed)
    ));
}

/// Links, receipts (matched and unmatched) and outbox entries written before
/// a crash are all there after it; outbox leases are not (at-least-once),
/// and new outbox ids do not collide with old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_links_and_outbox_survive_a_drop_without_close() {
    let dir = TempDir::new().unwrap();
    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    let gen = ids();
    let m = record(gen.next_id(), "esme1");
    storage.enqueue(vec![m.clone()]).await.unwrap();
    assert!(storage.update(&m.id, submitted("up1", "k1", 0)).await.unwrap());
    storage.ack(std::slice::from_ref(&m.id)).await.unwrap();
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

    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    assert_eq!(storage.find_by_upstream("up1", "k1").await.unwrap(), Some(found));
    assert_eq!(
        storage.get(&m.id).await.unwrap().unwrap().state,
        MessageState::Delivered
    );
    assert_eq!(storage.receipts(&m.id).await.unwrap(), vec![matched.clone()]);
    assert_eq!(storage.unmatched_count().await.unwrap(), 1);
    assert_eq!(storage.unmatched_receipts(10).await.unwrap(), vec![unmatched]);
    // Still a duplicate after the restart: nothing forwarded twice.
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

    // And after an orderly close.
    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    assert_eq!(storage.depth_for("esme2").await.unwrap(), 3);
    assert_eq!(storage.unmatched_count().await.unwrap(), 1);
    assert_eq!(storage.receipts(&m.id).await.unwrap().len(), 1);
    storage.close().await.unwrap();
}

/// A receipt whose message record is corrupt is refused as a whole: no
/// receipt stored, no unmatched copy dropped, nothing forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receipt_for_a_corrupt_record_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    let gen = ids();
    let m = record(gen.next_id(), "esme1");
    storage.insert(std::slice::from_ref(&m)).await.unwrap();
    let kept = receipt("up1", "k1", None, MessageState::Delivered);
    storage.record_receipt(kept.clone(), None, vec![]).await.unwrap();
    // The public API cannot write a bad record: close, damage it with redb
    // directly (the `messages` table of the module doc), reopen.
    storage.close().await.unwrap();
    drop(storage);
    {
        let db = redb::Database::open(dir.path().join(smsmax::store::embedded::FILE_NAME)).unwrap();
        let wtx = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("messages");
            let mut messages = wtx.open_table(table).unwrap();
            messages.insert(m.id.as_str(), [0xffu8; 3].as_slice()).unwrap();
        }
        wtx.commit().unwrap();
    }
    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    let matched = ReceiptRecord {
        matched: Some(UpstreamMatch {
            id: m.id.clone(),
            part: 0,
        }),
        ..kept.clone()
    };
    let update: StateUpdate = state_update(MessageState::Delivered);
    let result = storage
        .record_receipt(matched, Some(update), vec![outbox_entry("esme1", &m.id)])
        .await;
    assert!(
        matches!(result, Err(smsmax::store::StorageError::Corrupt { .. })),
        "{result:?}"
    );
    assert!(storage.receipts(&m.id).await.unwrap().is_empty());
    assert_eq!(storage.unmatched_receipts(10).await.unwrap(), vec![kept]);
    assert_eq!(storage.depth_for("esme1").await.unwrap(), 0);
    // The storage still works.
    storage.push(vec![outbox_entry("esme1", "x")]).await.unwrap();
    assert_eq!(storage.depth_for("esme1").await.unwrap(), 1);
    storage.close().await.unwrap();
}
