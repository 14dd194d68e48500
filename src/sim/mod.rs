//! `smsmax sim`: an SMSC simulator for tests, demos and benchmarks.
//!
//! It accepts binds (any credentials, or one configured system_id and
//! password), answers submit_sm and data_sm with message ids from a counter
//! (hex, HEX or decimal, optionally zero-padded), and sends a delivery
//! receipt per submit that asked for one after a configurable delay, with a
//! seeded, deterministic mix of outcomes. Receipt ids can be formatted
//! differently from the ids in submit_sm_resp, to exercise the gateway's id
//! normalisation. Faults on demand: a share of submits throttled or answered
//! with an error, connections closed abruptly every N submits, receipts sent
//! before their submit_sm_resp, mobile-originated messages every N submits.
//!
//! Layout: this file holds the configuration and the [`SimHandle`]; the
//! sessions are in `session`, receipt and MO scheduling and delivery in
//! `receipts`, the counters in `stats`.
//!
//! Everything is bounded: connections (`max_connections`), each session's
//! writer queue and deliver_sm window, the receipts and MO messages held
//! (`max_pending`, beyond which they are dropped and counted) and the
//! duplicate detector's key set (`dedup_capacity`). Every wait has a timeout.

use std::{
    collections::HashSet,
    fmt,
    hash::{BuildHasherDefault, Hash, Hasher},
    net::SocketAddr,
    str::FromStr,
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use smsmax_protocol::{receipt::ReceiptState, CommandStatus};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::task::TaskTracker;

mod receipts;
mod session;
mod stats;

pub use stats::{BindCounts, ByState, SimStats};

use receipts::Router;
use stats::{bump, Counters};

/// How message ids are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IdFormat {
    /// Lowercase hexadecimal (`1a2b`).
    #[default]
    #[value(name = "hex")]
    Hex,
    /// Uppercase hexadecimal (`1A2B`).
    #[value(name = "HEX")]
    HexUpper,
    /// Decimal (`6699`).
    #[value(name = "decimal")]
    Decimal,
}

impl IdFormat {
    /// Formats `n`, zero-padded to `width` characters (at most 64).
    pub fn format(self, n: u64, width: usize) -> String {
        let width = width.min(64);
        match self {
            IdFormat::Hex => format!("{n:0width$x}"),
            IdFormat::HexUpper => format!("{n:0width$X}"),
            IdFormat::Decimal => format!("{n:0width$}"),
        }
    }
}

/// How the id in a receipt (text `id:` and `receipted_message_id`) is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReceiptIdFormat {
    /// Exactly the string the submit_sm_resp carried.
    #[default]
    #[value(name = "same")]
    Same,
    /// The same number in lowercase hexadecimal.
    #[value(name = "hex")]
    Hex,
    /// The same number in uppercase hexadecimal.
    #[value(name = "HEX")]
    HexUpper,
    /// The same number in decimal.
    #[value(name = "decimal")]
    Decimal,
}

/// Receipt outcomes and their weights, e.g. `delivrd=90,undeliv=5,expired=3,rejectd=2`.
///
/// Names are the Appendix B `stat:` values in any case (`delivrd`, `undeliv`,
/// `expired`, `rejectd`, `deleted`, `acceptd`, `unknown`, `enroute`);
/// weights are relative and need not add up to 100.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeMix {
    entries: Vec<(ReceiptState, u32)>,
    total: u64,
}

impl OutcomeMix {
    /// Every receipt `DELIVRD`.
    pub fn all_delivered() -> Self {
        OutcomeMix {
            entries: vec![(ReceiptState::Delivered, 1)],
            total: 1,
        }
    }

    pub fn entries(&self) -> &[(ReceiptState, u32)] {
        &self.entries
    }

