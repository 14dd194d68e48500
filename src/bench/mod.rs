//! `smsmax bench`: an ESME load generator on [`crate::client`].
//!
//! N binds (transceivers, or transmitter + receiver pairs), each with W
//! workers so that its window stays full; a shared GCRA limiter (governor)
//! paces submit_sm when a rate is given. Messages are numbered from 1 and
//! drawn from a mix of GSM 7-bit, UCS-2 and 3-part long texts (see
//! [`message`]). The run stops after a message count or a duration, then
//! waits (bounded) for outstanding receipts and reports.
//!
//! Throttled (0x58) and rejected submits are counted, not retried; a long
//! message whose part is refused sends no further parts.

use std::{
    io::IsTerminal,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use smsmax_protocol::{types::Address, Body, CommandStatus};
use tokio::sync::mpsc;

use crate::client::{self, BindRequest, BindType, ClientError, ClientHandle, ClientSettings, Inbound};

pub mod message;
pub mod stats;

pub use message::{Kind, Mix};
pub use stats::BenchReport;
use stats::{Counters, ReceiptTracker};

/// How each of the N binds connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BindMode {
    /// One transceiver per bind: submits and receipts on the same session.
    Transceiver,
    /// A transmitter for submits and a receiver for receipts per bind.
    TxRx,
}

impl BindMode {
    fn name(self) -> &'static str {
        match self {
            BindMode::Transceiver => "transceiver",
            BindMode::TxRx => "transmitter + receiver",
        }
    }
}

/// Command-line arguments of `smsmax bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// The SMSC to load (the gateway, `smsmax sim`, a carrier's test bind).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:2775")]
    pub addr: String,
    /// system_id to bind with.
    #[arg(long, default_value = "demo")]
    pub system_id: String,
    /// Password to bind with (at most 8 characters).
    #[arg(
        long,
        env = "SMSMAX_BENCH_PASSWORD",
        hide_env_values = true,
        default_value = "demopass"
    )]
    pub password: String,
    /// system_type to bind with.
    #[arg(long, default_value = "")]
    pub system_type: String,
    /// Number of binds (sessions sending submit_sm).
    #[arg(short, long, default_value_t = 1)]
    pub binds: usize,
    /// Outstanding submit_sm per bind.
    #[arg(short, long, default_value_t = 64)]
    pub window: usize,
    /// Transceiver binds, or a transmitter + receiver pair per bind.
    #[arg(long, value_enum, default_value_t = BindMode::Transceiver)]
    pub bind_mode: BindMode,
    /// Target rate in submit_sm per second over all binds (GCRA); 0 sends as fast as the windows allow.
    #[arg(short, long, default_value_t = 0)]
    pub rate: u32,
    /// Messages to send (a long message counts once). Default 10000 unless --duration is given.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Stop starting messages after this long (e.g. 30s, 2m, 500ms).
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Message mix as KIND=WEIGHT pairs: gsm (1 part), ucs2 (1 part), long (3 parts with UDH).
    #[arg(long, default_value = "gsm=100")]
    pub mix: Mix,
    /// Ask for delivery receipts (registered_delivery 1) and count them.
    #[arg(long)]
    pub receipts: bool,
    /// After the last submit, wait at most this long for outstanding receipts.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub receipt_timeout: Duration,
    /// Longest wait for a response (and for a free window slot).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub response_timeout: Duration,
    /// enquire_link after this long without traffic.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub enquire_link_interval: Duration,
    /// source_addr of every message (international, ISDN).
    #[arg(long, default_value = "447700900001")]
    pub source: String,
    /// destination_addr prefix; digits of the message number complete it.
    #[arg(long, default_value = "4477009")]
    pub dest_prefix: String,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (it is also hidden when standard error is not a terminal).
    #[arg(short, long)]
    pub quiet: bool,
    /// Log filter for standard error ("warn", "smsmax=debug", ...).
    #[arg(long, default_value = "error")]
    pub log_level: String,
}

/// Parses `30s`, `2m`, `500ms`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}`: expected a duration like 30s, 2m or 500ms"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("`{s}`: unknown unit `{other}` (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}`: out of range"))
}

/// Everything a run needs; from [`BenchArgs`] or built directly (tests, `smsmax demo`).
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub addr: String,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub binds: usize,
    pub window: usize,
    pub bind_mode: BindMode,
    /// submit_sm per second over all binds; `None`: as fast as possible.
    pub rate: Option<NonZeroU32>,
    /// Messages to send; `None` with `duration`: until the duration ends.
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub mix: Mix,
    pub receipts: bool,
    pub receipt_timeout: Duration,
    pub response_timeout: Duration,
    pub enquire_link_interval: Duration,
    pub source: String,
    pub dest_prefix: String,
    /// Show a progress bar on standard error.
    pub progress: bool,
}

