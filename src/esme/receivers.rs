//! Which sessions can take deliver_sm for which client: the receiver and
//! transceiver binds of each system_id, each with a bounded channel of
//! deliveries, handed out round robin.
//!
//! A session registers when its receiving bind succeeds and holds a
//! [`ReceiverGuard`]; dropping the guard (session end, unbind, server
//! shutdown) takes it out of the rotation. The registry also records
//! whether a client's delivery worker runs, under the same lock as the
//! sessions, so that a bind and a worker deciding to stop cannot race into
//! "bound but nobody delivers".

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use smsmax_protocol::{pdu::DeliverSm, CommandStatus};
use tokio::sync::{mpsc, oneshot, Notify};

/// One deliver_sm for a session to send, and where to report what happened.
#[derive(Debug)]
pub struct Delivery {
    pub deliver_sm: DeliverSm,
    pub outcome: oneshot::Sender<DeliveryOutcome>,
}

impl Delivery {
    /// Reports the outcome; a worker that stopped waiting is no error.
    pub fn report(self, outcome: DeliveryOutcome) {
        let _ = self.outcome.send(outcome);
    }
}

/// What became of one [`Delivery`]. A dropped [`Delivery`] (its sender gone
/// without a report) counts as [`DeliveryOutcome::NoResponse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The client's deliver_sm_resp (or generic_nack) status.
    Response(CommandStatus),
    /// Sent, but no response within the response timeout or before the session ended.
    NoResponse,
    /// Never written to the client (the session was ending or unbinding).
    NotSent,
}

/// The receiving sessions of one client.
struct ClientSessions {
    sessions: Vec<(u64, mpsc::Sender<Delivery>)>,
    /// Where the next round-robin turn starts.
    next: usize,
    /// Wakes the client's delivery worker (new entries, a session came or went).
    wake: Arc<Notify>,
    worker_running: bool,
}

/// The receiving sessions of every client.
pub struct Receivers {
    clients: Mutex<HashMap<String, ClientSessions>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Capacity of each session's delivery channel.
    channel: usize,
}

/// Held by a receiving session; takes it out of the rotation when dropped.
pub struct ReceiverGuard {
    receivers: Arc<Receivers>,
    system_id: String,
    id: u64,
}

impl Drop for ReceiverGuard {
    fn drop(&mut self) {
        self.receivers.remove(&self.system_id, self.id);
    }
}

/// A new session's registration: its guard, its delivery channel, and,
/// when the client's worker was not running, the notifier the caller must
/// start it with.
pub struct Registration {
    pub guard: ReceiverGuard,
    pub deliveries: mpsc::Receiver<Delivery>,
    pub start_worker: Option<Arc<Notify>>,
}