    /// The outcome for a uniform value in `[0, 1)`.
    pub fn pick(&self, unit: f64) -> &ReceiptState {
        let target = ((unit * self.total as f64) as u64).min(self.total.saturating_sub(1));
        let mut acc = 0u64;
        for (state, weight) in &self.entries {
            acc += u64::from(*weight);
            if target < acc {
                return state;
            }
        }
        // Unreachable for a validated mix (total > 0); the last entry otherwise.
        self.entries.last().map_or(&ReceiptState::Delivered, |(s, _)| s)
    }
}

impl Default for OutcomeMix {
    fn default() -> Self {
        OutcomeMix::all_delivered()
    }
}

impl FromStr for OutcomeMix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut entries: Vec<(ReceiptState, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected STATE=WEIGHT"))?;
            let state = ReceiptState::known(name.trim()).ok_or_else(|| {
                format!("`{name}`: not a receipt state (delivrd, undeliv, expired, rejectd, deleted, acceptd, unknown, enroute)")
            })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the weight is not a whole number"))?;
            match entries.iter_mut().find(|(s, _)| *s == state) {
                Some(entry) => entry.1 = entry.1.saturating_add(weight),
                None => entries.push((state, weight)),
            }
        }
        entries.retain(|(_, w)| *w > 0);
        let total: u64 = entries.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return Err("the mix needs at least one state with a weight above 0".to_string());
        }
        Ok(OutcomeMix { entries, total })
    }
}

impl fmt::Display for OutcomeMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (state, weight)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={weight}", state.as_str().to_ascii_lowercase())?;
        }
        Ok(())
    }
}

/// Everything the simulator can be told. `Default` is a well-behaved SMSC
/// on 127.0.0.1:2776: any credentials, hex ids, every receipt `DELIVRD`
/// after 100 ms, no faults.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port (see [`SimHandle::addr`]).
    pub listen: SocketAddr,
    /// Only this system_id may bind (ESME_RINVSYSID otherwise); any when `None`.
    pub system_id: Option<String>,
    /// Only this password is accepted (ESME_RINVPASWD otherwise); any when `None`.
    pub password: Option<String>,
    /// Format of the id in submit_sm_resp / data_sm_resp.
    pub id_format: IdFormat,
    /// Zero-pad submit ids to this many characters (0: no padding).
    pub id_width: usize,
    /// The first id's number; `None` starts from the clock (milliseconds × 1000),
    /// so that a restarted simulator does not reuse the ids of the previous run.
    pub id_start: Option<u64>,
    /// Format of the id in receipts.
    pub receipt_id_format: ReceiptIdFormat,
    /// Zero-pad receipt ids to this many characters when `receipt_id_format` is not `Same`.
    pub receipt_id_width: usize,
    /// Time between a submit and its receipt.
    pub receipt_delay: Duration,
    /// Up to this much more, uniformly distributed (seeded).
    pub receipt_jitter: Duration,
    /// Receipt outcomes and their weights.
    pub mix: OutcomeMix,
    /// Seed for every random choice (outcome, faults, jitter): the n-th
    /// submit gets the same treatment in every run with the same seed.
    pub seed: u64,
    /// deliver_sm outstanding per session.
    pub window: usize,
    /// How long a deliver_sm waits for its response; also the write timeout.
    pub response_timeout: Duration,
    /// Receipts and MO messages held at once (waiting for their delay, a
    /// bind or a response); beyond, new ones are dropped and counted.
    pub max_pending: usize,
    /// Share of submits answered ESME_RTHROTTLED (0.0..=1.0).
    pub throttle_share: f64,
    /// Share of submits answered with `error_status` (0.0..=1.0).
    pub error_share: f64,
    /// The status `error_share` answers with.
    pub error_status: CommandStatus,
    /// Close the connection abruptly (no answer) on every N-th submit received, counted across the simulator; 0: never.
    pub drop_every: u64,
    /// Share of receipt-requesting submits whose receipt is sent (at once,
    /// without the delay) before their submit_sm_resp, which waits at most
    /// `response_timeout` for the receipt's deliver_sm_resp: the client has
    /// then handled a receipt for an id it has not been told yet. Applies while a receiver of
    /// the system_id is bound; otherwise the receipt takes the normal path.
    pub receipts_before_resp_share: f64,
    /// Send a mobile-originated deliver_sm after every N accepted submits; 0: never.
    pub mo_every: u64,
    /// Connections open at once; more are closed at once.
    pub max_connections: usize,
    /// How long a connection may stay unbound.
    pub bind_timeout: Duration,
    /// Message keys remembered for duplicate detection.
    pub dedup_capacity: usize,
    /// Keep the first this many accepted submits as they came (for tests
    /// that check what arrived, in which order: see [`SimHandle::kept`]);
    /// 0: none.
    pub keep_submits: usize,
}