impl BenchConfig {
    /// 10,000 GSM messages over one transceiver with window 64, no receipts.
    pub fn new(addr: impl Into<String>, system_id: impl Into<String>, password: impl Into<String>) -> Self {
        BenchConfig {
            addr: addr.into(),
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            binds: 1,
            window: 64,
            bind_mode: BindMode::Transceiver,
            rate: None,
            count: Some(10_000),
            duration: None,
            mix: Mix::default(),
            receipts: false,
            receipt_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(10),
            enquire_link_interval: Duration::from_secs(30),
            source: "447700900001".to_string(),
            dest_prefix: "4477009".to_string(),
            progress: false,
        }
    }
}

impl From<BenchArgs> for BenchConfig {
    fn from(args: BenchArgs) -> Self {
        let count = match (args.count, args.duration) {
            (None, None) => Some(10_000),
            (count, _) => count,
        };
        BenchConfig {
            progress: !args.quiet && std::io::stderr().is_terminal(),
            addr: args.addr,
            system_id: args.system_id,
            password: args.password,
            system_type: args.system_type,
            binds: args.binds,
            window: args.window,
            bind_mode: args.bind_mode,
            rate: NonZeroU32::new(args.rate),
            count,
            duration: args.duration,
            mix: args.mix,
            receipts: args.receipts,
            receipt_timeout: args.receipt_timeout,
            response_timeout: args.response_timeout,
            enquire_link_interval: args.enquire_link_interval,
            source: args.source,
            dest_prefix: args.dest_prefix,
        }
    }
}

/// Hands out message numbers until the count or the duration is reached.
struct Plan {
    next: AtomicU64,
    count: Option<u64>,
    deadline: Option<Instant>,
}

impl Plan {
    fn next(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        match self.count {
            Some(count) if n > count => None,
            _ => Some(n),
        }
    }
}

/// What every worker shares.
struct Run {
    plan: Plan,
    template: message::Template,
    mix: Mix,
    limiter: Option<DefaultDirectRateLimiter>,
    counters: Counters,
    receipts: ReceiptTracker,
    receipts_requested: bool,
    mo_received: AtomicU64,
    /// Submit latency (µs) of acknowledged submits; workers add batches of samples.
    latency: std::sync::Mutex<Histogram<u64>>,
}

