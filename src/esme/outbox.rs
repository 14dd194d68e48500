//! Delivers each client's outbox (receipts, MO messages) to its bound
//! receiver and transceiver sessions.
//!
//! One worker per client with at least one receiving session bound here.
//! It leases a batch of due entries ([`Outbox::reserve_for`]), hands each
//! to one of the client's sessions (round robin, [`Receivers::hand_off`]),
//! and settles each on its outcome:
//!
//! | outcome | what happens |
//! | --- | --- |
//! | deliver_sm_resp ESME_ROK | acked: removed from the outbox, counted delivered |
//! | ESME_RX_P_APPN or ESME_RX_R_APPN | the client refuses it for good: acked, logged, counted refused |
//! | any other status (ESME_RX_T_APPN, ESME_RTHROTTLED, generic_nack, ...) | retried after a backoff |
//! | no response in the session's response timeout, or the session ended | retried after a backoff |
//! | never sent (the session was unbinding) | returned due now, attempt not counted |
//!
//! The backoff doubles from `retry_min` per attempt up to `retry_max`, with
//! jitter (uniform between half and all of it, never below `retry_min`), so
//! a client that is briefly unable to take messages is not hammered and
//! many entries do not come back at the same instant. Retries go on until
//! the entry's maximum age; then [`Outbox::expire`] drops it.
//!
//! A worker wakes when [`OutboxDelivery::notify`] says entries were pushed
//! for its client, when a retry it scheduled falls due, and every `poll`
//! (entries pushed on another node or before this one started). It stops
//! when the client's last receiving session ends, or at shutdown; at
//! shutdown it takes nothing new and settles what it handed out until the
//! sessions have unbound (what stays unsettled returns when its lease ends).
//! Every minute the outbox drops entries past their maximum age.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::{stream::FuturesUnordered, FutureExt, StreamExt};
use smsmax_protocol::CommandStatus;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::task::TaskTracker;

use super::{
    deliver_sm,
    receivers::{Delivery, DeliveryOutcome, ReceiverGuard, Receivers},
};
use crate::{
    config::OutboxConfig,
    queue::outbox::{Outbox, OutboxEntry},
    smpp_time::now_ms,
    store::StorageError,
};

/// How often entries past their maximum age are dropped.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// Longest pause between looks at a client's outbox when nothing woke the worker.
const MAX_POLL: Duration = Duration::from_secs(1);

/// Settings of the delivery workers, from `[outbox]` and `[smpp]`.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// Most entries leased at once per client.
    pub batch: usize,
    /// Most deliver_sm awaiting a response per session.
    pub window: usize,
    /// How long a leased entry stays ours; also the longest wait for an
    /// outcome. At least three response timeouts (see [`DeliverySettings::new`]).
    pub lease: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Look at the outbox at least this often while a client is bound.
    pub poll: Duration,
    /// How often entries past their maximum age are dropped.
    pub expire_every: Duration,
    /// Longest wait for one storage call.
    pub storage_timeout: Duration,
    /// Longest wait for a session to make room for a delivery; also how long
    /// shutdown waits for outcomes, on top of `storage_timeout`.
    pub response_timeout: Duration,
}

impl DeliverySettings {
    /// The lease is raised to three response timeouts when `lease_secs` is
    /// shorter: an entry must stay leased while its deliver_sm waits behind
    /// a full window and then for its response, or it would be handed out a
    /// second time while the first is still unanswered.
    pub fn new(config: &OutboxConfig, response_timeout: Duration, storage_timeout: Duration) -> Self {
        let retry_min = Duration::from_millis(config.retry_min_ms);
        DeliverySettings {
            batch: config.batch.max(1),
            window: config.window.max(1),
            lease: Duration::from_secs(config.lease_secs).max(response_timeout * 3),
            retry_min,
            retry_max: Duration::from_millis(config.retry_max_ms).max(retry_min),
            // Retries that fall due are found at least this soon.
            poll: retry_min.clamp(Duration::from_millis(10), MAX_POLL),
            expire_every: EXPIRE_EVERY,
            storage_timeout,
            response_timeout,
        }
    }
}

/// Counts since start.
#[derive(Debug, Default)]
pub struct OutboxCounters {
    delivered: AtomicU64,
    retried: AtomicU64,
    refused: AtomicU64,
    expired: AtomicU64,
    undeliverable: AtomicU64,
}

/// A copy of [`OutboxCounters`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutboxSnapshot {
    /// Acknowledged by the client with ESME_ROK.
    pub delivered: u64,
    /// Attempts that failed and were scheduled again.
    pub retried: u64,
    /// Refused for good by the client (ESME_RX_P_APPN, ESME_RX_R_APPN) and dropped.
    pub refused: u64,
    /// Dropped past their maximum age.
    pub expired: u64,
    /// Dropped because the stored entry cannot be encoded as a deliver_sm.
    pub undeliverable: u64,
}

