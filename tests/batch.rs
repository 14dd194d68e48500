//! Submits that arrive together are stored together: the session takes every
//! whole frame already read in one turn and stores their records with one
//! enqueue. Each is still answered on its own, with its own id — and with
//! the storage error when that enqueue fails.

mod common;

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::BytesMut;
use common::{submit_sm, PASSWORD};
use smsmax::{
    queue::Queue,
    store::{embedded::EmbeddedStorage, MessageRecord, StateUpdate, StorageError, Store},
};
use smsmax_protocol::{Body, CommandId, CommandStatus, Pdu};

/// The embedded queue, remembering how many records each enqueue carried,
/// and failing every enqueue while `fail` is set.
struct RecordingQueue {
    inner: Arc<EmbeddedStorage>,
    calls: Mutex<Vec<usize>>,
    fail: AtomicBool,
}

#[async_trait]
impl Queue for RecordingQueue {
    async fn enqueue(&self, records: Vec<std::sync::Arc<MessageRecord>>) -> Result<(), StorageError> {
        self.calls.lock().unwrap().push(records.len());
        if self.fail.load(Ordering::SeqCst) {
            return Err(StorageError::Engine("injected failure".into()));
        }
        self.inner.enqueue(records).await
    }
    async fn reserve(&self, max: usize, lease: Duration) -> Result<Vec<MessageRecord>, StorageError> {
        self.inner.reserve(max, lease).await
    }
    async fn ack(&self, ids: &[String]) -> Result<(), StorageError> {
        self.inner.ack(ids).await
    }
    async fn settle(&self, id: &str, update: StateUpdate) -> Result<bool, StorageError> {
        self.inner.settle(id, update).await
    }
    async fn retry(&self, id: &str, due_at_ms: u64) -> Result<(), StorageError> {
        self.inner.retry(id, due_at_ms).await
    }
    async fn depth(&self) -> Result<u64, StorageError> {
        self.inner.depth().await
    }
    async fn close(&self) -> Result<(), StorageError> {
        self.inner.close().await
    }
}

/// `count` submit_sm with sequence numbers from `first`, encoded back to back.
fn burst(first: u32, count: u32) -> (BytesMut, HashSet<u32>) {
    let mut bytes = BytesMut::new();
    let mut sequences = HashSet::new();
    for sequence in first..first + count {
        Pdu::new(
            sequence,
            Body::SubmitSm(submit_sm("447700900003", &format!("b{sequence}"))),
        )
        .encode(&mut bytes)
        .unwrap();
        sequences.insert(sequence);
    }
    (bytes, sequences)
}

/// Reads `count` answers: (sequence, status, message_id).
async fn answers(esme: &mut common::Esme<tokio::net::TcpStream>, count: usize) -> Vec<(u32, CommandStatus, String)> {
    let mut out = Vec::new();
    for _ in 0..count {
        let pdu = esme.recv().await.expect("answer");
        assert_eq!(pdu.command_id(), CommandId::SubmitSmResp, "{pdu:?}");
        let id = match &pdu.body {
            Body::SubmitSmResp(resp) => resp.message_id.to_string_lossy().into_owned(),
            _ => String::new(),
        };
        out.push((pdu.sequence_number, pdu.command_status, id));
    }
    out
}

#[tokio::test]
async fn submits_written_together_are_stored_together_and_answered_each() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), "");
    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    let queue = Arc::new(RecordingQueue {
        inner: storage.clone(),
        calls: Mutex::new(Vec::new()),
        fail: AtomicBool::new(false),
    });
    let gateway = common::QueueGateway::start(&config, queue.clone(), storage.clone()).await;
    let addr = gateway.addr;

    let mut esme = common::connect(addr).await;
    assert_eq!(
        esme.bind("transmitter", "alice", PASSWORD).await,
        CommandStatus::ESME_ROK
    );

    // Twenty submits in one write: every one accepted, with its own id.
    let (bytes, sent) = burst(100, 20);
    esme.send_raw(&bytes).await;
    let got = answers(&mut esme, 20).await;
    assert!(got.iter().all(|(_, s, _)| *s == CommandStatus::ESME_ROK), "{got:?}");
    assert_eq!(got.iter().map(|(q, _, _)| *q).collect::<HashSet<_>>(), sent);
    let ids: HashSet<&str> = got.iter().map(|(_, _, id)| id.as_str()).collect();
    assert_eq!(ids.len(), 20, "distinct ids: {got:?}");
    assert!(ids.iter().all(|id| !id.is_empty()));
    for (_, _, id) in &got {
        let record = storage
            .get(id)
            .await
            .unwrap()
            .expect("an acknowledged message is stored");
        assert_eq!(&*record.system_id, "alice");
    }
    let calls = queue.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().sum::<usize>(), 20, "{calls:?}");
    assert!(calls.len() < 20, "submits read together share an enqueue: {calls:?}");

    // A failed enqueue answers every submit of its batch with the error.
    queue.fail.store(true, Ordering::SeqCst);
    let (bytes, sent) = burst(200, 5);
    esme.send_raw(&bytes).await;
    let got = answers(&mut esme, 5).await;
    assert!(got.iter().all(|(_, s, _)| *s == CommandStatus::ESME_RSYSERR), "{got:?}");
    assert_eq!(got.iter().map(|(q, _, _)| *q).collect::<HashSet<_>>(), sent);

    // The session goes on.
    queue.fail.store(false, Ordering::SeqCst);
    let resp = esme.call(submit_sm("447700900003", "after")).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    assert_eq!(storage.depth().await.unwrap(), 21);

    drop(esme);
    gateway.stop().await;
    storage.close().await.unwrap();
}
