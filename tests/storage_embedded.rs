//! The storage contract and the storage-level durability tests for the
//! embedded (redb) storage.

#[macro_use]
mod storage_contract;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use smsmax::queue::Queue;
use smsmax::store::embedded::EmbeddedStorage;
use smsmax::store::{MessageState, Store};
use storage_contract::{ids, record, Fixture};
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
