//! The correlator: the one consumer of every upstream pool's inbound
//! channel (deliver_sm and data_sm from carriers).
//!
//! # Receipts (esm_class type 0x04 or 0x20, see [`super::inbound`])
//!
//! 1. Read id, state and error (TLVs first, then the text). No id or no
//!    state, or an id that does not fit the upstream's `receipt_id_style`:
//!    logged, counted as unparseable and answered **ESME_RX_P_APPN**
//!    ("permanent error, do not resend"). Storing it would be useless (there
//!    is no key to match it by later) and answering OK would hide a carrier
//!    problem from the carrier; a temporary error would make it resend
//!    forever.
//! 2. Normalise the id with the upstream's `receipt_id_style` and look it
//!    up (`Store::find_by_upstream`).
//! 3. Found: `Store::record_receipt` records it with its consequences in one
//!    transaction: the message's new state when the receipt is final, and
//!    the client's receipt ([`super::client_receipt`]) pushed to its outbox
//!    when its `registered_delivery` asked for this outcome (and the message
//!    was not final already, so a client never gets two final receipts).
//!    The upstream is answered ESME_ROK only after that returned. A
//!    duplicate (same state already recorded for the message and part) is
//!    answered ESME_ROK and counted.
//! 4. Not found (the receipt overtook the submit_sm_resp, which is still
//!    being recorded, or it is for a message we do not know): recorded as
//!    unmatched (durable) and answered ESME_ROK; then held in memory and
//!    looked up again with backoff (doubling from `hold_retry_min` to
//!    `hold_retry_max`) until `[receipts] hold_secs` after it arrived. A
//!    match is recorded like in 3 (the store removes the unmatched copy);
//!    giving up logs a warning and leaves it stored as unmatched. The hold
//!    set has at most `[receipts] hold_max` receipts; beyond, a receipt is
//!    only stored (and counted as unmatched). At start the unmatched
//!    receipts younger than `hold_secs` are loaded into the hold set.
//! 5. Any storage error or timeout: answered **ESME_RX_T_APPN**, so the
//!    carrier resends it later (a resend of what did get committed is a
//!    duplicate).
//!
//! # Multipart messages
//!
//! A receipt is matched to (our id, part). A message the relay sent in
//! several parts (its upstream's `long_messages` is `udh` or `sar` and
//! [`crate::relay::parts::count`] gives more than one part for it: the
//! relay and the correlator cut the same way) follows `[receipts]
//! part_policy`:
//! - its state changes only once every part has a final receipt, to the
//!   aggregate ([`super::parts::aggregate`]: DELIVERED if all were
//!   delivered, else the first part's in part order that was not, with that
//!   part's error);
//! - `per_part`: each part's receipt is forwarded to the client as it
//!   comes (our id; the store's duplicate rule keeps a resent one from being
//!   forwarded twice);
//! - `final`: one client receipt, with the aggregate, when the last part
//!   becomes final; nothing for intermediate states.
//!
//! The other parts' receipts are read with `Store::receipts`. Receipts of
//! the same message are handled one at a time ([`super::parts::IdLocks`]):
//! otherwise the last two parts' final receipts, handled together, would
//! each see the other as not final and no one would record the outcome.
//! Single-part messages take no lock and behave as before.
//!
//! # Mobile-originated messages (any other esm_class type)
//!
//! Routed by `[[mo_routes]]` on the destination address; pushed to that
//! client's outbox (fields and TLVs as received, esm_class with the
//! message type bits cleared, no message id) and answered ESME_ROK once the
//! push is durable. No rule: ESME_RINVDSTADR. Storage error: ESME_RX_T_APPN.
//!
//! # Flow control and shutdown
//!
//! At most `concurrency` PDUs and held-receipt retries are being handled
//! at once (retries at most half of them, so a large hold set cannot starve
//! new PDUs); the loop sleeps until the next held receipt is due. Beyond,
//! the inbound channels fill up and the upstream sessions answer with their
//! fallback status. Every PDU is answered within `answer_timeout` (keep it
//! under the sessions' inbound timeout).
//! [`CorrelatorHandle::stop`] stops taking PDUs, finishes those being
//! handled and drops the hold set (its receipts are stored as unmatched and
//! reloaded at the next start).

use std::{
    cmp::Ordering,
    collections::{BinaryHeap, HashMap},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use futures::{future::BoxFuture, stream::FuturesUnordered, FutureExt, Stream, StreamExt};
use smsmax_protocol::{
    receipt::{Receipt, ReceiptState},
    types::esm_class,
    CommandStatus,
};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::parts::{aggregate, IdLocks, PartOutcome};
use super::{
    client_receipt::{client_receipt, receipt_state, upstream_state, wants_receipt},
    counters::{bump, DlrCounters, DlrStats},
    inbound::{parse_receipt, InboundMessage},
    mo::MoRouter,
    sink::OutboxSink,
};
use crate::{
    config::PartPolicy,
    queue::outbox::OutboxEntry,
    relay::parts::{self as relay_parts, LongMessages, ESM_UDHI},
    smpp_time::now_ms,
    store::{MessageRecord, ReceiptOutcome, ReceiptRecord, StateUpdate, StorageError, Store, UpstreamMatch},
    upstream::{IdStyleName, UpstreamInbound},
};

/// How the correlator runs.
#[derive(Clone, Debug)]
pub struct CorrelatorSettings {
    /// `[receipts] hold_secs`: how long an unmatched receipt is looked up again.
    pub hold: Duration,
    /// `[receipts] hold_max`: most receipts held in memory.
    pub hold_max: usize,
    /// First pause before looking a held receipt up again; doubles per try.
    pub hold_retry_min: Duration,
    /// Longest pause between tries.
    pub hold_retry_max: Duration,
    /// `[outbox] max_age_secs`: how long a client receipt or MO message waits for its client.
    pub outbox_max_age: Duration,
    /// Longest handling of one PDU (every storage call included); beyond, ESME_RX_T_APPN.
    pub answer_timeout: Duration,
    /// Most PDUs and held-receipt retries handled at once. Each waits for a
    /// journal sync (~2-4 ms here), so this over the sync time caps the
    /// receipts per second. 1024 (was 256): with it, and the benchmark's sim
    /// deliver_sm window and outbox batch raised in the same run, the
    /// full-flow benchmark went from ~30 000 to ~37 000 messages per second.
    pub concurrency: usize,
    /// `[receipts] part_policy`: what the client gets for a message sent in parts.
    pub part_policy: PartPolicy,
    /// Each upstream's `long_messages` (how many parts a message went in).
    pub long_messages: HashMap<String, LongMessages>,
}

impl Default for CorrelatorSettings {
    fn default() -> Self {
        CorrelatorSettings {
            hold: Duration::from_secs(300),
            hold_max: 100_000,
            hold_retry_min: Duration::from_millis(50),
            hold_retry_max: Duration::from_secs(5),
            outbox_max_age: Duration::from_secs(72 * 3600),
            answer_timeout: Duration::from_secs(5),
            concurrency: 1024,
            part_policy: PartPolicy::Final,
            long_messages: HashMap::new(),
        }
    }
}

/// The running correlator.
pub struct CorrelatorHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<DlrCounters>,
}