/// Runs the load and returns the report. Fails only when the run cannot
/// start (bad settings, a bind refused); problems during the run are in
/// the report.
pub async fn run(config: BenchConfig) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(config.binds >= 1, "--binds must be at least 1");
    anyhow::ensure!(config.window >= 1, "--window must be at least 1");
    anyhow::ensure!(
        config.count.is_some() || config.duration.is_some(),
        "give a message count or a duration"
    );
    let source = Address::new(1, 1, &config.source).map_err(|e| anyhow::anyhow!("--source: {e}"))?;
    anyhow::ensure!(
        !config.dest_prefix.is_empty() && config.dest_prefix.len() <= 14,
        "--dest-prefix must have 1 to 14 characters"
    );
    let settings = ClientSettings {
        window: config.window,
        response_timeout: config.response_timeout,
        enquire_link_interval: config.enquire_link_interval,
        ..ClientSettings::default()
    };
    let bind = |bind_type| {
        let mut b = BindRequest::new(bind_type, config.system_id.clone(), config.password.clone());
        b.system_type = config.system_type.clone();
        b
    };

    // Bind everything first: a refused bind stops the run before it starts.
    let mut senders = Vec::with_capacity(config.binds);
    let mut others = Vec::new();
    let mut inbound = Vec::new();
    for i in 0..config.binds {
        let first = match config.bind_mode {
            BindMode::Transceiver => BindType::Transceiver,
            BindMode::TxRx => BindType::Transmitter,
        };
        let (handle, rx) = client::connect(config.addr.as_str(), bind(first), settings.clone())
            .await
            .with_context(|| format!("bind {} of {} to {}", i + 1, config.binds, config.addr))?;
        senders.push(handle);
        inbound.push(rx);
        if config.bind_mode == BindMode::TxRx {
            let receiver_settings = ClientSettings {
                window: 4,
                ..settings.clone()
            };
            let (handle, rx) = client::connect(config.addr.as_str(), bind(BindType::Receiver), receiver_settings)
                .await
                .with_context(|| format!("receiver bind {} of {} to {}", i + 1, config.binds, config.addr))?;
            others.push(handle);
            inbound.push(rx);
        }
    }

    let limiter = config.rate.map(|rate| {
        // Bursts of at most 10 ms worth, so pacing stays smooth.
        let burst = NonZeroU32::new(rate.get() / 100).unwrap_or(NonZeroU32::MIN);
        RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
    });
    let started = Instant::now();
    let run = Arc::new(Run {
        plan: Plan {
            next: AtomicU64::new(0),
            count: config.count,
            deadline: config.duration.map(|d| started + d),
        },
        template: message::Template {
            run: rand::random(),
            source,
            dest_prefix: config.dest_prefix.clone(),
            receipts: config.receipts,
        },
        mix: config.mix,
        limiter,
        counters: Counters::default(),
        receipts: if config.receipts {
            ReceiptTracker::with_capacity(usize::try_from(config.count.unwrap_or(0)).unwrap_or(0))
        } else {
            ReceiptTracker::default()
        },
        receipts_requested: config.receipts,
        mo_received: AtomicU64::new(0),
        latency: std::sync::Mutex::new(stats::histogram().context("latency histogram")?),
    });

    let consumers: Vec<_> = inbound
        .into_iter()
        .map(|rx| tokio::spawn(consume(rx, run.clone())))
        .collect();
    let progress = Progress::start(&config, run.clone());

    let mut workers = Vec::with_capacity(config.binds * config.window);
    for handle in &senders {
        for _ in 0..config.window {
            workers.push(tokio::spawn(worker(handle.clone(), run.clone())));
        }
    }
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed();

    // Receipts still on their way.
    let waiting = Instant::now();
    if config.receipts {
        progress.waiting_for_receipts();
        let deadline = waiting + config.receipt_timeout;
        while run.receipts.outstanding() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let waited = waiting.elapsed();
    progress.finish();

    let mut sessions_lost = Vec::new();
    for handle in senders.iter().chain(&others) {
        if let Some(reason) = handle.close_reason() {
            sessions_lost.push(reason.to_string());
        }
    }
    let unbinds = senders.into_iter().chain(others).map(|h| h.unbind());
    let _ = futures::future::join_all(unbinds).await;
    for consumer in consumers {
        let _ = tokio::time::timeout(config.response_timeout, consumer).await;
    }

    let latency = {
        let histogram = run.latency.lock().unwrap_or_else(|p| p.into_inner());
        stats::LatencyReport::from_histogram(&histogram)
    };
    let c = &run.counters;
    let acknowledged = Counters::get(&c.acknowledged);
    let elapsed_secs = elapsed.as_secs_f64();
    Ok(BenchReport {
        target: config.addr.clone(),
        binds: config.binds,
        bind_mode: config.bind_mode.name().to_string(),
        window: config.window,
        rate: config.rate.map(NonZeroU32::get),
        mix: config.mix.to_string(),
        messages: Counters::get(&c.messages),
        submitted: Counters::get(&c.submitted),
        acknowledged,
        throttled: Counters::get(&c.throttled),
        rejected: Counters::get(&c.rejected),
        rejected_by_status: c.rejected_by_status(),
        timeouts: Counters::get(&c.timeouts),
        errors: Counters::get(&c.errors),
        sessions_lost,
        elapsed_secs,
        throughput_per_sec: if elapsed_secs > 0.0 {
            acknowledged as f64 / elapsed_secs
        } else {
            0.0
        },
        latency,
        receipts: run.receipts.report(config.receipts, waited.as_secs_f64()),
        mo_received: run.mo_received.load(Ordering::Relaxed),
    })
}

/// Sends messages until the plan runs out or the session ends; returns its
/// latency samples in batches to the shared histogram.
async fn worker(handle: ClientHandle, run: Arc<Run>) {
    let mut latency = Samples::new(&run);
    let c = &run.counters;
    while let Some(n) = run.plan.next() {
        Counters::add(&c.messages);
        let kind = run.mix.pick(n);
        for part in run.template.parts(kind, n) {
            if let Some(limiter) = &run.limiter {
                limiter.until_ready().await;
            }
            Counters::add(&c.submitted);
            let sent = Instant::now();
            match handle.request(Body::SubmitSm(part)).await {
                Ok(resp) if resp.command_status.is_ok() => {
                    latency.record(sent.elapsed());
                    Counters::add(&c.acknowledged);
                    if run.receipts_requested {
                        if let Body::SubmitSmResp(body) = resp.body {
                            run.receipts
                                .acknowledged(body.message_id.to_string_lossy().into_owned(), n);
                        }
                    }
                }
                Ok(resp) => {
                    if resp.command_status == CommandStatus::ESME_RTHROTTLED {
                        Counters::add(&c.throttled);
                    } else {
                        c.reject(resp.command_status);
                    }
                    break;
                }
                Err(ClientError::ResponseTimeout { .. } | ClientError::WindowTimeout(_)) => {
                    Counters::add(&c.timeouts);
                    break;
                }
                Err(ClientError::Closed(_)) => {
                    Counters::add(&c.errors);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "submit_sm failed");
                    Counters::add(&c.errors);
                    break;
                }
            }
        }
    }
}

