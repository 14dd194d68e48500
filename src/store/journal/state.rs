//! The journal engine's state: every record, queue entry, link, receipt and
//! outbox entry, in memory, changed only by [`State::apply`].
//!
//! The committer applies each change here and appends the same [`Redo`] to
//! the journal; replay at open applies the journal's redos in order. Reads
//! (`get`, `find_by_upstream`, ...) and the lease bookkeeping of `reserve`
//! work on this state directly under its lock: leases are not durable (a
//! lease lost in a crash hands the entry out again, at-least-once), so they
//! never reach the journal.
//!
//! # Published only once durable
//!
//! A queue entry (or outbox entry) written by a batch is *pending* until
//! that batch's journal frame is synced: `reserve` cannot hand it out, so
//! the relay never submits a message to a carrier (nor the outbox a receipt
//! to a client) that a crash could still erase. The committer hands each
//! frame's entries over with the frame's number
//! ([`State::publish_when_durable`]); whoever locks the state once that frame
//! is synced publishes them ([`State::publish_durable`]).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::due::DueIndex;
use super::id::Id;
use super::redo::Redo;
use crate::queue::outbox::OutboxEntry;
use crate::store::{
    ChangeOutcome, MessageRecord, MessageState, ReceiptOutcome, ReceiptRecord, Replacement, StateUpdate, UpstreamMatch,
};

/// The state's maps hash with foldhash (seeded per process, so keys a peer
/// chooses, like an upstream's message ids, cannot be aimed at one bucket):
/// several times cheaper than SipHash, which took ~1.5% of the gateway's
/// CPU in the full-flow profile.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// Where a message's queue entry is.
///
/// There is no "not synced yet" place: an entry is `Due` from the moment
/// its change is applied, but goes into the due index only when its journal
/// frame is durable ([`State::publish`], which then needs no lookup of the
/// message). A removal or a retry before that finds nothing to take out of
/// the index, and the entry published later is stale: `reserve` tells it by
/// its `seq` and drops it. (Looking the message up again to publish was a
/// quarter of the committer thread's samples at 4 binds x window 256.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QueuePlace {
    /// In the due index, or will be once its frame is durable: `reserve`
    /// may hand it out.
    Due,
    /// Handed out until this instant.
    Leased(Instant),
}

/// Where an outbox entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Written by a batch that is not synced yet.
    Pending,
    /// In the due index: `reserve` may hand it out.
    Due,
    /// Handed out until this instant.
    Leased(Instant),
}

#[derive(Clone, Copy, Debug)]
struct QueueEntry {
    due_at_ms: u64,
    /// Tells this entry from an older one of the same message in the
    /// indexes (a retry makes a new entry).
    seq: u64,
    place: QueuePlace,
}

struct Slot {
    /// Shared with a snapshot being encoded, if any; changed copy-on-write
    /// (`Arc::make_mut`), so a snapshot sees the record as it was.
    record: Arc<MessageRecord>,
    queued: Option<QueueEntry>,
    /// The upstream links recorded for this message (removed with it,
    /// where they still point here). Mostly none or one: a boxed slice,
    /// 8 octets smaller than a `Vec` in every message's slot (see [`Id`]
    /// for why slot size matters), rebuilt on the rare push.
    links: Box<[Arc<Link>]>,
}

/// An upstream id of one of our messages, as `Redo::SnapshotLinks` holds it.
/// Shared by the lookup set, the message's slot and a snapshot being
/// encoded; never changed once stored (a new link replaces it).
#[derive(Debug)]
struct Link {
    upstream: Arc<str>,
    /// The normalised upstream id.
    key: String,
    found: UpstreamMatch,
}

/// A [`Link`] in its upstream's lookup set, found by its key alone.
#[derive(Debug)]
struct ByKey(Arc<Link>);

impl std::borrow::Borrow<str> for ByKey {
    fn borrow(&self) -> &str {
        &self.0.key
    }
}

impl std::hash::Hash for ByKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for ByKey {}

/// An entry that becomes visible once its batch is synced.
#[derive(Debug)]
pub(super) enum Publish {
    /// A message's queue entry, as the due index holds it.
    Message {
        due_at_ms: u64,
        seq: u64,
        id: Id,
    },
    Outbox(u64),
}

/// The answer a redo gives its caller.
#[derive(Debug, PartialEq)]
pub(super) enum Applied {
    Done,
    Found(bool),
    Founds(Vec<bool>),
    Receipt(ReceiptOutcome),
    Count(u64),
}

#[derive(Default)]
pub(super) struct State {
    /// Ordered, not hashed: our ids grow with time (`crate::ids`), so a
    /// new message is appended at the tree's right edge, and the relay and
    /// the receipts touch messages roughly in the order they came, in the
    /// same few leaves; a hash map put each of those at a random place, a
    /// cache miss or more every time, and its resizes, which move every
    /// entry with the state locked, were the ingest's worst latencies. With
    /// a hash map (inline ids, boxed slots) -> this map, four alternating
    /// pairs of `examples/ingest.rs --no-baseline`: 342k-367k -> 364k-407k
    /// submits/s, p99.9 15-22 ms -> 10-30 ms; the 200k full flow
    /// (`scripts/bench-e2e.sh 200000`, three pairs) to the last receipt
    /// 9.3-12.5 s -> 8.7-12.0 s, faster in each pair. Slots are held in
    /// the tree, not boxed: one allocation fewer per message, no
    /// difference measured (four pairs). Keys compare as integers
    /// ([`Id`]): as text, the compares were half of storing a message on
    /// the committer (`put`), a quarter of its work.
    messages: BTreeMap<Id, Slot>,
    /// Where the messages' queue entries are found.
    queue: QueueIndex,
    /// upstream -> normalised upstream id -> our message and part.
    links: HashMap<Arc<str>, HashSet<ByKey>>,
    /// Matched receipts by our message id.
    /// Keyed by [`Id`], like the messages: no copy of the id's text per
    /// message, and no clone of the receipt's match to make one.
    receipts: HashMap<Id, Vec<Arc<ReceiptRecord>>>,
    /// Unmatched receipts: (received_at_ms, seq) -> receipt.
    unmatched: BTreeMap<(u64, u64), ReceiptRecord>,
    /// The last unmatched receipt's sequence number (tells apart receipts
    /// received in the same millisecond).
    unmatched_seq: u64,
    unmatched_index: HashMap<(String, String, u8), (u64, u64)>,
    /// Final records in the order they became final (retention).
    finals: VecDeque<(u64, Id)>,
    /// Records that went ENROUTE, in that order: one whose receipt never
    /// comes (carriers lose some) must not stay in memory for ever.
    enroute: VecDeque<(u64, Id)>,
    outbox: OutboxState,
    /// New queue and outbox entries waiting for their journal frame to be
    /// durable, in frame order: `(frame, entries)`.
    unpublished: VecDeque<(u64, Vec<Publish>)>,
}

