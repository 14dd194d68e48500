//! The relay worker: the loop that takes due messages from the [`Queue`],
//! routes them, submits them through the upstream pools and records the
//! outcome (see the module documentation of [`crate::relay`]).
//!
//! One task reserves up to `batch` messages at a time (only as many as there
//! is room for: never more than `concurrency` messages are reserved or being
//! submitted at once) and drives their submits concurrently
//! (`FuturesUnordered`). When nothing is due it sleeps `idle_poll`.
//!
//! Every storage call has a timeout. A store or queue call that fails leaves
//! the message leased: it comes back when its lease runs out (at-least-once).
//!
//! A successful submit records ENROUTE with the [`UpstreamLink`] a receipt is
//! matched by: the upstream's name and its message_id normalised with the
//! upstream's `submit_id_style` (an id that does not fit the style is logged
//! and counted; the message is still ENROUTE, but its receipt cannot match).
//!
//! # Messages sent in parts
//!
//! An upstream with `long_messages = "udh"` or `"sar"` takes a long message
//! as concatenated parts ([`crate::relay::parts`]). They are submitted in
//! order, each once the one before it was accepted, all to the same
//! upstream, with the same concatenation reference on every attempt
//! ([`parts::reference`] of our id) so a part sent again joins the others.
//! Each accepted part is recorded with its link (part k): the store keeps
//! `parts_sent` and the `upstream`, so after a failure, a lost lease or a
//! restart the relay goes on from the first part not accepted, on that
//! upstream only (without a bound session there: a transient failure, no
//! failover — the carrier could not join parts it got from two routes).
//! Until the last part left the message stays ACCEPTED and queued (but can
//! no longer be cancelled); then it is ENROUTE and acknowledged. A permanent
//! failure of part k ends it UNDELIVERABLE (the parts before k were sent;
//! the log says how many). A part is sent twice only when recording its
//! acceptance failed (at-least-once, like a whole message).
//!
//! When the relay ends a message itself (REJECTED: no route; UNDELIVERABLE:
//! refused or out of attempts; EXPIRED) and the client asked for a receipt
//! for that outcome (`registered_delivery`), the receipt
//! ([`crate::dlr::client_receipt`]) is pushed to the client's outbox
//! *before* the final state is recorded: if the push fails, nothing is
//! recorded and the message comes back when its lease runs out, so the
//! receipt is never lost (a crash between the two can send it twice).
//!
//! [`RelayHandle::stop`] stops reserving, lets the submits in flight finish
//! (each is bounded by its upstream's response timeout) and puts the reserved
//! messages that had not started back in the queue.

use std::{
    collections::HashMap,
    collections::VecDeque,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use futures::{stream::FuturesUnordered, StreamExt};
use smsmax_protocol::{
    pdu::SubmitSm,
    tlv::{decode_tlvs, Tlv},
    types::Address,
    CommandStatus,
};
use tokio::sync::watch;

use crate::{
    dlr::client_receipt::{client_receipt, receipt_state, wants_receipt},
    dlr::OutboxSink,
    queue::Queue,
    relay::{
        parts::{self, Part, ESM_UDHI},
        retry::{RetryDecision, RetryPolicy},
        routing::{RouteDecision, Router},
        settler::Settler,
    },
    smpp_time::now_ms,
    store::{MessageRecord, MessageState, StateUpdate, StorageError, Store, UpstreamLink},
    upstream::{SubmitError, TransientCause, UpstreamPool},
};

/// Most octets sent in `short_message`; a longer message goes in `message_payload`.
pub const MAX_SHORT_MESSAGE: usize = 254;

/// How the relay loop runs.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    /// Most messages reserved at once.
    pub batch: usize,
    /// Lease of a reserved message.
    pub lease: Duration,
    /// Most messages in flight (reserved and not finished) at once.
    pub concurrency: usize,
    /// Pause when nothing is due.
    pub idle_poll: Duration,
    /// Timeout of every queue and store call.
    pub storage_timeout: Duration,
    /// `[outbox] max_age_secs`: how long a receipt the relay generates waits for its client.
    pub receipt_max_age: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            batch: 256,
            lease: Duration::from_secs(60),
            concurrency: 512,
            idle_poll: Duration::from_millis(50),
            storage_timeout: Duration::from_secs(30),
            receipt_max_age: Duration::from_secs(72 * 3600),
        }
    }
}

