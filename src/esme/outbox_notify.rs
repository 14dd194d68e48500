//! An [`Outbox`] that wakes the delivery side after each push, so that a
//! receipt or MO message for a client bound here goes out at once instead
//! of at the next poll. Whoever pushes (the receipt correlator, the relay)
//! is given this wrapper and needs to know nothing of sessions.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use async_trait::async_trait;

use super::outbox::OutboxDelivery;
use crate::{
    queue::outbox::{Outbox, OutboxEntry},
    store::StorageError,
};

/// `inner`, with [`OutboxDelivery::notify`] for each client a push was for.
pub struct NotifyingOutbox {
    inner: Arc<dyn Outbox>,
    deliveries: Arc<OutboxDelivery>,
}

impl NotifyingOutbox {
    pub fn wrap(inner: Arc<dyn Outbox>, deliveries: Arc<OutboxDelivery>) -> Arc<Self> {
        Arc::new(NotifyingOutbox { inner, deliveries })
    }
}

#[async_trait]
impl Outbox for NotifyingOutbox {
    async fn push(&self, entries: Vec<OutboxEntry>) -> Result<(), StorageError> {
        let clients: BTreeSet<String> = entries.iter().map(|e| e.system_id.clone()).collect();
        self.inner.push(entries).await?;
        // Only once durable: a woken worker must find the entries.
        for system_id in &clients {
            self.deliveries.notify(system_id);
        }
        Ok(())
    }

    async fn reserve_for(
        &self,
        system_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StorageError> {
        self.inner.reserve_for(system_id, max, lease).await
    }

    async fn ack_delivered(&self, system_id: &str, ids: &[String]) -> Result<(), StorageError> {
        self.inner.ack_delivered(system_id, ids).await
    }

    async fn retry_delivery(
        &self,
        system_id: &str,
        id: &str,
        attempts: u32,
        due_at_ms: u64,
    ) -> Result<(), StorageError> {
        self.inner.retry_delivery(system_id, id, attempts, due_at_ms).await
    }

    async fn depth_for(&self, system_id: &str) -> Result<u64, StorageError> {
        self.inner.depth_for(system_id).await
    }

    async fn waiting_clients(&self) -> Result<Vec<String>, StorageError> {
        self.inner.waiting_clients().await
    }

    async fn expire(&self, now_ms: u64) -> Result<u64, StorageError> {
        self.inner.expire(now_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::OutboxConfig,
        esme::outbox::DeliverySettings,
        queue::Queue,
        smpp_time::now_ms,
        store::{embedded::EmbeddedStorage, AddressRecord},
    };
    use tokio::sync::watch;

    fn entry(system_id: &str) -> OutboxEntry {
        OutboxEntry {
            id: String::new(),
            system_id: system_id.into(),
            created_at_ms: now_ms(),
            expires_at_ms: now_ms() + 3_600_000,
            attempts: 0,
            message_id: None,
            service_type: String::new(),
            source: AddressRecord {
                ton: 1,
                npi: 1,
                addr: "447700900123".into(),
            },
            dest: AddressRecord {
                ton: 1,
                npi: 1,
                addr: "4477009".into(),
            },
            esm_class: 0,
            protocol_id: 0,
            data_coding: 0,
            short_message: bytes::Bytes::from_static(b"mo"),
            tlvs: bytes::Bytes::new(),
        }
    }

    #[tokio::test]
    async fn a_push_wakes_the_worker_long_before_its_next_poll() {
        let dir = tempfile::tempdir().unwrap();
        let storage = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
        let mut settings =
            DeliverySettings::new(&OutboxConfig::default(), Duration::from_secs(5), Duration::from_secs(5));
        settings.poll = Duration::from_secs(3600);
        settings.expire_every = Duration::from_secs(3600);
        let (stop, stopped) = watch::channel(false);
        let deliveries = OutboxDelivery::start(storage.clone(), settings, stopped);
        let outbox = NotifyingOutbox::wrap(storage.clone(), deliveries.clone());
        let (_guard, mut rx) = deliveries.register("alice").expect("not shutting down");
        // Let the worker find the outbox empty and go to sleep until its (hour-long) poll.
        tokio::time::sleep(Duration::from_millis(50)).await;
        outbox.push(vec![entry("alice")]).await.unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("woken by the push, not by the poll")
            .expect("channel open");
        assert_eq!(&delivery.deliver_sm.short_message[..], b"mo");
        delivery.report(crate::esme::receivers::DeliveryOutcome::Response(
            smsmax_protocol::CommandStatus::ESME_ROK,
        ));
        let _ = stop.send(true);
        deliveries.finish(Duration::from_secs(5)).await;
        assert_eq!(deliveries.counters().delivered, 1);
        assert_eq!(outbox.depth_for("alice").await.unwrap(), 0);
        storage.close().await.unwrap();
    }
}