/// An accepted submit as the simulator kept it ([`SimConfig::keep_submits`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptSubmit {
    /// The submit_sm_resp id it got.
    pub id: String,
    pub dest: String,
    pub esm_class: u8,
    pub data_coding: u8,
    /// short_message (or message_payload), UDH included.
    pub message: bytes::Bytes,
    /// `sar_msg_ref_num`, `sar_total_segments`, `sar_segment_seqnum`, when all three came.
    pub sar: Option<(u16, u8, u8)>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2776)),
            system_id: None,
            password: None,
            id_format: IdFormat::Hex,
            id_width: 0,
            id_start: None,
            receipt_id_format: ReceiptIdFormat::Same,
            receipt_id_width: 0,
            receipt_delay: Duration::from_millis(100),
            receipt_jitter: Duration::ZERO,
            mix: OutcomeMix::all_delivered(),
            seed: 1,
            window: 64,
            response_timeout: Duration::from_secs(5),
            max_pending: 1_000_000,
            throttle_share: 0.0,
            error_share: 0.0,
            error_status: CommandStatus::ESME_RSYSERR,
            drop_every: 0,
            receipts_before_resp_share: 0.0,
            mo_every: 0,
            max_connections: 1024,
            bind_timeout: Duration::from_secs(10),
            dedup_capacity: 4_000_000,
            keep_submits: 0,
        }
    }
}

impl SimConfig {
    /// Refuses values that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        let share = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(anyhow::anyhow!("{name} must be between 0 and 1, not {v}"))
            }
        };
        share("throttle share", self.throttle_share)?;
        share("error share", self.error_share)?;
        share("receipts-before-resp share", self.receipts_before_resp_share)?;
        if self.throttle_share + self.error_share > 1.0 + 1e-9 {
            anyhow::bail!("throttle share and error share add up to more than 1");
        }
        if self.window == 0 {
            anyhow::bail!("window must be at least 1");
        }
        if self.response_timeout.is_zero() || self.bind_timeout.is_zero() {
            anyhow::bail!("timeouts must be above 0");
        }
        if self.max_connections == 0 {
            anyhow::bail!("max connections must be at least 1");
        }
        if let Some(id) = &self.system_id {
            if id.len() > 15 {
                anyhow::bail!("system_id {id:?} is longer than SMPP's 15 characters");
            }
        }
        if let Some(password) = &self.password {
            if password.len() > 8 {
                anyhow::bail!("the password is longer than SMPP's 8 characters");
            }
        }
        Ok(())
    }
}