/// What the relay counts about receipts.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Submits accepted without a message_id, or with one that does not fit
    /// the upstream's `submit_id_style`: ENROUTE without a link, so no
    /// receipt can match.
    pub unlinked: AtomicU64,
    /// Receipts the relay generated (REJECTED, UNDELIVERABLE, EXPIRED) and queued for clients.
    pub gateway_receipts: AtomicU64,
    /// Pushing such a receipt failed (the message comes back and is tried again).
    pub gateway_receipt_failures: AtomicU64,
}

/// A copy of [`RelayCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub unlinked: u64,
    pub gateway_receipts: u64,
    pub gateway_receipt_failures: u64,
}

impl RelayCounters {
    pub fn snapshot(&self) -> RelayStats {
        RelayStats {
            unlinked: self.unlinked.load(Relaxed),
            gateway_receipts: self.gateway_receipts.load(Relaxed),
            gateway_receipt_failures: self.gateway_receipt_failures.load(Relaxed),
        }
    }
}

/// The running relay.
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<RelayCounters>,
}

impl RelayHandle {
    /// The counters now.
    pub fn stats(&self) -> RelayStats {
        self.counters.snapshot()
    }

    /// The live counters.
    pub fn counters(&self) -> Arc<RelayCounters> {
        self.counters.clone()
    }

    /// Stops reserving, waits for the submits in flight and returns the
    /// reserved messages that had not started to the queue.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "relay task failed");
        }
    }
}

/// The relay entry point.
pub struct Relay;

struct Inner {
    queue: Arc<dyn Queue>,
    /// Settles gathered into batches (see [`Settler`]).
    settler: Settler,
    store: Arc<dyn Store>,
    outbox: OutboxSink,
    counters: Arc<RelayCounters>,
    router: Arc<Router>,
    pools: HashMap<String, Arc<UpstreamPool>>,
    policy: RetryPolicy,
    settings: RelaySettings,
}

/// What [`Inner::send_parts`] did.
enum PartsOutcome {
    /// Handled: every part sent, or a retry scheduled, or the message ended.
    Done,
    /// The upstream could not take the first part to send now; nothing done.
    FirstNotTaken,
}

/// Why a message is retried or failed (for the retry policy and the record).
enum Failure {
    /// The upstream answered with this status.
    Status(CommandStatus),
    /// Nothing answered (timeout, lost connection, no upstream available).
    Transient,
}

impl Relay {
    /// Starts the relay loop. `outbox` takes the receipts of messages the relay ends itself.
    pub fn start(
        queue: Arc<dyn Queue>,
        store: Arc<dyn Store>,
        outbox: OutboxSink,
        router: Arc<Router>,
        pools: HashMap<String, Arc<UpstreamPool>>,
        policy: RetryPolicy,
        settings: RelaySettings,
    ) -> RelayHandle {
        let (stop, stopped) = watch::channel(false);
        let counters = Arc::new(RelayCounters::default());
        let settler = Settler::start(queue.clone(), settings.concurrency, settings.storage_timeout);
        let inner = Arc::new(Inner {
            queue,
            settler,
            store,
            outbox,
            counters: counters.clone(),
            router,
            pools,
            policy,
            settings,
        });
        let task = tokio::spawn(run(inner, stopped));
        RelayHandle { stop, task, counters }
    }
}

