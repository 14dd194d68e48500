//! The storage contract and the storage-level durability tests for the
//! embedded (redb) storage.

#[macro_use]
mod storage_contract;

use std::sync::Arc;

use smsmax::queue::outbox::Outbox;
use smsmax::queue::Queue;
use smsmax::store::embedded::EmbeddedStorage;
use smsmax::store::{MessageState, ReceiptRecord, StateUpdate, Store, UpstreamMatch};
use storage_contract::{
    assert_all_queued_once, enqueue_concurrently, ids, outbox_entry, receipt, record, state_update, Fixture,
};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueued_messages_survive_close_and_reopen() {
    let dir = TempDir::new().unwrap();
    storage_contract::enqueued_messages_survive_close_and_reopen(|| async {
        EmbeddedStorage::open(dir.path(), 64).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueued_messages_survive_a_drop_without_close() {
    let dir = TempDir::new().unwrap();
    storage_contract::enqueued_messages_survive_a_drop_without_close(|| async {
        EmbeddedStorage::open(dir.path(), 64).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_links_and_outbox_survive_a_drop_without_close() {
    let dir = TempDir::new().unwrap();
    storage_contract::receipts_links_and_outbox_survive_a_drop_without_close(|| async {
        EmbeddedStorage::open(dir.path(), 64).await.unwrap()
    })
    .await;
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