#[derive(Default)]
struct OutboxState {
    next_id: u64,
    entries: HashMap<u64, OutboxSlot>,
    /// Published, unleased entries per client: (due, n).
    due: HashMap<Arc<str>, BTreeSet<(u64, u64)>>,
    leases: BTreeSet<(Instant, u64)>,
    /// (expires_at_ms, n)
    expiry: BTreeSet<(u64, u64)>,
    /// Entries per client (leased or not).
    depth: HashMap<Arc<str>, u64>,
}

struct OutboxSlot {
    entry: OutboxEntry,
    due_at_ms: u64,
    place: Place,
}

/// The queue's indexes over the messages' entries (each entry itself is
/// in its message's [`Slot`]).
#[derive(Default)]
struct QueueIndex {
    /// Published, unleased entries by (due, seq). May hold stale entries
    /// (see [`QueuePlace`]), which `reserve` drops.
    due: DueIndex,
    /// Leased entries: (end of lease, seq) -> id.
    leases: BTreeMap<(Instant, u64), Id>,
    /// Messages with an entry.
    depth: u64,
    /// The last entry's sequence number.
    seq: u64,
}

impl QueueIndex {
    /// Gives message `id`, whose slot's entry is `queued`, a new entry due
    /// at `due_at_ms`, replacing the one it had. The new entry goes into
    /// the due index once its change is durable (`publish`).
    fn put(&mut self, queued: &mut Option<QueueEntry>, id: Id, due_at_ms: u64, publish: &mut Vec<Publish>) {
        self.seq += 1;
        let seq = self.seq;
        let entry = QueueEntry {
            due_at_ms,
            seq,
            place: QueuePlace::Due,
        };
        match queued.replace(entry) {
            Some(old) => self.unindex(old),
            None => self.depth += 1,
        }
        publish.push(Publish::Message { due_at_ms, seq, id });
    }

    /// Takes a message's entry (`queued`), if it has one, out of the queue.
    fn remove(&mut self, queued: &mut Option<QueueEntry>) {
        if let Some(old) = queued.take() {
            self.depth -= 1;
            self.unindex(old);
        }
    }

    /// Takes an entry out of the index it is in. (One not yet published is
    /// in none; it is dropped as stale when it comes.)
    fn unindex(&mut self, old: QueueEntry) {
        match old.place {
            QueuePlace::Due => self.due.remove(old.due_at_ms, old.seq),
            QueuePlace::Leased(until) => {
                self.leases.remove(&(until, old.seq));
            }
        }
    }
}

/// `{n:016x}` without the formatting machinery: one per receipt for a
/// client, on the committer thread (`format!` was ~2% of its time in the
/// full flow).
fn outbox_id(n: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..16)
        .rev()
        .map(|i| char::from(HEX[((n >> (4 * i)) & 0xF) as usize]))
        .collect()
}

fn outbox_number(id: &str) -> Option<u64> {
    if id.len() != 16 {
        return None;
    }
    u64::from_str_radix(id, 16).ok()
}

impl State {
    /// The relay's outcome for a queued message: the record updated, the
    /// queue entry removed.
    fn settle(&mut self, id: &str, update: &StateUpdate) -> bool {
        let key = Id::new(id);
        let found = self.update_record(id, key.clone(), update);
        self.queue_remove(&key);
        found
    }