async fn run(inner: Arc<Inner>, mut stopped: watch::Receiver<bool>) {
    let concurrency = inner.settings.concurrency.max(1);
    let batch = inner.settings.batch.max(1);
    let idle = inner.settings.idle_poll;
    let mut pending: VecDeque<MessageRecord> = VecDeque::new();
    let mut in_flight = FuturesUnordered::new();
    tracing::info!(
        upstreams = inner.pools.len(),
        routes = inner.router.len(),
        concurrency,
        batch,
        "relay started"
    );
    loop {
        if *stopped.borrow() {
            break;
        }
        while in_flight.len() < concurrency {
            let Some(record) = pending.pop_front() else { break };
            let inner = inner.clone();
            in_flight.push(async move { inner.process(record).await });
        }
        let room = concurrency - in_flight.len();
        // Reserve in large steps: a reserve walks past the entries already
        // leased, so topping up one slot per finished submit would cost a
        // walk over the whole window per message.
        let worth_reserving = room >= (concurrency / 4).clamp(1, batch) || in_flight.is_empty();
        if worth_reserving && pending.is_empty() {
            let reserved = inner
                .timed(inner.queue.reserve(batch.min(room), inner.settings.lease))
                .await;
            match reserved {
                Ok(records) if !records.is_empty() => {
                    tracing::debug!(count = records.len(), "reserved");
                    pending.extend(records);
                    continue;
                }
                Ok(_) => {}
                Err(StorageError::Closed) => {
                    tracing::warn!("queue closed; relay stops");
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "reserving from the queue failed"),
            }
            // Nothing due (or an error): wait a little, finishing submits meanwhile.
            let sleep = tokio::time::sleep(idle);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = stopped.changed() => break,
                    Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                }
            }
        } else {
            // Full: wait for a submit to finish.
            tokio::select! {
                _ = stopped.changed() => {}
                _ = in_flight.next() => {}
            }
        }
    }
    tracing::info!(
        in_flight = in_flight.len(),
        not_started = pending.len(),
        "relay stopping"
    );
    while in_flight.next().await.is_some() {}
    let now = now_ms();
    for record in pending {
        if let Err(e) = inner.timed(inner.queue.retry(&record.id, now)).await {
            tracing::warn!(id = %record.id, error = %e, "could not release a reserved message; it returns when its lease runs out");
        }
    }
    tracing::info!("relay stopped");
}

impl Inner {
    async fn timed<T>(&self, call: impl Future<Output = Result<T, StorageError>>) -> Result<T, StorageError> {
        let limit = self.settings.storage_timeout;
        tokio::time::timeout(limit, call)
            .await
            .unwrap_or(Err(StorageError::Timeout(limit)))
    }

    async fn process(&self, record: MessageRecord) {
        let id = record.id.as_str();
        let now = now_ms();
        if record.state != MessageState::Accepted {
            tracing::debug!(
                id,
                state = record.state.name(),
                "no longer ACCEPTED; dropped from the queue"
            );
            self.ack(id).await;
            return;
        }
        if record.expires_at_ms.is_some_and(|at| now >= at) {
            tracing::debug!(id, "validity period over");
            self.finish(&record, MessageState::Expired, None, record.attempts).await;
            return;
        }
        if record.parts_sent > 0 {
            self.resume_parts(&record).await;
            return;
        }
        let available = |name: &str| self.pools.get(name).is_some_and(|p| p.is_available());
        let candidates = match self
            .router
            .route(&record.system_id, &record.source.addr, &record.dest.addr, available)
        {
            RouteDecision::NoRoute => {
                tracing::debug!(id, "no route");
                self.finish(&record, MessageState::Rejected, None, record.attempts)
                    .await;
                return;
            }
            RouteDecision::NoUpstreamAvailable { route } => {
                tracing::debug!(id, route, "no upstream of the route is available");
                self.failed(&record, Failure::Transient).await;
                return;
            }
            RouteDecision::Candidates { upstreams, .. } => upstreams,
        };
        let sm = match build_submit(&record) {
            Ok(sm) => sm,
            Err(reason) => {
                tracing::warn!(id, %reason, "stored message cannot be submitted");
                self.finish(
                    &record,
                    MessageState::Undeliverable,
                    Some(CommandStatus::ESME_RSUBMITFAIL.0),
                    record.attempts,
                )
                .await;
                return;
            }
        };
        let attempts = record.attempts.saturating_add(1);
        let last = candidates.len().saturating_sub(1);
        // The last candidate takes the submit itself; those before it a copy.
        let mut sm = Some(sm);
        for (k, upstream) in candidates.into_iter().enumerate() {
            let Some(pool) = self.pools.get(upstream) else { continue };
            let parts = parts::split(
                record.data_coding,
                &record.short_message,
                record.esm_class & ESM_UDHI != 0,
                pool.config().long_messages,
                parts::reference(id),
            );
            if parts.len() > 1 {
                match self.send_parts(&record, upstream, pool, &parts, 0, attempts).await {
                    PartsOutcome::Done => return,
                    PartsOutcome::FirstNotTaken => continue,
                }
            }
            let submit = match (k == last, sm.as_ref()) {
                (true, _) => sm.take(),
                (false, Some(sm)) => Some(sm.clone()),
                (false, None) => None,
            };
            let Some(submit) = submit else { break };
            match pool.submit(submit).await {
                Ok(upstream_id) => {
                    tracing::debug!(id, upstream, %upstream_id, "submitted");
                    let style = pool.config().submit_id_style;
                    let link = match style.normalise(&upstream_id) {
                        Some(key) => Some(UpstreamLink {
                            upstream: upstream.to_string(),
                            key,
                            part: 0,
                        }),
                        None => {
                            self.counters.unlinked.fetch_add(1, Relaxed);
                            tracing::warn!(
                                id,
                                upstream,
                                %upstream_id,
                                submit_id_style = style.name(),
                                "the upstream's message_id does not fit its submit_id_style; its receipt cannot be matched"
                            );
                            None
                        }
                    };
                    let update = StateUpdate {
                        state: MessageState::Enroute,
                        upstream_id: Some(upstream_id),
                        error_code: None,
                        attempts: Some(attempts),
                        link,
                        at_ms: now_ms(),
                    };
                    self.settle(id, update).await;
                    return;
                }
                Err(SubmitError::NoBind | SubmitError::BackingOff)
                | Err(SubmitError::Transient(TransientCause::WindowFull | TransientCause::RateCap)) => {
                    tracing::debug!(id, upstream, "upstream cannot take it now; next candidate");
                }
                Err(SubmitError::Throttled(status)) | Err(SubmitError::Transient(TransientCause::Status(status))) => {
                    tracing::warn!(id, upstream, %status, attempt = attempts, "submit failed");
                    self.failed(&record, Failure::Status(status)).await;
                    return;
                }
                Err(SubmitError::Transient(cause)) => {
                    tracing::warn!(id, upstream, %cause, attempt = attempts, "submit failed");
                    self.failed(&record, Failure::Transient).await;
                    return;
                }
                Err(SubmitError::Permanent(status)) => {
                    tracing::warn!(id, upstream, %status, "refused by the upstream");
                    self.finish(&record, MessageState::Undeliverable, Some(status.0), attempts)
                        .await;
                    return;
                }
                Err(SubmitError::NoMessageId) => {
                    // Accepted: sending again would duplicate it.
                    self.counters.unlinked.fetch_add(1, Relaxed);
                    tracing::warn!(
                        id,
                        upstream,
                        "accepted without an upstream id; receipts cannot be matched"
                    );
                    let update = StateUpdate {
                        state: MessageState::Enroute,
                        upstream_id: None,
                        error_code: None,
                        attempts: Some(attempts),
                        link: None,
                        at_ms: now_ms(),
                    };
                    self.settle(id, update).await;
                    return;
                }
                Err(SubmitError::Invalid(reason)) => {
                    tracing::warn!(id, upstream, %reason, "submit cannot be encoded");
                    self.finish(
                        &record,
                        MessageState::Undeliverable,
                        Some(CommandStatus::ESME_RSUBMITFAIL.0),
                        attempts,
                    )
                    .await;
                    return;
                }
            }
        }
        tracing::debug!(id, "no candidate upstream could take it; retry later");
        self.failed(&record, Failure::Transient).await;
    }

