//! The journal engine: the embedded storage's default. Every record, queue
//! entry, receipt and outbox entry lives in memory (`state.rs`); every
//! change is appended to a journal on disk ([`log`]) and synced before its
//! caller is answered; a snapshot now and then bounds the journal and the
//! replay at start.
//!
//! [`JournalStorage`] implements [`Store`], [`Queue`] and [`Outbox`] like
//! the B-tree engine ([`crate::store::embedded`]) and passes the same
//! contract tests; what differs is the cost of a write. A redb commit
//! rewrites the B-tree pages every changed row sits on, on one thread:
//! measured, it capped the gateway at ~250 000 submits/s and the full flow
//! (submit, relay, receipt, client receipt: about eight row changes per
//! message) at ~15 500 messages/s. Here a change costs an in-memory map
//! update and a few dozen octets appended to a buffer; the disk sees one
//! sequential write and one `fdatasync` per group commit.
//!
//! # Group commit, syncs in parallel
//!
//! Writes are requests to one committer thread over a bounded channel, as
//! in the B-tree engine. Each request's change is built as a redo
//! (`redo.rs`) and encoded by the caller, on its own thread (`change.rs`).
//! The committer drains a batch and, a slice of at most `LOCK_SLICE` at a
//! time, decides each request's answer (a cancel refused while the relay
//! holds the message, a full store, ...), applies its redo to the state and
//! appends its encoded octets to the slice's journal frame, which it then
//! writes (no sync) before the next slice. A batch of nothing but enqueues
//! (the submits' path) is written as one frame first and applied while it
//! syncs (`Committer::commit_enqueues`). Up to `SYNCERS` (4) syncer
//! threads make written frames durable, each with one `fdatasync` covering
//! every frame written before it began; several run at once, so a frame
//! never waits for a sync that began before it was written. A frame's
//! callers are answered once it and every frame before it are durable; its
//! new queue and outbox entries are published by whoever locks the state
//! next (`lock_state`; nothing is handed to the relay or to a client before
//! it is durable, and nothing answered is missing from a later read).
//! Because one thread applies every change, cancel, replace and
//! record_receipt are atomic read-check-writes, and the journal's order is
//! the order changes were applied in.
//!
//! A failed write or sync is fatal to the engine: the state in memory may
//! then be ahead of the disk, and a retried `fsync` can report success for
//! pages the kernel already dropped. Every later write fails; the process
//! must restart, and the replay rebuilds exactly what the disk has.
//!
//! # Preallocated segments
//!
//! Frames are written into journal segments that were zero-filled to their
//! full size and synced before use, so a frame's `fdatasync` is an overwrite
//! with no file size to commit ([`log`] has the sync measurements and the
//! crash reasoning). On the gateway (`examples/ingest.rs`, 4 binds, 2 shared
//! cores, six alternating pairs of runs): with a window of 8, where each
//! answer waits for a sync, faster in every pair, medians ~21 600 -> ~28 900
//! submits/s and p50 latency 1.17 -> 0.83 ms. With a window of 256 the
//! gateway is bound by its CPU, not by sync latency, and no difference showed
//! above the machine's noise (14 pairs: medians 271 000 and 268 000
//! submits/s). The zero-fill of the NEXT segment runs on a background thread
//! (64 MiB with its fdatasync: 46 ms on that disk), so the committer does not
//! wait at rotation unless the journal outruns it.
//!
//! # Memory and retention
//!
//! Everything is in memory, so the number of records is bounded:
//! `max_messages` (`[storage] max_messages`). Final records (delivered,
//! undeliverable, expired, rejected, deleted), with their receipts and
//! links, are dropped `retain_final` after they became final, or earlier,
//! oldest first, when the bound is reached; a record ENROUTE with no receipt
//! is dropped `retain_enroute` after its last part left (carriers lose
//! receipts, and such records would otherwise fill the bound for good);
//! every drop is journaled. Unmatched receipts are bounded too
//! ([`JournalSettings::max_unmatched`]): beyond, a new one is refused, not
//! dropped, and the upstream resends it. When
//! every record is still in flight and the bound is reached, enqueue fails
//! with [`StorageError::Full`] (the client gets ESME_RMSGQFUL) instead of
//! growing without limit. A record costs about 2 KB of memory with its
//! receipt and link (measured: `examples/storage_flow.rs` 2.2 KB, `smsmax serve` in the 1M full-flow benchmark ~2.5 KB); the message text
//! is kept for the record's life because the receipt path reads it (the
//! `text:` of a client's receipt, the part count of a long message).
//!
//! # Snapshots
//!
//! Once the journal since the last snapshot exceeds `snapshot_bytes`, the
//! committer starts a new segment and takes the state as of that point
//! under the lock (logged as `journal snapshot taken`): a reference to each
//! record, link and receipt, all copy-on-write or immutable, and a copy of
//! the unmatched receipts and the outbox. A background thread, at a lower
//! priority (`run_in_background`), encodes it as redos one frame at a
//! time, writing each as it goes and releasing its references, then deletes
//! the segments it covers (`journal snapshot written`), while writes go on.
//! A crash during it leaves the previous snapshot and every segment since:
//! nothing is lost. In the 1M full flow (a state of a million records,
//! 330 MB of snapshot) the gateway used to stop for the whole encode, 7.1 s,
//! and 1,024 receipts timed out at the simulator; now it stops for the take,
//! 0.3 s, and none do.

mod change;
mod due;
mod id;
pub mod log;
mod redo;
mod state;
#[cfg(test)]
mod sync_failure_tests;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use self::change::Change;
use self::log::{Entry, JournalLog, LogError};
use self::redo::Redo;
use self::state::{Applied, Publish, State};
use super::write::{Op, Reply};
use super::{
    ChangeOutcome, MessageRecord, ReceiptOutcome, ReceiptRecord, Replacement, StateUpdate, StorageError, Store,
    UpstreamMatch,
};
use crate::queue::outbox::{Outbox, OutboxEntry};
use crate::queue::Queue;
use crate::smpp_time::now_ms;

/// Write requests that may wait for the committer; senders beyond this wait
/// for room (backpressure), nothing queues without bound.
const CHANNEL_CAPACITY: usize = 1024;

/// Records per snapshot frame.
const SNAPSHOT_CHUNK: usize = 2048;

/// Final records retention drops per batch at most (bounds a batch's work).
const PRUNE_PER_BATCH: usize = 8192;