impl OutboxCounters {
    pub fn snapshot(&self) -> OutboxSnapshot {
        OutboxSnapshot {
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            undeliverable: self.undeliverable.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// `true` for the statuses with which a client refuses a message for good.
pub fn is_refusal(status: CommandStatus) -> bool {
    status == CommandStatus::ESME_RX_P_APPN || status == CommandStatus::ESME_RX_R_APPN
}

/// The pause before attempt `attempts + 1`, `attempts` (at least 1) having failed.
pub fn backoff(attempts: u32, min: Duration, max: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).min(32);
    let nominal = min.saturating_mul(1u32 << doublings.min(31)).min(max);
    let low = nominal / 2;
    let jittered = low + nominal.saturating_sub(low).mul_f64(rand::random::<f64>());
    jittered.clamp(min, max.max(min))
}

/// Returns once `shutdown` is true (or its sender is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// A handed-out entry and, once known, what became of it.
type Settling = Pin<Box<dyn Future<Output = (OutboxEntry, DeliveryOutcome)> + Send>>;

/// The delivery side of every client's outbox.
pub struct OutboxDelivery {
    outbox: Arc<dyn Outbox>,
    receivers: Arc<Receivers>,
    settings: DeliverySettings,
    counters: OutboxCounters,
    tasks: TaskTracker,
    shutdown: watch::Receiver<bool>,
}

impl OutboxDelivery {
    /// Starts the expiry task; workers start as clients bind. Everything
    /// stops taking new work once `shutdown` turns true.
    pub fn start(outbox: Arc<dyn Outbox>, settings: DeliverySettings, shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let delivery = Arc::new(OutboxDelivery {
            outbox,
            // Each session queues at most one window beyond the one it has sent.
            receivers: Receivers::new(settings.window),
            settings,
            counters: OutboxCounters::default(),
            tasks: TaskTracker::new(),
            shutdown,
        });
        delivery.tasks.spawn(delivery.clone().expire_loop());
        delivery
    }

    /// Entries were pushed for `system_id`: its worker looks now.
    pub fn notify(&self, system_id: &str) {
        self.receivers.wake(system_id);
    }

    /// Most deliver_sm awaiting a response per session.
    pub fn window(&self) -> usize {
        self.settings.window
    }

    pub fn counters(&self) -> OutboxSnapshot {
        self.counters.snapshot()
    }

    /// Adds a receiving session of `system_id`: deliveries for it arrive on
    /// the returned channel until the guard is dropped. `None` during shutdown.
    pub fn register(self: &Arc<Self>, system_id: &str) -> Option<(ReceiverGuard, mpsc::Receiver<Delivery>)> {
        if *self.shutdown.borrow() {
            return None;
        }
        let registration = self.receivers.register(system_id);
        if let Some(wake) = registration.start_worker {
            self.tasks.spawn(self.clone().worker(system_id.to_string(), wake));
        }
        Some((registration.guard, registration.deliveries))
    }

    /// Drops every entry past its maximum age now; returns how many.
    pub async fn expire_now(&self) -> Result<u64, StorageError> {
        let dropped = self.timed(self.outbox.expire(now_ms())).await?;
        if dropped > 0 {
            tracing::warn!(dropped, "outbox entries past their maximum age dropped undelivered");
            OutboxCounters::add(&self.counters.expired, dropped);
        }
        Ok(dropped)
    }

    /// Waits, at most `timeout`, for the workers to settle what they handed
    /// out (call after `shutdown` turned true and the sessions ended, before
    /// storage closes).
    pub async fn finish(&self, timeout: Duration) {
        self.tasks.close();
        if tokio::time::timeout(timeout, self.tasks.wait()).await.is_err() {
            tracing::warn!("outbox delivery did not finish in time; unsettled entries return when their lease ends");
        }
    }

    async fn timed<T>(&self, call: impl Future<Output = Result<T, StorageError>>) -> Result<T, StorageError> {
        match tokio::time::timeout(self.settings.storage_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StorageError::Timeout(self.settings.storage_timeout)),
        }
    }

    async fn expire_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut every = tokio::time::interval(self.settings.expire_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stopping(&mut shutdown) => break,
                _ = every.tick() => {
                    if let Err(e) = self.expire_now().await {
                        tracing::warn!(error = %e, "dropping old outbox entries failed; next try in a minute");
                    }
                }
            }
        }
    }

    /// Delivers `system_id`'s outbox while it has a receiving session here.
    async fn worker(self: Arc<Self>, system_id: String, wake: Arc<Notify>) {
        tracing::debug!(system_id, "outbox delivery started");
        let mut shutdown = self.shutdown.clone();
        let mut handed: FuturesUnordered<Settling> = FuturesUnordered::new();
        // Whether the outbox may have due entries now.
        let mut look = true;
        let mut next_poll = Instant::now() + self.settings.poll;
        let mut next_retry: Option<Instant> = None;
        let mut no_sessions = false;
        loop {
            // Handed out at most: a window in flight and a window queued per session.
            let capacity = (self.receivers.count(&system_id) * 2 * self.settings.window)
                .max(1)
                .min(self.settings.batch);
            // Take in large steps: a reserve walks past the entries already
            // leased, so topping up one at a time would cost a walk per entry.
            let free = capacity.saturating_sub(handed.len());
            let room = if free >= (capacity / 4).max(1) || handed.is_empty() {
                free
            } else {
                0
            };
            let wake_at = next_retry.map_or(next_poll, |r| r.min(next_poll));
            tokio::select! {
                biased;
                _ = stopping(&mut shutdown) => break,
                Some(first) = handed.next(), if !handed.is_empty() => {
                    let mut done = vec![first];
                    while let Some(Some(more)) = handed.next().now_or_never() {
                        done.push(more);
                    }
                    if let Some(due) = self.settle(&system_id, done).await {
                        next_retry = Some(next_retry.map_or(due, |r| r.min(due)));
                    }
                }
                _ = std::future::ready(()), if look && room > 0 => {
                    if !self.receivers.keep_worker(&system_id) {
                        no_sessions = true;
                        break;
                    }
                    let (taken, settled) = self.take(&system_id, room).await;
                    handed.extend(settled);
                    // A full batch: more may be waiting.
                    look = taken >= room;
                    if !look {
                        next_poll = Instant::now() + self.settings.poll;
                    }
                }
                _ = wake.notified() => look = true,
                _ = tokio::time::sleep_until(wake_at.into()), if !look => {
                    look = true;
                    if next_retry.is_some_and(|r| r <= Instant::now()) {
                        next_retry = None;
                    }
                }
            }
        }
        // Settle what is out (sessions answer or fail each as they end), bounded.
        let deadline = Instant::now() + self.settings.response_timeout * 2 + self.settings.storage_timeout;
        while !handed.is_empty() {
            match tokio::time::timeout_at(deadline.into(), handed.next()).await {
                Ok(Some(done)) => {
                    self.settle(&system_id, vec![done]).await;
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        system_id,
                        unsettled = handed.len(),
                        "outbox deliveries unsettled at shutdown; they return when their lease ends"
                    );
                    break;
                }
            }
        }
        if !no_sessions {
            self.receivers.worker_stopped(&system_id);
        }
        tracing::debug!(system_id, "outbox delivery stopped");
    }

    /// Leases up to `max` entries and hands them out. Returns how many were
    /// leased and a future per handed-out entry that yields its outcome.
    async fn take(&self, system_id: &str, max: usize) -> (usize, Vec<Settling>) {
        let entries = match self
            .timed(self.outbox.reserve_for(system_id, max, self.settings.lease))
            .await
        {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(system_id, error = %e, "reading the outbox failed; trying again shortly");
                return (0, Vec::new());
            }
        };
        let taken = entries.len();
        let now = now_ms();
        let mut drop_ids = Vec::new();
        let mut settling: Vec<Settling> = Vec::with_capacity(taken);
        let mut expired = 0u64;
        let mut undeliverable = 0u64;
        for entry in entries {
            if entry.expires_at_ms <= now {
                expired += 1;
                drop_ids.push(entry.id);
                continue;
            }
            let deliver_sm = match deliver_sm::build(&entry) {
                Ok(sm) => sm,
                Err(e) => {
                    tracing::error!(system_id, id = %entry.id, error = %e, "outbox entry cannot be sent as deliver_sm; dropped");
                    undeliverable += 1;
                    drop_ids.push(entry.id);
                    continue;
                }
            };
            let (tx, rx) = oneshot::channel();
            let delivery = Delivery {
                deliver_sm,
                outcome: tx,
            };
            match self
                .receivers
                .hand_off(system_id, delivery, self.settings.response_timeout)
                .await
            {
                Ok(()) => {
                    let lease = self.settings.lease;
                    settling.push(Box::pin(async move {
                        // Past the lease the entry may be someone else's: give up.
                        let outcome = match tokio::time::timeout(lease, rx).await {
                            Ok(Ok(outcome)) => outcome,
                            _ => DeliveryOutcome::NoResponse,
                        };
                        (entry, outcome)
                    }));
                }
                Err(_) => settling.push(Box::pin(std::future::ready((entry, DeliveryOutcome::NotSent)))),
            }
        }
        if !drop_ids.is_empty() {
            match self.timed(self.outbox.ack_delivered(system_id, &drop_ids)).await {
                Ok(()) => {
                    if expired > 0 {
                        tracing::warn!(
                            system_id,
                            expired,
                            "outbox entries past their maximum age dropped undelivered"
                        );
                    }
                    OutboxCounters::add(&self.counters.expired, expired);
                    OutboxCounters::add(&self.counters.undeliverable, undeliverable);
                }
                Err(e) => {
                    tracing::warn!(system_id, error = %e, "dropping outbox entries failed; they return when their lease ends")
                }
            }
        }
        (taken, settling)
    }

    /// Acks or reschedules settled entries. Returns the earliest time a
    /// rescheduled one falls due.
    async fn settle(&self, system_id: &str, done: Vec<(OutboxEntry, DeliveryOutcome)>) -> Option<Instant> {
        let mut delivered = Vec::new();
        let mut refused = Vec::new();
        let mut next_due: Option<Instant> = None;
        for (entry, outcome) in done {
            let (attempts, delay) = match outcome {
                DeliveryOutcome::Response(status) if status.is_ok() => {
                    delivered.push(entry.id);
                    continue;
                }
                DeliveryOutcome::Response(status) if is_refusal(status) => {
                    tracing::warn!(system_id, id = %entry.id, %status, "client refused an outbox entry for good; dropped");
                    refused.push(entry.id);
                    continue;
                }
                DeliveryOutcome::Response(status) => {
                    tracing::debug!(system_id, id = %entry.id, %status, "client did not take a deliver_sm; retrying later");
                    let attempts = entry.attempts.saturating_add(1);
                    (
                        attempts,
                        backoff(attempts, self.settings.retry_min, self.settings.retry_max),
                    )
                }
                DeliveryOutcome::NoResponse => {
                    let attempts = entry.attempts.saturating_add(1);
                    (
                        attempts,
                        backoff(attempts, self.settings.retry_min, self.settings.retry_max),
                    )
                }
                DeliveryOutcome::NotSent => (entry.attempts, Duration::ZERO),
            };
            let due_at_ms = now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
            match self
                .timed(self.outbox.retry_delivery(system_id, &entry.id, attempts, due_at_ms))
                .await
            {
                Ok(()) => {
                    if attempts > entry.attempts {
                        OutboxCounters::add(&self.counters.retried, 1);
                    }
                    let due = Instant::now() + delay;
                    next_due = Some(next_due.map_or(due, |d| d.min(due)));
                }
                Err(e) => {
                    tracing::warn!(system_id, id = %entry.id, error = %e, "rescheduling an outbox entry failed; it returns when its lease ends")
                }
            }
        }
        for (ids, counter, what) in [
            (delivered, &self.counters.delivered, "delivered"),
            (refused, &self.counters.refused, "refused"),
        ] {
            if ids.is_empty() {
                continue;
            }
            match self.timed(self.outbox.ack_delivered(system_id, &ids)).await {
                Ok(()) => OutboxCounters::add(counter, ids.len() as u64),
                Err(e) => tracing::warn!(
                    system_id,
                    entries = ids.len(),
                    what,
                    error = %e,
                    "acknowledging outbox entries failed; they return when their lease ends and are sent again"
                ),
            }
        }
        next_due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds_with_jitter() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        assert_eq!(backoff(1, min, max), min, "the first retry waits the minimum");
        for _ in 0..100 {
            let third = backoff(3, min, max);
            assert!(
                (Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third),
                "{third:?}"
            );
            let late = backoff(40, min, max);
            assert!((Duration::from_millis(500)..=max).contains(&late), "{late:?}");
        }
        assert_eq!(backoff(0, min, max), min);
        assert_eq!(backoff(u32::MAX, min, min), min);
    }

    #[test]
    fn settings_keep_a_lease_longer_than_a_delivery_attempt() {
        let config = OutboxConfig {
            lease_secs: 5,
            retry_min_ms: 2,
            ..OutboxConfig::default()
        };
        let s = DeliverySettings::new(&config, Duration::from_secs(10), Duration::from_secs(30));
        assert_eq!(s.lease, Duration::from_secs(30));
        assert_eq!(s.poll, Duration::from_millis(10), "polls are not a busy loop");
        let s = DeliverySettings::new(
            &OutboxConfig::default(),
            Duration::from_secs(10),
            Duration::from_secs(30),
        );
        assert_eq!(s.lease, Duration::from_secs(60));
        assert_eq!(s.poll, Duration::from_secs(1));
    }

    #[test]
    fn refusals_are_the_permanent_receiver_errors() {
        assert!(is_refusal(CommandStatus::ESME_RX_P_APPN));
        assert!(is_refusal(CommandStatus::ESME_RX_R_APPN));
        assert!(!is_refusal(CommandStatus::ESME_RX_T_APPN));
        assert!(!is_refusal(CommandStatus::ESME_RTHROTTLED));
        assert!(!is_refusal(CommandStatus::ESME_ROK));
    }
}