    /// Goes on with a message some of whose parts left already: the rest go
    /// to the same upstream (the one the carrier joins them at), from the
    /// first part not accepted yet. That upstream without a bound session is
    /// a transient failure: a message is never split across upstreams.
    async fn resume_parts(&self, record: &MessageRecord) {
        let id = record.id.as_str();
        let attempts = record.attempts.saturating_add(1);
        let Some((upstream, pool)) = record
            .upstream
            .as_deref()
            .and_then(|name| self.pools.get_key_value(name))
        else {
            tracing::warn!(
                id,
                upstream = ?record.upstream,
                parts_sent = record.parts_sent,
                "the upstream that has the first parts of this message is not configured; retry later"
            );
            self.failed(record, Failure::Transient).await;
            return;
        };
        let parts = parts::split(
            record.data_coding,
            &record.short_message,
            record.esm_class & ESM_UDHI != 0,
            pool.config().long_messages,
            parts::reference(id),
        );
        let from = usize::from(record.parts_sent);
        if from >= parts.len() {
            // Every part left (the ENROUTE update was lost, or the upstream's
            // long_messages changed since): nothing is left to send.
            tracing::warn!(
                id,
                upstream,
                parts_sent = record.parts_sent,
                parts = parts.len(),
                "every part of this message was sent already; ENROUTE"
            );
            let update = StateUpdate {
                state: MessageState::Enroute,
                upstream_id: None,
                error_code: None,
                attempts: Some(record.attempts),
                link: None,
                at_ms: now_ms(),
            };
            self.settle(id, update).await;
            return;
        }
        if !pool.is_available() {
            tracing::debug!(
                id,
                upstream,
                part = from + 1,
                "the upstream of this message's parts has no bound session; retry later"
            );
            self.failed(record, Failure::Transient).await;
            return;
        }
        if let PartsOutcome::FirstNotTaken = self.send_parts(record, upstream, pool, &parts, from, attempts).await {
            tracing::debug!(
                id,
                upstream,
                part = from + 1,
                "the upstream of this message's parts cannot take it now; retry later"
            );
            self.failed(record, Failure::Transient).await;
        }
    }