    /// Applies one change. `publish` collects the entries the change made
    /// due; the caller publishes them once the change is durable.
    pub(super) fn apply(&mut self, redo: Redo, publish: &mut Vec<Publish>) -> Applied {
        match redo {
            Redo::Enqueue { now, records } => {
                for record in records {
                    let due = record.schedule_at_ms.unwrap_or(now);
                    self.put(record, Some(due), publish);
                }
                Applied::Done
            }
            Redo::Insert(records) => {
                for record in records {
                    self.put(record, None, publish);
                }
                Applied::Done
            }
            Redo::Update { id, update } => Applied::Found(self.update_record(&id, Id::new(&id), &update)),
            Redo::Settle { id, update } => Applied::Found(self.settle(&id, &update)),
            Redo::SettleMany(settles) => {
                Applied::Founds(settles.iter().map(|(id, update)| self.settle(id, update)).collect())
            }
            Redo::Ack(ids) => {
                for id in &ids {
                    self.queue_remove(&Id::new(id));
                }
                Applied::Done
            }
            Redo::Retry { id, due_at_ms } => {
                // Only a message still queued: one acked or cancelled
                // meanwhile stays out.
                let id = Id::new(&id);
                if let Some(slot) = self.messages.get_mut(&id).filter(|s| s.queued.is_some()) {
                    self.queue.put(&mut slot.queued, id, due_at_ms, publish);
                }
                Applied::Done
            }
            Redo::Cancelled { id, at_ms } => {
                let id = Id::new(&id);
                if let Some(slot) = self.messages.get_mut(&id) {
                    let record = Arc::make_mut(&mut slot.record);
                    record.state = MessageState::Deleted;
                    record.updated_at_ms = at_ms;
                    self.finals.push_back((at_ms, id.clone()));
                }
                self.queue_remove(&id);
                Applied::Done
            }
            Redo::Replaced { id, replacement } => {
                self.replace(&id, replacement, publish);
                Applied::Done
            }
            Redo::Receipt {
                now,
                receipt,
                update,
                forward,
            } => Applied::Receipt(self.record_receipt(now, receipt, update, forward, publish)),
            Redo::Push { now, entries } => {
                for entry in entries {
                    self.outbox_push(entry, now, publish);
                }
                Applied::Done
            }
            Redo::AckDelivered { system_id, ids } => {
                for id in &ids {
                    if let Some(n) = outbox_number(id) {
                        if self
                            .outbox
                            .entries
                            .get(&n)
                            .is_some_and(|s| *s.entry.system_id == *system_id)
                        {
                            self.outbox_remove(n);
                        }
                    }
                }
                Applied::Done
            }
            Redo::RetryDelivery {
                system_id,
                id,
                attempts,
                due_at_ms,
            } => {
                if let Some(n) = outbox_number(&id) {
                    if self
                        .outbox
                        .entries
                        .get(&n)
                        .is_some_and(|s| *s.entry.system_id == *system_id)
                    {
                        self.outbox_unindex(n);
                        if let Some(slot) = self.outbox.entries.get_mut(&n) {
                            slot.entry.attempts = attempts;
                            slot.due_at_ms = due_at_ms;
                            slot.place = Place::Pending;
                            publish.push(Publish::Outbox(n));
                        }
                    }
                }
                Applied::Done
            }
            Redo::Expire { now_ms } => {
                let expired: Vec<u64> = self
                    .outbox
                    .expiry
                    .range(..(now_ms.saturating_add(1), 0))
                    .map(|(_, n)| *n)
                    .collect();
                for n in &expired {
                    self.outbox_remove(*n);
                }
                Applied::Count(expired.len() as u64)
            }
            Redo::Prune(ids) => {
                for id in &ids {
                    self.remove_message(id);
                }
                Applied::Done
            }
            Redo::SnapshotMessages(records) => {
                for (record, due) in records {
                    self.put(Arc::new(record), due, publish);
                }
                Applied::Done
            }
            Redo::SnapshotLinks(links) => {
                for (upstream, key, found) in links {
                    self.link(&upstream, key, found);
                }
                Applied::Done
            }
            Redo::SnapshotReceipts(receipts) => {
                for receipt in receipts {
                    if let Some(m) = &receipt.matched {
                        self.receipts.entry(Id::new(&m.id)).or_default().push(Arc::new(receipt));
                    }
                }
                Applied::Done
            }
            Redo::SnapshotUnmatched(receipts) => {
                for receipt in receipts {
                    self.keep_unmatched(receipt);
                }
                Applied::Done
            }
            Redo::SnapshotOutbox { next_id, entries } => {
                for (entry, due) in entries {
                    let Some(n) = outbox_number(&entry.id) else {
                        tracing::error!(id = entry.id, "outbox entry with a malformed id dropped at load");
                        continue;
                    };
                    self.outbox_insert(n, entry, due, publish);
                }
                self.outbox.next_id = self.outbox.next_id.max(next_id);
                Applied::Done
            }
        }
    }

    /// Holds `published` until journal frame `frame` is durable (see
    /// [`State::publish_durable`]).
    pub(super) fn publish_when_durable(&mut self, frame: u64, published: Vec<Publish>) {
        if !published.is_empty() {
            self.unpublished.push_back((frame, published));
        }
    }

    /// Publishes the entries held for frames up to `durable`. Whoever locks
    /// the state calls this first, so no reader sees the state without the
    /// entries of a frame already durable (and answered).
    pub(super) fn publish_durable(&mut self, durable: u64) {
        while self.unpublished.front().is_some_and(|(frame, _)| *frame <= durable) {
            if let Some((_, published)) = self.unpublished.pop_front() {
                self.publish(published);
            }
        }
    }

    /// Makes the entries of a durable batch available to `reserve`.
    pub(super) fn publish(&mut self, published: Vec<Publish>) {
        let now = crate::smpp_time::now_ms();
        for entry in published {
            match entry {
                Publish::Message { due_at_ms, seq, id } => self.queue.due.insert(due_at_ms, seq, id, now),
                Publish::Outbox(n) => {
                    if let Some(slot) = self.outbox.entries.get_mut(&n) {
                        if slot.place == Place::Pending {
                            slot.place = Place::Due;
                            self.outbox
                                .due
                                .entry(slot.entry.system_id.clone())
                                .or_default()
                                .insert((slot.due_at_ms, n));
                        }
                    }
                }
            }
        }
    }

    /// After a replay: retention sees the final records oldest first.
    pub(super) fn finish_load(&mut self) {
        let mut finals: Vec<(u64, Id)> = self
            .messages
            .iter()
            .filter(|(_, s)| s.record.state.is_final())
            .map(|(id, s)| (s.record.updated_at_ms, id.clone()))
            .collect();
        finals.sort();
        self.finals = finals.into();
        let mut enroute: Vec<(u64, Id)> = self
            .messages
            .iter()
            .filter(|(_, s)| s.record.state == MessageState::Enroute)
            .map(|(id, s)| (s.record.updated_at_ms, id.clone()))
            .collect();
        enroute.sort();
        self.enroute = enroute.into();
    }

    // ---- message records and the queue -------------------------------

    /// Stores `record` (replacing one with its id) and, with `due_at_ms`,
    /// queues it then (replacing its queue entry); without, its queue entry
    /// stays as it is. One lookup of the id.
    fn put(&mut self, record: Arc<MessageRecord>, due_at_ms: Option<u64>, publish: &mut Vec<Publish>) {
        let id = Id::new(&record.id);
        if record.state.is_final() {
            self.finals.push_back((record.updated_at_ms, id.clone()));
        }
        let slot = match self.messages.entry(id.clone()) {
            Entry::Occupied(occupied) => {
                let slot = occupied.into_mut();
                slot.record = record;
                slot
            }
            Entry::Vacant(vacant) => vacant.insert(Slot {
                record,
                queued: None,
                links: Box::default(),
            }),
        };
        if let Some(due_at_ms) = due_at_ms {
            self.queue.put(&mut slot.queued, id, due_at_ms, publish);
        }
    }

    fn queue_remove(&mut self, id: &Id) {
        if let Some(slot) = self.messages.get_mut(id) {
            self.queue.remove(&mut slot.queued);
        }
    }