/// `smsmax sim` command-line options.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is logged).
    #[arg(long, default_value = "127.0.0.1:2776", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Accept only this system_id (default: any).
    #[arg(long, value_name = "ID")]
    pub system_id: Option<String>,
    /// Accept only this password (default: any).
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Format of message ids in submit_sm_resp.
    #[arg(long, value_enum, default_value = "hex")]
    pub id_format: IdFormat,
    /// Zero-pad message ids to this many characters (0: no padding).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub id_width: usize,
    /// Number of the first message id (default: from the clock, so restarts do not reuse ids).
    #[arg(long, value_name = "N")]
    pub id_start: Option<u64>,
    /// Format of the id in receipts: `same` as submit_sm_resp, or the same number as hex, HEX or decimal.
    #[arg(long, value_enum, default_value = "same")]
    pub receipt_id_format: ReceiptIdFormat,
    /// Zero-pad receipt ids to this many characters (not with `same`).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub receipt_id_width: usize,
    /// Delay between a submit and its receipt, in milliseconds.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub receipt_delay_ms: u64,
    /// Up to this many milliseconds added to each receipt's delay (seeded).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub receipt_jitter_ms: u64,
    /// Receipt outcomes and weights, e.g. delivrd=90,undeliv=5,expired=3,rejectd=2.
    #[arg(long, default_value = "delivrd=100", value_name = "MIX")]
    pub mix: OutcomeMix,
    /// Seed of every random choice (outcomes, faults, jitter).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// deliver_sm outstanding per session.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub window: usize,
    /// How long a deliver_sm waits for its response, in milliseconds (one retry follows).
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub response_timeout_ms: u64,
    /// Receipts and MO messages held at once; beyond, new ones are dropped and counted.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_pending: usize,
    /// Share of submits answered ESME_RTHROTTLED (0x58), 0 to 1.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub throttle_share: f64,
    /// Share of submits answered with --error-status, 0 to 1.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub error_share: f64,
    /// Status for --error-share, hex (0x45) or decimal.
    #[arg(long, default_value = "0x08", value_parser = parse_status, value_name = "STATUS")]
    pub error_status: CommandStatus,
    /// Close the connection abruptly, unanswered, on every N-th submit received (0: never).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub drop_every: u64,
    /// Share of receipt-requesting submits whose receipt is sent before their submit_sm_resp, 0 to 1.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub receipts_before_resp_share: f64,
    /// Send a mobile-originated deliver_sm after every N accepted submits (0: never).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub mo_every: u64,
    /// Connections open at once; more are closed.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_connections: usize,
    /// Seconds a connection may stay unbound.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub bind_timeout_secs: u64,
    /// Message keys remembered for duplicate detection.
    #[arg(long, default_value_t = 4_000_000, value_name = "N")]
    pub dedup_capacity: usize,
    /// Stop after this many seconds (default: run until SIGINT or SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Log filter (tracing directives), e.g. info or smsmax=debug.
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub log_level: String,
}

impl SimArgs {
    /// The simulator configuration these options describe (validated).
    pub fn config(&self) -> anyhow::Result<SimConfig> {
        let config = SimConfig {
            listen: self.listen,
            system_id: self.system_id.clone(),
            password: self.password.clone(),
            id_format: self.id_format,
            id_width: self.id_width,
            id_start: self.id_start,
            receipt_id_format: self.receipt_id_format,
            receipt_id_width: self.receipt_id_width,
            receipt_delay: Duration::from_millis(self.receipt_delay_ms),
            receipt_jitter: Duration::from_millis(self.receipt_jitter_ms),
            mix: self.mix.clone(),
            seed: self.seed,
            window: self.window,
            response_timeout: Duration::from_millis(self.response_timeout_ms),
            max_pending: self.max_pending,
            throttle_share: self.throttle_share,
            error_share: self.error_share,
            error_status: self.error_status,
            drop_every: self.drop_every,
            receipts_before_resp_share: self.receipts_before_resp_share,
            mo_every: self.mo_every,
            max_connections: self.max_connections,
            bind_timeout: Duration::from_secs(self.bind_timeout_secs),
            dedup_capacity: self.dedup_capacity,
            keep_submits: 0,
        };
        config.validate()?;
        Ok(config)
    }

    /// `--duration` as a `Duration`, if given and usable.
    pub fn duration(&self) -> anyhow::Result<Option<Duration>> {
        self.duration
            .map(|secs| {
                Duration::try_from_secs_f64(secs).map_err(|_| anyhow::anyhow!("--duration {secs}: not a duration"))
            })
            .transpose()
    }
}

/// Parses a command status written as hex (`0x45`) or decimal (`69`).
pub fn parse_status(s: &str) -> Result<CommandStatus, String> {
    let s = s.trim();
    let value = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    value
        .map(CommandStatus)
        .map_err(|_| format!("`{s}`: not a command status (hex like 0x45 or decimal)"))
}