    /// Submits `parts[from..]` to `upstream` in order, each after the one
    /// before it was accepted, recording each accepted part (ACCEPTED with its
    /// link, so `parts_sent` grows; the last one ENROUTE, then the queue entry
    /// is acknowledged). A failure stops at that part: transient, retried
    /// later from it; permanent, UNDELIVERABLE (the parts before it left).
    ///
    /// [`PartsOutcome::FirstNotTaken`]: the upstream could not take the
    /// first part now (no bind, window full, backing off) and nothing was
    /// done; the caller tries the next candidate or retries.
    async fn send_parts(
        &self,
        record: &MessageRecord,
        upstream: &str,
        pool: &UpstreamPool,
        parts: &[Part],
        from: usize,
        attempts: u32,
    ) -> PartsOutcome {
        let id = record.id.as_str();
        let total = parts.len();
        for (k, part) in parts.iter().enumerate().skip(from) {
            let number = k + 1;
            let sm = match build_part_submit(record, part) {
                Ok(sm) => sm,
                Err(reason) => {
                    tracing::warn!(id, %reason, part = number, total, sent = k, "part cannot be submitted; UNDELIVERABLE (the parts before it were sent)");
                    self.finish(
                        record,
                        MessageState::Undeliverable,
                        Some(CommandStatus::ESME_RSUBMITFAIL.0),
                        attempts,
                    )
                    .await;
                    return PartsOutcome::Done;
                }
            };
            let upstream_id = match pool.submit(sm).await {
                Ok(upstream_id) => Some(upstream_id),
                // Accepted: sending it again would duplicate the part.
                Err(SubmitError::NoMessageId) => None,
                Err(SubmitError::NoBind | SubmitError::BackingOff)
                | Err(SubmitError::Transient(TransientCause::WindowFull | TransientCause::RateCap)) => {
                    if k == from {
                        return PartsOutcome::FirstNotTaken;
                    }
                    tracing::debug!(
                        id,
                        upstream,
                        part = number,
                        total,
                        "upstream cannot take the next part now; retry later from it"
                    );
                    self.failed(record, Failure::Transient).await;
                    return PartsOutcome::Done;
                }
                Err(SubmitError::Throttled(status)) | Err(SubmitError::Transient(TransientCause::Status(status))) => {
                    tracing::warn!(id, upstream, %status, part = number, total, sent = k, attempt = attempts, "part submit failed; retried from this part");
                    self.failed(record, Failure::Status(status)).await;
                    return PartsOutcome::Done;
                }
                Err(SubmitError::Transient(cause)) => {
                    tracing::warn!(id, upstream, %cause, part = number, total, sent = k, attempt = attempts, "part submit failed; retried from this part");
                    self.failed(record, Failure::Transient).await;
                    return PartsOutcome::Done;
                }
                Err(SubmitError::Permanent(status)) => {
                    tracing::warn!(id, upstream, %status, part = number, total, sent = k, "part refused by the upstream; UNDELIVERABLE (the parts before it were sent)");
                    self.finish(record, MessageState::Undeliverable, Some(status.0), attempts)
                        .await;
                    return PartsOutcome::Done;
                }
                Err(SubmitError::Invalid(reason)) => {
                    tracing::warn!(id, upstream, %reason, part = number, total, sent = k, "part cannot be encoded; UNDELIVERABLE (the parts before it were sent)");
                    self.finish(
                        record,
                        MessageState::Undeliverable,
                        Some(CommandStatus::ESME_RSUBMITFAIL.0),
                        attempts,
                    )
                    .await;
                    return PartsOutcome::Done;
                }
            };
            let style = pool.config().submit_id_style;
            let key = match upstream_id.as_deref().map(|u| (u, style.normalise(u))) {
                Some((_, Some(key))) => key,
                other => {
                    self.counters.unlinked.fetch_add(1, Relaxed);
                    tracing::warn!(
                        id,
                        upstream,
                        part = number,
                        upstream_id = other.map(|(u, _)| u),
                        submit_id_style = style.name(),
                        "part accepted without an id that fits the upstream's submit_id_style; its receipt cannot be matched"
                    );
                    // An empty key records the progress only.
                    String::new()
                }
            };
            tracing::debug!(id, upstream, part = number, total, upstream_id = ?upstream_id, "part submitted");
            let last = number == total;
            let update = StateUpdate {
                state: if last {
                    MessageState::Enroute
                } else {
                    MessageState::Accepted
                },
                upstream_id,
                error_code: None,
                attempts: Some(attempts),
                link: Some(UpstreamLink {
                    upstream: upstream.to_string(),
                    key,
                    part: k as u16,
                }),
                at_ms: now_ms(),
            };
            match self.timed(self.store.update(id, update)).await {
                Ok(true) if !last => {}
                Ok(_) => {
                    // Last part, or the record is gone or final (nothing to send it for).
                    self.ack(id).await;
                    return PartsOutcome::Done;
                }
                Err(e) => {
                    tracing::warn!(id, part = number, error = %e, "recording a sent part failed; the message returns when its lease runs out (this part may be sent again)");
                    return PartsOutcome::Done;
                }
            }
        }
        PartsOutcome::Done
    }

