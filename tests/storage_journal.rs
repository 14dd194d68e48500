//! The storage contract and the durability tests for the journal engine
//! (the embedded profile's default).

#[macro_use]
mod storage_contract;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use smsmax::queue::outbox::Outbox;
use smsmax::queue::Queue;
use smsmax::store::journal::{JournalSettings, JournalStorage};
use smsmax::store::{MessageRecord, MessageState, ReceiptOutcome, StorageError, Store, UpstreamMatch};
use storage_contract::{
    assert_all_queued_once, enqueue_concurrently, ids, outbox_entry, receipt, record, state_update, submitted, Fixture,
};
use tempfile::TempDir;

fn settings(max_batch: usize) -> JournalSettings {
    JournalSettings {
        max_batch,
        ..JournalSettings::default()
    }
}

async fn open(dir: &Path, settings: JournalSettings) -> Arc<JournalStorage> {
    JournalStorage::open(dir, settings).await.unwrap()
}

async fn make() -> Fixture<JournalStorage> {
    let dir = TempDir::new().unwrap();
    let storage = open(dir.path(), settings(4096)).await;
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
    storage_contract::enqueued_messages_survive_close_and_reopen(|| async { open(dir.path(), settings(64)).await })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueued_messages_survive_a_drop_without_close() {
    let dir = TempDir::new().unwrap();
    storage_contract::enqueued_messages_survive_a_drop_without_close(|| async { open(dir.path(), settings(64)).await })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_links_and_outbox_survive_a_drop_without_close() {
    let dir = TempDir::new().unwrap();
    storage_contract::receipts_links_and_outbox_survive_a_drop_without_close(|| async {
        open(dir.path(), settings(64)).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_batch_caps_one_commit() {
    let dir = TempDir::new().unwrap();
    let storage = open(dir.path(), settings(8)).await;
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
    let storage = open(dir.path(), settings(64)).await;
    let err = JournalStorage::open(dir.path(), settings(64)).await.unwrap_err();
    assert!(matches!(err, StorageError::Engine(_)), "{err:?}");
    storage.close().await.unwrap();
    assert!(matches!(storage.insert(&[]).await, Err(StorageError::Closed)));
    drop(storage);
    // Released with the storage.
    let again = open(dir.path(), settings(64)).await;
    again.close().await.unwrap();
}

fn journal_files(dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut segments = Vec::new();
    let mut snapshots = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("journal-") {
            segments.push(name);
        } else if name.starts_with("snapshot-") {
            snapshots.push(name);
        }
    }
    segments.sort();
    snapshots.sort();
    (segments, snapshots)
}

/// With a tiny snapshot threshold the engine snapshots while it works; the
/// state after a crash is the snapshot plus the journal since, and the
/// segments the snapshot covers are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_bound_the_journal_and_replay_to_the_same_state() {
    let dir = TempDir::new().unwrap();
    let small = JournalSettings {
        max_batch: 64,
        segment_bytes: 16 * 1024,
        snapshot_bytes: 64 * 1024,
        ..JournalSettings::default()
    };
    let storage = open(dir.path(), small.clone()).await;
    let mut expected = enqueue_concurrently(&storage, 1500).await;
    // Some relayed and receipted, some outbox entries, some acked.
    let leased = storage.reserve(300, Duration::from_secs(3600)).await.unwrap();
    for (i, r) in leased.iter().enumerate() {
        let key = format!("k{i}");
        assert!(storage.settle(&r.id, submitted("up1", &key, 0)).await.unwrap());
        expected.remove(&r.id);
        if i % 2 == 0 {
            let found = UpstreamMatch {
                id: r.id.clone(),
                part: 0,
            };
            let delivered = receipt("up1", &key, Some(found), MessageState::Delivered);
            storage
                .record_receipt(
                    delivered,
                    Some(state_update(MessageState::Delivered)),
                    vec![outbox_entry("esme1", &r.id)],
                )
                .await
                .unwrap();
        }
    }
    let more = enqueue_concurrently(&storage, 500).await;
    expected.extend(more);
    // Let a snapshot that is being written finish.
    for _ in 0..100 {
        if storage.stats().snapshots > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(storage.stats().snapshots > 0, "{:?}", storage.stats());
    let (segments, snapshots) = journal_files(dir.path());
    assert!(!snapshots.is_empty());
    drop(storage);

    let storage = open(dir.path(), small).await;
    let (after_segments, after_snapshots) = journal_files(dir.path());
    // Names are `snapshot-N.snap` / `journal-N.log` with N zero-padded: the
    // newest snapshot covers every segment below its N, and none is left.
    let number = |name: &str| -> u64 {
        let digits: String = name.chars().filter(|c| c.is_ascii_digit()).collect();
        digits.parse().unwrap()
    };
    let covered_up_to = number(after_snapshots.last().expect("a snapshot"));
    assert_eq!(after_snapshots.len(), 1, "older snapshots deleted: {after_snapshots:?}");
    assert!(
        after_segments.iter().all(|s| number(s) >= covered_up_to),
        "segments below snapshot {covered_up_to} deleted: {segments:?} then {after_segments:?}"
    );
    assert_eq!(storage.depth_for("esme1").await.unwrap(), 150);
    for (i, r) in leased.iter().enumerate() {
        let got = storage.get(&r.id).await.unwrap().unwrap();
        let key = format!("k{i}");
        let found = storage.find_by_upstream("up1", &key).await.unwrap().unwrap();
        assert_eq!(found.id, r.id);
        if i % 2 == 0 {
            assert_eq!(got.state, MessageState::Delivered);
            assert_eq!(storage.receipts(&r.id).await.unwrap().len(), 1);
        } else {
            assert_eq!(got.state, MessageState::Enroute);
        }
    }
    assert_all_queued_once(&storage, &expected).await;
}

/// Final records are dropped after the retention time (with their links
/// and receipts); records in flight never are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_drops_final_records_only() {
    let dir = TempDir::new().unwrap();
    let storage = open(
        dir.path(),
        JournalSettings {
            retain_final: Duration::ZERO,
            ..settings(64)
        },
    )
    .await;
    let gen = ids();
    let done = record(gen.next_id(), "esme1");
    let waiting = record(gen.next_id(), "esme1");
    storage
        .enqueue(smsmax::queue::shared([done.clone(), waiting.clone()]))
        .await
        .unwrap();
    assert!(storage.settle(&done.id, submitted("up1", "k1", 0)).await.unwrap());
    let found = UpstreamMatch {
        id: done.id.clone(),
        part: 0,
    };
    storage
        .record_receipt(
            receipt("up1", "k1", Some(found), MessageState::Delivered),
            Some(state_update(MessageState::Delivered)),
            vec![],
        )
        .await
        .unwrap();
    // The maintenance tick (once a second) or the next write prunes.
    let mut gone = false;
    for _ in 0..60 {
        if storage.get(&done.id).await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the delivered record is dropped");
    assert_eq!(storage.find_by_upstream("up1", "k1").await.unwrap(), None);
    assert!(storage.receipts(&done.id).await.unwrap().is_empty());
    assert!(storage.get(&waiting.id).await.unwrap().is_some(), "in flight: kept");
    assert!(storage.stats().pruned >= 1);
    drop(storage);
    let storage = open(dir.path(), settings(64)).await;
    assert!(storage.get(&done.id).await.unwrap().is_none(), "the drop is journaled");
    assert_eq!(storage.depth().await.unwrap(), 1);
}

/// At `max_messages` with everything in flight, enqueue is refused with
/// `Full` (the client gets ESME_RMSGQFUL); final records make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_storage_refuses_then_makes_room_from_final_records() {
    let dir = TempDir::new().unwrap();
    let storage = open(
        dir.path(),
        JournalSettings {
            max_messages: 3,
            ..settings(64)
        },
    )
    .await;
    let gen = ids();
    let three: Vec<_> = (0..3).map(|_| record(gen.next_id(), "esme1")).collect();
    storage.enqueue(smsmax::queue::shared(three.clone())).await.unwrap();
    let err = storage
        .enqueue(smsmax::queue::shared([record(gen.next_id(), "esme1")]))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Full(3)), "{err:?}");
    assert_eq!(storage.depth().await.unwrap(), 3);
    let update = state_update(MessageState::Undeliverable);
    assert!(storage.settle(&three[0].id, update).await.unwrap());
    let fourth = record(gen.next_id(), "esme1");
    storage.enqueue(smsmax::queue::shared([fourth.clone()])).await.unwrap();
    assert!(
        storage.get(&three[0].id).await.unwrap().is_none(),
        "the final one made room"
    );
    assert!(storage.get(&fourth.id).await.unwrap().is_some());
    assert_eq!(storage.message_count().await, 3);
}

/// A crash in the middle of a journal write leaves a torn frame at the end
/// of the last segment: it is cut off, everything before it is there, and
/// the journal goes on correctly after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_torn_journal_tail_is_cut_off() {
    let dir = TempDir::new().unwrap();
    let storage = open(dir.path(), settings(64)).await;
    let expected = enqueue_concurrently(&storage, 100).await;
    drop(storage);
    let (segments, _) = journal_files(dir.path());
    let last = dir.path().join(segments.last().unwrap());
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&last).unwrap();
        // A frame header promising 200 octets, then only 5 of them.
        file.write_all(&200u32.to_le_bytes()).unwrap();
        file.write_all(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    }
    let storage = open(dir.path(), settings(64)).await;
    assert_all_queued_once(&storage, &expected).await;
    let gen = ids();
    let later = record(gen.next_id(), "esme1");
    storage.enqueue(smsmax::queue::shared([later.clone()])).await.unwrap();
    drop(storage);
    let storage = open(dir.path(), settings(64)).await;
    assert!(storage.get(&later.id).await.unwrap().is_some());
    assert_eq!(storage.depth().await.unwrap(), expected.len() as u64 + 1);
}

