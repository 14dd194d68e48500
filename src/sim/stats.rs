//! What the simulator counts: lock-free counters while it runs, and a
//! [`SimStats`] snapshot (serde `Serialize`, and `Display` for people).

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use serde::Serialize;
use smsmax_protocol::receipt::ReceiptState;

/// Receipts per `stat:` value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ByState {
    pub delivrd: u64,
    pub undeliv: u64,
    pub expired: u64,
    pub rejectd: u64,
    pub deleted: u64,
    pub acceptd: u64,
    pub unknown: u64,
    pub enroute: u64,
}

impl ByState {
    pub fn total(&self) -> u64 {
        self.delivrd
            + self.undeliv
            + self.expired
            + self.rejectd
            + self.deleted
            + self.acceptd
            + self.unknown
            + self.enroute
    }

    /// The count for one state (`Other` states are never produced by the simulator).
    pub fn get(&self, state: &ReceiptState) -> u64 {
        match state {
            ReceiptState::Delivered => self.delivrd,
            ReceiptState::Undeliverable => self.undeliv,
            ReceiptState::Expired => self.expired,
            ReceiptState::Rejected => self.rejectd,
            ReceiptState::Deleted => self.deleted,
            ReceiptState::Accepted => self.acceptd,
            ReceiptState::Unknown => self.unknown,
            ReceiptState::Enroute => self.enroute,
            ReceiptState::Other(_) => 0,
        }
    }
}

/// Binds accepted, per bind type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BindCounts {
    pub transmitter: u64,
    pub receiver: u64,
    pub transceiver: u64,
}

impl BindCounts {
    pub fn total(&self) -> u64 {
        self.transmitter + self.receiver + self.transceiver
    }
}

/// A snapshot of everything the simulator counted.
///
/// Duplicates: a submit that was answered `ESME_ROK` is keyed by its
/// destination address plus its message octets (`short_message`, or the
/// `message_payload` TLV, UDH included). Load generators put a unique
/// sequence number in each text, so a key seen twice is a message the ESME
/// sent twice. Submits refused by fault injection (throttled, errored,
/// dropped) are not keyed: sending those again is expected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// TCP connections accepted.
    pub connections: u64,
    /// Connections refused because `max_connections` were open.
    pub connections_refused: u64,
    /// Connections the simulator closed abruptly (`--drop-every`).
    pub connections_dropped: u64,
    /// Sessions open when the snapshot was taken.
    pub sessions_open: u64,
    /// Successful binds by type.
    pub binds: BindCounts,
    /// Binds refused (bad credentials, already bound).
    pub bind_failures: u64,
    /// submit_sm and data_sm received (whatever the answer).
    pub submits_received: u64,
    /// Submits answered with ESME_ROK and a message id.
    pub submits_accepted: u64,
    /// Accepted submits whose key (destination + text) was new.
    pub distinct_messages: u64,
    /// Accepted submits whose key was seen before.
    pub duplicates: u64,
    /// Accepted submits not checked for duplicates because the key set was full.
    pub dedup_untracked: u64,
    /// Submits answered ESME_RTHROTTLED by `--throttle-share`.
    pub throttled: u64,
    /// Submits answered with `--error-status` by `--error-share`.
    pub errored: u64,
    /// Requests refused for another reason (wrong bind state, unsupported operation).
    pub refused: u64,
    /// Frames that did not decode.
    pub malformed: u64,
    /// Accepted submits that asked for a receipt the outcome calls for.
    pub receipts_requested: u64,
    /// Receipts sent at least once, by state (each counted once).
    pub receipts_sent: ByState,
    /// Receipts sent before their submit_sm_resp (`--receipts-before-resp-share`).
    pub receipts_before_resp: u64,
    /// Receipts the ESME answered with ESME_ROK.
    pub receipts_acked: u64,
    /// Receipt sends repeated after a response timeout or an error response.
    pub receipts_retried: u64,
    /// Receipts given up after their retry also failed.
    pub receipts_failed: u64,
    /// Receipts held now: waiting for their delay, for a bind, or for a response.
    pub receipts_pending: u64,
    /// Receipts not even held because the pending queue was full.
    pub receipts_dropped: u64,
    /// Mobile-originated deliver_sm sent at least once.
    pub mo_sent: u64,
    /// MO messages the ESME answered with ESME_ROK.
    pub mo_acked: u64,
    /// MO messages held now (waiting for a bind or a response).
    pub mo_pending: u64,
    /// MO messages not held because the pending queue was full.
    pub mo_dropped: u64,
    /// MO messages given up after their retry also failed.
    pub mo_failed: u64,
}