    /// A failed attempt: retry later, or give up by the policy.
    async fn failed(&self, record: &MessageRecord, failure: Failure) {
        let id = record.id.as_str();
        let attempts = record.attempts.saturating_add(1);
        let now = now_ms();
        let (decision, error_code) = {
            let mut rng = rand::rng();
            match failure {
                Failure::Status(status) => (
                    self.policy
                        .next_for_status(status, attempts, now, record.expires_at_ms, &mut rng),
                    Some(status.0),
                ),
                Failure::Transient => (self.policy.next(attempts, now, record.expires_at_ms, &mut rng), None),
            }
        };
        match decision {
            RetryDecision::RetryAt(at) => {
                tracing::debug!(
                    id,
                    attempt = attempts,
                    due_in_ms = at.saturating_sub(now),
                    "retry scheduled"
                );
                let update = StateUpdate {
                    state: MessageState::Accepted,
                    upstream_id: None,
                    error_code,
                    attempts: Some(attempts),
                    link: None,
                    at_ms: now,
                };
                if self.update(id, update).await {
                    if let Err(e) = self.timed(self.queue.retry(id, at)).await {
                        tracing::warn!(id, error = %e, "scheduling a retry failed; the message returns when its lease runs out");
                    }
                }
            }
            RetryDecision::GiveUpExpired => {
                tracing::warn!(id, attempt = attempts, "validity period over; EXPIRED");
                self.finish(record, MessageState::Expired, error_code, attempts).await;
            }
            RetryDecision::GiveUpAttempts => {
                tracing::warn!(id, attempt = attempts, "out of attempts; UNDELIVERABLE");
                self.finish(record, MessageState::Undeliverable, error_code, attempts)
                    .await;
            }
            RetryDecision::GiveUpPermanent => {
                tracing::warn!(id, attempt = attempts, "permanent failure; UNDELIVERABLE");
                self.finish(record, MessageState::Undeliverable, error_code, attempts)
                    .await;
            }
        }
    }

    /// Records a final state and removes the message from the queue, after
    /// queueing the client's receipt if it asked for one.
    async fn finish(&self, record: &MessageRecord, state: MessageState, error_code: Option<u32>, attempts: u32) {
        let id = record.id.as_str();
        tracing::debug!(id, state = state.name(), ?error_code, "final");
        let now = now_ms();
        if wants_receipt(record.registered_delivery, state) {
            let receipt = client_receipt(
                record,
                &receipt_state(state),
                error_code,
                now,
                now,
                self.settings.receipt_max_age,
            );
            match self.timed(self.outbox.push(vec![receipt])).await {
                Ok(()) => {
                    self.counters.gateway_receipts.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    self.counters.gateway_receipt_failures.fetch_add(1, Relaxed);
                    tracing::warn!(id, state = state.name(), error = %e, "queueing the client's receipt failed; the message returns when its lease runs out");
                    return;
                }
            }
        }
        let update = StateUpdate {
            state,
            upstream_id: None,
            error_code,
            attempts: Some(attempts),
            link: None,
            at_ms: now,
        };
        self.settle(id, update).await;
    }