/// A message whose receipt never comes is dropped `retain_enroute` after
/// its last part left; one still queued (a part to go) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_enroute_record_without_a_receipt_is_dropped_after_retain_enroute() {
    let dir = TempDir::new().unwrap();
    let storage = open(
        dir.path(),
        JournalSettings {
            retain_enroute: Duration::ZERO,
            ..settings(64)
        },
    )
    .await;
    let gen = ids();
    let sent = record(gen.next_id(), "esme1");
    let two_parts = MessageRecord {
        parts: 2,
        ..record(gen.next_id(), "esme1")
    };
    storage
        .enqueue(smsmax::queue::shared([sent.clone(), two_parts.clone()]))
        .await
        .unwrap();
    assert!(storage.settle(&sent.id, submitted("up1", "k1", 0)).await.unwrap());
    // The first of two parts left; the message stays queued for the second.
    assert!(storage.update(&two_parts.id, submitted("up1", "k2", 0)).await.unwrap());
    let mut gone = false;
    for _ in 0..60 {
        if storage.get(&sent.id).await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the ENROUTE record with no receipt is dropped");
    assert_eq!(storage.find_by_upstream("up1", "k1").await.unwrap(), None);
    let waiting = storage.get(&two_parts.id).await.unwrap().expect("a part to go: kept");
    assert_eq!(waiting.state, MessageState::Enroute);
    assert_eq!(storage.depth().await.unwrap(), 1);
    drop(storage);
    let storage = open(dir.path(), settings(64)).await;
    assert!(storage.get(&sent.id).await.unwrap().is_none(), "the drop is journaled");
    assert!(storage.get(&two_parts.id).await.unwrap().is_some());
}