    /// Restores one link of a snapshot.
    fn link(&mut self, upstream: &str, key: String, found: UpstreamMatch) {
        let id = Id::new(&found.id);
        let link = Self::new_link(&mut self.links, upstream, key, found);
        if let Some(slot) = self.messages.get_mut(&id) {
            Self::attach(slot, link);
        }
    }

    /// A link put in its upstream's lookup set, for the caller to attach
    /// to the message's slot (which it may have looked up already).
    fn new_link(
        links: &mut HashMap<Arc<str>, HashSet<ByKey>>,
        upstream: &str,
        key: String,
        found: UpstreamMatch,
    ) -> Arc<Link> {
        // One allocation per link besides its key: the upstream's name is
        // shared with the lookup set's, and copied only the first time.
        let upstream: Arc<str> = match links.get_key_value(upstream) {
            Some((name, _)) => name.clone(),
            None => Arc::from(upstream),
        };
        let link = Arc::new(Link {
            upstream: upstream.clone(),
            key,
            found,
        });
        // `replace`: a key the upstream reuses now points at this message.
        links.entry(upstream).or_default().replace(ByKey(link.clone()));
        link
    }

    /// Adds `link` to the message's own links, unless it has it already.
    fn attach(slot: &mut Slot, link: Arc<Link>) {
        if !slot
            .links
            .iter()
            .any(|l| l.upstream == link.upstream && l.key == link.key)
        {
            let mut links = std::mem::take(&mut slot.links).into_vec();
            links.push(link);
            slot.links = links.into_boxed_slice();
        }
    }

    /// [`Store::update`](crate::store::Store::update) on the state; `key`
    /// is `id` parsed (`Id::new`), once for all the caller does with it.
    fn update_record(&mut self, id: &str, key: Id, update: &StateUpdate) -> bool {
        // One lookup of the slot for the link and the record both.
        let Some(slot) = self.messages.get_mut(&key) else {
            return false;
        };
        if let Some(link) = update.link.as_ref().filter(|l| !l.key.is_empty()) {
            let found = UpstreamMatch {
                id: id.to_string(),
                part: link.part,
            };
            let link = Self::new_link(&mut self.links, &link.upstream, link.key.clone(), found);
            Self::attach(slot, link);
        }
        if slot.record.state.is_final() {
            return false;
        }
        let record = Arc::make_mut(&mut slot.record);
        if let Some(link) = &update.link {
            record.parts_sent = record.parts_sent.max(link.part.saturating_add(1));
            record.upstream = Some(link.upstream.clone());
        }
        if update.upstream_id.is_some() {
            record.upstream_id = update.upstream_id.clone();
        }
        if update.error_code.is_some() {
            record.error_code = update.error_code;
        }
        if let Some(attempts) = update.attempts {
            record.attempts = attempts;
        }
        let was_enroute = record.state == MessageState::Enroute;
        record.state = update.state;
        record.updated_at_ms = update.at_ms;
        if record.state.is_final() {
            self.finals.push_back((update.at_ms, key));
        } else if record.state == MessageState::Enroute && !was_enroute {
            self.enroute.push_back((update.at_ms, key));
        }
        true
    }

    fn replace(&mut self, id: &str, replacement: Replacement, publish: &mut Vec<Publish>) {
        let id = Id::new(id);
        let Some(slot) = self.messages.get_mut(&id) else {
            return;
        };
        let record = Arc::make_mut(&mut slot.record);
        record.short_message = replacement.short_message;
        record.registered_delivery = replacement.registered_delivery;
        // SMPP replace_sm: an empty schedule or validity keeps the original.
        let mut requeue = None;
        if let Some(at) = replacement.schedule_at_ms {
            record.schedule_at_ms = Some(at);
            if slot.queued.is_some_and(|q| q.due_at_ms != at) {
                requeue = Some(at);
            }
        }
        if replacement.expires_at_ms.is_some() {
            record.expires_at_ms = replacement.expires_at_ms;
        }
        record.updated_at_ms = replacement.at_ms;
        if let Some(at) = requeue {
            self.queue.put(&mut slot.queued, id, at, publish);
        }
    }

    /// Drops a record with its queue entry, receipts and links.
    fn remove_message(&mut self, id: &str) {
        let key = Id::new(id);
        let Some(mut slot) = self.messages.remove(&key) else {
            return;
        };
        self.queue.remove(&mut slot.queued);
        for link in slot.links.into_vec() {
            if let Some(keys) = self.links.get_mut(&link.upstream) {
                // Only if it still points here: the upstream may have reused the id.
                if keys
                    .get(link.key.as_str())
                    .is_some_and(|current| current.0.found.id == id)
                {
                    keys.remove(link.key.as_str());
                }
            }
        }
        self.receipts.remove(&key);
    }

    /// The cancel_sm / replace_sm checks: `None` if the change may go ahead.
    pub(super) fn check_change(&self, id: &str, system_id: &str, now: Instant) -> Option<ChangeOutcome> {
        let Some(slot) = self.messages.get(&Id::new(id)) else {
            return Some(ChangeOutcome::NotFound);
        };
        let record = &slot.record;
        if *record.system_id != *system_id {
            return Some(ChangeOutcome::NotOwner);
        }
        if record.state != MessageState::Accepted {
            return Some(ChangeOutcome::TooLate(record.state));
        }
        // Part of it left (a message sent in parts, between two of them).
        if record.parts_sent > 0 {
            return Some(ChangeOutcome::TooLate(MessageState::Enroute));
        }
        // The relay holds it: it may be on its way to an upstream right now.
        if let Some(QueueEntry {
            place: QueuePlace::Leased(until),
            ..
        }) = slot.queued
        {
            if until > now {
                return Some(ChangeOutcome::InFlight);
            }
        }
        None
    }

