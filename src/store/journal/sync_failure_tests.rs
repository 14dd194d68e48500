//! The journal after a failed `fdatasync`, with the failure injected
//! (`JournalStorage::fail_syncs`): nothing written from then on may be
//! answered as stored, nobody may be left waiting for a sync that will never
//! succeed, and what was acknowledged before stays readable and on disk.

use std::time::Duration;

use super::{JournalSettings, JournalStorage};
use crate::queue::Queue;
use crate::store::{MessageRecord, StorageError, Store};

/// Far below the callers' 30 s storage timeout: an answer left waiting
/// behind a frame that can never become durable would only come from that.
const ANSWERED_WITHIN: Duration = Duration::from_secs(5);

/// Enqueues `MessageRecord::example(id)`; panics if no answer comes within
/// [`ANSWERED_WITHIN`].
async fn enqueue(storage: &JournalStorage, id: &str) -> Result<(), StorageError> {
    tokio::time::timeout(
        ANSWERED_WITHIN,
        storage.enqueue(crate::queue::shared([MessageRecord::example(id)])),
    )
    .await
    .expect("the enqueue is answered, not left waiting")
}

#[tokio::test]
async fn after_a_failed_sync_no_write_is_acknowledged_and_none_is_left_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let storage = JournalStorage::open(dir.path(), JournalSettings::default())
        .await
        .unwrap();
    enqueue(&storage, "0a01").await.unwrap();
    assert_eq!(storage.failure(), None);

    storage.fail_syncs();
    // An all-enqueue batch: written and handed to the syncers before it is
    // applied (`commit_enqueues`).
    let enqueued = enqueue(&storage, "0a02").await;
    assert!(enqueued.is_err(), "an enqueue whose sync failed is not acknowledged");
    let reason = storage.failure().expect("the failure is reported");
    assert!(reason.contains("injected fault"), "{reason}");

    // Every later write, enqueue or not, is refused at once.
    for _ in 0..3 {
        let enqueued = enqueue(&storage, "0a03").await;
        assert!(enqueued.is_err(), "no enqueue is acknowledged after a failed sync");
    }
    let acked = tokio::time::timeout(ANSWERED_WITHIN, storage.ack(&["0a01".to_string()]))
        .await
        .expect("answered");
    assert!(acked.is_err(), "no other write is acknowledged either");

    // Reads go on; the refused messages were never published to the queue,
    // so the relay can only get the acknowledged one.
    assert!(storage.get("0a01").await.unwrap().is_some());
    let leased = storage.reserve(10, Duration::from_secs(60)).await.unwrap();
    let ids: Vec<&str> = leased.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["0a01"], "only what was acknowledged is handed to the relay");
    drop(storage);

    // What was acknowledged before the failure is on disk.
    let reopened = JournalStorage::open(dir.path(), JournalSettings::default())
        .await
        .unwrap();
    assert!(reopened.get("0a01").await.unwrap().is_some());
    assert_eq!(reopened.failure(), None);
    reopened.close().await.unwrap();
}