/// Unmatched receipts are bounded (a tenth of `max_messages`, at least
/// 1000): beyond, a new one is refused with `Full`, nothing kept is dropped,
/// and a matched receipt still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unmatched_receipts_are_bounded_by_refusal() {
    let dir = TempDir::new().unwrap();
    let storage = open(
        dir.path(),
        JournalSettings {
            max_messages: 100,
            ..settings(4096)
        },
    )
    .await;
    for i in 0..1000 {
        let kept = receipt("up1", &format!("u{i}"), None, MessageState::Delivered);
        assert_eq!(
            storage.record_receipt(kept, None, vec![]).await.unwrap(),
            ReceiptOutcome::Recorded
        );
    }
    let one_more = receipt("up1", "u-extra", None, MessageState::Delivered);
    let err = storage.record_receipt(one_more, None, vec![]).await.unwrap_err();
    assert!(matches!(err, StorageError::Full(1000)), "{err:?}");
    assert_eq!(
        storage.unmatched_count().await.unwrap(),
        1000,
        "nothing kept was dropped"
    );
    let gen = ids();
    let m = record(gen.next_id(), "esme1");
    storage.enqueue(smsmax::queue::shared([m.clone()])).await.unwrap();
    assert!(storage.settle(&m.id, submitted("up1", "k1", 0)).await.unwrap());
    let found = UpstreamMatch {
        id: m.id.clone(),
        part: 0,
    };
    let matched = receipt("up1", "k1", Some(found), MessageState::Delivered);
    let outcome = storage
        .record_receipt(matched, Some(state_update(MessageState::Delivered)), vec![])
        .await
        .unwrap();
    assert_eq!(outcome, ReceiptOutcome::Recorded, "matched receipts are not limited");
}