    /// Records retention may drop now, at most `limit`: final ones older
    /// than `final_until_ms` or the oldest beyond `max_messages`, then
    /// ENROUTE ones (every part sent, no receipt) untouched since before
    /// `enroute_until_ms`. Returns the ids and how many of them were ENROUTE.
    pub(super) fn prunable(
        &mut self,
        final_until_ms: u64,
        enroute_until_ms: u64,
        max_messages: u64,
        limit: usize,
    ) -> (Vec<String>, usize) {
        let mut chosen = Vec::new();
        // An id can be in `finals` or `enroute` twice (final again after an
        // overwrite; ENROUTE again for its next part): dropped once. A set,
        // not a scan of `chosen`, which was quadratic in the 8,192 ids one
        // batch may drop.
        let mut seen: HashSet<Id> = HashSet::default();
        while chosen.len() < limit {
            let Some((at, _)) = self.finals.front() else {
                break;
            };
            let over = (self.messages.len() - chosen.len()) as u64 > max_messages;
            if *at >= final_until_ms && !over {
                break;
            }
            let Some((_, id)) = self.finals.pop_front() else {
                break;
            };
            // Gone already, queued again or not final any more (an insert
            // overwrote it): not this entry's to drop.
            if self
                .messages
                .get(&id)
                .is_some_and(|s| s.record.state.is_final() && s.queued.is_none())
                && seen.insert(id.clone())
            {
                chosen.push(id.to_string());
            }
        }
        let finals = chosen.len();
        // Each entry is looked at once per call at most (one re-queued for
        // a later part goes to the back).
        let mut looks = self.enroute.len();
        while chosen.len() < limit && looks > 0 {
            looks -= 1;
            let Some((at, _)) = self.enroute.front() else {
                break;
            };
            if *at >= enroute_until_ms {
                break;
            }
            let Some((_, id)) = self.enroute.pop_front() else {
                break;
            };
            let Some(slot) = self.messages.get(&id) else {
                continue;
            };
            if slot.record.state != MessageState::Enroute {
                continue;
            }
            if slot.queued.is_some() || slot.record.updated_at_ms >= enroute_until_ms {
                // Changed since (another part went) or queued for the next
                // part: wait from its last change.
                self.enroute.push_back((slot.record.updated_at_ms, id));
                continue;
            }
            if seen.insert(id.clone()) {
                chosen.push(id.to_string());
            }
        }
        let enroute = chosen.len() - finals;
        (chosen, enroute)
    }

    pub(super) fn message_count(&self) -> u64 {
        self.messages.len() as u64
    }

    // ---- reads --------------------------------------------------------

    pub(super) fn get(&self, id: &str) -> Option<MessageRecord> {
        self.messages.get(&Id::new(id)).map(|s| MessageRecord::clone(&s.record))
    }

    /// The record itself, shared: a change to it while the caller holds it
    /// copies it first (`Arc::make_mut`), so hold it briefly.
    pub(super) fn get_shared(&self, id: &str) -> Option<Arc<MessageRecord>> {
        self.messages.get(&Id::new(id)).map(|s| s.record.clone())
    }

    pub(super) fn depth(&self) -> u64 {
        self.queue.depth
    }

    /// [`Queue::reserve`](crate::queue::Queue::reserve): up to `max` due
    /// entries, oldest due first, leased until `until`.
    pub(super) fn reserve(&mut self, max: usize, now: Instant, until: Instant, wall_ms: u64) -> Vec<MessageRecord> {
        // Leases that ran out come back first.
        while let Some((&(end, seq), _)) = self.queue.leases.first_key_value() {
            if end > now {
                break;
            }
            let Some((_, id)) = self.queue.leases.pop_first() else {
                break;
            };
            if let Some(q) = self.messages.get_mut(&id).and_then(|s| s.queued.as_mut()) {
                if q.seq == seq && matches!(q.place, QueuePlace::Leased(_)) {
                    q.place = QueuePlace::Due;
                    self.queue.due.insert(q.due_at_ms, seq, id, wall_ms);
                }
            }
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some((seq, id)) = self.queue.due.pop_due(wall_ms) else {
                break;
            };
            // A stale entry (see `QueuePlace`): its message left the queue
            // or was queued again before the entry was published.
            let Some(slot) = self.messages.get_mut(&id) else {
                continue;
            };
            match slot.queued.as_mut() {
                Some(q) if q.seq == seq && q.place == QueuePlace::Due => q.place = QueuePlace::Leased(until),
                _ => continue,
            }
            out.push(MessageRecord::clone(&slot.record));
            self.queue.leases.insert((until, seq), id);
        }
        out
    }

    pub(super) fn find_by_upstream(&self, upstream: &str, key: &str) -> Option<UpstreamMatch> {
        self.links
            .get(upstream)
            .and_then(|keys| keys.get(key))
            .map(|link| link.0.found.clone())
    }

    pub(super) fn receipts(&self, id: &str) -> Vec<ReceiptRecord> {
        let mut out: Vec<ReceiptRecord> = self
            .receipts
            .get(&Id::new(id))
            .map(|list| list.iter().map(|r| ReceiptRecord::clone(r)).collect())
            .unwrap_or_default();
        // By part, each part's in arrival order.
        out.sort_by_key(|r| (r.matched.as_ref().map_or(0, |m| m.part), r.received_at_ms));
        out
    }

    pub(super) fn unmatched_receipts(&self, max: usize) -> Vec<ReceiptRecord> {
        self.unmatched.values().take(max).cloned().collect()
    }

    pub(super) fn unmatched_count(&self) -> u64 {
        self.unmatched.len() as u64
    }

    // ---- receipts -----------------------------------------------------

    fn keep_unmatched(&mut self, receipt: ReceiptRecord) -> bool {
        let copy = (
            receipt.upstream.clone(),
            receipt.key.clone(),
            receipt.state.smpp_value(),
        );
        if self.unmatched_index.contains_key(&copy) {
            return false;
        }
        self.unmatched_seq += 1;
        let at = (receipt.received_at_ms, self.unmatched_seq);
        self.unmatched.insert(at, receipt);
        self.unmatched_index.insert(copy, at);
        true
    }

    fn remove_unmatched(&mut self, receipt: &ReceiptRecord) {
        if self.unmatched_index.is_empty() {
            return;
        }
        let copy = (
            receipt.upstream.clone(),
            receipt.key.clone(),
            receipt.state.smpp_value(),
        );
        if let Some(at) = self.unmatched_index.remove(&copy) {
            self.unmatched.remove(&at);
        }
    }