    /// `true` when the record was updated, or is gone or final already (a
    /// cancel_sm won, or the validity ran out): nothing to keep it queued for.
    async fn update(&self, id: &str, update: StateUpdate) -> bool {
        let state = update.state;
        match self.timed(self.store.update(id, update)).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(
                    id,
                    state = state.name(),
                    "queued message has no record or is final already; outcome not recorded"
                );
                true
            }
            Err(e) => {
                tracing::warn!(id, state = state.name(), error = %e, "recording the outcome failed; the message returns when its lease runs out");
                false
            }
        }
    }

    /// Records the outcome and removes the queue entry in one step (see
    /// [`Queue::settle`]); on an error the lease brings the message back.
    async fn settle(&self, id: &str, update: StateUpdate) {
        let state = update.state;
        match self.settler.settle(id, update).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                id,
                state = state.name(),
                "queued message has no record or is final already; outcome not recorded"
            ),
            Err(e) => {
                tracing::warn!(id, state = state.name(), error = %e, "recording the outcome failed; the message returns when its lease runs out")
            }
        }
    }

    async fn ack(&self, id: &str) {
        if let Err(e) = self.timed(self.queue.ack(&[id.to_string()])).await {
            tracing::warn!(id, error = %e, "acknowledging the queue entry failed; it returns when its lease runs out");
        }
    }
}

/// The submit_sm for a stored message: the message in `short_message` when
/// it fits (at most 254 octets), in `message_payload` otherwise; the stored
/// TLVs as they came; `registered_delivery` 1 when the client asked for any
/// SMSC receipt (final or intermediate; SME acknowledgements are not the
/// carrier's to give), 0 otherwise.
pub fn build_submit(record: &MessageRecord) -> Result<SubmitSm, String> {
    let mut tlvs: Vec<Tlv> = decode_tlvs(&record.tlvs).map_err(|e| format!("stored TLVs: {e}"))?;
    let short_message = if record.short_message.len() <= MAX_SHORT_MESSAGE {
        record.short_message.clone()
    } else {
        tlvs.retain(|t| !matches!(t, Tlv::MessagePayload(_)));
        tlvs.push(Tlv::MessagePayload(record.short_message.clone()));
        Bytes::new()
    };
    submit_with(record, short_message, record.esm_class, tlvs)
}

/// The submit_sm for one part of a message cut by [`parts::split`]: the
/// part's octets in `short_message` (its UDH first, esm_class UDHI set), or
/// the SAR TLVs; the stored TLVs otherwise as they came, but without a
/// `message_payload` (the part is the message) or SAR TLVs of the client's
/// own (the part's replace them).
pub fn build_part_submit(record: &MessageRecord, part: &Part) -> Result<SubmitSm, String> {
    let mut tlvs: Vec<Tlv> = decode_tlvs(&record.tlvs).map_err(|e| format!("stored TLVs: {e}"))?;
    tlvs.retain(|t| {
        !matches!(
            t,
            Tlv::MessagePayload(_) | Tlv::SarMsgRefNum(_) | Tlv::SarTotalSegments(_) | Tlv::SarSegmentSeqnum(_)
        )
    });
    if let Some(sar) = part.sar {
        tlvs.push(Tlv::SarMsgRefNum(sar.msg_ref_num));
        tlvs.push(Tlv::SarTotalSegments(sar.total_segments));
        tlvs.push(Tlv::SarSegmentSeqnum(sar.segment_seqnum));
    }
    let esm_class = if part.udhi {
        record.esm_class | ESM_UDHI
    } else {
        record.esm_class & !ESM_UDHI
    };
    submit_with(record, part.short_message.clone(), esm_class, tlvs)
}