/// The live counters behind [`SimStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_dropped: AtomicU64,
    pub sessions_open: AtomicU64,
    pub binds_transmitter: AtomicU64,
    pub binds_receiver: AtomicU64,
    pub binds_transceiver: AtomicU64,
    pub bind_failures: AtomicU64,
    pub submits_received: AtomicU64,
    pub submits_accepted: AtomicU64,
    pub distinct_messages: AtomicU64,
    pub duplicates: AtomicU64,
    pub dedup_untracked: AtomicU64,
    pub throttled: AtomicU64,
    pub errored: AtomicU64,
    pub refused: AtomicU64,
    pub malformed: AtomicU64,
    pub receipts_requested: AtomicU64,
    /// Indexed by `message_state` - 1 (1..=8).
    pub receipts_sent: [AtomicU64; 8],
    pub receipts_before_resp: AtomicU64,
    pub receipts_acked: AtomicU64,
    pub receipts_retried: AtomicU64,
    pub receipts_failed: AtomicU64,
    pub receipts_pending: AtomicU64,
    pub receipts_dropped: AtomicU64,
    pub mo_sent: AtomicU64,
    pub mo_acked: AtomicU64,
    pub mo_pending: AtomicU64,
    pub mo_dropped: AtomicU64,
    pub mo_failed: AtomicU64,
}

/// Adds one.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl Counters {
    pub fn receipt_sent(&self, state: &ReceiptState) {
        if let Some(slot) = state
            .message_state()
            .and_then(|v| self.receipts_sent.get(usize::from(v).wrapping_sub(1)))
        {
            bump(slot);
        }
    }

    pub fn snapshot(&self) -> SimStats {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let sent = |state: ReceiptState| {
            state
                .message_state()
                .and_then(|v| self.receipts_sent.get(usize::from(v) - 1))
                .map_or(0, get)
        };
        SimStats {
            connections: get(&self.connections),
            connections_refused: get(&self.connections_refused),
            connections_dropped: get(&self.connections_dropped),
            sessions_open: get(&self.sessions_open),
            binds: BindCounts {
                transmitter: get(&self.binds_transmitter),
                receiver: get(&self.binds_receiver),
                transceiver: get(&self.binds_transceiver),
            },
            bind_failures: get(&self.bind_failures),
            submits_received: get(&self.submits_received),
            submits_accepted: get(&self.submits_accepted),
            distinct_messages: get(&self.distinct_messages),
            duplicates: get(&self.duplicates),
            dedup_untracked: get(&self.dedup_untracked),
            throttled: get(&self.throttled),
            errored: get(&self.errored),
            refused: get(&self.refused),
            malformed: get(&self.malformed),
            receipts_requested: get(&self.receipts_requested),
            receipts_sent: ByState {
                delivrd: sent(ReceiptState::Delivered),
                undeliv: sent(ReceiptState::Undeliverable),
                expired: sent(ReceiptState::Expired),
                rejectd: sent(ReceiptState::Rejected),
                deleted: sent(ReceiptState::Deleted),
                acceptd: sent(ReceiptState::Accepted),
                unknown: sent(ReceiptState::Unknown),
                enroute: sent(ReceiptState::Enroute),
            },
            receipts_before_resp: get(&self.receipts_before_resp),
            receipts_acked: get(&self.receipts_acked),
            receipts_retried: get(&self.receipts_retried),
            receipts_failed: get(&self.receipts_failed),
            receipts_pending: get(&self.receipts_pending),
            receipts_dropped: get(&self.receipts_dropped),
            mo_sent: get(&self.mo_sent),
            mo_acked: get(&self.mo_acked),
            mo_pending: get(&self.mo_pending),
            mo_dropped: get(&self.mo_dropped),
            mo_failed: get(&self.mo_failed),
        }
    }
}

/// The human-readable summary `smsmax sim` prints on exit.
impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "smsmax sim summary")?;
        writeln!(
            f,
            "  connections      {} accepted, {} refused, {} dropped on purpose, {} open",
            self.connections, self.connections_refused, self.connections_dropped, self.sessions_open
        )?;
        writeln!(
            f,
            "  binds            {} (transmitter {}, receiver {}, transceiver {}), {} refused",
            self.binds.total(),
            self.binds.transmitter,
            self.binds.receiver,
            self.binds.transceiver,
            self.bind_failures
        )?;
        writeln!(
            f,
            "  submits          {} received, {} accepted, {} throttled, {} errored, {} refused, {} malformed frames",
            self.submits_received, self.submits_accepted, self.throttled, self.errored, self.refused, self.malformed
        )?;
        writeln!(
            f,
            "  messages         {} distinct, {} duplicates, {} not checked",
            self.distinct_messages, self.duplicates, self.dedup_untracked
        )?;
        let s = &self.receipts_sent;
        writeln!(
            f,
            "  receipts sent    {} (DELIVRD {}, UNDELIV {}, EXPIRED {}, REJECTD {}, other {}), {} before resp",
            s.total(),
            s.delivrd,
            s.undeliv,
            s.expired,
            s.rejectd,
            s.deleted + s.acceptd + s.unknown + s.enroute,
            self.receipts_before_resp
        )?;
        writeln!(
            f,
            "  receipts         {} requested, {} acknowledged, {} retried, {} failed, {} pending, {} dropped",
            self.receipts_requested,
            self.receipts_acked,
            self.receipts_retried,
            self.receipts_failed,
            self.receipts_pending,
            self.receipts_dropped
        )?;
        write!(
            f,
            "  MO               {} sent, {} acknowledged, {} failed, {} pending, {} dropped",
            self.mo_sent, self.mo_acked, self.mo_failed, self.mo_pending, self.mo_dropped
        )
    }
}
