//! The per-session window is enforced: with storage that takes its time,
//! requests beyond the client's window are answered ESME_RTHROTTLED at once
//! while the ones inside it wait for their durable commit.

mod common;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use common::{submit_sm, PASSWORD};
use smsmax::{
    queue::Queue,
    store::{embedded::EmbeddedStorage, MessageRecord, StateUpdate, StorageError},
};
use smsmax_protocol::{CommandId, CommandStatus};

/// The embedded queue, with every enqueue held back for a while.
struct SlowQueue(Arc<EmbeddedStorage>);

#[async_trait]
impl Queue for SlowQueue {
    async fn enqueue(&self, records: Vec<std::sync::Arc<MessageRecord>>) -> Result<(), StorageError> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.0.enqueue(records).await
    }
    async fn reserve(&self, max: usize, lease: Duration) -> Result<Vec<MessageRecord>, StorageError> {
        self.0.reserve(max, lease).await
    }
    async fn ack(&self, ids: &[String]) -> Result<(), StorageError> {
        self.0.ack(ids).await
    }
    async fn settle(&self, id: &str, update: StateUpdate) -> Result<bool, StorageError> {
        self.0.settle(id, update).await
    }
    async fn retry(&self, id: &str, due_at_ms: u64) -> Result<(), StorageError> {
        self.0.retry(id, due_at_ms).await
    }
    async fn depth(&self) -> Result<u64, StorageError> {
        self.0.depth().await
    }
    async fn close(&self) -> Result<(), StorageError> {
        self.0.close().await
    }
}

#[tokio::test]
async fn requests_beyond_the_window_are_throttled_while_storage_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path(), "");
    config.clients[0].window = 4;
    let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
    let gateway = common::QueueGateway::start(&config, Arc::new(SlowQueue(storage.clone())), storage.clone()).await;
    let addr = gateway.addr;

    let mut esme = common::connect(addr).await;
    assert_eq!(
        esme.bind("transmitter", "alice", PASSWORD).await,
        CommandStatus::ESME_ROK
    );
    for i in 0..10 {
        esme.send(submit_sm("447700900002", &format!("w{i}"))).await;
    }
    let mut answers = Vec::new();
    for _ in 0..10 {
        let pdu = esme.recv().await.expect("answer");
        assert_eq!(pdu.command_id(), CommandId::SubmitSmResp);
        answers.push((pdu.sequence_number, pdu.command_status));
    }
    // The six beyond the window come back first, throttled; the four inside
    // it come back accepted once their commit is done.
    let throttled: Vec<u32> = answers
        .iter()
        .filter(|(_, s)| *s == CommandStatus::ESME_RTHROTTLED)
        .map(|(seq, _)| *seq)
        .collect();
    let accepted = answers.iter().filter(|(_, s)| *s == CommandStatus::ESME_ROK).count();
    assert_eq!(accepted, 4, "{answers:?}");
    assert_eq!(throttled.len(), 6, "{answers:?}");
    assert!(
        answers[..6].iter().all(|(_, s)| *s == CommandStatus::ESME_RTHROTTLED),
        "{answers:?}"
    );

    drop(esme);
    gateway.stop().await;
    storage.close().await.unwrap();
}