impl CorrelatorHandle {
    /// The counters now.
    pub fn stats(&self) -> DlrStats {
        self.counters.snapshot()
    }

    /// The live counters.
    pub fn counters(&self) -> Arc<DlrCounters> {
        self.counters.clone()
    }

    /// Stops taking PDUs, finishes those in hand and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "correlator task failed");
        }
    }
}

/// The correlator entry point.
pub struct Correlator;

impl Correlator {
    /// Starts consuming `inbound` (one receiver per upstream pool).
    /// `receipt_styles` maps each upstream name to its `receipt_id_style`.
    pub fn start(
        inbound: Vec<mpsc::Receiver<UpstreamInbound>>,
        receipt_styles: HashMap<String, IdStyleName>,
        mo_routes: MoRouter,
        store: Arc<dyn Store>,
        outbox: OutboxSink,
        settings: CorrelatorSettings,
    ) -> CorrelatorHandle {
        let counters = Arc::new(DlrCounters::default());
        let inner = Arc::new(Inner {
            styles: receipt_styles,
            mo_routes,
            store,
            outbox,
            settings,
            counters: counters.clone(),
            id_locks: IdLocks::default(),
        });
        let streams = inbound.into_iter().map(|rx| -> InboundStream {
            Box::pin(futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            }))
        });
        let merged = futures::stream::select_all(streams);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(inner, merged, stopped));
        CorrelatorHandle { stop, task, counters }
    }
}

type InboundStream = Pin<Box<dyn Stream<Item = UpstreamInbound> + Send>>;

struct Inner {
    styles: HashMap<String, IdStyleName>,
    mo_routes: MoRouter,
    store: Arc<dyn Store>,
    outbox: OutboxSink,
    settings: CorrelatorSettings,
    counters: Arc<DlrCounters>,
    /// Serialises the receipts of one message sent in parts.
    id_locks: IdLocks,
}

/// A receipt stored as unmatched and looked up again until its deadline.
struct Held {
    receipt: ReceiptRecord,
    stat: ReceiptState,
    deadline_ms: u64,
    next_at: Instant,
    backoff: Duration,
    tries: u32,
}

/// [`Held`] ordered so that a `BinaryHeap` pops the earliest due first.
struct ByDue(Held);

impl PartialEq for ByDue {
    fn eq(&self, other: &Self) -> bool {
        self.0.next_at == other.0.next_at
    }
}
impl Eq for ByDue {}
impl PartialOrd for ByDue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByDue {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.next_at.cmp(&self.0.next_at)
    }
}