/// How often an idle committer looks at retention.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// Limits and sizes of the journal engine (`[storage]` in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalSettings {
    /// Records (or acked ids, outbox entries) per group commit at most.
    pub max_batch: usize,
    /// Records kept at most (in flight and final).
    pub max_messages: u64,
    /// How long a final record stays queryable.
    pub retain_final: Duration,
    /// How long an ENROUTE record (every part with the upstream) waits for
    /// its receipt before it is dropped (a receipt after that is kept as
    /// unmatched).
    pub retain_enroute: Duration,
    /// A journal segment is closed after this many octets.
    pub segment_bytes: u64,
    /// A snapshot is taken after this many journal octets.
    pub snapshot_bytes: u64,
}

impl JournalSettings {
    /// Unmatched receipts kept at most: a tenth of `max_messages` (at least
    /// 1000). Beyond, a new unmatched receipt is refused (the upstream gets
    /// ESME_RX_T_APPN and resends it), so a carrier sending receipts for ids
    /// we never gave cannot grow the memory without limit.
    pub fn max_unmatched(&self) -> u64 {
        (self.max_messages / 10).max(1000)
    }
}

impl Default for JournalSettings {
    fn default() -> Self {
        JournalSettings {
            max_batch: 4096,
            max_messages: 2_000_000,
            retain_final: Duration::from_secs(24 * 3600),
            retain_enroute: Duration::from_secs(72 * 3600),
            segment_bytes: 64 << 20,
            snapshot_bytes: 512 << 20,
        }
    }
}

/// Counters of the committer, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Durable (synced) journal frames.
    pub commits: u64,
    /// Write requests answered.
    pub write_requests: u64,
    /// Records written by enqueue and insert.
    pub records_written: u64,
    /// The most write requests one commit served.
    pub largest_batch: u64,
    /// Snapshots written.
    pub snapshots: u64,
    /// Final records dropped by retention.
    pub pruned: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    write_requests: AtomicU64,
    records_written: AtomicU64,
    largest_batch: AtomicU64,
    snapshots: AtomicU64,
    pruned: AtomicU64,
}

/// A write request as the committer gets it.
struct Request {
    change: Change,
    reply: oneshot::Sender<Result<Reply, StorageError>>,
}

// Nearly every message is a Write: boxing it would add an allocation per
// request to save channel slot space for the rare others.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Write(Request),
    /// Retention and snapshots when no write comes.
    Maintain,
    Close(oneshot::Sender<Result<(), StorageError>>),
}

fn engine<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Engine(e.to_string())
}

fn log_error(e: LogError) -> StorageError {
    match e {
        LogError::Corrupt { path, offset, reason } => StorageError::Corrupt {
            id: format!("{} at {offset}", path.display()),
            reason,
        },
        other => engine(other),
    }
}

/// The name of the lock file that keeps a second process (or a second open
/// in this one) off the directory.
const LOCK_FILE: &str = "LOCK";

/// Message store, work queue, receipts and outbox on the journal engine.
pub struct JournalStorage {
    /// Locked by the tokio tasks that read (awaiting, see [`StateLock`])
    /// and by the committer thread (blocking).
    state: Arc<StateLock>,
    /// Journal frames durable so far (see [`publish_durable`]).
    durable: Arc<AtomicU64>,
    /// `None` only while dropping.
    tx: Option<mpsc::Sender<Msg>>,
    closed: AtomicBool,
    counters: Arc<Counters>,
    committer: Mutex<Option<JoinHandle<()>>>,
    /// The committer's sync pipeline: where a failed write or sync is
    /// recorded ([`Queue::failure`]).
    pipeline: Arc<Pipeline>,
}

impl std::fmt::Debug for JournalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalStorage")
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .field("stats", &self.stats())
            .finish()
    }
}

impl JournalStorage {
    /// Opens (or creates) the storage in `dir`: replays the snapshot and the
    /// journal, then starts the committer.
    pub async fn open(dir: &Path, settings: JournalSettings) -> Result<Arc<Self>, StorageError> {
        let dir = dir.to_path_buf();
        let segment_bytes = settings.segment_bytes;
        let (state, journal, lock) =
            tokio::task::spawn_blocking(move || -> Result<(State, JournalLog, std::fs::File), StorageError> {
                std::fs::create_dir_all(&dir).map_err(|e| engine(format!("creating {}: {e}", dir.display())))?;
                let lock_path = dir.join(LOCK_FILE);
                let lock = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(|e| engine(format!("opening {}: {e}", lock_path.display())))?;
                lock.try_lock().map_err(|e| {
                    engine(format!(
                        "{} is in use by another gateway (or another storage in this one): {e}",
                        dir.display()
                    ))
                })?;
                let started = Instant::now();
                let mut state = State::default();
                let mut publish = Vec::new();
                let (journal, stats) = JournalLog::open(&dir, segment_bytes, |entry| {
                    let mut payload = match entry {
                        Entry::Snapshot(p) | Entry::Batch(p) => p,
                    };
                    while !payload.is_empty() {
                        let (redo, rest) =
                            postcard::take_from_bytes::<Redo>(payload).map_err(|e| format!("undecodable redo: {e}"))?;
                        state.apply(redo, &mut publish);
                        payload = rest;
                    }
                    state.publish(std::mem::take(&mut publish));
                    Ok(())
                })
                .map_err(log_error)?;
                state.finish_load();
                tracing::info!(
                    dir = %dir.display(),
                    snapshot_frames = stats.snapshot_frames,
                    batches = stats.batches,
                    bytes = stats.bytes,
                    truncated_bytes = stats.truncated_bytes,
                    zero_tail_bytes = stats.zero_tail_bytes,
                    messages = state.message_count(),
                    queued = state.depth(),
                    ms = started.elapsed().as_millis() as u64,
                    "journal replayed"
                );
                Ok((state, journal, lock))
            })
            .await
            .map_err(engine)??;

        let state = Arc::new(StateLock::new(state));
        let durable = Arc::new(AtomicU64::new(0));
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let maintenance = tx.downgrade();
        let pipeline = Arc::new(Pipeline::default());
        let committer = Committer {
            state: state.clone(),
            durable: durable.clone(),
            frames: 0,
            journal,
            _lock: lock,
            rx,
            settings,
            counters: counters.clone(),
            buffer: Vec::new(),
            pipeline: pipeline.clone(),
            syncers: Vec::new(),
            snapshot: None,
        };
        let handle = std::thread::Builder::new()
            .name("journal-committer".into())
            .spawn(move || committer.run())
            .map_err(|e| engine(format!("starting the committer: {e}")))?;
        std::thread::Builder::new()
            .name("journal-maintenance".into())
            .spawn(move || loop {
                std::thread::sleep(MAINTENANCE_INTERVAL);
                // Gone once the storage is dropped or closed.
                let Some(tx) = maintenance.upgrade() else { return };
                if tx.is_closed() {
                    return;
                }
                // A full channel means the committer is busy anyway.
                let _ = tx.try_send(Msg::Maintain);
            })
            .map_err(|e| engine(format!("starting the maintenance thread: {e}")))?;
        Ok(Arc::new(JournalStorage {
            state,
            durable,
            tx: Some(tx),
            closed: AtomicBool::new(false),
            counters,
            committer: Mutex::new(Some(handle)),
            pipeline,
        }))
    }

