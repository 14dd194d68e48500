//! What the load generator counts while it runs, the receipt bookkeeping,
//! and the final report.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    hash::{BuildHasherDefault, Hasher},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use hdrhistogram::Histogram;
use serde::Serialize;
use smsmax_protocol::{
    pdu::SubmitSm,
    receipt::{Receipt, ReceiptState},
    CommandStatus, Tlv,
};

/// Live counters, read by the progress bar and the report.
#[derive(Default, Debug)]
pub struct Counters {
    /// Messages started (a long one counts once).
    pub messages: AtomicU64,
    /// submit_sm PDUs sent.
    pub submitted: AtomicU64,
    /// submit_sm answered ESME_ROK.
    pub acknowledged: AtomicU64,
    /// submit_sm answered ESME_RTHROTTLED.
    pub throttled: AtomicU64,
    /// submit_sm answered with any other error status.
    pub rejected: AtomicU64,
    /// No response in time (or no window slot in time).
    pub timeouts: AtomicU64,
    /// The session ended under the request, or another client error.
    pub errors: AtomicU64,
    /// Receipts received (matched, duplicate or unmatched).
    pub receipts: AtomicU64,
    rejected_by_status: Mutex<BTreeMap<u32, u64>>,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reject(&self, status: CommandStatus) {
        Self::add(&self.rejected);
        let mut map = self.rejected_by_status.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(status.0).or_default() += 1;
    }

    pub fn rejected_by_status(&self) -> BTreeMap<String, u64> {
        let map = self.rejected_by_status.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(status, n)| (CommandStatus(*status).to_string(), *n))
            .collect()
    }
}

/// An empty latency histogram in microseconds: 1 µs to 1 hour at 3 significant digits.
pub fn histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
}

/// What one receipt says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptInfo {
    pub id: String,
    pub state: String,
}

/// Reads a receipt from a deliver_sm: `receipted_message_id` and
/// `message_state` TLVs when present, the Appendix B text otherwise.
/// `None` when it is not a receipt or names no message.
pub fn parse_receipt(sm: &SubmitSm) -> Option<ReceiptInfo> {
    let tlv_id = sm.tlvs.iter().find_map(|t| match t {
        Tlv::ReceiptedMessageId(id) => Some(id.to_string_lossy().into_owned()),
        _ => None,
    });
    let tlv_state = sm.tlvs.iter().find_map(|t| match t {
        Tlv::MessageState(s) => ReceiptState::from_message_state(*s),
        _ => None,
    });
    if let (Some(id), Some(state)) = (&tlv_id, &tlv_state) {
        return Some(ReceiptInfo {
            id: id.clone(),
            state: state.as_str().to_string(),
        });
    }
    let text = Receipt::parse_bytes(sm.message()).ok();
    let id = tlv_id.or_else(|| text.as_ref().map(|r| r.id.clone()))?;
    let state = tlv_state
        .or_else(|| text.map(|r| r.stat))
        .map_or_else(|| "UNKNOWN".to_string(), |s| s.as_str().to_string());
    Some(ReceiptInfo { id, state })
}

/// Early receipts (for ids not acknowledged yet) kept at most.
const MAX_EARLY: usize = 1_000_000;

/// Matches receipts to acknowledged submits.
#[derive(Default)]
pub struct ReceiptTracker {
    inner: Mutex<Tracker>,
}

/// A fast, non-cryptographic hash for the tracker's maps (the FxHash
/// mix). Every submit and every receipt goes through these maps, and SipHash
/// was a tenth of the bench's CPU; the keys are ids the gateway under test
/// made, not input worth defending against collision floods.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl IdHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // The multiply leaves the low bits depending on the low input bits
        // only, and the map picks buckets by its low bits: ids that differ
        // in their last characters would share buckets. splitmix64's
        // finaliser spreads every input bit over every output bit.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

type IdBuild = BuildHasherDefault<IdHasher>;