async fn run(
    inner: Arc<Inner>,
    mut inbound: futures::stream::SelectAll<InboundStream>,
    mut stopped: watch::Receiver<bool>,
) {
    let concurrency = inner.settings.concurrency.max(1);
    // Retries of held receipts never take more than half the slots, so that
    // a large hold set cannot starve new PDUs.
    let max_retries = (concurrency / 2).max(1);
    let mut retrying = 0usize;
    let mut held: BinaryHeap<ByDue> = BinaryHeap::new();
    inner.load_unmatched(&mut held).await;
    // Each future says whether it was a retry and gives back a receipt to hold.
    let mut in_flight: FuturesUnordered<BoxFuture<'static, (bool, Option<Held>)>> = FuturesUnordered::new();
    let mut inbound_open = true;
    tracing::info!(
        upstreams = inner.styles.len(),
        held = held.len(),
        "receipt correlator started"
    );
    loop {
        if *stopped.borrow() {
            break;
        }
        let now = Instant::now();
        while in_flight.len() < concurrency && retrying < max_retries && held.peek().is_some_and(|h| h.0.next_at <= now)
        {
            if let Some(ByDue(h)) = held.pop() {
                retrying += 1;
                let inner = inner.clone();
                in_flight.push(async move { (true, inner.retry(h).await) }.boxed());
            }
        }
        inner
            .counters
            .holding
            .store(held.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // Sleep until the next held receipt is due, when a retry could start then.
        let next_due = held
            .peek()
            .map(|h| h.0.next_at)
            .filter(|_| in_flight.len() < concurrency && retrying < max_retries);
        tokio::select! {
            _ = stopped.changed() => break,
            item = inbound.next(), if inbound_open && in_flight.len() < concurrency => match item {
                Some(item) => {
                    let inner = inner.clone();
                    in_flight.push(async move { (false, inner.handle(item).await) }.boxed());
                }
                None => inbound_open = false,
            },
            Some((was_retry, result)) = in_flight.next(), if !in_flight.is_empty() => {
                if was_retry {
                    retrying -= 1;
                }
                if let Some(h) = result {
                    inner.hold(&mut held, h);
                }
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or(now)), if next_due.is_some() => {}
        }
    }
    tracing::info!(in_flight = in_flight.len(), "receipt correlator stopping");
    while in_flight.next().await.is_some() {}
    if !held.is_empty() {
        tracing::info!(
            held = held.len(),
            "held receipts stay stored as unmatched and are looked up again at the next start"
        );
    }
    inner.counters.holding.store(0, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("receipt correlator stopped");
}

impl Inner {
    /// Puts a receipt in the hold set, or leaves it unmatched when the set is full.
    fn hold(&self, held: &mut BinaryHeap<ByDue>, h: Held) {
        if h.tries == 0 {
            if held.len() >= self.settings.hold_max {
                bump(&self.counters.unmatched);
                tracing::warn!(
                    upstream = %h.receipt.upstream,
                    key = %h.receipt.key,
                    hold_max = self.settings.hold_max,
                    "hold set full: receipt stays stored as unmatched (looked up again at the next start)"
                );
                return;
            }
            bump(&self.counters.held);
        }
        held.push(ByDue(h));
    }

    fn new_held(&self, receipt: ReceiptRecord, stat: ReceiptState) -> Held {
        let hold_ms = u64::try_from(self.settings.hold.as_millis()).unwrap_or(u64::MAX);
        Held {
            deadline_ms: receipt.received_at_ms.saturating_add(hold_ms),
            receipt,
            stat,
            next_at: Instant::now() + self.settings.hold_retry_min,
            backoff: self.settings.hold_retry_min,
            tries: 0,
        }
    }

    /// Loads the unmatched receipts still within `hold_secs` into the hold set.
    async fn load_unmatched(&self, held: &mut BinaryHeap<ByDue>) {
        let call = self.store.unmatched_receipts(self.settings.hold_max);
        let receipts = match self.timed(call).await {
            Ok(receipts) => receipts,
            Err(e) => {
                tracing::warn!(error = %e, "could not load unmatched receipts; they stay stored");
                return;
            }
        };
        let now = now_ms();
        let hold_ms = u64::try_from(self.settings.hold.as_millis()).unwrap_or(u64::MAX);
        for receipt in receipts {
            if receipt.matched.is_some() || receipt.received_at_ms.saturating_add(hold_ms) <= now {
                continue;
            }
            // The stored state comes from the TLVs or the text; keep the text's
            // spelling (ACCEPTD, UNKNOWN) for the client when it agrees.
            let stat = Receipt::parse_bytes(&receipt.text)
                .ok()
                .map(|r| r.stat)
                .filter(|stat| upstream_state(stat) == receipt.state)
                .unwrap_or_else(|| receipt_state(receipt.state));
            let mut h = self.new_held(receipt, stat);
            h.next_at = Instant::now();
            self.hold(held, h);
        }
    }

    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let limit = self.settings.answer_timeout;
        tokio::time::timeout(limit, call)
            .await
            .unwrap_or(Err(StorageError::Timeout(limit)))
    }

    fn max_age_ms(&self) -> u64 {
        u64::try_from(self.settings.outbox_max_age.as_millis()).unwrap_or(u64::MAX)
    }

    /// Handles one PDU from an upstream and answers it; returns a receipt to hold.
    async fn handle(self: Arc<Self>, item: UpstreamInbound) -> Option<Held> {
        let UpstreamInbound {
            upstream,
            bind,
            pdu,
            responder,
        } = item;
        let Some(message) = InboundMessage::from_pdu(&pdu) else {
            tracing::warn!(%upstream, bind, command = ?pdu.command_id(), "unexpected inbound request");
            responder.respond(CommandStatus::ESME_RINVCMDID);
            return None;
        };
        let limit = self.settings.answer_timeout;
        let (status, held) = if message.is_receipt() {
            match tokio::time::timeout(limit, self.receipt(&upstream, message)).await {
                Ok(answer) => answer,
                Err(_) => {
                    bump(&self.counters.storage_errors);
                    tracing::warn!(%upstream, ?limit, "receipt not stored in time; answered ESME_RX_T_APPN (the upstream resends)");
                    (CommandStatus::ESME_RX_T_APPN, None)
                }
            }
        } else {
            match tokio::time::timeout(limit, self.mo(&upstream, message)).await {
                Ok(status) => (status, None),
                Err(_) => {
                    bump(&self.counters.storage_errors);
                    tracing::warn!(%upstream, ?limit, "MO message not stored in time; answered ESME_RX_T_APPN (the upstream resends)");
                    (CommandStatus::ESME_RX_T_APPN, None)
                }
            }
        };
        if !responder.respond(status) {
            tracing::debug!(%upstream, bind, %status, "answered too late (or the session ended); the upstream resends");
        }
        held
    }

    async fn receipt(&self, upstream: &str, message: InboundMessage) -> (CommandStatus, Option<Held>) {
        let parsed = match parse_receipt(&message) {
            Ok(parsed) => parsed,
            Err(e) => {
                bump(&self.counters.unparseable);
                tracing::warn!(upstream, esm_class = message.esm_class, error = %e, "unreadable receipt; answered ESME_RX_P_APPN");
                return (CommandStatus::ESME_RX_P_APPN, None);
            }
        };
        let style = self.styles.get(upstream).copied().unwrap_or_default();
        let Some(key) = style.normalise(&parsed.id) else {
            bump(&self.counters.unparseable);
            tracing::warn!(
                upstream,
                id = %parsed.id,
                receipt_id_style = style.name(),
                "receipt id does not fit the upstream's receipt_id_style; answered ESME_RX_P_APPN"
            );
            return (CommandStatus::ESME_RX_P_APPN, None);
        };
        let receipt = ReceiptRecord {
            upstream: upstream.to_string(),
            key,
            matched: None,
            state: upstream_state(&parsed.stat),
            error_code: parsed.error_code,
            received_at_ms: now_ms(),
            // A copy: a slice would keep the session's whole read buffer
            // alive for as long as the receipt is held.
            text: bytes::Bytes::copy_from_slice(message.message()),
        };
        match self.try_match(&receipt, &parsed.stat).await {
            Ok(Some(_)) => (CommandStatus::ESME_ROK, None),
            Ok(None) => match self.store.record_receipt(receipt.clone(), None, Vec::new()).await {
                Ok(_) => {
                    tracing::debug!(upstream, key = %receipt.key, stat = %parsed.stat, "no message has this upstream id yet: stored as unmatched and held");
                    (CommandStatus::ESME_ROK, Some(self.new_held(receipt, parsed.stat)))
                }
                Err(e) => {
                    bump(&self.counters.storage_errors);
                    tracing::warn!(upstream, error = %e, "storing an unmatched receipt failed; answered ESME_RX_T_APPN");
                    (CommandStatus::ESME_RX_T_APPN, None)
                }
            },
            Err(e) => {
                bump(&self.counters.storage_errors);
                tracing::warn!(upstream, error = %e, "recording a receipt failed; answered ESME_RX_T_APPN");
                (CommandStatus::ESME_RX_T_APPN, None)
            }
        }
    }

    /// Looks the receipt's key up and, when it belongs to one of our
    /// messages, records it with its consequences. `None`: no match (yet).
    ///
    /// Its storage calls are not timed one by one: every caller bounds the
    /// whole of it by `answer_timeout` (one timer per receipt instead of
    /// one per call; a timer armed and dropped per call showed in the
    /// profile of the full flow).
    async fn try_match(
        &self,
        receipt: &ReceiptRecord,
        stat: &ReceiptState,
    ) -> Result<Option<ReceiptOutcome>, StorageError> {
        let found = self
            .store
            .find_record_by_upstream(&receipt.upstream, &receipt.key)
            .await?;
        let Some((matched, record)) = found else {
            return Ok(None);
        };
        if let Some(total) = record
            .as_ref()
            .map(|r| self.parts_of(r, &receipt.upstream))
            .filter(|&n| n > 1)
        {
            drop(record);
            return self.multipart(receipt, stat, matched, total).await.map(Some);
        }
        let state = receipt.state;
        let (update, forward) = match &record {
            Some(record) => {
                let update = state.is_final().then_some(StateUpdate {
                    state,
                    upstream_id: None,
                    error_code: receipt.error_code,
                    attempts: None,
                    link: None,
                    at_ms: receipt.received_at_ms,
                });
                let forward: Vec<OutboxEntry> =
                    if !record.state.is_final() && wants_receipt(record.registered_delivery, state) {
                        let now = now_ms();
                        let max_age = self.settings.outbox_max_age;
                        vec![client_receipt(
                            record,
                            stat,
                            receipt.error_code,
                            receipt.received_at_ms,
                            now,
                            max_age,
                        )]
                    } else {
                        Vec::new()
                    };
                (update, forward)
            }
            None => {
                tracing::warn!(id = %matched.id, upstream = %receipt.upstream, "a receipt matched a message without a record");
                (None, Vec::new())
            }
        };
        let client = record.as_ref().map(|r| r.system_id.clone());
        // Before recording: the record is the store's own (shared), and
        // recording the receipt changes it; held, it would be copied.
        drop(record);
        self.record(receipt, matched, client, update, forward).await.map(Some)
    }

    /// How many parts the relay sent `record` to `upstream` in.
    fn parts_of(&self, record: &MessageRecord, upstream: &str) -> u16 {
        let method = self.settings.long_messages.get(upstream).copied().unwrap_or_default();
        relay_parts::count(
            record.data_coding,
            &record.short_message,
            record.esm_class & ESM_UDHI != 0,
            method,
        )
    }

    /// A receipt for one part of a message sent in `total` parts (see the
    /// module documentation), under the message's id lock.
    async fn multipart(
        &self,
        receipt: &ReceiptRecord,
        stat: &ReceiptState,
        matched: UpstreamMatch,
        total: u16,
    ) -> Result<ReceiptOutcome, StorageError> {
        let _guard = self.id_locks.lock(&matched.id, self.settings.answer_timeout).await?;
        // Read again under the lock: another part's receipt may have just
        // made the message final.
        let Some(record) = self.store.get(&matched.id).await? else {
            return self.record(receipt, matched, None, None, Vec::new()).await;
        };
        let recorded = self.store.receipts(&matched.id).await?;
        let this = PartOutcome {
            part: matched.part,
            state: receipt.state,
            error_code: receipt.error_code,
        };
        let outcome = receipt
            .state
            .is_final()
            .then(|| aggregate(total, &recorded, this))
            .flatten();
        let update = outcome.map(|o| StateUpdate {
            state: o.state,
            upstream_id: None,
            error_code: o.error_code,
            attempts: None,
            link: None,
            at_ms: receipt.received_at_ms,
        });
        let open = !record.state.is_final();
        let now = now_ms();
        let max_age = self.settings.outbox_max_age;
        let forward = match self.settings.part_policy {
            PartPolicy::PerPart if open && wants_receipt(record.registered_delivery, receipt.state) => {
                vec![client_receipt(
                    &record,
                    stat,
                    receipt.error_code,
                    receipt.received_at_ms,
                    now,
                    max_age,
                )]
            }
            PartPolicy::Final => match outcome {
                Some(o) if open && wants_receipt(record.registered_delivery, o.state) => {
                    // The receipt's own spelling when the outcome is its own.
                    let agg_stat = if o == this {
                        stat.clone()
                    } else {
                        receipt_state(o.state)
                    };
                    vec![client_receipt(
                        &record,
                        &agg_stat,
                        o.error_code,
                        receipt.received_at_ms,
                        now,
                        max_age,
                    )]
                }
                _ => Vec::new(),
            },
            PartPolicy::PerPart => Vec::new(),
        };
        if let Some(o) = outcome {
            tracing::debug!(id = %matched.id, total, state = o.state.name(), from_part = o.part, "every part is final");
        }
        let client = Some(record.system_id.clone());
        self.record(receipt, matched, client, update, forward).await
    }

    /// Records a matched receipt with its consequences and counts it.
    async fn record(
        &self,
        receipt: &ReceiptRecord,
        matched: UpstreamMatch,
        client: Option<Arc<str>>,
        update: Option<StateUpdate>,
        forward: Vec<OutboxEntry>,
    ) -> Result<ReceiptOutcome, StorageError> {
        let state = receipt.state;
        let forwarded = forward.len() as u64;
        let id = matched.id.clone();
        let part = matched.part;
        let record_it = ReceiptRecord {
            matched: Some(matched),
            ..receipt.clone()
        };
        let outcome = self.store.record_receipt(record_it, update, forward).await?;
        match outcome {
            ReceiptOutcome::Recorded => {
                bump(&self.counters.matched);
                self.counters
                    .forwarded
                    .fetch_add(forwarded, std::sync::atomic::Ordering::Relaxed);
                if let Some(client) = client.filter(|_| forwarded > 0) {
                    self.outbox.pushed(&client);
                }
                tracing::debug!(id, part, upstream = %receipt.upstream, state = state.name(), forwarded, "receipt matched");
            }
            ReceiptOutcome::Duplicate => {
                bump(&self.counters.duplicates);
                tracing::debug!(id, part, upstream = %receipt.upstream, state = state.name(), "duplicate receipt");
            }
        }
        Ok(outcome)
    }

    /// Looks a held receipt up again; returns it while it should stay held.
    async fn retry(self: Arc<Self>, mut h: Held) -> Option<Held> {
        match self.timed(self.try_match(&h.receipt, &h.stat)).await {
            Ok(Some(outcome)) => {
                if outcome == ReceiptOutcome::Recorded {
                    bump(&self.counters.matched_after_hold);
                }
                return None;
            }
            Ok(None) => {}
            Err(e) => {
                bump(&self.counters.storage_errors);
                tracing::warn!(upstream = %h.receipt.upstream, error = %e, "looking a held receipt up failed; trying again");
            }
        }
        if now_ms() >= h.deadline_ms {
            bump(&self.counters.unmatched);
            tracing::warn!(
                upstream = %h.receipt.upstream,
                key = %h.receipt.key,
                tries = h.tries + 1,
                "no message matched this receipt within hold_secs; it stays stored as unmatched"
            );
            return None;
        }
        h.tries += 1;
        h.backoff = h.backoff.saturating_mul(2).min(self.settings.hold_retry_max);
        h.next_at = Instant::now() + h.backoff;
        Some(h)
    }

    /// Routes a mobile-originated message to its client's outbox.
    async fn mo(&self, upstream: &str, message: InboundMessage) -> CommandStatus {
        let Some(system_id) = self.mo_routes.route(&message.dest.addr) else {
            bump(&self.counters.mo_unrouted);
            tracing::warn!(upstream, dest = %message.dest.addr, "no [[mo_routes]] rule for an MO message; answered ESME_RINVDSTADR");
            return CommandStatus::ESME_RINVDSTADR;
        };
        let tlvs = match message.encoded_tlvs() {
            Ok(tlvs) => tlvs,
            Err(e) => {
                bump(&self.counters.unparseable);
                tracing::warn!(upstream, error = %e, "MO message TLVs cannot be stored; answered ESME_RX_P_APPN");
                return CommandStatus::ESME_RX_P_APPN;
            }
        };
        let now = now_ms();
        let entry = OutboxEntry {
            id: String::new(),
            system_id: Arc::from(system_id),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(self.max_age_ms()),
            attempts: 0,
            message_id: None,
            service_type: message.service_type,
            source: message.source,
            dest: message.dest,
            esm_class: message.esm_class & !esm_class::TYPE_MASK,
            protocol_id: message.protocol_id,
            data_coding: message.data_coding,
            short_message: message.short_message,
            tlvs,
        };
        match self.outbox.push(vec![entry]).await {
            Ok(()) => {
                bump(&self.counters.mo_routed);
                tracing::debug!(upstream, system_id, "MO message queued for its client");
                CommandStatus::ESME_ROK
            }
            Err(e) => {
                bump(&self.counters.storage_errors);
                tracing::warn!(upstream, system_id, error = %e, "queueing an MO message failed; answered ESME_RX_T_APPN");
                CommandStatus::ESME_RX_T_APPN
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        client::Responder,
        config::MoRouteConfig,
        queue::{outbox::Outbox, Queue},
        store::{embedded::EmbeddedStorage, AddressRecord, MessageRecord, MessageState, UpstreamLink},
    };
    use bytes::Bytes;
    use smsmax_protocol::{pdu::DeliverSm, tlv::Tlv, types::Address, Body, Pdu};
    use tempfile::TempDir;

    struct Harness {
        store: Arc<EmbeddedStorage>,
        /// The clients the sink's notifier was told about.
        told: Arc<std::sync::Mutex<Vec<String>>>,
        tx: mpsc::Sender<UpstreamInbound>,
        correlator: CorrelatorHandle,
        /// Where `store` lives; declared last so the storage is dropped (its
        /// file released) before the directory is removed.
        _dir: TempDir,
    }

    /// The real embedded storage (Store, Queue and Outbox) in a fresh
    /// temporary directory: the tests exercise the receipts contract as the
    /// gateway runs it, not a model of it.
    async fn storage() -> (TempDir, Arc<EmbeddedStorage>) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStorage::open(dir.path(), 64).await.unwrap();
        (dir, store)
    }

    fn settings() -> CorrelatorSettings {
        CorrelatorSettings {
            hold: Duration::from_millis(400),
            hold_retry_min: Duration::from_millis(10),
            hold_retry_max: Duration::from_millis(40),
            answer_timeout: Duration::from_secs(2),
            ..CorrelatorSettings::default()
        }
    }

    fn start_with((dir, store): (TempDir, Arc<EmbeddedStorage>), settings: CorrelatorSettings) -> Harness {
        let (tx, rx) = mpsc::channel(16);
        let styles = HashMap::from([("carrier".to_string(), IdStyleName::Decimal)]);
        let mo = MoRouter::new(&[MoRouteConfig {
            prefix: "4477".into(),
            system_id: "bob".into(),
        }]);
        let told = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = told.clone();
        let sink = OutboxSink::new(store.clone()).with_notifier(Arc::new(move |client: &str| {
            seen.lock().unwrap().push(client.to_string())
        }));
        let correlator = Correlator::start(vec![rx], styles, mo, store.clone(), sink, settings);
        Harness {
            store,
            told,
            tx,
            correlator,
            _dir: dir,
        }
    }

    fn record(id: &str, registered_delivery: u8) -> MessageRecord {
        MessageRecord {
            system_id: "alice".into(),
            source: AddressRecord {
                ton: 1,
                npi: 1,
                addr: "447700900001".into(),
            },
            dest: AddressRecord {
                ton: 1,
                npi: 1,
                addr: "447700900123".into(),
            },
            registered_delivery,
            ..MessageRecord::example(id)
        }
    }

    /// A message of ours, ENROUTE at `carrier` under upstream key `key`.
    async fn enroute(store: &EmbeddedStorage, id: &str, key: &str, registered_delivery: u8) {
        store
            .enqueue(crate::queue::shared([record(id, registered_delivery)]))
            .await
            .unwrap();
        link(store, id, key).await;
    }

    async fn link(store: &EmbeddedStorage, id: &str, key: &str) {
        let update = StateUpdate {
            state: MessageState::Enroute,
            upstream_id: Some(key.into()),
            error_code: None,
            attempts: Some(1),
            link: Some(UpstreamLink {
                upstream: "carrier".into(),
                key: key.into(),
                part: 0,
            }),
            at_ms: 2,
        };
        assert!(store.update(id, update).await.unwrap());
    }

    fn deliver(esm_class: u8, dest: &str, text: &str, tlvs: Vec<Tlv>) -> DeliverSm {
        DeliverSm {
            source: Address::new(1, 1, "447700900123").unwrap(),
            dest: Address::new(1, 1, dest).unwrap(),
            esm_class,
            short_message: Bytes::copy_from_slice(text.as_bytes()),
            tlvs,
            ..DeliverSm::default()
        }
    }

    impl Harness {
        async fn send(&self, sm: DeliverSm) -> CommandStatus {
            let (responder, answer) = Responder::channel();
            let item = UpstreamInbound {
                upstream: Arc::from("carrier"),
                bind: 0,
                pdu: Pdu::new(1, Body::DeliverSm(sm)),
                responder,
            };
            self.tx.send(item).await.unwrap();
            tokio::time::timeout(Duration::from_secs(5), answer)
                .await
                .expect("answered in time")
                .expect("answered")
        }

        async fn wait(&self, what: &str, check: impl Fn(&DlrStats) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !check(&self.correlator.stats()) {
                assert!(Instant::now() < deadline, "{what}: {:?}", self.correlator.stats());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    #[tokio::test]
    async fn matched_receipts_update_forward_and_count_duplicates() {
        let h = start_with(storage().await, settings());
        enroute(&h.store, "m1", "255", 1).await;
        enroute(&h.store, "m2", "256", 2).await;
        // Decimal style: leading zeros do not matter.
        let r1 = deliver(0x04, "447700900001", "id:000255 stat:DELIVRD err:000", vec![]);
        assert_eq!(h.send(r1.clone()).await, CommandStatus::ESME_ROK);
        assert_eq!(h.send(r1).await, CommandStatus::ESME_ROK);
        // TLVs first: the text says DELIVRD, message_state says UNDELIV.
        let r2 = deliver(
            0x04,
            "447700900001",
            "id:999 stat:DELIVRD",
            vec![Tlv::ReceiptedMessageId("256".try_into().unwrap()), Tlv::MessageState(5)],
        );
        assert_eq!(h.send(r2).await, CommandStatus::ESME_ROK);
        let stats = h.correlator.stats();
        assert_eq!(
            (stats.matched, stats.duplicates, stats.forwarded),
            (2, 1, 2),
            "{stats:?}"
        );
        assert_eq!(h.store.get("m1").await.unwrap().unwrap().state, MessageState::Delivered);
        assert_eq!(
            h.store.get("m2").await.unwrap().unwrap().state,
            MessageState::Undeliverable
        );
        let outbox = h.store.reserve_for("alice", 10, Duration::ZERO).await.unwrap();
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox[0].message_id.as_deref(), Some("m1"));
        assert!(std::str::from_utf8(&outbox[0].short_message)
            .unwrap()
            .starts_with("id:m1 "));
        assert!(std::str::from_utf8(&outbox[1].short_message)
            .unwrap()
            .contains("stat:UNDELIV"));
        assert_eq!(
            *h.told.lock().unwrap(),
            vec!["alice".to_string(); 2],
            "delivery told per forward"
        );
        h.correlator.stop().await;
    }

    /// A 400-character message sent to `carrier` (long_messages = udh) in
    /// three parts, with upstream keys `base`, `base + 1`, `base + 2`.
    async fn three_parts(store: &EmbeddedStorage, id: &str, base: u32) {
        let mut r = record(id, 1);
        r.short_message = Bytes::from(vec![b'a'; 400]);
        store.enqueue(crate::queue::shared([r])).await.unwrap();
        for part in 0..3u16 {
            let update = StateUpdate {
                state: if part == 2 {
                    MessageState::Enroute
                } else {
                    MessageState::Accepted
                },
                upstream_id: None,
                error_code: None,
                attempts: Some(1),
                link: Some(UpstreamLink {
                    upstream: "carrier".into(),
                    key: (base + u32::from(part)).to_string(),
                    part,
                }),
                at_ms: 2,
            };
            assert!(store.update(id, update).await.unwrap());
        }
        let stored = store.get(id).await.unwrap().unwrap();
        assert_eq!((stored.parts_sent, stored.upstream.as_deref()), (3, Some("carrier")));
    }

    fn multipart_settings(policy: PartPolicy) -> CorrelatorSettings {
        CorrelatorSettings {
            part_policy: policy,
            long_messages: HashMap::from([("carrier".to_string(), LongMessages::Udh)]),
            ..settings()
        }
    }

    fn texts(outbox: &[OutboxEntry]) -> Vec<String> {
        outbox
            .iter()
            .map(|e| String::from_utf8_lossy(&e.short_message).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn policy_final_sends_one_aggregate_receipt_when_every_part_is_final() {
        let h = start_with(storage().await, multipart_settings(PartPolicy::Final));
        three_parts(&h.store, "m", 100).await;
        for (key, stat) in [("100", "DELIVRD"), ("102", "UNDELIV err:042"), ("100", "DELIVRD")] {
            let sm = deliver(0x04, "447700900001", &format!("id:{key} stat:{stat}"), vec![]);
            assert_eq!(h.send(sm).await, CommandStatus::ESME_ROK);
            assert_eq!(h.store.get("m").await.unwrap().unwrap().state, MessageState::Enroute);
        }
        assert!(h
            .store
            .reserve_for("alice", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty());
        let sm = deliver(0x04, "447700900001", "id:101 stat:DELIVRD", vec![]);
        assert_eq!(h.send(sm).await, CommandStatus::ESME_ROK);
        let record = h.store.get("m").await.unwrap().unwrap();
        assert_eq!(
            (record.state, record.error_code),
            (MessageState::Undeliverable, Some(42))
        );
        let outbox = h.store.reserve_for("alice", 10, Duration::ZERO).await.unwrap();
        let got = texts(&outbox);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("id:m ") && got[0].contains("stat:UNDELIV"),
            "{got:?}"
        );
        h.correlator.stop().await;
    }

    #[tokio::test]
    async fn policy_per_part_forwards_each_part_once() {
        let h = start_with(storage().await, multipart_settings(PartPolicy::PerPart));
        three_parts(&h.store, "m", 200).await;
        for key in ["200", "201", "201", "202"] {
            let sm = deliver(0x04, "447700900001", &format!("id:{key} stat:DELIVRD"), vec![]);
            assert_eq!(h.send(sm).await, CommandStatus::ESME_ROK);
        }
        assert_eq!(h.store.get("m").await.unwrap().unwrap().state, MessageState::Delivered);
        let got = texts(&h.store.reserve_for("alice", 10, Duration::ZERO).await.unwrap());
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|t| t.starts_with("id:m ") && t.contains("stat:DELIVRD")));
        assert_eq!(h.correlator.stats().duplicates, 1);
        h.correlator.stop().await;
    }

    #[tokio::test]
    async fn concurrent_final_receipts_of_the_parts_give_one_aggregate() {
        let h = start_with(storage().await, multipart_settings(PartPolicy::Final));
        for round in 0..20u32 {
            let id = format!("m{round}");
            three_parts(&h.store, &id, 1000 + round * 10).await;
            let sends = (0..3).map(|k| {
                let sm = deliver(
                    0x04,
                    "447700900001",
                    &format!("id:{} stat:DELIVRD", 1000 + round * 10 + k),
                    vec![],
                );
                h.send(sm)
            });
            for status in futures::future::join_all(sends).await {
                assert_eq!(status, CommandStatus::ESME_ROK);
            }
            assert_eq!(h.store.get(&id).await.unwrap().unwrap().state, MessageState::Delivered);
        }
        let outbox = h.store.reserve_for("alice", 100, Duration::ZERO).await.unwrap();
        let mut ids: Vec<_> = outbox.iter().filter_map(|e| e.message_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!((outbox.len(), ids.len()), (20, 20), "one receipt per message");
        h.correlator.stop().await;
    }

    #[tokio::test]
    async fn forwarding_follows_registered_delivery() {
        let h = start_with(storage().await, settings());
        enroute(&h.store, "none", "1", 0).await;
        enroute(&h.store, "failures", "2", 2).await;
        enroute(&h.store, "intermediate", "3", 0x11).await;
        for (id, stat) in [("1", "DELIVRD"), ("2", "DELIVRD"), ("3", "ENROUTE"), ("3", "DELIVRD")] {
            let sm = deliver(0x04, "447700900001", &format!("id:{id} stat:{stat}"), vec![]);
            assert_eq!(h.send(sm).await, CommandStatus::ESME_ROK);
        }
        let outbox = h.store.reserve_for("alice", 10, Duration::ZERO).await.unwrap();
        let got: Vec<(Option<&str>, u8)> = outbox.iter().map(|e| (e.message_id.as_deref(), e.esm_class)).collect();
        assert_eq!(got, vec![(Some("intermediate"), 0x20), (Some("intermediate"), 0x04)]);
        assert_eq!(
            h.store.get("none").await.unwrap().unwrap().state,
            MessageState::Delivered
        );
        assert_eq!(
            h.store.get("intermediate").await.unwrap().unwrap().state,
            MessageState::Delivered
        );
        h.correlator.stop().await;
    }

    #[tokio::test]
    async fn an_early_receipt_is_held_until_its_link_is_recorded() {
        let h = start_with(storage().await, settings());
        h.store
            .enqueue(crate::queue::shared([record("late", 1)]))
            .await
            .unwrap();
        let sm = deliver(0x04, "447700900001", "id:77 stat:DELIVRD", vec![]);
        assert_eq!(h.send(sm).await, CommandStatus::ESME_ROK);
        assert_eq!(h.store.unmatched_count().await.unwrap(), 1, "stored as unmatched first");
        h.wait("held", |s| s.held == 1 && s.holding == 1).await;
        link(&h.store, "late", "77").await;
        h.wait("matched after hold", |s| s.matched_after_hold == 1).await;
        assert_eq!(h.store.unmatched_count().await.unwrap(), 0);
        assert_eq!(
            h.store.get("late").await.unwrap().unwrap().state,
            MessageState::Delivered
        );
        assert_eq!(h.store.depth_for("alice").await.unwrap(), 1);
        assert_eq!(h.correlator.stats().unmatched, 0);
        h.correlator.stop().await;
    }

    #[tokio::test]
    async fn an_unknown_receipt_stays_unmatched_after_hold_secs() {
        let h = start_with(storage().await, settings());
        let sm = deliver(0x04, "447700900001", "id:12 stat:UNDELIV err:001", vec![]);
        assert_eq!(h.send(sm).await, CommandStatus::ESME_ROK);
        h.wait("given up", |s| s.unmatched == 1 && s.holding == 0).await;
        let unmatched = h.store.unmatched_receipts(10).await.unwrap();
        assert_eq!(unmatched.len(), 1);
        assert_eq!(
            (unmatched[0].key.as_str(), unmatched[0].state, unmatched[0].error_code),
            ("12", MessageState::Undeliverable, Some(1))
        );
        h.correlator.stop().await;
    }

    #[tokio::test]
    async fn unmatched_receipts_are_reloaded_at_start() {
        let (dir, store) = storage().await;
        store.enqueue(crate::queue::shared([record("m", 1)])).await.unwrap();
        let old = ReceiptRecord {
            upstream: "carrier".into(),
            key: "5".into(),
            matched: None,
            state: MessageState::Delivered,
            error_code: None,
            received_at_ms: now_ms(),
            text: Bytes::from_static(b"id:5 stat:ACCEPTD"),
        };
        store.record_receipt(old, None, Vec::new()).await.unwrap();
        let h = start_with((dir, store), settings());
        h.wait("loaded", |s| s.held == 1).await;
        link(&h.store, "m", "5").await;
        h.wait("matched", |s| s.matched_after_hold == 1).await;
        let outbox = h.store.reserve_for("alice", 10, Duration::ZERO).await.unwrap();
        assert!(
            std::str::from_utf8(&outbox[0].short_message)
                .unwrap()
                .contains("stat:ACCEPTD"),
            "the upstream's spelling is kept"
        );
        h.correlator.stop().await;
    }

    #[tokio::test]
    async fn the_hold_set_is_bounded() {
        let h = start_with(
            storage().await,
            CorrelatorSettings {
                hold_max: 1,
                hold: Duration::from_secs(30),
                ..settings()
            },
        );
        for id in ["1", "2"] {
            let sm = deliver(0x04, "447700900001", &format!("id:{id} stat:DELIVRD"), vec![]);
            assert_eq!(h.send(sm).await, CommandStatus::ESME_ROK);
        }
        h.wait("one held, one left unmatched", |s| s.held == 1 && s.unmatched == 1)
            .await;
        assert_eq!(h.store.unmatched_count().await.unwrap(), 2, "both stored");
        h.correlator.stop().await;
    }

    #[tokio::test]
    async fn unreadable_receipts_mo_routes_and_storage_failures() {
        let h = start_with(storage().await, settings());
        // No id / an id that is not decimal (the upstream's receipt_id_style).
        let unreadable = deliver(0x04, "447700900001", "garbage", vec![]);
        assert_eq!(h.send(unreadable).await, CommandStatus::ESME_RX_P_APPN);
        let not_decimal = deliver(0x04, "447700900001", "id:ZZ stat:DELIVRD", vec![]);
        assert_eq!(h.send(not_decimal).await, CommandStatus::ESME_RX_P_APPN);
        assert_eq!(h.correlator.stats().unparseable, 2);
        // MO: routed by destination prefix, type bits cleared, TLVs kept.
        let mo = deliver(0x48, "447700900999", "hi", vec![Tlv::UserMessageReference(9)]);
        assert_eq!(h.send(mo).await, CommandStatus::ESME_ROK);
        let unrouted = deliver(0x00, "33612", "hi", vec![]);
        assert_eq!(h.send(unrouted).await, CommandStatus::ESME_RINVDSTADR);
        let bob = h.store.reserve_for("bob", 10, Duration::ZERO).await.unwrap();
        assert_eq!(bob.len(), 1);
        assert_eq!((bob[0].esm_class, bob[0].message_id.as_deref()), (0x40, None));
        assert_eq!(&bob[0].short_message[..], b"hi");
        assert_eq!(*h.told.lock().unwrap(), vec!["bob".to_string()]);
        assert_eq!(
            smsmax_protocol::tlv::decode_tlvs(&bob[0].tlvs).unwrap(),
            vec![Tlv::UserMessageReference(9)]
        );
        // Storage down (closed: every call now fails with `Closed`):
        // temporary error for receipts and MO alike.
        h.store.close().await.unwrap();
        let receipt = deliver(0x04, "447700900001", "id:1 stat:DELIVRD", vec![]);
        assert_eq!(h.send(receipt).await, CommandStatus::ESME_RX_T_APPN);
        let mo = deliver(0x00, "447700900999", "hi", vec![]);
        assert_eq!(h.send(mo).await, CommandStatus::ESME_RX_T_APPN);
        let stats = h.correlator.stats();
        assert_eq!(
            (stats.mo_routed, stats.mo_unrouted, stats.storage_errors),
            (1, 1, 2),
            "{stats:?}"
        );
        h.correlator.stop().await;
    }
}