/// What every task of one simulator shares.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub counters: Arc<Counters>,
    pub router: Arc<Router>,
    /// submit_sm / data_sm received so far (numbers the n-th submit).
    pub received: AtomicU64,
    /// Submits accepted so far (numbers message ids and outcomes).
    pub accepted: AtomicU64,
    pub id_start: u64,
    pub dedup: Dedup,
    /// The first `keep_submits` accepted submits, in the order they were accepted.
    pub kept: std::sync::Mutex<Vec<KeptSubmit>>,
}

impl Shared {
    /// The submit_sm_resp id of the `k`-th accepted message (0-based).
    pub fn submit_id(&self, k: u64) -> String {
        self.config
            .id_format
            .format(self.id_start.wrapping_add(k), self.config.id_width)
    }

    /// The receipt id of the `k`-th accepted message, given its submit id.
    pub fn receipt_id(&self, k: u64, submit_id: &str) -> String {
        let n = self.id_start.wrapping_add(k);
        let width = self.config.receipt_id_width;
        match self.config.receipt_id_format {
            ReceiptIdFormat::Same => submit_id.to_string(),
            ReceiptIdFormat::Hex => IdFormat::Hex.format(n, width),
            ReceiptIdFormat::HexUpper => IdFormat::HexUpper.format(n, width),
            ReceiptIdFormat::Decimal => IdFormat::Decimal.format(n, width),
        }
    }
}