/// A worker's latency samples, added to the shared histogram in batches
/// (one histogram per worker would cost ~200 KB each) and when dropped.
struct Samples<'a> {
    run: &'a Run,
    buffer: Vec<u64>,
}

impl<'a> Samples<'a> {
    const BATCH: usize = 512;

    fn new(run: &'a Run) -> Self {
        Samples {
            run,
            buffer: Vec::with_capacity(Self::BATCH),
        }
    }

    fn record(&mut self, latency: Duration) {
        self.buffer.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        if self.buffer.len() >= Self::BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let mut histogram = self.run.latency.lock().unwrap_or_else(|p| p.into_inner());
        for us in self.buffer.drain(..) {
            histogram.saturating_record(us.max(1));
        }
    }
}

impl Drop for Samples<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Takes a session's deliver_sm / data_sm, counts receipts, answers ESME_ROK.
async fn consume(mut rx: mpsc::Receiver<Inbound>, run: Arc<Run>) {
    while let Some(Inbound { pdu, responder }) = rx.recv().await {
        let sm = match pdu.body {
            Body::DeliverSm(sm) => Some(sm),
            Body::DataSm(sm) => Some(smsmax_protocol::pdu::SubmitSm {
                esm_class: sm.esm_class,
                tlvs: sm.tlvs,
                ..Default::default()
            }),
            _ => None,
        };
        if let Some(sm) = sm {
            if sm.is_delivery_receipt() {
                Counters::add(&run.counters.receipts);
                match stats::parse_receipt(&sm) {
                    Some(receipt) => run.receipts.receipt(receipt),
                    None => run.receipts.unparseable(),
                }
            } else {
                run.mo_received.fetch_add(1, Ordering::Relaxed);
            }
        }
        responder.ok();
    }
}

/// The progress bar (hidden unless asked for) and its refresh task.
struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
    waiting: Arc<std::sync::atomic::AtomicBool>,
}

impl Progress {
    fn start(config: &BenchConfig, run: Arc<Run>) -> Progress {
        let by_count = config.count.is_some();
        let bar = if !config.progress {
            ProgressBar::hidden()
        } else if let Some(count) = config.count {
            ProgressBar::new(count)
        } else {
            ProgressBar::new(config.duration.map_or(0, |d| d.as_secs().max(1)))
        };
        let template = if by_count {
            "{elapsed_precise} [{bar:30}] {pos}/{len} messages {msg}"
        } else {
            "{elapsed_precise} [{bar:30}] {pos}/{len} s {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let waiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let bar = bar.clone();
            let waiting = waiting.clone();
            let started = Instant::now();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    let c = &run.counters;
                    if by_count {
                        bar.set_position(Counters::get(&c.messages));
                    } else {
                        bar.set_position(started.elapsed().as_secs());
                    }
                    let acked = Counters::get(&c.acknowledged);
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    let mut msg = format!(
                        "| acked {acked} ({:.0}/s) throttled {} rejected {} errors {}",
                        acked as f64 / secs,
                        Counters::get(&c.throttled),
                        Counters::get(&c.rejected),
                        Counters::get(&c.timeouts) + Counters::get(&c.errors),
                    );
                    if run.receipts_requested {
                        msg.push_str(&format!(" receipts {}", Counters::get(&c.receipts)));
                        if waiting.load(Ordering::Relaxed) {
                            msg.push_str(&format!(" (waiting for {})", run.receipts.outstanding()));
                        }
                    }
                    bar.set_message(msg);
                }
            })
        };
        Progress { bar, ticker, waiting }
    }

    fn waiting_for_receipts(&self) {
        self.waiting.store(true, Ordering::Relaxed);
    }

    fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn plan_stops_at_the_count() {
        let plan = Plan {
            next: AtomicU64::new(0),
            count: Some(3),
            deadline: None,
        };
        let got: Vec<_> = std::iter::from_fn(|| plan.next()).collect();
        assert_eq!(got, vec![1, 2, 3]);
    }
}
