//! Receipts and MO messages on their way to the ESME.
//!
//! Every deliver_sm the simulator originates is an [`Outgoing`]. It is
//! admitted against one bound (`max_pending`, counted as dropped beyond),
//! waits in a time-ordered schedule for its delay, then in the outbox of its
//! system_id until a receiver or transceiver bind of that system_id with
//! room in its window takes it. Binds take from the shared outbox as their
//! windows free up, so the receipts spread over the binds (each bind takes
//! turns by window room rather than by strict rotation) and nothing waits
//! behind a slow one. An outbox with no bind keeps its receipts until one
//! binds. An unanswered deliver_sm goes back to the front of the outbox once
//! (to whichever bind takes it next); a connection that closes returns its
//! unanswered deliver_sm without spending their retry.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use smsmax_protocol::{
    pdu::DeliverSm,
    receipt::{Receipt, ReceiptState},
    text::decode_short_message,
    tlv::NetworkErrorCode,
    types::{esm_class, Address, MessageId},
    Tlv,
};
use tokio::sync::{oneshot, watch, Notify};

use super::stats::{bump, Counters};
use crate::smpp_time;

/// Sends a deliver_sm gets before it is given up: the first and one retry.
pub(crate) const MAX_ATTEMPTS: u8 = 2;

/// What a deliver_sm carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Receipt(ReceiptState),
    Mo,
}

/// One deliver_sm to send to a system_id's receiver.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub system_id: Arc<str>,
    pub kind: Kind,
    pub body: DeliverSm,
    /// Sends so far that count towards [`MAX_ATTEMPTS`] (a send lost with
    /// its connection does not).
    pub attempts: u8,
    /// Counted as sent (once, whatever the retries).
    pub counted: bool,
    /// Told when the client has accepted the deliver_sm (for receipts that
    /// must precede their submit_sm_resp).
    pub answered: Option<oneshot::Sender<()>>,
}

/// Items waiting for their delay, in buckets of one millisecond.
///
/// Not a binary heap of items: with receipts due 100 to 500 ms after tens
/// of thousands of submits a second, the heap held tens of thousands of
/// entries and its `pop` was 8% of the simulator's CPU in the full-flow
/// profile. Delays are configured in milliseconds, so a bucket per
/// millisecond loses nothing: a few hundred buckets, items in arrival order
/// within one (first in, first out, as the heap's sequence numbers kept
/// them), none released before it is due.
struct Schedule {
    /// Bucket `n` holds the items due at `start + n` ms.
    start: Instant,
    buckets: BTreeMap<u64, Vec<Outgoing>>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            start: Instant::now(),
            buckets: BTreeMap::new(),
        }
    }
}

impl Schedule {
    /// The first bucket not before `at` (rounded up: never early).
    fn bucket(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.start);
        let ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        ms.saturating_add(u64::from(!since.subsec_nanos().is_multiple_of(1_000_000)))
    }

    fn at(&self, bucket: u64) -> Instant {
        self.start + Duration::from_millis(bucket)
    }

    /// Adds `item`, due at `due`; true when it is now the earliest.
    fn push(&mut self, due: Instant, item: Outgoing) -> bool {
        let bucket = self.bucket(due);
        let earliest = self.buckets.first_key_value().is_none_or(|(&first, _)| bucket < first);
        self.buckets.entry(bucket).or_default().push(item);
        earliest
    }

    /// The items of the earliest bucket if it is due by `now`.
    fn pop_due(&mut self, now: Instant) -> Option<Vec<Outgoing>> {
        let (&first, _) = self.buckets.first_key_value()?;
        if self.at(first) > now {
            return None;
        }
        self.buckets.pop_first().map(|(_, items)| items)
    }

    /// When the earliest bucket is due.
    fn next_due(&self) -> Option<Instant> {
        self.buckets.first_key_value().map(|(&bucket, _)| self.at(bucket))
    }
}

struct Outbox {
    ready: VecDeque<Outgoing>,
    /// Bumped whenever `ready` gains an item; binds watch it.
    bell: watch::Sender<u64>,
}

impl Outbox {
    fn new() -> Self {
        Outbox {
            ready: VecDeque::new(),
            bell: watch::channel(0).0,
        }
    }