    /// Makes every later `fdatasync` fail, as a disk error would.
    #[cfg(test)]
    pub(crate) fn fail_syncs(&self) {
        self.pipeline.lock().fail_syncs = true;
    }

    /// What the committer has done so far.
    pub fn stats(&self) -> JournalStats {
        let c = &self.counters;
        JournalStats {
            commits: c.commits.load(Ordering::Relaxed),
            write_requests: c.write_requests.load(Ordering::Relaxed),
            records_written: c.records_written.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
            snapshots: c.snapshots.load(Ordering::Relaxed),
            pruned: c.pruned.load(Ordering::Relaxed),
        }
    }

    /// Records held in memory (in flight and final).
    pub async fn message_count(&self) -> u64 {
        self.lock().await.message_count()
    }

    async fn lock(&self) -> StateGuard<'_> {
        publish_durable(self.state.lock().await, &self.durable)
    }

    fn check_open(&self) -> Result<(), StorageError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StorageError::Closed)
        } else {
            Ok(())
        }
    }

    fn lost(&self) -> StorageError {
        if self.closed.load(Ordering::Acquire) {
            StorageError::Closed
        } else {
            engine("the journal committer stopped")
        }
    }

    async fn write(&self, op: Op) -> Result<Reply, StorageError> {
        self.check_open()?;
        let change = Change::prepare(op, now_ms()).map_err(|e| engine(format!("encoding a redo: {e}")))?;
        let sender = self.tx.as_ref().ok_or(StorageError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Msg::Write(Request { change, reply }))
            .await
            .map_err(|_| self.lost())?;
        answer.await.map_err(|_| self.lost())?
    }
}

impl Drop for JournalStorage {
    fn drop(&mut self) {
        // Closing the channel stops the committer once it has answered what
        // was sent; wait for it so the lock is released when this returns.
        self.tx = None;
        let handle = self.committer.get_mut().ok().and_then(|h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn unexpected(what: &str) -> StorageError {
    engine(format!("unexpected answer to {what}"))
}

#[async_trait]
impl Store for JournalStorage {
    async fn insert(&self, records: &[MessageRecord]) -> Result<(), StorageError> {
        if records.is_empty() {
            return self.check_open();
        }
        self.write(Op::Insert(crate::queue::shared(records.iter().cloned())))
            .await
            .map(|_| ())
    }

    async fn get(&self, id: &str) -> Result<Option<MessageRecord>, StorageError> {
        self.check_open()?;
        Ok(self.lock().await.get(id))
    }

    async fn update(&self, id: &str, update: StateUpdate) -> Result<bool, StorageError> {
        match self.write(Op::Update(id.to_string(), update)).await? {
            Reply::Found(found) => Ok(found),
            _ => Err(unexpected("update")),
        }
    }

    async fn cancel(&self, id: &str, system_id: &str, at_ms: u64) -> Result<ChangeOutcome, StorageError> {
        let op = Op::Cancel {
            id: id.to_string(),
            system_id: system_id.to_string(),
            at_ms,
        };
        match self.write(op).await? {
            Reply::Outcome(outcome) => Ok(outcome),
            _ => Err(unexpected("cancel")),
        }
    }

    async fn replace(
        &self,
        id: &str,
        system_id: &str,
        replacement: Replacement,
    ) -> Result<ChangeOutcome, StorageError> {
        let op = Op::Replace {
            id: id.to_string(),
            system_id: system_id.to_string(),
            replacement,
        };
        match self.write(op).await? {
            Reply::Outcome(outcome) => Ok(outcome),
            _ => Err(unexpected("replace")),
        }
    }

    async fn find_by_upstream(&self, upstream: &str, key: &str) -> Result<Option<UpstreamMatch>, StorageError> {
        self.check_open()?;
        Ok(self.lock().await.find_by_upstream(upstream, key))
    }

    async fn find_record_by_upstream(
        &self,
        upstream: &str,
        key: &str,
    ) -> Result<Option<(UpstreamMatch, Option<Arc<MessageRecord>>)>, StorageError> {
        self.check_open()?;
        let state = self.lock().await;
        Ok(state.find_by_upstream(upstream, key).map(|found| {
            let record = state.get_shared(&found.id);
            (found, record)
        }))
    }

    async fn record_receipt(
        &self,
        receipt: ReceiptRecord,
        update: Option<StateUpdate>,
        forward: Vec<OutboxEntry>,
    ) -> Result<ReceiptOutcome, StorageError> {
        let op = Op::RecordReceipt {
            receipt: Box::new(receipt),
            update: update.map(Box::new),
            forward,
        };
        match self.write(op).await? {
            Reply::Receipt(outcome) => Ok(outcome),
            _ => Err(unexpected("record_receipt")),
        }
    }

    async fn receipts(&self, id: &str) -> Result<Vec<ReceiptRecord>, StorageError> {
        self.check_open()?;
        Ok(self.lock().await.receipts(id))
    }

    async fn unmatched_receipts(&self, max: usize) -> Result<Vec<ReceiptRecord>, StorageError> {
        self.check_open()?;
        Ok(self.lock().await.unmatched_receipts(max))
    }

    async fn unmatched_count(&self) -> Result<u64, StorageError> {
        self.check_open()?;
        Ok(self.lock().await.unmatched_count())
    }
}

#[async_trait]
impl Queue for JournalStorage {
    async fn enqueue(&self, records: Vec<Arc<MessageRecord>>) -> Result<(), StorageError> {
        if records.is_empty() {
            return self.check_open();
        }
        self.write(Op::Enqueue(records)).await.map(|_| ())
    }

    async fn reserve(&self, max: usize, lease: Duration) -> Result<Vec<MessageRecord>, StorageError> {
        self.check_open()?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        let wall = now_ms();
        Ok(self.lock().await.reserve(max, now, now + lease, wall))
    }

    async fn ack(&self, ids: &[String]) -> Result<(), StorageError> {
        if ids.is_empty() {
            return self.check_open();
        }
        self.write(Op::Ack(ids.to_vec())).await.map(|_| ())
    }

    async fn settle(&self, id: &str, update: StateUpdate) -> Result<bool, StorageError> {
        match self.write(Op::Settle(id.to_string(), update)).await? {
            Reply::Found(found) => Ok(found),
            _ => Err(unexpected("settle")),
        }
    }

    async fn settle_many(&self, settles: Vec<(String, StateUpdate)>) -> Result<Vec<bool>, StorageError> {
        if settles.is_empty() {
            return self.check_open().map(|()| Vec::new());
        }
        match self.write(Op::SettleMany(settles)).await? {
            Reply::Founds(found) => Ok(found),
            _ => Err(unexpected("settle_many")),
        }
    }

    async fn retry(&self, id: &str, due_at_ms: u64) -> Result<(), StorageError> {
        self.write(Op::Retry(id.to_string(), due_at_ms)).await.map(|_| ())
    }

    async fn depth(&self) -> Result<u64, StorageError> {
        self.check_open()?;
        Ok(self.lock().await.depth())
    }

    async fn close(&self) -> Result<(), StorageError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let Some(sender) = self.tx.as_ref() else {
            return Ok(());
        };
        let (reply, answer) = oneshot::channel();
        let result = match sender.send(Msg::Close(reply)).await {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err(engine("the journal committer stopped"))),
            Err(_) => Err(engine("the journal committer stopped")),
        };
        let handle = self.committer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        let stats = self.stats();
        tracing::info!(
            commits = stats.commits,
            write_requests = stats.write_requests,
            records_written = stats.records_written,
            largest_batch = stats.largest_batch,
            snapshots = stats.snapshots,
            pruned = stats.pruned,
            "journal storage closed"
        );
        result
    }

    fn failure(&self) -> Option<String> {
        if let Some(reason) = self.pipeline.lock().failed.clone() {
            return Some(reason);
        }
        // The committer ends only when closed, or when it panicked (its
        // state may be half applied): then every write fails as well.
        let committer_gone = self.tx.as_ref().is_none_or(|tx| tx.is_closed());
        (committer_gone && !self.closed.load(Ordering::Acquire)).then(|| "the journal committer stopped".to_string())
    }
}

#[async_trait]
impl Outbox for JournalStorage {
    async fn push(&self, entries: Vec<OutboxEntry>) -> Result<(), StorageError> {
        if entries.is_empty() {
            return self.check_open();
        }
        self.write(Op::Push(entries)).await.map(|_| ())
    }

