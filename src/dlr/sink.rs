//! Where client receipts and MO messages go: the clients' outbox, plus who
//! to tell when something was pushed.
//!
//! Outbox delivery to bound sessions polls, so telling it is only about
//! latency: with a notifier a receipt leaves at once instead of at the next
//! poll. The gateway wires the outbox delivery's `notify` here.

use std::sync::Arc;

use crate::{
    queue::outbox::{Outbox, OutboxEntry},
    store::StorageError,
};

/// Called with a client's system_id after entries for it became durable in its outbox.
pub type PushNotifier = Arc<dyn Fn(&str) + Send + Sync>;

/// The outbox and its notifier.
#[derive(Clone)]
pub struct OutboxSink {
    pub outbox: Arc<dyn Outbox>,
    notify: Option<PushNotifier>,
}

impl std::fmt::Debug for OutboxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxSink")
            .field("notify", &self.notify.is_some())
            .finish_non_exhaustive()
    }
}

impl OutboxSink {
    /// Pushes without telling anyone (delivery finds entries by polling).
    pub fn new(outbox: Arc<dyn Outbox>) -> Self {
        OutboxSink { outbox, notify: None }
    }

    /// Tells `notify` about every push.
    pub fn with_notifier(mut self, notify: PushNotifier) -> Self {
        self.notify = Some(notify);
        self
    }

    /// [`Outbox::push`], then tells the notifier about each client concerned.
    pub async fn push(&self, entries: Vec<OutboxEntry>) -> Result<(), StorageError> {
        let mut clients: Vec<Arc<str>> = entries.iter().map(|e| e.system_id.clone()).collect();
        clients.sort_unstable();
        clients.dedup();
        self.outbox.push(entries).await?;
        for client in &clients {
            self.pushed(client);
        }
        Ok(())
    }

    /// Tells the notifier that entries for `system_id` were pushed (by someone else, e.g. the store).
    pub fn pushed(&self, system_id: &str) {
        if let Some(notify) = &self.notify {
            notify(system_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{queue::Queue, store::embedded::EmbeddedStorage};
    use std::sync::Mutex;

    #[tokio::test]
    async fn every_client_pushed_to_is_told_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
        let told = Arc::new(Mutex::new(Vec::new()));
        let seen = told.clone();
        let sink = OutboxSink::new(store.clone())
            .with_notifier(Arc::new(move |s: &str| seen.lock().unwrap().push(s.to_string())));
        let entry = |system_id: &str| OutboxEntry {
            id: String::new(),
            system_id: system_id.into(),
            created_at_ms: 0,
            expires_at_ms: u64::MAX,
            attempts: 0,
            message_id: None,
            service_type: String::new(),
            source: Default::default(),
            dest: Default::default(),
            esm_class: 0,
            protocol_id: 0,
            data_coding: 0,
            short_message: Default::default(),
            tlvs: Default::default(),
        };
        sink.push(vec![entry("b"), entry("a"), entry("b")]).await.unwrap();
        assert_eq!(*told.lock().unwrap(), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(store.depth_for("b").await.unwrap(), 2);
        // A failed push tells nobody (closed storage: every call fails).
        store.close().await.unwrap();
        assert!(sink.push(vec![entry("c")]).await.is_err());
        assert_eq!(told.lock().unwrap().len(), 2);
    }
}