    /// [`Store::record_receipt`](crate::store::Store::record_receipt) on the state.
    fn record_receipt(
        &mut self,
        now: u64,
        receipt: ReceiptRecord,
        update: Option<StateUpdate>,
        forward: Vec<OutboxEntry>,
        publish: &mut Vec<Publish>,
    ) -> ReceiptOutcome {
        let Some(matched) = &receipt.matched else {
            return if self.keep_unmatched(receipt) {
                ReceiptOutcome::Recorded
            } else {
                ReceiptOutcome::Duplicate
            };
        };
        let key = Id::new(&matched.id);
        let part = matched.part;
        let recorded = self.receipts.get(&key).is_some_and(|list| {
            list.iter()
                .any(|r| r.state == receipt.state && r.matched.as_ref().is_some_and(|m| m.part == part))
        });
        if recorded {
            // The copy kept unmatched has nothing left to wait for.
            self.remove_unmatched(&receipt);
            return ReceiptOutcome::Duplicate;
        }
        if let Some(update) = &update {
            // `false` (unknown or final message) still records the receipt.
            self.update_record(&matched.id, key.clone(), update);
        }
        self.remove_unmatched(&receipt);
        self.receipts.entry(key).or_default().push(Arc::new(receipt));
        for entry in forward {
            self.outbox_push(entry, now, publish);
        }
        ReceiptOutcome::Recorded
    }

    // ---- the outbox ---------------------------------------------------

    fn outbox_push(&mut self, mut entry: OutboxEntry, now: u64, publish: &mut Vec<Publish>) {
        let n = self.outbox.next_id;
        self.outbox.next_id += 1;
        entry.id = outbox_id(n);
        self.outbox_insert(n, entry, now, publish);
    }

    fn outbox_insert(&mut self, n: u64, entry: OutboxEntry, due_at_ms: u64, publish: &mut Vec<Publish>) {
        if self.outbox.entries.contains_key(&n) {
            self.outbox_remove(n);
        }
        *self.outbox.depth.entry(entry.system_id.clone()).or_default() += 1;
        self.outbox.expiry.insert((entry.expires_at_ms, n));
        self.outbox.next_id = self.outbox.next_id.max(n + 1);
        self.outbox.entries.insert(
            n,
            OutboxSlot {
                entry,
                due_at_ms,
                place: Place::Pending,
            },
        );
        publish.push(Publish::Outbox(n));
    }

    /// Takes entry `n` out of the due index or the leases (it stays stored).
    fn outbox_unindex(&mut self, n: u64) {
        let Some(slot) = self.outbox.entries.get(&n) else {
            return;
        };
        match slot.place {
            Place::Due => {
                if let Some(due) = self.outbox.due.get_mut(&slot.entry.system_id) {
                    due.remove(&(slot.due_at_ms, n));
                    if due.is_empty() {
                        self.outbox.due.remove(&slot.entry.system_id);
                    }
                }
            }
            Place::Leased(until) => {
                self.outbox.leases.remove(&(until, n));
            }
            Place::Pending => {}
        }
    }

    fn outbox_remove(&mut self, n: u64) {
        self.outbox_unindex(n);
        let Some(slot) = self.outbox.entries.remove(&n) else {
            return;
        };
        self.outbox.expiry.remove(&(slot.entry.expires_at_ms, n));
        let system_id = &slot.entry.system_id;
        if let Some(depth) = self.outbox.depth.get_mut(system_id) {
            *depth -= 1;
            if *depth == 0 {
                self.outbox.depth.remove(system_id);
            }
        }
    }

    /// [`Outbox::reserve_for`](crate::queue::outbox::Outbox::reserve_for).
    pub(super) fn reserve_for(
        &mut self,
        system_id: &str,
        max: usize,
        now: Instant,
        until: Instant,
        wall_ms: u64,
    ) -> Vec<OutboxEntry> {
        while let Some(&(end, n)) = self.outbox.leases.first() {
            if end > now {
                break;
            }
            self.outbox.leases.pop_first();
            if let Some(slot) = self.outbox.entries.get_mut(&n) {
                if matches!(slot.place, Place::Leased(_)) {
                    slot.place = Place::Due;
                    self.outbox
                        .due
                        .entry(slot.entry.system_id.clone())
                        .or_default()
                        .insert((slot.due_at_ms, n));
                }
            }
        }
        let Some(due) = self.outbox.due.get_mut(system_id) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        for &(at, n) in due.range(..(wall_ms.saturating_add(1), 0)) {
            if taken.len() >= max {
                break;
            }
            // Past its age: not delivered any more; `expire` counts it.
            if self
                .outbox
                .entries
                .get(&n)
                .is_some_and(|s| s.entry.expires_at_ms > wall_ms)
            {
                taken.push((at, n));
            }
        }
        let mut out = Vec::with_capacity(taken.len());
        for key in &taken {
            due.remove(key);
        }
        if due.is_empty() {
            self.outbox.due.remove(system_id);
        }
        for (_, n) in taken {
            if let Some(slot) = self.outbox.entries.get_mut(&n) {
                slot.place = Place::Leased(until);
                self.outbox.leases.insert((until, n));
                out.push(slot.entry.clone());
            }
        }
        out
    }

    pub(super) fn depth_for(&self, system_id: &str) -> u64 {
        self.outbox.depth.get(system_id).copied().unwrap_or(0)
    }

    pub(super) fn waiting_clients(&self) -> Vec<String> {
        let mut clients: Vec<String> = self.outbox.depth.keys().map(|c| c.to_string()).collect();
        clients.sort();
        clients
    }

    // ---- snapshot -----------------------------------------------------