    async fn reserve_for(
        &self,
        system_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StorageError> {
        self.check_open()?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        let wall = now_ms();
        Ok(self.lock().await.reserve_for(system_id, max, now, now + lease, wall))
    }

    async fn ack_delivered(&self, system_id: &str, ids: &[String]) -> Result<(), StorageError> {
        if ids.is_empty() {
            return self.check_open();
        }
        let op = Op::AckDelivered {
            system_id: system_id.to_string(),
            ids: ids.to_vec(),
        };
        self.write(op).await.map(|_| ())
    }

    async fn retry_delivery(
        &self,
        system_id: &str,
        id: &str,
        attempts: u32,
        due_at_ms: u64,
    ) -> Result<(), StorageError> {
        let op = Op::RetryDelivery {
            system_id: system_id.to_string(),
            id: id.to_string(),
            attempts,
            due_at_ms,
        };
        self.write(op).await.map(|_| ())
    }

    async fn depth_for(&self, system_id: &str) -> Result<u64, StorageError> {
        self.check_open()?;
        Ok(self.lock().await.depth_for(system_id))
    }

    async fn waiting_clients(&self) -> Result<Vec<String>, StorageError> {
        self.check_open()?;
        Ok(self.lock().await.waiting_clients())
    }

    async fn expire(&self, now_ms: u64) -> Result<u64, StorageError> {
        match self.write(Op::Expire(now_ms)).await? {
            Reply::Count(count) => Ok(count),
            _ => Err(unexpected("expire")),
        }
    }
}

/// Syncs that may run at once. Measured on the development machine's
/// virtual disk: one `fdatasync` alone takes 3.4–4 ms; two to eight running
/// at once (on the same file or not) overlap, ~1–2 ms each. With one sync at
/// a time, a client's window of W messages could never go faster than W per
/// sync; with several, the next frames need not wait for the previous sync.
const SYNCERS: usize = 4;

/// Frames written but not yet durable, at most; beyond, the committer waits.
const MAX_UNSYNCED_FRAMES: usize = 64;

/// Longest the committer holds the state lock while it applies a batch
/// (then readers get a turn), and so the most work one frame holds before
/// it is written and its sync can begin; one request's change is never
/// split.
const LOCK_SLICE: Duration = Duration::from_micros(200);

type Answer = (
    oneshot::Sender<Result<Reply, StorageError>>,
    Result<Reply, StorageError>,
);

/// The answers of one written frame, released once it is durable.
struct Completion {
    frame: u64,
    answers: Vec<Answer>,
}

/// Between the committer, which writes frames, and the syncers, which make
/// them durable.
#[derive(Default)]
struct Progress {
    /// Frames written (numbered from 1).
    written: u64,
    /// The file the last frame is in.
    file: Option<Arc<std::fs::File>>,
    /// Frames covered by a sync that has begun.
    claimed: u64,
    /// Frames durable.
    durable: u64,
    pending: VecDeque<Completion>,
    /// A sync failed: nothing more becomes durable.
    failed: Option<String>,
    stop: bool,
    /// Fault injection: every sync from now on fails.
    #[cfg(test)]
    fail_syncs: bool,
}

/// Two condition variables, so that a frame written wakes one idle syncer
/// (not all of them, nor the committer: one is all a frame needs) and a
/// sync completed wakes only a committer that waits for durability.
#[derive(Default)]
struct Pipeline {
    progress: Mutex<Progress>,
    /// Syncers wait here for frames to sync (or the stop).
    work: Condvar,
    /// The committer waits here for frames to become durable.
    durable: Condvar,
}

impl Pipeline {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait_for_work<'a>(&self, guard: MutexGuard<'a, Progress>) -> MutexGuard<'a, Progress> {
        self.work.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    fn wait_for_durable<'a>(&self, guard: MutexGuard<'a, Progress>) -> MutexGuard<'a, Progress> {
        self.durable.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes everyone: the journal failed, or it stops.
    fn wake_all(&self) {
        self.work.notify_all();
        self.durable.notify_all();
    }
}

