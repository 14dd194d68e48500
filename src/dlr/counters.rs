//! What the receipts path counts. Each event is also logged (debug when it
//! is routine, warn when someone should look).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of the correlator (shared with its tasks; read with [`DlrCounters::snapshot`]).
#[derive(Debug, Default)]
pub struct DlrCounters {
    /// Receipts matched to one of our messages and recorded (at once or after being held).
    pub matched: AtomicU64,
    /// Of those, matched only after being held.
    pub matched_after_hold: AtomicU64,
    /// Receipts the store already had for that message and state (an upstream resending).
    pub duplicates: AtomicU64,
    /// Receipts put in the hold set (no upstream id matched yet).
    pub held: AtomicU64,
    /// Receipts in the hold set now.
    pub holding: AtomicU64,
    /// Receipts left unmatched: not matched within `hold_secs`, or not held
    /// because the hold set was full. They stay stored as unmatched.
    pub unmatched: AtomicU64,
    /// Client receipts queued in an outbox by the correlator.
    pub forwarded: AtomicU64,
    /// Mobile-originated messages queued for a client.
    pub mo_routed: AtomicU64,
    /// Mobile-originated messages no `[[mo_routes]]` rule matched (answered ESME_RINVDSTADR).
    pub mo_unrouted: AtomicU64,
    /// Receipts without a usable id or state (answered ESME_RX_P_APPN).
    pub unparseable: AtomicU64,
    /// Storage calls that failed or timed out (the upstream was answered ESME_RX_T_APPN).
    pub storage_errors: AtomicU64,
}

/// A copy of [`DlrCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DlrStats {
    pub matched: u64,
    pub matched_after_hold: u64,
    pub duplicates: u64,
    pub held: u64,
    pub holding: u64,
    pub unmatched: u64,
    pub forwarded: u64,
    pub mo_routed: u64,
    pub mo_unrouted: u64,
    pub unparseable: u64,
    pub storage_errors: u64,
}

impl DlrCounters {
    pub fn snapshot(&self) -> DlrStats {
        DlrStats {
            matched: self.matched.load(Relaxed),
            matched_after_hold: self.matched_after_hold.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            held: self.held.load(Relaxed),
            holding: self.holding.load(Relaxed),
            unmatched: self.unmatched.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            mo_routed: self.mo_routed.load(Relaxed),
            mo_unrouted: self.mo_unrouted.load(Relaxed),
            unparseable: self.unparseable.load(Relaxed),
            storage_errors: self.storage_errors.load(Relaxed),
        }
    }
}

/// Adds one.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}