    fn ring(&self) {
        self.bell.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[derive(Default)]
struct Inner {
    scheduled: Schedule,
    outboxes: HashMap<Arc<str>, Outbox>,
}

impl Inner {
    fn outbox(&mut self, system_id: &Arc<str>) -> &mut Outbox {
        self.outboxes.entry(system_id.clone()).or_insert_with(Outbox::new)
    }
}

/// The schedule and the per-system_id outboxes.
pub(crate) struct Router {
    inner: Mutex<Inner>,
    timer: Notify,
    capacity: usize,
    held: AtomicUsize,
    counters: Arc<Counters>,
}

impl Router {
    pub fn new(capacity: usize, counters: Arc<Counters>) -> Self {
        Router {
            inner: Mutex::new(Inner::default()),
            timer: Notify::new(),
            capacity,
            held: AtomicUsize::new(0),
            counters,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not wedge the simulator; the data stays usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a new receipt or MO message; `false` (and counted
    /// as dropped) when `max_pending` are held already.
    pub fn admit(&self, kind: &Kind) -> bool {
        let taken = self
            .held
            .fetch_update(Relaxed, Relaxed, |h| (h < self.capacity).then_some(h + 1))
            .is_ok();
        match (kind, taken) {
            (Kind::Receipt(_), true) => bump(&self.counters.receipts_pending),
            (Kind::Mo, true) => bump(&self.counters.mo_pending),
            (Kind::Receipt(_), false) => bump(&self.counters.receipts_dropped),
            (Kind::Mo, false) => bump(&self.counters.mo_dropped),
        }
        taken
    }

    /// Releases an admitted item's place (acknowledged or given up).
    pub fn release(&self, item: &Outgoing) {
        self.held.fetch_sub(1, Relaxed);
        match item.kind {
            Kind::Receipt(_) => self.counters.receipts_pending.fetch_sub(1, Relaxed),
            Kind::Mo => self.counters.mo_pending.fetch_sub(1, Relaxed),
        };
    }

    /// Queues an admitted item: at once when `delay` is zero, else when it is due.
    pub fn schedule(&self, item: Outgoing, delay: Duration) {
        let mut inner = self.lock();
        if delay.is_zero() {
            let outbox = inner.outbox(&item.system_id);
            outbox.ready.push_back(item);
            outbox.ring();
            return;
        }
        let earliest = inner.scheduled.push(Instant::now() + delay, item);
        drop(inner);
        if earliest {
            self.timer.notify_one();
        }
    }

    /// Puts an item that was sent but not acknowledged back at the front of its outbox.
    pub fn requeue(&self, item: Outgoing) {
        let mut inner = self.lock();
        let outbox = inner.outbox(&item.system_id);
        outbox.ready.push_front(item);
        outbox.ring();
    }

    /// Up to `max` items ready for `system_id`.
    pub fn take(&self, system_id: &Arc<str>, max: usize) -> Vec<Outgoing> {
        if max == 0 {
            return Vec::new();
        }
        let mut inner = self.lock();
        match inner.outboxes.get_mut(system_id) {
            Some(outbox) => {
                let n = max.min(outbox.ready.len());
                outbox.ready.drain(..n).collect()
            }
            None => Vec::new(),
        }
    }

    /// A bell that rings whenever `system_id`'s outbox gains an item.
    pub fn subscribe(&self, system_id: &Arc<str>) -> watch::Receiver<u64> {
        self.lock().outbox(system_id).bell.subscribe()
    }

    /// Whether a receiver or transceiver of `system_id` is bound (listening to its bell).
    pub fn has_receiver(&self, system_id: &Arc<str>) -> bool {
        self.lock()
            .outboxes
            .get(system_id)
            .is_some_and(|outbox| outbox.bell.receiver_count() > 0)
    }

    /// Moves due items into their outboxes; returns when the next one is due.
    fn release_due(&self, now: Instant) -> Option<Instant> {
        let mut inner = self.lock();
        let mut rung: Vec<Arc<str>> = Vec::new();
        while let Some(due) = inner.scheduled.pop_due(now) {
            for item in due {
                let system_id = item.system_id.clone();
                inner.outbox(&system_id).ready.push_back(item);
                if !rung.contains(&system_id) {
                    rung.push(system_id);
                }
            }
        }
        for system_id in &rung {
            if let Some(outbox) = inner.outboxes.get(system_id) {
                outbox.ring();
            }
        }
        inner.scheduled.next_due()
    }

    /// Releases scheduled items as they fall due, until shutdown.
    pub async fn run_timer(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let now = Instant::now();
            // Wake at least once a second even with nothing scheduled.
            let next = self.release_due(now).unwrap_or(now + Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = self.timer.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// What a receipt or MO message needs from the submit it answers.
pub(crate) struct SubmitInfo {
    pub source: Address<21>,
    pub dest: Address<21>,
    pub data_coding: u8,
    pub esm_class: u8,
    pub message: Bytes,
    pub at_ms: u64,
}

/// Converts an address of another width (data_sm's 65) to the 21 of deliver_sm;
/// one that does not fit becomes empty.
pub(crate) fn address21<const N: usize>(address: &Address<N>) -> Address<21> {
    let addr = address.addr.to_string_lossy();
    Address::new(address.ton, address.npi, &addr).unwrap_or_default()
}

/// The first 20 characters of the submitted text, as printable ASCII.
fn text_start(info: &SubmitInfo) -> String {
    let mut octets: &[u8] = &info.message;
    if info.esm_class & esm_class::UDHI != 0 {
        let udh_len = octets.first().map_or(0, |l| usize::from(*l) + 1);
        octets = octets.get(udh_len..).unwrap_or_default();
    }
    let text = decode_short_message(info.data_coding, octets)
        .unwrap_or_else(|_| octets.iter().map(|&b| char::from(b)).collect());
    text.chars()
        .take(smsmax_protocol::receipt::RECEIPT_TEXT_MAX_CHARS)
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect()
}

/// The GSM network error a failure outcome reports (0 for success).
pub(crate) fn error_code(state: &ReceiptState) -> u16 {
    match state {
        ReceiptState::Undeliverable => 1, // unknown subscriber
        ReceiptState::Expired => 27,      // absent subscriber
        ReceiptState::Rejected => 11,     // teleservice not provisioned
        ReceiptState::Deleted => 6,       // absent subscriber (SM)
        ReceiptState::Unknown => 34,      // system failure
        _ => 0,
    }
}

/// Whether an outcome is a delivery failure (for registered_delivery 2).
pub(crate) fn is_failure(state: &ReceiptState) -> bool {
    !matches!(
        state,
        ReceiptState::Delivered | ReceiptState::Accepted | ReceiptState::Enroute
    )
}

/// The receipt deliver_sm: from the submit's destination to its source,
/// esm_class 0x04, Appendix B text and `receipted_message_id` +
/// `message_state` (+ `network_error_code` for failures).
pub(crate) fn receipt_body(id: &str, state: &ReceiptState, info: &SubmitInfo, done_ms: u64) -> DeliverSm {
    let err = error_code(state);
    let delivered = u32::from(*state == ReceiptState::Delivered);
    let mut receipt = Receipt::new(id, state.clone())
        .with_sub(1)
        .with_dlvrd(delivered)
        .with_err_code(u32::from(err))
        .with_text(text_start(info));
    if let Some(date) = smpp_time::receipt_date(info.at_ms) {
        receipt = receipt.with_submit_date(date);
    }
    if let Some(date) = smpp_time::receipt_date(done_ms) {
        receipt = receipt.with_done_date(date);
    }
    let mut tlvs = vec![Tlv::ReceiptedMessageId(MessageId::try_from(id).unwrap_or_default())];
    if let Some(value) = state.message_state() {
        tlvs.push(Tlv::MessageState(value));
    }
    if is_failure(state) {
        tlvs.push(Tlv::NetworkErrorCode(NetworkErrorCode {
            network_type: 3,
            error_code: err,
        }));
    }
    DeliverSm {
        source: info.dest.clone(),
        dest: info.source.clone(),
        esm_class: esm_class::DELIVERY_RECEIPT,
        short_message: Bytes::from(receipt.to_text()),
        tlvs,
        ..DeliverSm::default()
    }
}

/// A mobile-originated deliver_sm answering the `n`-th MO: from the
/// submit's destination to its source, esm_class 0, GSM text.
pub(crate) fn mo_body(n: u64, info: &SubmitInfo) -> DeliverSm {
    DeliverSm {
        source: info.dest.clone(),
        dest: info.source.clone(),
        esm_class: 0,
        data_coding: 0,
        short_message: Bytes::from(format!("MO reply {n} from smsmax sim")),
        ..DeliverSm::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(text: &str) -> SubmitInfo {
        SubmitInfo {
            source: Address::new(1, 1, "447700900001").unwrap(),
            dest: Address::new(1, 1, "447700900002").unwrap(),
            data_coding: 0,
            esm_class: 0,
            message: Bytes::copy_from_slice(text.as_bytes()),
            at_ms: 1_767_268_800_000,
        }
    }

    #[test]
    fn receipt_text_and_tlvs() {
        let body = receipt_body(
            "00ff",
            &ReceiptState::Undeliverable,
            &info("hello world, this is longer than twenty"),
            1_767_268_860_000,
        );
        let text = std::str::from_utf8(&body.short_message).unwrap();
        assert_eq!(
            text,
            "id:00ff sub:001 dlvrd:000 submit date:2601011200 done date:2601011201 stat:UNDELIV err:001 text:hello world, this is"
        );
        assert!(body.is_delivery_receipt());
        assert_eq!(body.dest.addr.as_str(), Some("447700900001"));
        assert!(body.tlvs.contains(&Tlv::MessageState(5)));
        assert!(body
            .tlvs
            .contains(&Tlv::ReceiptedMessageId(MessageId::try_from("00ff").unwrap())));
        let parsed = Receipt::parse(text).unwrap();
        assert_eq!(parsed.id, "00ff");
        assert_eq!(parsed.stat, ReceiptState::Undeliverable);
    }

    #[test]
    fn schedule_is_never_early_and_first_in_first_out() {
        let mut schedule = Schedule::default();
        let start = schedule.start;
        let item = |n: u64| Outgoing {
            system_id: Arc::from("alice"),
            kind: Kind::Mo,
            body: mo_body(n, &info("x")),
            attempts: 0,
            counted: false,
            answered: None,
        };
        let ms = |n: u64| Duration::from_millis(n);
        assert!(schedule.push(start + ms(10) + Duration::from_nanos(1), item(0)));
        assert!(!schedule.push(start + ms(11), item(1)));
        assert!(schedule.push(start + ms(5), item(2)));
        assert_eq!(schedule.next_due(), Some(start + ms(5)));
        assert!(schedule.pop_due(start + ms(4)).is_none());
        assert_eq!(schedule.pop_due(start + ms(5)).map(|v| v.len()), Some(1));
        // Due 10 ms and 1 ns after the start: not released at 10 ms.
        assert!(schedule.pop_due(start + ms(10)).is_none());
        let bodies = |items: Vec<Outgoing>| -> Vec<Bytes> { items.into_iter().map(|i| i.body.short_message).collect() };
        assert_eq!(
            schedule.pop_due(start + ms(11)).map(bodies),
            Some(vec![
                mo_body(0, &info("x")).short_message,
                mo_body(1, &info("x")).short_message
            ])
        );
        assert!(schedule.next_due().is_none());
        // Due before the start (the clock cannot go back, but a zero delay
        // rounds to the first bucket).
        schedule.push(start, item(3));
        assert_eq!(schedule.pop_due(start).map(|v| v.len()), Some(1));
    }

    #[test]
    fn schedule_releases_in_due_order() {
        let router = Router::new(10, Arc::new(Counters::default()));
        let system_id: Arc<str> = Arc::from("alice");
        let item = |n: u64| Outgoing {
            system_id: system_id.clone(),
            kind: Kind::Mo,
            body: mo_body(n, &info("x")),
            attempts: 0,
            counted: false,
            answered: None,
        };
        assert!(router.admit(&Kind::Mo));
        router.schedule(item(2), Duration::from_millis(20));
        router.schedule(item(1), Duration::from_millis(10));
        router.schedule(item(0), Duration::ZERO);
        assert_eq!(router.take(&system_id, 10).len(), 1);
        router.release_due(Instant::now() + Duration::from_millis(15));
        let taken = router.take(&system_id, 10);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].body.short_message, mo_body(1, &info("x")).short_message);
        assert!(router.release_due(Instant::now() + Duration::from_secs(1)).is_none());
        assert_eq!(router.take(&system_id, 10).len(), 1);
    }
}