/// The lock on the state: tokio's, not std's.
///
/// The readers are tasks on the tokio workers (the correlator's lookups, the
/// relay's and the outbox's reserves, ...); the writer is the committer
/// thread, which holds the lock a slice of up to `LOCK_SLICE` at a time.
/// With std's mutex a reader that met the committer's slice put its whole
/// worker thread to sleep, and every other task on that worker waited with
/// it: in the 1M full flow, sched_switch samples of serve's workers showed
/// most of their futex sleeps in the correlator's `find_record_by_upstream`.
/// Awaiting tokio's lock, a reader parks only its own task; the worker goes
/// on with the sessions. Measured: `examples/storage_flow --messages 300000
/// --concurrency 256` 61-64k -> 86-90k msg/s; the full flow end to end did
/// not change above the machine's noise (its workers now wait in epoll). The committer, a plain thread, takes it with
/// `blocking_lock`. No poisoning either: a panic while applying stops the
/// committer (every later write fails), and reads of what is there stay
/// possible.
type StateLock = tokio::sync::Mutex<State>;

/// Publishes the entries of every frame durable by now (`durable`); called
/// by everyone who locks the state, first.
///
/// Why here and not in the syncer: a syncer that locked the state to
/// publish waited for the committer's slice (~0.2 ms) and then spent
/// ~0.1 ms publishing before it answered anyone: a third of a submit's wait
/// for durability at 4 binds x window 256 (a temporary probe). Now a syncer
/// only raises `durable` and answers; whoever locks the state next publishes,
/// so a caller that was answered and then reads (or the relay reserving)
/// always finds the entries its change made.
fn publish_durable<'a>(mut guard: StateGuard<'a>, durable: &AtomicU64) -> StateGuard<'a> {
    guard.publish_durable(durable.load(Ordering::Acquire));
    guard
}

type StateGuard<'a> = tokio::sync::MutexGuard<'a, State>;

/// Answers the callers of frames that became durable.
fn complete(done: Vec<Completion>) {
    for completion in done {
        for (reply, answer) in completion.answers {
            let _ = reply.send(answer);
        }
    }
}

/// Refuses requests the journal can no longer take, saying `why`.
fn refuse(requests: impl IntoIterator<Item = Request>, why: &str) {
    for request in requests {
        let _ = request.reply.send(Err(engine(why)));
    }
}

/// The callers of frames that can no longer become durable.
fn fail_all(done: Vec<Completion>, reason: &str) {
    for completion in done {
        for (reply, _) in completion.answers {
            let _ = reply.send(Err(engine(format!("journal sync failed: {reason}"))));
        }
    }
}

/// One syncer thread: syncs the frames written and not yet claimed by
/// another sync, then releases what became durable.
fn syncer(pipeline: Arc<Pipeline>, durable_frames: Arc<AtomicU64>, counters: Arc<Counters>) {
    let mut progress = pipeline.lock();
    loop {
        if progress.failed.is_none() && progress.written > progress.claimed {
            let target = progress.written;
            progress.claimed = target;
            let Some(file) = progress.file.clone() else {
                progress.failed = Some("no journal file to sync".into());
                continue;
            };
            #[cfg(test)]
            let inject = progress.fail_syncs;
            drop(progress);
            let synced = file.sync_data();
            #[cfg(test)]
            let synced = if inject {
                Err(std::io::Error::other("injected fault"))
            } else {
                synced
            };
            progress = pipeline.lock();
            let done: Vec<Completion> = match synced {
                Ok(()) => {
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                    progress.durable = progress.durable.max(target);
                    let durable = progress.durable;
                    // Before anyone is answered (see `lock_state`).
                    durable_frames.store(durable, Ordering::Release);
                    let mut done = Vec::new();
                    while progress.pending.front().is_some_and(|c| c.frame <= durable) {
                        done.extend(progress.pending.pop_front());
                    }
                    done
                }
                // The data of the frames this sync covered is in an unknown
                // state, so nothing from now on is answered as stored. As
                // with any database commit that fails, the outcome of the
                // refused writes is unknown, not "not stored": a frame
                // written before the failed sync may be read back on
                // restart, so a message its client was refused
                // (ESME_RSYSERR) can be relayed after all. What was
                // acknowledged is never lost.
                Err(e) => {
                    let reason = format!("fdatasync: {e}");
                    tracing::error!(error = %reason, "journal sync failed: the storage stops accepting writes; restart the gateway");
                    progress.failed = Some(reason.clone());
                    let all: Vec<Completion> = progress.pending.drain(..).collect();
                    pipeline.wake_all();
                    drop(progress);
                    fail_all(all, &reason);
                    progress = pipeline.lock();
                    continue;
                }
            };
            pipeline.durable.notify_all();
            if !done.is_empty() {
                drop(progress);
                complete(done);
                progress = pipeline.lock();
            }
            continue;
        }
        if progress.stop {
            return;
        }
        progress = pipeline.wait_for_work(progress);
    }
}

/// The single writer.
struct Committer {
    state: Arc<StateLock>,
    /// Journal frames durable so far, raised by the syncers.
    durable: Arc<AtomicU64>,
    /// Journal frames written so far (the committer's copy of
    /// `Progress::written`, which only it changes).
    frames: u64,
    journal: JournalLog,
    /// Held (locked) for as long as the committer runs.
    _lock: std::fs::File,
    rx: mpsc::Receiver<Msg>,
    settings: JournalSettings,
    counters: Arc<Counters>,
    /// The frame being built (reused).
    buffer: Vec<u8>,
    pipeline: Arc<Pipeline>,
    syncers: Vec<JoinHandle<()>>,
    /// The snapshot being written in the background, if any.
    snapshot: Option<JoinHandle<Result<u64, String>>>,
}