/// Where an acknowledged id stands.
#[derive(Clone, Copy)]
enum Expected {
    /// No receipt yet; the message's number.
    Awaiting(u64),
    Receipted,
}

#[derive(Default)]
struct Tracker {
    /// Acknowledged ids, by their digest ([`id_key`]).
    ids: HashMap<u128, Expected, IdBuild>,
    /// How many of `ids` are awaiting their receipt.
    awaiting: usize,
    /// Receipts that came before their submit_sm_resp was processed.
    early: HashMap<String, String, IdBuild>,
    by_state: BTreeMap<String, u64>,
    duplicates: u64,
    dropped_early: u64,
    unparseable: u64,
}

/// A 128-bit digest of an id, which the tracker keeps instead of the id:
/// a receipt then costs one map lookup, with no string compare, allocation
/// or free (a map keyed by the id's `String` and its removal on each
/// receipt were 15% of the bench's CPU in the full flow). Two foldhash
/// seeds: ids are told apart unless both 64-bit halves collide.
fn id_key(id: &str) -> u128 {
    use std::hash::BuildHasher;
    let half = |seed: u64| foldhash::fast::FixedState::with_seed(seed).hash_one(id);
    (u128::from(half(0x2545_f491_4f6c_dd1d)) << 64) | u128::from(half(0x9e37_79b9_7f4a_7c15))
}

impl ReceiptTracker {
    /// A tracker with room for `expected` receipts (no rehashing on the way).
    pub fn with_capacity(expected: usize) -> Self {
        let tracker = ReceiptTracker::default();
        tracker.lock().ids.reserve(expected.min(1 << 22));
        tracker
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A submit acknowledged with `id`: a receipt is now expected.
    pub fn acknowledged(&self, id: String, n: u64) {
        let key = id_key(&id);
        let mut t = self.lock();
        let early = if t.early.is_empty() { None } else { t.early.remove(&id) };
        let before = match early {
            Some(state) => {
                *t.by_state.entry(state).or_default() += 1;
                t.ids.insert(key, Expected::Receipted)
            }
            None => {
                t.awaiting += 1;
                t.ids.insert(key, Expected::Awaiting(n))
            }
        };
        // The same id acknowledged twice: it is still one message awaited.
        if let Some(Expected::Awaiting(_)) = before {
            t.awaiting -= 1;
        }
    }

    pub fn receipt(&self, receipt: ReceiptInfo) {
        let key = id_key(&receipt.id);
        let mut guard = self.lock();
        let t = &mut *guard;
        match t.ids.get_mut(&key) {
            Some(expected @ Expected::Awaiting(_)) => {
                *expected = Expected::Receipted;
                t.awaiting -= 1;
                *t.by_state.entry(receipt.state).or_default() += 1;
            }
            Some(Expected::Receipted) => t.duplicates += 1,
            None if t.early.contains_key(&receipt.id) => t.duplicates += 1,
            None if t.early.len() < MAX_EARLY => {
                t.early.insert(receipt.id, receipt.state);
            }
            None => t.dropped_early += 1,
        }
    }

    pub fn unparseable(&self) {
        self.lock().unparseable += 1;
    }

    pub fn outstanding(&self) -> usize {
        self.lock().awaiting
    }

    pub fn report(&self, requested: bool, waited_secs: f64) -> ReceiptReport {
        let t = self.lock();
        let mut never: Vec<u64> = t
            .ids
            .values()
            .filter_map(|e| match e {
                Expected::Awaiting(n) => Some(*n),
                Expected::Receipted => None,
            })
            .collect();
        never.sort_unstable();
        never.truncate(10);
        ReceiptReport {
            requested,
            matched: t.by_state.values().sum(),
            by_state: t.by_state.clone(),
            duplicates: t.duplicates,
            unmatched: t.early.len() as u64 + t.dropped_early,
            unparseable: t.unparseable,
            never_receipted: t.awaiting as u64,
            never_receipted_sample: never,
            waited_secs,
        }
    }
}

/// Receipts, in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptReport {
    /// Receipts were requested (registered_delivery 1).
    pub requested: bool,
    /// Receipts matched to an acknowledged submit_sm (first one per id).
    pub matched: u64,
    /// Matched receipts by state (DELIVRD, UNDELIV, ...).
    pub by_state: BTreeMap<String, u64>,
    /// Receipts for an id already receipted.
    pub duplicates: u64,
    /// Receipts for ids never acknowledged to us.
    pub unmatched: u64,
    /// Receipts (esm_class receipt bit) with neither TLVs nor readable text.
    pub unparseable: u64,
    /// submit_sm acknowledged whose receipt never came.
    pub never_receipted: u64,
    /// The first few message numbers among them.
    pub never_receipted_sample: Vec<u64>,
    /// Time spent after the last response waiting for receipts.
    pub waited_secs: f64,
}