    /// The whole state as of now, for a snapshot: a reference per record
    /// (copy-on-write, see [`Slot`]), link and receipt (never changed once
    /// stored), and copies of the unmatched receipts and the outbox.
    /// Taken under the lock; [`Snapshot::encode`] runs without it.
    ///
    /// Why: encoding under the lock stopped every write and read of the
    /// gateway while it ran, 7 s for a state of a million messages in the 1M
    /// full flow (330 MB of snapshot): receipts timed out and were resent.
    pub(super) fn snapshot(&self, chunk: usize) -> Snapshot {
        let chunk = chunk.max(1);
        let messages = self
            .messages
            .values()
            .map(|slot| (slot.record.clone(), slot.queued.map(|q| q.due_at_ms)))
            .collect();
        let links = self
            .links
            .values()
            .flat_map(|keys| keys.iter().map(|link| link.0.clone()))
            .collect();
        let receipts = self.receipts.values().flat_map(|list| list.iter().cloned()).collect();
        let mut rest = Vec::new();
        let unmatched: Vec<ReceiptRecord> = self.unmatched.values().cloned().collect();
        for part in unmatched.chunks(chunk) {
            rest.push(Redo::SnapshotUnmatched(part.to_vec()));
        }
        let mut entries: Vec<(u64, OutboxEntry, u64)> = self
            .outbox
            .entries
            .iter()
            .map(|(n, s)| (*n, s.entry.clone(), s.due_at_ms))
            .collect();
        entries.sort_by_key(|(n, _, _)| *n);
        let mut entries = entries.into_iter().map(|(_, e, due)| (e, due)).peekable();
        loop {
            let part: Vec<(OutboxEntry, u64)> = entries.by_ref().take(chunk).collect();
            let last = entries.peek().is_none();
            rest.push(Redo::SnapshotOutbox {
                next_id: self.outbox.next_id,
                entries: part,
            });
            if last {
                break;
            }
        }
        Snapshot {
            chunk,
            messages,
            links,
            receipts,
            rest,
        }
    }
}

/// The state as of one point (see [`State::snapshot`]).
pub(super) struct Snapshot {
    chunk: usize,
    /// Each record with its queue entry's due time if queued.
    messages: Vec<(Arc<MessageRecord>, Option<u64>)>,
    links: Vec<Arc<Link>>,
    /// Matched receipts, each message's in arrival order.
    receipts: Vec<Arc<ReceiptRecord>>,
    /// Unmatched receipts and the outbox, as redos.
    rest: Vec<Redo>,
}

/// Variant indexes in `Redo` (part of the file format).
const SNAPSHOT_MESSAGES: u32 = 14;
const SNAPSHOT_LINKS: u32 = 15;
const SNAPSHOT_RECEIPTS: u32 = 16;

/// Encodes items shared with the state as the `Redo::Snapshot*` variant
/// `index` holding them, octet for octet what encoding the owned redo
/// gives (tests hold them equal): postcard writes an enum as its variant
/// index and a sequence as its length, each a varint, then the items.
fn encode_shared<U: serde::Serialize>(
    index: u32,
    items: impl ExactSizeIterator<Item = U>,
) -> Result<Vec<u8>, postcard::Error> {
    let mut out = postcard::to_stdvec(&(index, items.len()))?;
    for item in items {
        out = postcard::to_extend(&item, out)?;
    }
    Ok(out)
}

impl Snapshot {
    /// The snapshot as journal frames' payloads, `chunk` items to a frame,
    /// encoded one frame at a time as the caller takes them.
    ///
    /// Consuming: each frame's records, links and receipts are released as
    /// soon as the frame is encoded, so the committer stops copying them on
    /// write (a record shared with a snapshot is copied when changed), and
    /// only one frame's octets are in memory at a time. Encoding every frame
    /// first held ~330 MB of them in the 1M full flow, and the page faults
    /// of that memory were a quarter of the snapshot thread's samples.
    pub(super) fn into_frames(self) -> impl Iterator<Item = Result<Vec<u8>, postcard::Error>> {
        let chunk = self.chunk;
        let messages = in_parts(self.messages, chunk)
            .map(|part| encode_shared(SNAPSHOT_MESSAGES, part.iter().map(|(record, due)| (&**record, *due))));
        let links = in_parts(self.links, chunk).map(|part| {
            encode_shared(
                SNAPSHOT_LINKS,
                part.iter().map(|link| (&*link.upstream, &link.key, &link.found)),
            )
        });
        let receipts = in_parts(self.receipts, chunk)
            .map(|part| encode_shared(SNAPSHOT_RECEIPTS, part.iter().map(|receipt| &**receipt)));
        let rest = self.rest.into_iter().map(|redo| postcard::to_stdvec(&redo));
        messages.chain(links).chain(receipts).chain(rest)
    }
}