fn submit_with(
    record: &MessageRecord,
    short_message: Bytes,
    esm_class: u8,
    tlvs: Vec<Tlv>,
) -> Result<SubmitSm, String> {
    let source = Address::new(record.source.ton, record.source.npi, &record.source.addr)
        .map_err(|e| format!("source address: {e}"))?;
    let dest = Address::new(record.dest.ton, record.dest.npi, &record.dest.addr)
        .map_err(|e| format!("destination address: {e}"))?;
    let service_type = record
        .service_type
        .as_str()
        .try_into()
        .map_err(|e| format!("service_type: {e}"))?;
    Ok(SubmitSm {
        service_type,
        source,
        dest,
        esm_class,
        protocol_id: record.protocol_id,
        priority_flag: record.priority_flag,
        registered_delivery: u8::from(record.registered_delivery & 0x13 != 0),
        data_coding: record.data_coding,
        short_message,
        tlvs,
        ..SubmitSm::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AddressRecord;
    use bytes::BytesMut;

    fn record(message: &[u8], tlvs: &[Tlv], registered_delivery: u8) -> MessageRecord {
        let mut buf = BytesMut::new();
        smsmax_protocol::tlv::put_tlvs(tlvs, &mut buf).unwrap();
        MessageRecord {
            system_id: "alice".into(),
            service_type: "CMT".into(),
            source: AddressRecord {
                ton: 5,
                npi: 0,
                addr: "ACME".into(),
            },
            dest: AddressRecord {
                ton: 1,
                npi: 1,
                addr: "447700900123".into(),
            },
            esm_class: 0x40,
            protocol_id: 0,
            priority_flag: 1,
            registered_delivery,
            data_coding: 8,
            short_message: Bytes::copy_from_slice(message),
            tlvs: buf.freeze(),
            ..MessageRecord::example("id1")
        }
    }

    #[test]
    fn short_message_and_tlvs_are_relayed() {
        let sm = build_submit(&record(b"hi", &[Tlv::SarMsgRefNum(7)], 0x11)).unwrap();
        assert_eq!(&sm.short_message[..], b"hi");
        assert_eq!(sm.tlvs, vec![Tlv::SarMsgRefNum(7)]);
        assert_eq!(sm.registered_delivery, 1);
        assert_eq!((sm.esm_class, sm.data_coding, sm.priority_flag), (0x40, 8, 1));
        assert_eq!(sm.dest, Address::new(1, 1, "447700900123").unwrap());
        let none = build_submit(&record(b"hi", &[], 0x0C)).unwrap();
        assert_eq!(none.registered_delivery, 0, "only SME acks asked: no carrier receipt");
        assert_eq!(build_submit(&record(b"hi", &[], 0x10)).unwrap().registered_delivery, 1);
        assert_eq!(build_submit(&record(b"hi", &[], 0x02)).unwrap().registered_delivery, 1);
    }

    #[test]
    fn long_messages_go_in_message_payload() {
        let long = vec![b'x'; 300];
        let sm = build_submit(&record(&long, &[], 1)).unwrap();
        assert!(sm.short_message.is_empty());
        assert_eq!(sm.tlvs, vec![Tlv::MessagePayload(Bytes::from(long.clone()))]);
        assert_eq!(&sm.message()[..], &long[..]);
        let exact = build_submit(&record(&long[..254], &[], 1)).unwrap();
        assert_eq!(exact.short_message.len(), 254);
        assert!(exact.tlvs.is_empty());
    }

    #[test]
    fn parts_carry_their_udh_or_sar_tlvs() {
        let long: Vec<u8> = (0..400u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut r = record(&long, &[Tlv::SarMsgRefNum(99), Tlv::UserMessageReference(5)], 1);
        r.esm_class = 0;
        r.data_coding = 0;
        let udh = parts::split(0, &r.short_message, false, parts::LongMessages::Udh, 0x0102);
        assert_eq!(udh.len(), 3);
        let sm = build_part_submit(&r, &udh[1]).unwrap();
        assert_eq!(sm.esm_class, ESM_UDHI);
        assert_eq!(&sm.short_message[..], &udh[1].short_message[..]);
        assert_eq!(
            sm.tlvs,
            vec![Tlv::UserMessageReference(5)],
            "the client's SAR TLVs are dropped"
        );
        let sar = parts::split(0, &r.short_message, false, parts::LongMessages::Sar, 0x0102);
        let sm = build_part_submit(&r, &sar[2]).unwrap();
        assert_eq!(sm.esm_class, 0);
        assert_eq!(&sm.short_message[..], &long[306..]);
        assert_eq!(
            sm.tlvs,
            vec![
                Tlv::UserMessageReference(5),
                Tlv::SarMsgRefNum(0x0102),
                Tlv::SarTotalSegments(3),
                Tlv::SarSegmentSeqnum(3)
            ]
        );
    }

    #[test]
    fn corrupt_tlvs_are_refused() {
        let mut r = record(b"hi", &[], 1);
        r.tlvs = Bytes::from_static(&[0x02, 0x0C, 0, 9]);
        assert!(build_submit(&r).unwrap_err().contains("stored TLVs"));
    }
}