/// Submit latency percentiles, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub samples: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencyReport {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        LatencyReport {
            samples: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// The result of one run; printed by `smsmax bench`, returned by [`super::run`].
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub target: String,
    pub binds: usize,
    pub bind_mode: String,
    pub window: usize,
    /// submit_sm per second asked for; `None`: as fast as possible.
    pub rate: Option<u32>,
    pub mix: String,
    /// Messages started (a long message counts once).
    pub messages: u64,
    /// submit_sm PDUs sent (a long message counts once per part).
    pub submitted: u64,
    /// submit_sm answered ESME_ROK.
    pub acknowledged: u64,
    /// submit_sm answered ESME_RTHROTTLED (not in `rejected`).
    pub throttled: u64,
    /// submit_sm answered with another error status.
    pub rejected: u64,
    pub rejected_by_status: BTreeMap<String, u64>,
    /// No response (or no window slot) in time.
    pub timeouts: u64,
    /// Requests lost with their session, and other client errors.
    pub errors: u64,
    /// Sessions that ended before the run did, with why.
    pub sessions_lost: Vec<String>,
    /// From the first submit to the last response.
    pub elapsed_secs: f64,
    /// Acknowledged submit_sm per second over `elapsed_secs`.
    pub throughput_per_sec: f64,
    /// submit → submit_sm_resp of acknowledged submits.
    pub latency: LatencyReport,
    pub receipts: ReceiptReport,
    /// deliver_sm that were not receipts (mobile-originated).
    pub mo_received: u64,
}