/// A deterministic uniform value in `[0, 1)` for the `n`-th event of a
/// `stream` (outcome, fault, jitter...) under `seed` (splitmix64).
pub(crate) fn unit(seed: u64, stream: u64, n: u64) -> f64 {
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The random streams [`unit`] draws from.
pub(crate) mod streams {
    pub const FAULT: u64 = 1;
    pub const OUTCOME: u64 = 2;
    pub const JITTER: u64 = 3;
    pub const BEFORE_RESP: u64 = 4;
}

/// Whether a key (destination + message octets) was seen before: 64-bit
/// hashes in sharded sets, at most `capacity` in all.
pub(crate) struct Dedup {
    shards: Vec<Mutex<HashSet<u64, BuildHasherDefault<KeyHasher>>>>,
    per_shard: usize,
}

/// The dedup sets' keys are SipHash outputs already: hashing them again
/// (with SipHash, per lookup and per insert) was wasted work.
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by u64 keys; kept correct for any other.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // One cheap mix: the low bits pick the shard (the same within one
        // set), so fold high bits into them before the table uses them.
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What [`Dedup::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    New,
    Duplicate,
    Untracked,
}

const DEDUP_SHARDS: usize = 16;

impl Dedup {
    fn new(capacity: usize) -> Self {
        Dedup {
            shards: (0..DEDUP_SHARDS).map(|_| Mutex::new(HashSet::default())).collect(),
            per_shard: capacity.div_ceil(DEDUP_SHARDS),
        }
    }

    pub fn check(&self, dest: &[u8], message: &[u8]) -> Seen {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        dest.hash(&mut hasher);
        message.hash(&mut hasher);
        let key = hasher.finish();
        let Some(shard) = self.shards.get((key as usize) % DEDUP_SHARDS) else {
            return Seen::Untracked;
        };
        let mut set = shard.lock().unwrap_or_else(|e| e.into_inner());
        if set.contains(&key) {
            Seen::Duplicate
        } else if set.len() >= self.per_shard {
            Seen::Untracked
        } else {
            set.insert(key);
            Seen::New
        }
    }
}

/// A running simulator. Dropping it stops the simulator too (without waiting).
pub struct SimHandle {
    /// The address it listens on (with the real port when configured with port 0).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    /// Each new value is an outage of that length (see [`SimHandle::outage`]).
    outage: watch::Sender<Duration>,
    tracker: TaskTracker,
}

impl SimHandle {
    /// A carrier outage: every connection is closed at once (no unbind,
    /// nothing more answered, counted in `connections_dropped`) and the
    /// address refuses connections for `length`; then it listens again on
    /// the same address. What the simulator owes survives, as an SMSC's
    /// store does: receipts that come due meanwhile, and deliver_sm that
    /// were out unanswered, wait for the next bind.
    pub fn outage(&self, length: Duration) {
        self.outage.send_replace(length);
    }

    /// What was counted so far.
    pub fn stats(&self) -> SimStats {
        self.shared.counters.snapshot()
    }

    /// The accepted submits kept so far ([`SimConfig::keep_submits`]), in order.
    pub fn kept(&self) -> Vec<KeptSubmit> {
        self.shared.kept.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// Stops accepting, unbinds every session (waiting at most a second for
    /// each unbind_resp), and returns the final counts.
    pub async fn stop(self) -> SimStats {
        let _ = self.shutdown.send(true);
        self.tracker.close();
        let limit = self.shared.config.response_timeout + Duration::from_secs(2);
        if tokio::time::timeout(limit, self.tracker.wait()).await.is_err() {
            tracing::warn!("simulator tasks did not stop in time");
        }
        self.shared.counters.snapshot()
    }
}

/// Starts a simulator: binds the listener (the address is logged as
/// `sim listening addr=...`) and returns once it accepts connections.
pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
    config.validate()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("listener address")?;
    let counters = Arc::new(Counters::default());
    let router = Arc::new(Router::new(config.max_pending, counters.clone()));
    let id_start = config.id_start.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| (d.as_millis() as u64).saturating_mul(1000))
    });
    let shared = Arc::new(Shared {
        dedup: Dedup::new(config.dedup_capacity),
        config,
        counters,
        router: router.clone(),
        received: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        id_start,
        kept: std::sync::Mutex::new(Vec::new()),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (outage, outage_rx) = watch::channel(Duration::ZERO);
    let tracker = TaskTracker::new();
    tracker.spawn(router.run_timer(shutdown_rx.clone()));
    tracker.spawn(accept_loop(
        listener,
        shared.clone(),
        Signals {
            shutdown: shutdown_rx,
            outage: outage_rx,
        },
        tracker.clone(),
    ));
    tracing::info!(%addr, "sim listening");
    Ok(SimHandle {
        addr,
        shared,
        shutdown,
        outage,
        tracker,
    })
}

/// Runs a simulator until SIGINT, SIGTERM or `duration`, then stops it and
/// returns the final counts (what `smsmax sim` prints).
pub async fn run(config: SimConfig, duration: Option<Duration>) -> anyhow::Result<SimStats> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let handle = start(config).await?;
    let until = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping the simulator"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping the simulator"),
        _ = until => tracing::info!("duration reached: stopping the simulator"),
    }
    Ok(handle.stop().await)
}

/// What sessions and the accept loop listen for besides the peer.
#[derive(Clone)]
pub(crate) struct Signals {
    /// Graceful: unbind every session.
    pub shutdown: watch::Receiver<bool>,
    /// Abrupt: close every connection, refuse new ones for the value.
    pub outage: watch::Receiver<Duration>,
}

enum AcceptEvent {
    Stop,
    Outage(Duration),
    Accepted(std::io::Result<(tokio::net::TcpStream, SocketAddr)>),
}

/// How long the address may take to become free again after an outage.
const REBIND_WITHIN: Duration = Duration::from_secs(5);

async fn accept_loop(mut listener: TcpListener, shared: Arc<Shared>, mut signals: Signals, tracker: TaskTracker) {
    let open = Arc::new(tokio::sync::Semaphore::new(shared.config.max_connections));
    loop {
        let event = tokio::select! {
            _ = signals.shutdown.changed() => AcceptEvent::Stop,
            changed = signals.outage.changed() => match changed {
                Ok(()) => AcceptEvent::Outage(*signals.outage.borrow_and_update()),
                // The handle is gone: so is the simulator.
                Err(_) => AcceptEvent::Stop,
            },
            accepted = listener.accept() => AcceptEvent::Accepted(accepted),
        };
        let (stream, peer) = match event {
            AcceptEvent::Stop => break,
            AcceptEvent::Outage(length) => {
                let Ok(addr) = listener.local_addr() else { break };
                drop(listener);
                tracing::info!(%addr, ?length, "sim outage: every connection closed, not listening");
                tokio::select! {
                    _ = signals.shutdown.changed() => break,
                    () = tokio::time::sleep(length) => {}
                }
                match rebind(addr).await {
                    Ok(again) => listener = again,
                    Err(e) => {
                        tracing::error!(%addr, error = %e, "sim cannot listen again after the outage");
                        break;
                    }
                }
                tracing::info!(%addr, "sim listening again");
                continue;
            }
            AcceptEvent::Accepted(Ok(pair)) => pair,
            AcceptEvent::Accepted(Err(e)) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        bump(&shared.counters.connections);
        let Ok(permit) = open.clone().try_acquire_owned() else {
            bump(&shared.counters.connections_refused);
            tracing::warn!(%peer, "too many connections; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let signals = signals.clone();
        tracker.spawn(async move {
            session::run(stream, peer, shared, signals).await;
            drop(permit);
        });
    }
}

/// Listens on `addr` again, retrying while the port is still held.
async fn rebind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let deadline = tokio::time::Instant::now() + REBIND_WITHIN;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_format_with_width() {
        assert_eq!(IdFormat::Hex.format(0xab, 0), "ab");
        assert_eq!(IdFormat::HexUpper.format(0xab, 6), "0000AB");
        assert_eq!(IdFormat::Decimal.format(171, 5), "00171");
    }

    #[test]
    fn mix_parses_and_picks_by_weight() {
        let mix: OutcomeMix = "delivrd=90, UNDELIV=5,expired=3,rejectd=2".parse().unwrap();
        assert_eq!(mix.to_string(), "delivrd=90,undeliv=5,expired=3,rejectd=2");
        assert_eq!(mix.pick(0.0), &ReceiptState::Delivered);
        assert_eq!(mix.pick(0.899), &ReceiptState::Delivered);
        assert_eq!(mix.pick(0.9), &ReceiptState::Undeliverable);
        assert_eq!(mix.pick(0.97), &ReceiptState::Expired);
        assert_eq!(mix.pick(0.98), &ReceiptState::Rejected);
        assert_eq!(mix.pick(0.999_999), &ReceiptState::Rejected);
        assert!("delivrd=0".parse::<OutcomeMix>().is_err());
        assert!("bogus=1".parse::<OutcomeMix>().is_err());
        assert!("delivrd".parse::<OutcomeMix>().is_err());
    }

    #[test]
    fn unit_is_deterministic_and_spread() {
        assert_eq!(unit(7, 1, 42), unit(7, 1, 42));
        assert_ne!(unit(7, 1, 42), unit(8, 1, 42));
        let below: usize = (0..10_000).filter(|n| unit(1, 2, *n) < 0.25).count();
        assert!((2_200..2_800).contains(&below), "{below}");
    }

    #[test]
    fn statuses_parse_in_hex_and_decimal() {
        assert_eq!(parse_status("0x45"), Ok(CommandStatus(0x45)));
        assert_eq!(parse_status("88"), Ok(CommandStatus(0x58)));
        assert!(parse_status("x").is_err());
    }

    #[test]
    fn dedup_counts_repeats_and_is_bounded() {
        let d = Dedup::new(16);
        assert_eq!(d.check(b"4477", b"hello 1"), Seen::New);
        assert_eq!(d.check(b"4477", b"hello 1"), Seen::Duplicate);
        assert_eq!(d.check(b"4478", b"hello 1"), Seen::New);
        let untracked = (0..200).filter(|i| d.check(b"1", format!("m{i}").as_bytes()) == Seen::Untracked);
        assert!(untracked.count() > 0);
    }
}