impl Committer {
    fn run(mut self) {
        for n in 0..SYNCERS {
            let (pipeline, durable, counters) = (self.pipeline.clone(), self.durable.clone(), self.counters.clone());
            match std::thread::Builder::new()
                .name(format!("journal-sync-{n}"))
                .spawn(move || syncer(pipeline, durable, counters))
            {
                Ok(handle) => self.syncers.push(handle),
                Err(e) => tracing::error!(error = %e, "journal syncer not started"),
            }
        }
        if self.syncers.is_empty() {
            self.pipeline.lock().failed = Some("no syncer thread could be started".into());
        }
        let mut carry: Option<Msg> = None;
        loop {
            let first = match carry.take() {
                Some(msg) => msg,
                None => match self.rx.blocking_recv() {
                    Some(msg) => msg,
                    None => break, // every sender is gone
                },
            };
            let first = match first {
                Msg::Close(reply) => {
                    let _ = reply.send(self.finish());
                    return;
                }
                Msg::Maintain => {
                    self.commit(Vec::new());
                    continue;
                }
                Msg::Write(request) => request,
            };
            let mut weight = first.change.weight;
            let mut batch = vec![first];
            while weight < self.settings.max_batch {
                match self.rx.try_recv() {
                    Ok(Msg::Write(request)) if weight + request.change.weight <= self.settings.max_batch => {
                        weight += request.change.weight;
                        batch.push(request);
                    }
                    Ok(Msg::Maintain) => {}
                    Ok(other) => {
                        carry = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            match self.commit_enqueues(batch) {
                Some(batch) => self.commit(batch),
                // Retention and snapshots, as after any batch.
                None => self.commit(Vec::new()),
            }
        }
        let _ = self.finish();
    }

    /// Waits until every written frame is durable (or the journal failed),
    /// stops the syncers, and waits for a snapshot being written.
    fn finish(&mut self) -> Result<(), StorageError> {
        let failed = {
            let mut progress = self.pipeline.lock();
            while progress.failed.is_none() && progress.durable < progress.written {
                progress = self.pipeline.wait_for_durable(progress);
            }
            progress.stop = true;
            self.pipeline.wake_all();
            progress.failed.clone()
        };
        for handle in self.syncers.drain(..) {
            let _ = handle.join();
        }
        let synced = match failed {
            Some(reason) => Err(engine(reason)),
            None => self.journal.sync().map(|_| ()).map_err(log_error),
        };
        if let Some(handle) = self.snapshot.take() {
            if let Ok(Err(e)) = handle.join() {
                tracing::error!(error = %e, "journal snapshot failed; the journal since the last one is kept");
            }
        }
        synced
    }

    /// Blocking: the committer is a thread of its own, never a tokio task.
    fn lock(&self) -> StateGuard<'_> {
        publish_durable(self.state.blocking_lock(), &self.durable)
    }

    /// Encodes `redo` into the frame and applies it.
    fn apply(
        buffer: &mut Vec<u8>,
        state: &mut State,
        redo: Redo,
        publish: &mut Vec<Publish>,
    ) -> Result<Applied, String> {
        let encoded = postcard::to_extend(&redo, std::mem::take(buffer)).map_err(|e| format!("encoding: {e}"));
        match encoded {
            Ok(bytes) => *buffer = bytes,
            Err(e) => return Err(e),
        }
        Ok(state.apply(redo, publish))
    }

    /// Applies a batch a slice at a time; each slice is its own frame,
    /// written and handed to the syncers before the next slice is applied.
    ///
    /// Why per slice: a batch holds up to `max_batch` records, a few
    /// milliseconds of work; with one frame per batch its first request
    /// waited for the last to be applied before its sync could even begin,
    /// and that wait was most of a submit's latency at 4 binds x window 256.
    fn commit(&mut self, batch: Vec<Request>) {
        let failed = self.pipeline.lock().failed.clone();
        if let Some(reason) = failed {
            refuse(batch, &format!("journal failed earlier: {reason}"));
            return;
        }
        let n = batch.len() as u64;
        let now = now_ms();
        let instant = Instant::now();
        let mut requests = batch.into_iter().peekable();
        loop {
            let mut answers: Vec<Answer> = Vec::new();
            let mut publish = Vec::new();
            let mut records = 0u64;
            let mut pruned = 0u64;
            let mut buffer = std::mem::take(&mut self.buffer);
            buffer.clear();
            {
                // Locked for a slice at a time, not for the whole batch:
                // readers (the relay's reserve, the correlator's lookups)
                // run on the tokio workers and must not wait for a batch of
                // a few thousand; nor per request: locked per request, the
                // committer spent ~1.45 s of its ~7 s in commit waiting for
                // this lock in a 200k-message full flow (a temporary
                // probe); per slice, 0.56-1.0 s.
                let mut state = self.lock();
                let held = Instant::now();
                for request in requests.by_ref() {
                    let answer = self.decide(
                        &mut buffer,
                        &mut state,
                        request.change,
                        instant,
                        &mut publish,
                        &mut records,
                    );
                    answers.push((request.reply, answer));
                    if held.elapsed() >= LOCK_SLICE {
                        break;
                    }
                }
                if requests.peek().is_none() {
                    pruned = self.retention(&mut state, &mut buffer, now, &mut publish);
                }
                // The frame this slice becomes (`seal` numbers it so).
                let frame = if buffer.is_empty() {
                    self.frames
                } else {
                    self.frames + 1
                };
                state.publish_when_durable(frame, std::mem::take(&mut publish));
            }
            self.counters.records_written.fetch_add(records, Ordering::Relaxed);
            self.counters.pruned.fetch_add(pruned, Ordering::Relaxed);
            if let Err(reason) = self.seal(buffer, answers) {
                refuse(requests, &format!("journal failed earlier: {reason}"));
                return;
            }
            if requests.peek().is_none() {
                break;
            }
        }
        self.counters.write_requests.fetch_add(n, Ordering::Relaxed);
        self.counters.largest_batch.fetch_max(n, Ordering::Relaxed);
        self.maybe_snapshot();
    }

    /// Retention, in the frame of the batch's last slice: final records
    /// past `retain_final`, ENROUTE records past `retain_enroute`, and the
    /// oldest final records beyond `max_messages`. Gives the records dropped.
    fn retention(&self, state: &mut State, buffer: &mut Vec<u8>, now: u64, publish: &mut Vec<Publish>) -> u64 {
        let retain_until = now.saturating_sub(self.settings.retain_final.as_millis() as u64);
        let enroute_until = now.saturating_sub(self.settings.retain_enroute.as_millis() as u64);
        let (prunable, enroute) =
            state.prunable(retain_until, enroute_until, self.settings.max_messages, PRUNE_PER_BATCH);
        if enroute > 0 {
            tracing::warn!(
                records = enroute,
                after = ?self.settings.retain_enroute,
                "ENROUTE records dropped: no receipt came within retain_enroute_secs"
            );
        }
        if prunable.is_empty() {
            return 0;
        }
        let count = prunable.len() as u64;
        match Self::apply(buffer, state, Redo::Prune(prunable), publish) {
            Ok(_) => count,
            Err(e) => {
                tracing::error!(error = e, "retention skipped");
                0
            }
        }
    }

    /// Writes one frame (if `buffer` holds any redo) and queues its answers
    /// until it is durable (at once when nothing waits for a sync). A failed
    /// write fails the journal and these answers, and gives the reason.
    fn seal(&mut self, buffer: Vec<u8>, answers: Vec<Answer>) -> Result<(), String> {
        let written = self.write_frame(&buffer);
        self.buffer = buffer;
        match written {
            Ok(frame) => {
                self.release(frame, answers);
                Ok(())
            }
            Err(reason) => {
                fail_all(vec![Completion { frame: 0, answers }], &reason);
                Err(reason)
            }
        }
    }

    /// Writes `buffer` as the next frame, if it holds any redo, and hands it
    /// to the syncers. Gives the frame that work done so far waits for (the
    /// last one written). A failed write fails the journal: gives the reason.
    fn write_frame(&mut self, buffer: &[u8]) -> Result<u64, String> {
        let wrote = !buffer.is_empty();
        if wrote {
            self.journal.append(buffer);
            if let Err(e) = self.journal.write() {
                let reason = e.to_string();
                tracing::error!(error = %reason, "journal write failed: the storage stops accepting writes; restart the gateway");
                self.pipeline.lock().failed = Some(reason.clone());
                self.pipeline.wake_all();
                return Err(reason);
            }
        }
        if wrote {
            self.frames += 1;
            let mut progress = self.pipeline.lock();
            progress.written = self.frames;
            progress.file = Some(self.journal.file());
            self.pipeline.work.notify_one();
        }
        Ok(self.frames)
    }

    /// Answers `answers` once frame `frame` is durable: at once if it is
    /// already, else when a syncer gets there. Then waits while too many
    /// frames are written and not yet durable.
    fn release(&mut self, frame: u64, answers: Vec<Answer>) {
        if answers.is_empty() {
            return;
        }
        let completion = Completion { frame, answers };
        let now_durable = {
            let mut progress = self.pipeline.lock();
            let now_durable = if completion.frame <= progress.durable {
                Some(completion)
            } else if let Some(reason) = progress.failed.clone() {
                // A sync failed meanwhile: this frame will never be durable,
                // and the syncers have already failed what was pending.
                drop(progress);
                fail_all(vec![completion], &reason);
                return;
            } else {
                progress.pending.push_back(completion);
                None
            };
            while progress.failed.is_none() && progress.pending.len() >= MAX_UNSYNCED_FRAMES {
                progress = self.pipeline.wait_for_durable(progress);
            }
            now_durable
        };
        if let Some(completion) = now_durable {
            complete(vec![completion]);
        }
    }

    /// The common batch, nothing but enqueues with room for all of them:
    /// its frame is written and handed to the syncers BEFORE the batch is
    /// applied, so the `fdatasync` runs while the committer applies it
    /// (an enqueue can only be refused for room, decided here up front).
    /// The callers are answered once both are done. Gives the batch back
    /// if it is not such a batch.
    ///
    /// Why: one enqueue's wait for storage was its batch's apply and then
    /// its frame's sync, one after the other (a temporary probe at 4 binds
    /// x window 256: pickup 0.23 ms, apply to frame written 0.31 ms, frame
    /// written to durable 0.39 ms).
    fn commit_enqueues(&mut self, batch: Vec<Request>) -> Option<Vec<Request>> {
        // After a failed sync nothing may be applied: `commit` refuses it.
        if self.pipeline.lock().failed.is_some() {
            return Some(batch);
        }
        // The records the batch enqueues; `None` if it holds anything else.
        let count = batch.iter().try_fold(0u64, |count, r| match &r.change.redo {
            Redo::Enqueue { records, .. } => Some(count + records.len() as u64),
            _ => None,
        });
        let Some(count) = count else {
            return Some(batch);
        };
        if self.lock().message_count() + count > self.settings.max_messages {
            return Some(batch);
        }
        let n = batch.len() as u64;
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        for request in &batch {
            buffer.extend_from_slice(&request.change.encoded);
        }
        let written = self.write_frame(&buffer);
        self.buffer = buffer;
        let frame = match written {
            Ok(frame) => frame,
            Err(reason) => {
                refuse(batch, &format!("journal write failed: {reason}"));
                return None;
            }
        };
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        let mut requests = batch.into_iter().peekable();
        while requests.peek().is_some() {
            // Locked a slice at a time, as in `commit`.
            let mut state = self.lock();
            let held = Instant::now();
            let mut publish = Vec::new();
            for request in requests.by_ref() {
                state.apply(request.change.redo, &mut publish);
                answers.push((request.reply, Ok(Reply::Done)));
                if held.elapsed() >= LOCK_SLICE {
                    break;
                }
            }
            state.publish_when_durable(frame, publish);
        }
        self.counters.records_written.fetch_add(count, Ordering::Relaxed);
        self.counters.write_requests.fetch_add(n, Ordering::Relaxed);
        self.counters.largest_batch.fetch_max(n, Ordering::Relaxed);
        self.release(frame, answers);
        None
    }

    /// Decides one request's answer and, unless refused, applies its change
    /// and appends its redo to the frame.
    fn decide(
        &self,
        buffer: &mut Vec<u8>,
        state: &mut State,
        change: Change,
        instant: Instant,
        publish: &mut Vec<Publish>,
        records: &mut u64,
    ) -> Result<Reply, StorageError> {
        match &change.redo {
            Redo::Enqueue { records: batch, .. } => {
                let count = batch.len() as u64;
                if state.message_count() + count > self.settings.max_messages {
                    // Make room from the oldest final records first.
                    let (prunable, _) =
                        state.prunable(0, 0, self.settings.max_messages.saturating_sub(count), PRUNE_PER_BATCH);
                    if !prunable.is_empty() {
                        self.counters.pruned.fetch_add(prunable.len() as u64, Ordering::Relaxed);
                        Self::apply(buffer, state, Redo::Prune(prunable), publish).map_err(engine)?;
                    }
                    if state.message_count() + count > self.settings.max_messages {
                        return Err(StorageError::Full(self.settings.max_messages));
                    }
                }
                *records += count;
            }
            Redo::Insert(batch) => *records += batch.len() as u64,
            Redo::Cancelled { id, .. } | Redo::Replaced { id, .. } => {
                let owner = change.owner.as_deref().unwrap_or_default();
                if let Some(refused) = state.check_change(id, owner, instant) {
                    return Ok(Reply::Outcome(refused));
                }
                Self::apply_prepared(buffer, state, change, publish);
                return Ok(Reply::Outcome(ChangeOutcome::Changed));
            }
            Redo::Receipt { receipt, .. }
                if receipt.matched.is_none() && state.unmatched_count() >= self.settings.max_unmatched() =>
            {
                // Refused, not dropped: the upstream gets ESME_RX_T_APPN
                // and sends it again later.
                tracing::warn!(
                    kept = state.unmatched_count(),
                    upstream = %receipt.upstream,
                    "unmatched receipts at their bound: receipt refused for the upstream to resend"
                );
                return Err(StorageError::Full(self.settings.max_unmatched()));
            }
            _ => {}
        }
        Ok(match Self::apply_prepared(buffer, state, change, publish) {
            Applied::Done => Reply::Done,
            Applied::Found(found) => Reply::Found(found),
            Applied::Founds(found) => Reply::Founds(found),
            Applied::Receipt(outcome) => Reply::Receipt(outcome),
            Applied::Count(count) => Reply::Count(count),
        })
    }

    /// Appends a prepared change's redo to the frame and applies it.
    fn apply_prepared(buffer: &mut Vec<u8>, state: &mut State, change: Change, publish: &mut Vec<Publish>) -> Applied {
        buffer.extend_from_slice(&change.encoded);
        state.apply(change.redo, publish)
    }

    /// Starts a snapshot when the journal has grown enough and none is
    /// being written.
    fn maybe_snapshot(&mut self) {
        if self.journal.bytes_since_snapshot() < self.settings.snapshot_bytes {
            return;
        }
        if let Some(handle) = &self.snapshot {
            if !handle.is_finished() {
                return;
            }
            if let Some(handle) = self.snapshot.take() {
                match handle.join() {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "journal snapshot failed; retrying"),
                    Err(_) => tracing::error!("journal snapshot thread panicked; retrying"),
                }
            }
        }
        let point = match self.journal.snapshot_point() {
            Ok(point) => point,
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "journal rotation failed: the storage stops accepting writes");
                self.pipeline.lock().failed = Some(reason);
                self.pipeline.wake_all();
                return;
            }
        };
        // Under the lock only long enough to take references to the records
        // and copies of the rest; encoding and writing run on their own
        // thread while writes go on (see `State::snapshot`).
        let started = Instant::now();
        let snapshot = self.lock().snapshot(SNAPSHOT_CHUNK);
        tracing::info!(ms = started.elapsed().as_millis() as u64, "journal snapshot taken");
        let counters = self.counters.clone();
        let spawned = std::thread::Builder::new()
            .name("journal-snapshot".into())
            .spawn(move || {
                run_in_background();
                let written = log::write_snapshot(point, snapshot.into_frames()).map_err(|e| e.to_string());
                match &written {
                    Ok(bytes) => {
                        counters.snapshots.fetch_add(1, Ordering::Relaxed);
                        let ms = started.elapsed().as_millis() as u64;
                        tracing::info!(bytes, ms, "journal snapshot written");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "journal snapshot failed; the journal since the last one is kept")
                    }
                }
                written
            });
        match spawned {
            Ok(handle) => self.snapshot = Some(handle),
            Err(e) => tracing::error!(error = %e, "journal snapshot thread not started"),
        }
    }
}