impl BenchReport {
    /// Everything acknowledged was receipted (when receipts were asked for)
    /// and no session was lost.
    pub fn is_clean(&self) -> bool {
        self.sessions_lost.is_empty()
            && self.errors == 0
            && self.timeouts == 0
            && (!self.receipts.requested || (self.receipts.never_receipted == 0 && self.receipts.duplicates == 0))
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self
            .rate
            .map_or_else(|| "as fast as possible".to_string(), |r| format!("{r}/s"));
        writeln!(f, "smsmax bench against {}", self.target)?;
        writeln!(
            f,
            "  binds {} x window {} ({}), rate {rate}, mix {}",
            self.binds, self.window, self.bind_mode, self.mix
        )?;
        writeln!(f, "messages        {:>12}", self.messages)?;
        writeln!(f, "submit_sm sent  {:>12}", self.submitted)?;
        writeln!(f, "acknowledged    {:>12}", self.acknowledged)?;
        writeln!(f, "throttled       {:>12}", self.throttled)?;
        writeln!(f, "rejected        {:>12}", self.rejected)?;
        for (status, n) in &self.rejected_by_status {
            writeln!(f, "  {status:<28} {n:>8}")?;
        }
        writeln!(f, "timeouts        {:>12}", self.timeouts)?;
        writeln!(f, "errors          {:>12}", self.errors)?;
        for lost in &self.sessions_lost {
            writeln!(f, "  session lost: {lost}")?;
        }
        writeln!(f, "elapsed         {:>12.3} s", self.elapsed_secs)?;
        writeln!(f, "throughput      {:>12.0} acknowledged/s", self.throughput_per_sec)?;
        let l = &self.latency;
        writeln!(
            f,
            "latency ms      p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (mean {:.3}, {} samples)",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.samples
        )?;
        let r = &self.receipts;
        if r.requested {
            writeln!(f, "receipts        {:>12} matched", r.matched)?;
            for (state, n) in &r.by_state {
                writeln!(f, "  {state:<28} {n:>8}")?;
            }
            writeln!(f, "  duplicates                   {:>8}", r.duplicates)?;
            writeln!(f, "  unmatched                    {:>8}", r.unmatched)?;
            if r.unparseable > 0 {
                writeln!(f, "  unparseable                  {:>8}", r.unparseable)?;
            }
            write!(f, "never receipted {:>12}", r.never_receipted)?;
            if !r.never_receipted_sample.is_empty() {
                write!(f, "  (messages #{:?}...)", r.never_receipted_sample)?;
            }
            writeln!(f, "  after waiting {:.1} s", r.waited_secs)?;
        } else {
            writeln!(
                f,
                "receipts        not requested ({} received)",
                r.matched + r.unmatched
            )?;
        }
        if self.mo_received > 0 {
            writeln!(f, "MO received     {:>12}", self.mo_received)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smsmax_protocol::types::{esm_class, COctetString};

    #[test]
    fn receipts_match_early_late_and_duplicate() {
        let t = ReceiptTracker::default();
        let r = |id: &str, state: &str| ReceiptInfo {
            id: id.into(),
            state: state.into(),
        };
        t.acknowledged("a".into(), 1);
        t.acknowledged("b".into(), 2);
        t.receipt(r("a", "DELIVRD"));
        t.receipt(r("a", "DELIVRD"));
        // Before its submit_sm_resp was processed.
        t.receipt(r("c", "UNDELIV"));
        t.receipt(r("c", "UNDELIV"));
        t.acknowledged("c".into(), 3);
        t.receipt(r("zz", "DELIVRD"));
        let report = t.report(true, 0.0);
        assert_eq!(report.matched, 2);
        assert_eq!(report.by_state.get("DELIVRD"), Some(&1));
        assert_eq!(report.by_state.get("UNDELIV"), Some(&1));
        assert_eq!(report.duplicates, 2);
        assert_eq!(report.unmatched, 1);
        assert_eq!(report.never_receipted, 1);
        assert_eq!(report.never_receipted_sample, vec![2]);
        assert_eq!(t.outstanding(), 1);
        // An early receipt's id, once acknowledged, is receipted: another
        // receipt for it is a duplicate.
        t.receipt(r("c", "UNDELIV"));
        assert_eq!(t.report(true, 0.0).duplicates, 3);
        // The same id acknowledged twice is awaited once.
        t.acknowledged("d".into(), 4);
        t.acknowledged("d".into(), 5);
        assert_eq!(t.outstanding(), 2);
        t.receipt(r("d", "DELIVRD"));
        t.receipt(r("b", "DELIVRD"));
        assert_eq!(t.outstanding(), 0);
        let report = t.report(true, 0.0);
        assert_eq!((report.matched, report.never_receipted, report.duplicates), (4, 0, 3));
    }

    #[test]
    fn receipt_from_tlvs_or_text() {
        let mut sm = SubmitSm {
            esm_class: esm_class::DELIVERY_RECEIPT,
            short_message: bytes::Bytes::from_static(
                b"id:ABC123 sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:hi",
            ),
            ..SubmitSm::default()
        };
        assert_eq!(
            parse_receipt(&sm),
            Some(ReceiptInfo {
                id: "ABC123".into(),
                state: "DELIVRD".into()
            })
        );
        sm.tlvs = vec![
            Tlv::ReceiptedMessageId(COctetString::try_from("xyz").unwrap()),
            Tlv::MessageState(5),
        ];
        assert_eq!(
            parse_receipt(&sm),
            Some(ReceiptInfo {
                id: "xyz".into(),
                state: "UNDELIV".into()
            })
        );
    }
}