/// `items` in consecutive parts of at most `size` (none when empty).
fn in_parts<T>(items: Vec<T>, size: usize) -> impl Iterator<Item = Vec<T>> {
    let mut items = items.into_iter();
    std::iter::from_fn(move || {
        let part: Vec<T> = items.by_ref().take(size).collect();
        (!part.is_empty()).then_some(part)
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::UpstreamLink;

    #[test]
    fn a_slot_keeps_the_b_tree_leaf_in_a_small_allocation() {
        // Eleven (Id, Slot) entries and a 16-octet header: 896 octets, an
        // allocator size class of its own (with a 64-octet slot: 1280).
        assert_eq!(std::mem::size_of::<Slot>(), 56);
        assert_eq!(16 + 11 * (std::mem::size_of::<Id>() + std::mem::size_of::<Slot>()), 896);
    }

    #[test]
    fn outbox_ids_are_sixteen_hex_digits_and_read_back() {
        for n in [0, 1, 0xabc, 0xffff_ffff, 0x0123_4567_89ab_cdef, u64::MAX] {
            let id = outbox_id(n);
            assert_eq!(id, format!("{n:016x}"));
            assert_eq!(outbox_number(&id), Some(n));
        }
    }

    /// Enqueues `MessageRecord::example`s with these ids, due at 3.
    fn enqueue(ids: &[&str]) -> Redo {
        Redo::Enqueue {
            now: 3,
            records: ids.iter().map(|id| Arc::new(MessageRecord::example(id))).collect(),
        }
    }

    fn enroute(id: &str, key: &str) -> Redo {
        Redo::Settle {
            id: id.into(),
            update: StateUpdate {
                state: MessageState::Enroute,
                upstream_id: Some(key.into()),
                error_code: None,
                attempts: Some(1),
                link: Some(UpstreamLink {
                    upstream: "sim".into(),
                    key: key.into(),
                    part: 0,
                }),
                at_ms: 5,
            },
        }
    }

    /// Replays a snapshot's frames into an empty state.
    fn replay(frames: &[Vec<u8>]) -> State {
        let mut state = State::default();
        let mut publish = Vec::new();
        for frame in frames {
            let (redo, rest) = postcard::take_from_bytes::<Redo>(frame).unwrap();
            assert!(rest.is_empty());
            state.apply(redo, &mut publish);
        }
        state.publish(publish);
        state.finish_load();
        state
    }

    #[test]
    fn a_key_the_upstream_reuses_follows_the_newer_message() {
        let mut state = State::default();
        let mut publish = Vec::new();
        state.apply(enqueue(&["m1", "m2"]), &mut publish);
        state.apply(enroute("m1", "K1"), &mut publish);
        state.apply(enroute("m2", "K1"), &mut publish);
        assert_eq!(state.find_by_upstream("sim", "K1").unwrap().id, "m2");
        // Dropping the older message leaves the key with the newer one.
        state.apply(Redo::Prune(vec!["m1".into()]), &mut publish);
        assert_eq!(state.find_by_upstream("sim", "K1").unwrap().id, "m2");
        state.apply(Redo::Prune(vec!["m2".into()]), &mut publish);
        assert_eq!(state.find_by_upstream("sim", "K1"), None);
    }

    #[test]
    fn entries_changed_before_they_are_published_are_not_handed_out_stale() {
        let mut state = State::default();
        let mut publish = Vec::new();
        state.apply(enqueue(&["m0", "m1", "m2", "m3"]), &mut publish);
        let now = Instant::now();
        let until = now + std::time::Duration::from_secs(60);
        // Nothing is handed out before it is published (durable).
        assert!(state.reserve(10, now, until, 100).is_empty());
        // Before publication: m0 acked, m1 cancelled, m2 queued again later.
        state.apply(Redo::Ack(vec!["m0".into()]), &mut publish);
        state.apply(
            Redo::Cancelled {
                id: "m1".into(),
                at_ms: 4,
            },
            &mut publish,
        );
        state.apply(
            Redo::Retry {
                id: "m2".into(),
                due_at_ms: 50,
            },
            &mut publish,
        );
        state.publish(publish);
        assert_eq!(state.depth(), 2);
        let ids = |records: Vec<MessageRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
        // m2's first entry (due at 3) is stale; only its second counts.
        assert_eq!(ids(state.reserve(10, now, until, 10)), ["m3"]);
        assert_eq!(ids(state.reserve(10, now, until, 100)), ["m2"]);
        assert!(state.reserve(10, now, until, 100).is_empty());
        assert_eq!(state.queue.due.len(), 0, "stale entries are dropped once reached");
    }

    #[test]
    fn shared_items_encode_as_the_owned_snapshot_redos() {
        let records: Vec<(Arc<MessageRecord>, Option<u64>)> = vec![
            (Arc::new(MessageRecord::example("a")), Some(7)),
            (Arc::new(MessageRecord::example("b")), None),
        ];
        let owned = Redo::SnapshotMessages(records.iter().map(|(r, due)| (MessageRecord::clone(r), *due)).collect());
        assert_eq!(
            encode_shared(SNAPSHOT_MESSAGES, records.iter().map(|(r, due)| (&**r, *due))).unwrap(),
            postcard::to_stdvec(&owned).unwrap()
        );
        let found = UpstreamMatch {
            id: "a".into(),
            part: 1,
        };
        let links = [Link {
            upstream: Arc::from("sim"),
            key: "K1".into(),
            found: found.clone(),
        }];
        let owned = Redo::SnapshotLinks(vec![("sim".into(), "K1".into(), found.clone())]);
        assert_eq!(
            encode_shared(SNAPSHOT_LINKS, links.iter().map(|l| (&*l.upstream, &l.key, &l.found))).unwrap(),
            postcard::to_stdvec(&owned).unwrap()
        );
        let receipts: Vec<Arc<ReceiptRecord>> = vec![Arc::new(ReceiptRecord {
            upstream: "sim".into(),
            key: "K1".into(),
            matched: Some(found),
            state: MessageState::Delivered,
            error_code: None,
            received_at_ms: 3,
            text: Bytes::from_static(b"id:K1 stat:DELIVRD"),
        })];
        let owned = Redo::SnapshotReceipts(receipts.iter().map(|r| ReceiptRecord::clone(r)).collect());
        assert_eq!(
            encode_shared(SNAPSHOT_RECEIPTS, receipts.iter().map(|r| &**r)).unwrap(),
            postcard::to_stdvec(&owned).unwrap()
        );
    }

    #[test]
    fn a_snapshot_is_the_state_when_it_was_taken_not_when_it_is_encoded() {
        let mut state = State::default();
        let mut publish = Vec::new();
        state.apply(enqueue(&["m0", "m1", "m2", "m3", "m4"]), &mut publish);
        state.apply(enroute("m1", "K1"), &mut publish);
        state.publish(std::mem::take(&mut publish));

        let snapshot = state.snapshot(2);
        // Changes after the snapshot was taken, before it is encoded.
        state.apply(enroute("m2", "K2"), &mut publish);
        state.apply(
            Redo::Cancelled {
                id: "m3".into(),
                at_ms: 9,
            },
            &mut publish,
        );
        let frames: Vec<Vec<u8>> = snapshot.into_frames().collect::<Result<_, _>>().unwrap();
        assert!(frames.len() >= 3, "records two to a frame: {}", frames.len());

        let replayed = replay(&frames);
        assert_eq!(replayed.message_count(), 5);
        assert_eq!(replayed.get("m1").unwrap().state, MessageState::Enroute);
        assert_eq!(replayed.find_by_upstream("sim", "K1").unwrap().id, "m1");
        assert_eq!(replayed.get("m2").unwrap().state, MessageState::Accepted);
        assert!(replayed.find_by_upstream("sim", "K2").is_none());
        assert_eq!(replayed.get("m3").unwrap().state, MessageState::Accepted);
        // m1 was settled (out of the queue); the other four are queued.
        assert_eq!(replayed.depth(), 4);
        // The live state has the later changes.
        assert_eq!(state.get("m2").unwrap().state, MessageState::Enroute);
        assert_eq!(state.get("m3").unwrap().state, MessageState::Deleted);
    }
}