/// Lowers the calling thread's scheduling priority (to nice 10, never
/// raising it) for work that no caller waits on: encoding and writing a
/// snapshot. On a machine the gateway keeps busy, the snapshot then runs
/// mostly in the time the sessions, relay and committer leave idle instead
/// of taking a core from them; under full load it still gets about a tenth
/// of a core (the weight of nice 10 against nice 0), so it finishes and the
/// journal stays bounded.
///
/// On Linux the nice value is a property of each thread (setpriority(2),
/// NOTES), so this changes only the caller. Elsewhere it does nothing.
fn run_in_background() {
    #[cfg(target_os = "linux")]
    {
        const NICE: libc::c_int = 10;
        // SAFETY: plain system calls on the calling thread's own id. A
        // thread already below that priority is left as it is (getpriority
        // answers -1 on error, which is then below NICE too: one attempt).
        let done = unsafe {
            let tid = libc::gettid() as libc::id_t;
            if libc::getpriority(libc::PRIO_PROCESS, tid) >= NICE {
                return;
            }
            libc::setpriority(libc::PRIO_PROCESS, tid, NICE)
        };
        if done != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "the snapshot thread keeps its priority");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod background_tests {
    /// The nice value of thread `tid` (getpriority's answer; -1 can be a
    /// value, so errno is cleared first and checked).
    fn nice_of(tid: libc::pid_t) -> i32 {
        // SAFETY: errno is this thread's; getpriority reads another thread's nice value.
        unsafe {
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
            assert_eq!(*libc::__errno_location(), 0, "getpriority failed");
            nice
        }
    }

    #[test]
    fn only_the_calling_thread_runs_in_background() {
        // SAFETY: gettid has no preconditions.
        let own = unsafe { libc::gettid() };
        let before = nice_of(own);
        let other = std::thread::spawn(|| {
            super::run_in_background();
            // SAFETY: as above.
            let tid = unsafe { libc::gettid() };
            nice_of(tid)
        })
        .join()
        .unwrap();
        assert_eq!(other, 10.max(before), "the snapshot thread's nice value");
        assert_eq!(nice_of(own), before, "the caller's thread keeps its priority");
    }
}