impl Receivers {
    /// `channel`: deliveries queued per session beyond those it has sent.
    pub fn new(channel: usize) -> Arc<Self> {
        Arc::new(Receivers {
            clients: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
            channel: channel.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ClientSessions>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a receiving session of `system_id`. When the returned
    /// `start_worker` is set the worker is marked running and the caller
    /// must start it.
    pub fn register(self: &Arc<Self>, system_id: &str) -> Registration {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.channel);
        let mut clients = self.lock();
        let client = clients.entry(system_id.to_string()).or_insert_with(|| ClientSessions {
            sessions: Vec::new(),
            next: 0,
            wake: Arc::new(Notify::new()),
            worker_running: false,
        });
        client.sessions.push((id, tx));
        let start_worker = (!client.worker_running).then(|| client.wake.clone());
        client.worker_running = true;
        client.wake.notify_one();
        Registration {
            guard: ReceiverGuard {
                receivers: self.clone(),
                system_id: system_id.to_string(),
                id,
            },
            deliveries: rx,
            start_worker,
        }
    }

    fn remove(&self, system_id: &str, id: u64) {
        let mut clients = self.lock();
        if let Some(client) = clients.get_mut(system_id) {
            client.sessions.retain(|(session, _)| *session != id);
            // The worker notices it has nobody left to deliver to.
            client.wake.notify_one();
        }
    }

    /// Wakes `system_id`'s worker, if one runs.
    pub fn wake(&self, system_id: &str) {
        if let Some(client) = self.lock().get(system_id) {
            client.wake.notify_one();
        }
    }

    /// Sessions of `system_id` that can take deliveries now.
    pub fn count(&self, system_id: &str) -> usize {
        self.lock().get(system_id).map_or(0, |c| c.sessions.len())
    }

    /// Called by a worker about to take more work: `false` (and the worker
    /// marked stopped, under the lock a new bind takes too) when no session
    /// of `system_id` is left.
    pub fn keep_worker(&self, system_id: &str) -> bool {
        let mut clients = self.lock();
        match clients.get_mut(system_id) {
            Some(client) if !client.sessions.is_empty() => true,
            Some(_) => {
                clients.remove(system_id);
                false
            }
            None => false,
        }
    }

    /// Marks `system_id`'s worker stopped (it ended for another reason than
    /// no sessions: shutdown). A later bind starts a new one.
    pub fn worker_stopped(&self, system_id: &str) {
        let mut clients = self.lock();
        if let Some(client) = clients.get_mut(system_id) {
            client.worker_running = false;
            if client.sessions.is_empty() {
                clients.remove(system_id);
            }
        }
    }

    /// Hands `delivery` to a receiving session of `system_id`: the next in
    /// round-robin order with room in its channel, or, when every channel is
    /// full, the first to make room within `timeout`. Gives the delivery back
    /// when no session is bound or none made room in time.
    pub async fn hand_off(&self, system_id: &str, delivery: Delivery, timeout: Duration) -> Result<(), Delivery> {
        let senders: Vec<mpsc::Sender<Delivery>> = {
            let mut clients = self.lock();
            let Some(client) = clients.get_mut(system_id) else {
                return Err(delivery);
            };
            let n = client.sessions.len();
            if n == 0 {
                return Err(delivery);
            }
            let start = client.next % n;
            client.next = (start + 1) % n;
            (0..n).map(|i| client.sessions[(start + i) % n].1.clone()).collect()
        };
        let mut delivery = delivery;
        for sender in &senders {
            match sender.try_send(delivery) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d)) => delivery = d,
            }
        }
        // Every channel is full: the first session to make room takes it.
        let reserve = futures::future::select_ok(senders.iter().map(|s| Box::pin(s.reserve())));
        let reserved = tokio::time::timeout(timeout, reserve).await;
        match reserved {
            Ok(Ok((permit, _))) => {
                permit.send(delivery);
                Ok(())
            }
            _ => Err(delivery),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> (Delivery, oneshot::Receiver<DeliveryOutcome>) {
        let (tx, rx) = oneshot::channel();
        (
            Delivery {
                deliver_sm: DeliverSm::default(),
                outcome: tx,
            },
            rx,
        )
    }

    #[tokio::test]
    async fn round_robin_over_the_bound_sessions_and_removal_on_drop() {
        let receivers = Receivers::new(4);
        let mut a = receivers.register("alice");
        assert!(a.start_worker.is_some(), "the first bind starts the worker");
        let mut b = receivers.register("alice");
        assert!(b.start_worker.is_none(), "one worker per client");
        for _ in 0..4 {
            let (d, _) = delivery();
            receivers.hand_off("alice", d, Duration::from_millis(10)).await.unwrap();
        }
        let mut got_a = 0;
        while a.deliveries.try_recv().is_ok() {
            got_a += 1;
        }
        let mut got_b = 0;
        while b.deliveries.try_recv().is_ok() {
            got_b += 1;
        }
        assert_eq!((got_a, got_b), (2, 2));
        drop(a.guard);
        assert_eq!(receivers.count("alice"), 1);
        drop(b.guard);
        assert_eq!(receivers.count("alice"), 0);
        let (d, _) = delivery();
        assert!(receivers.hand_off("alice", d, Duration::from_millis(10)).await.is_err());
        assert!(!receivers.keep_worker("alice"), "nobody left: the worker stops");
        assert!(
            receivers.register("alice").start_worker.is_some(),
            "the next bind starts a new worker"
        );
    }

    #[tokio::test]
    async fn full_channels_bound_the_hand_off() {
        let receivers = Receivers::new(1);
        let mut a = receivers.register("alice");
        let (d, _) = delivery();
        receivers.hand_off("alice", d, Duration::from_millis(10)).await.unwrap();
        let (d, _) = delivery();
        assert!(
            receivers.hand_off("alice", d, Duration::from_millis(20)).await.is_err(),
            "a full channel gives the delivery back after the timeout"
        );
        let taken = a.deliveries.try_recv().unwrap();
        taken.report(DeliveryOutcome::NotSent);
        let (d, _) = delivery();
        receivers.hand_off("alice", d, Duration::from_millis(10)).await.unwrap();
    }
}
