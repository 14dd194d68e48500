//! Ingest measurement: how fast the gateway acknowledges submit_sm durably,
//! against a responder that stores nothing. Not run by CI.
//!
//! ```sh
//! cargo run --release --example ingest -- --binds 4 --window 256 --messages 400000
//! cargo run --release --example ingest -- --binds 4 --window 256 --messages 400000 --rounds 5
//! ```
//!
//! In one process and one tokio runtime:
//!
//! 1. a trivial responder on 127.0.0.1:0, built on the same codec with the
//!    same reader/writer task structure as a gateway session, that accepts
//!    any bind and answers every submit_sm at once with a counter id,
//!    storing nothing;
//! 2. the real gateway (`smsmax::serve::start`) on embedded storage in a
//!    temporary directory, where every ESME_ROK means "committed and synced".
//!
//! Both get the same load: N binds, each keeping W submit_sm (160-character
//! GSM text, registered_delivery 1) outstanding — a writer task sends while a
//! permit of the bind's window is free, a reader task counts responses and
//! frees permits. Throughput is ESME_ROK responses per second from the first
//! send to the last response; latency is send-to-response per message
//! (hdrhistogram). The comparison isolates what validation and durable
//! storage cost. Every wait has a timeout and every loop is bounded.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::BytesMut;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use smsmax::{
    queue::Queue,
    store::{embedded::EmbeddedStorage, journal::JournalStorage},
};
use smsmax_protocol::{
    pdu::{Bind, BindResp, SubmitSm, SubmitSmResp},
    types::{Address, MessageId},
    Body, CommandId, CommandStatus, Pdu, SmppCodec,
};
use tokio::{
    io::AsyncWriteExt,
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::{mpsc, Semaphore},
};
use tokio_util::codec::{FramedRead, FramedWrite};

const SYSTEM_ID: &str = "bench";
const PASSWORD: &str = "bench-pw";
/// The gateway's own allocator (see `src/main.rs`), so the gateway here runs
/// as `smsmax serve` does; the responder runs on it too.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Longest wait for any one response (the gateway's storage timeout is 30 s).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(35);

#[derive(Debug, Parser)]
#[command(about = "Measures submit_sm ingest: the gateway on embedded storage vs a responder that stores nothing")]
struct Args {
    /// Concurrent binds (transceiver).
    #[arg(long, default_value_t = 4)]
    binds: usize,
    /// Requests each bind keeps outstanding.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Messages in each run, spread over the binds.
    #[arg(long, default_value_t = 400_000)]
    messages: u64,
    /// Longest a run may take before it is abandoned, in seconds.
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
    /// `storage.max_batch` of the gateway (most records in one group commit).
    #[arg(long, default_value_t = 4096)]
    max_batch: usize,
    /// The embedded engine of the gateway: `journal` or `redb`.
    #[arg(long, default_value = "journal")]
    engine: String,
    /// Skip the gateway run (only the responder).
    #[arg(long)]
    no_gateway: bool,
    /// Skip the responder run (only the gateway).
    #[arg(long)]
    no_baseline: bool,
    /// Rounds of both runs, the gateway on a fresh data directory each
    /// time; the order alternates (responder first in odd rounds). With more
    /// than one, the medians close the report: the VM's speed drifts by up
    /// to 2x within minutes, and one pair of runs can land on either side.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

/// What one run measured.
struct Report {
    /// Process CPU time (user + system, all threads) the run used.
    cpu: Duration,
    ok: u64,
    failed: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

impl Report {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, name: &str) {
        let h = &self.latency_us;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{name:<11} {ok:>8} ok {failed:>4} failed in {secs:>7.3} s = {rate:>9.0} msg/s | latency ms p50 {p50:.2} p90 {p90:.2} p99 {p99:.2} p99.9 {p999:.2} max {max:.2} | CPU {cpu_us:.1} us/msg",
            ok = self.ok,
            failed = self.failed,
            secs = self.elapsed.as_secs_f64(),
            rate = self.rate(),
            p50 = ms(0.50),
            p90 = ms(0.90),
            p99 = ms(0.99),
            p999 = ms(0.999),
            max = h.max() as f64 / 1000.0,
            cpu_us = self.cpu.as_secs_f64() * 1e6 / (self.ok + self.failed).max(1) as f64,
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.binds == 0 || args.window == 0 || args.messages == 0 || args.rounds == 0 {
        bail!("--binds, --window, --messages and --rounds must be at least 1");
    }
    println!(
        "ingest: {} binds x window {} , {} messages of 160 GSM characters per run, {} cores",
        args.binds,
        args.window,
        args.messages,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let mut baselines = Vec::new();
    let mut gateways = Vec::new();
    let mut ratios = Vec::new();
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            println!("round {round}");
        }
        let (baseline, gateway) = if round % 2 == 1 {
            let baseline = baseline_run(&args).await?;
            (baseline, gateway_run(&args).await?)
        } else {
            let gateway = gateway_run(&args).await?;
            (baseline_run(&args).await?, gateway)
        };
        if let Some(b) = &baseline {
            baselines.push(b.rate());
        }
        if let Some(g) = &gateway {
            gateways.push(g.rate());
        }
        if let (Some(b), Some(g)) = (&baseline, &gateway) {
            let ratio = g.rate() / b.rate();
            ratios.push(ratio);
            println!(
                "ratio gateway / no-storage = {ratio:.2} (goal >= 0.50: {})",
                if ratio >= 0.5 { "met" } else { "NOT met" }
            );
        }
    }
    if args.rounds > 1 {
        println!(
            "medians of {} rounds: no-storage {:.0} msg/s, gateway {:.0} msg/s, ratio {:.2}; rounds with ratio >= 0.50: {} of {}",
            args.rounds,
            median(&mut baselines),
            median(&mut gateways),
            median(&mut ratios),
            ratios.iter().filter(|&&r| r >= 0.5).count(),
            ratios.len()
        );
    }
    Ok(())
}

/// The middle value (the mean of the two middle ones for an even count);
/// NaN for none.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The responder run, unless `--no-baseline`.
async fn baseline_run(args: &Args) -> anyhow::Result<Option<Report>> {
    if args.no_baseline {
        return Ok(None);
    }
    let responder = Responder::start().await?;
    let report = drive(responder.addr, args).await.context("responder run")?;
    responder.stop();
    report.print("no-storage");
    Ok(Some(report))
}

/// The gateway run on a fresh data directory, unless `--no-gateway`; then
/// checks that every acknowledged message is on disk.
async fn gateway_run(args: &Args) -> anyhow::Result<Option<Report>> {
    if args.no_gateway {
        return Ok(None);
    }
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let config = gateway_config(dir.path(), args)?;
    let running = smsmax::serve::start(config).await.context("starting the gateway")?;
    let report = drive(running.smpp_addr, args).await.context("gateway run");
    running.stop().await.context("stopping the gateway")?;
    let report = report?;
    report.print("gateway");
    // The acknowledged messages are really on disk: reopen and count.
    let depth = if args.engine == "redb" {
        let storage = EmbeddedStorage::open(dir.path(), 1).await?;
        let depth = storage.depth().await?;
        storage.close().await?;
        depth
    } else {
        let storage = JournalStorage::open(dir.path(), Default::default()).await?;
        let depth = storage.depth().await?;
        storage.close().await?;
        depth
    };
    println!("gateway     queue depth after reopening the data directory: {depth}");
    if depth < report.ok {
        bail!("only {depth} messages stored, {} acknowledged", report.ok);
    }
    Ok(Some(report))
}

fn gateway_config(dir: &std::path::Path, args: &Args) -> anyhow::Result<smsmax::config::Config> {
    let hash = smsmax::password::hash_password(PASSWORD)?;
    let text = format!(
        r#"
[smpp]
listen = "127.0.0.1:0"
enquire_link_interval_secs = 3600
response_timeout_secs = 30

[storage]
data_dir = "{dir}"
max_batch = {max_batch}
engine = "{engine}"

[[clients]]
system_id = "{SYSTEM_ID}"
password_hash = "{hash}"
allowed_networks = ["127.0.0.0/8"]
max_binds = {binds}
window = {window}
throughput = 10000000
"#,
        dir = dir.display(),
        binds = args.binds,
        window = args.window.max(256),
        max_batch = args.max_batch,
        engine = args.engine,
    );
    let config: smsmax::config::Config = toml::from_str(&text)?;
    config.validate()?;
    Ok(config)
}

/// The message every bind sends: 160 GSM characters, one part.
fn submit_sm() -> SubmitSm {
    let text: String = "The quick brown fox jumps over the lazy dog 0123456789 "
        .chars()
        .cycle()
        .take(160)
        .collect();
    SubmitSm {
        source: Address::new(5, 0, "SMSMax").expect("address"),
        dest: Address::new(1, 1, "447700900123").expect("address"),
        registered_delivery: 1,
        data_coding: 0,
        short_message: bytes::Bytes::from(text),
        ..SubmitSm::default()
    }
}

/// Runs the load against `addr`: binds every session first, then starts all
/// of them at once.
async fn drive(addr: SocketAddr, args: &Args) -> anyhow::Result<Report> {
    let mut sessions = Vec::with_capacity(args.binds);
    for _ in 0..args.binds {
        sessions.push(bind(addr).await?);
    }
    let per_bind = args.messages / args.binds as u64;
    let extra = args.messages % args.binds as u64;
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let cpu_before = process_cpu();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, (reader, writer)) in sessions.into_iter().enumerate() {
        let count = per_bind + u64::from((i as u64) < extra);
        tasks.push(tokio::spawn(run_bind(
            reader,
            writer,
            count,
            args.window,
            start,
            deadline,
        )));
    }
    let mut report = Report {
        cpu: Duration::ZERO,
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latency_us: latency_histogram()?,
    };
    let mut finished = Vec::new();
    for task in tasks {
        let (bind_report, halves) = task.await??;
        report.ok += bind_report.ok;
        report.failed += bind_report.failed;
        report.elapsed = report.elapsed.max(bind_report.elapsed);
        report.latency_us.add(&bind_report.latency_us)?;
        finished.push(halves);
    }
    report.cpu = process_cpu().saturating_sub(cpu_before);
    for (reader, writer) in finished {
        unbind(reader, writer).await;
    }
    Ok(report)
}

/// CPU time of this process so far (user + system, every thread), from
/// /proc/self/stat in clock ticks of 10 ms; zero where that cannot be read.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Microseconds, 1 us to 10 minutes, 3 significant digits.
fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

type Reader = FramedRead<OwnedReadHalf, SmppCodec>;
type Writer = FramedWrite<OwnedWriteHalf, SmppCodec>;

async fn next_pdu(reader: &mut Reader) -> anyhow::Result<Pdu> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, reader.next()).await {
        Ok(Some(Ok(Ok(pdu)))) => Ok(pdu),
        Ok(Some(Ok(Err(e)))) => bail!("malformed PDU: {e}"),
        Ok(Some(Err(e))) => bail!("framing: {e}"),
        Ok(None) => bail!("connection closed"),
        Err(_) => bail!("no PDU within {RESPONSE_TIMEOUT:?}"),
    }
}

async fn bind(addr: SocketAddr) -> anyhow::Result<(Reader, Writer)> {
    let stream = tokio::time::timeout(RESPONSE_TIMEOUT, TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut reader = FramedRead::new(r, SmppCodec::default());
    let mut writer = FramedWrite::new(w, SmppCodec::default());
    let bind = Bind {
        system_id: SYSTEM_ID.try_into()?,
        password: PASSWORD.try_into()?,
        interface_version: 0x34,
        ..Bind::default()
    };
    writer.send(Pdu::new(1, Body::BindTransceiver(bind))).await?;
    let resp = next_pdu(&mut reader).await?;
    if resp.command_id() != CommandId::BindTransceiverResp || resp.command_status != CommandStatus::ESME_ROK {
        bail!("bind refused: {resp:?}");
    }
    Ok((reader, writer))
}

async fn unbind(mut reader: Reader, mut writer: Writer) {
    let sent = tokio::time::timeout(RESPONSE_TIMEOUT, writer.send(Pdu::new(u32::MAX >> 1, Body::Unbind))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    for _ in 0..16 {
        match next_pdu(&mut reader).await {
            Ok(pdu) if pdu.command_id() == CommandId::UnbindResp => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// One bind: a writer task keeps `window` requests outstanding, this task
/// reads the responses.
async fn run_bind(
    mut reader: Reader,
    mut writer: Writer,
    count: u64,
    window: usize,
    start: Instant,
    deadline: Instant,
) -> anyhow::Result<(Report, (Reader, Writer))> {
    let permits = Arc::new(Semaphore::new(window));
    // Send instant of sequence n (nanoseconds since `start`), at index n - 2
    // (sequence 1 was the bind).
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let send_task = {
        let permits = permits.clone();
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let sm = submit_sm();
            for i in 0..count {
                let permit = match permits.try_acquire() {
                    Ok(p) => p,
                    Err(_) => {
                        // Window full: push out what is buffered, then wait.
                        tokio::time::timeout(RESPONSE_TIMEOUT, SinkExt::<Pdu>::flush(&mut writer))
                            .await
                            .context("flush timed out")??;
                        tokio::time::timeout(RESPONSE_TIMEOUT, permits.acquire())
                            .await
                            .context("no window permit in time")??
                    }
                };
                permit.forget();
                sent_at[i as usize].store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                let pdu = Pdu::new(i as u32 + 2, Body::SubmitSm(sm.clone()));
                tokio::time::timeout(RESPONSE_TIMEOUT, writer.feed(pdu))
                    .await
                    .context("send timed out")??;
                if Instant::now() > deadline {
                    bail!("run took longer than --max-secs");
                }
            }
            tokio::time::timeout(RESPONSE_TIMEOUT, SinkExt::<Pdu>::flush(&mut writer))
                .await
                .context("flush timed out")??;
            anyhow::Ok(writer)
        })
    };

    let mut report = Report {
        cpu: Duration::ZERO,
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latency_us: latency_histogram()?,
    };
    let mut received = 0u64;
    while received < count {
        if Instant::now() > deadline {
            bail!("run took longer than --max-secs");
        }
        let pdu = next_pdu(&mut reader).await?;
        match pdu.command_id() {
            CommandId::SubmitSmResp => {}
            CommandId::EnquireLink | CommandId::GenericNack => {
                bail!("unexpected {:?}", pdu);
            }
            _ => continue,
        }
        let index = u64::from(pdu.sequence_number).wrapping_sub(2);
        if index >= count {
            bail!("response to unknown sequence {}", pdu.sequence_number);
        }
        let now = start.elapsed().as_nanos() as u64;
        let sent = sent_at[index as usize].load(Ordering::Relaxed);
        report
            .latency_us
            .saturating_record((now.saturating_sub(sent) / 1000).max(1));
        received += 1;
        if pdu.command_status == CommandStatus::ESME_ROK {
            report.ok += 1;
        } else {
            report.failed += 1;
            if report.failed <= 3 {
                eprintln!("submit_sm refused: {:?}", pdu.command_status);
            }
        }
        permits.add_permits(1);
    }
    report.elapsed = start.elapsed();
    let writer = tokio::time::timeout(RESPONSE_TIMEOUT, send_task)
        .await
        .context("writer task did not finish")???;
    Ok((report, (reader, writer)))
}

/// Accepts any bind and answers every submit_sm at once, storing nothing:
/// a reader task per connection that decodes and answers into a bounded
/// channel, and a writer task that writes every ready response in one
/// `write_all` — the gateway session's structure without validation and storage.
struct Responder {
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Responder {
    async fn start() -> anyhow::Result<Responder> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counter = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(respond(stream, counter.clone()));
            }
        });
        Ok(Responder { addr, accept })
    }

    fn stop(self) {
        self.accept.abort();
    }
}

async fn respond(stream: TcpStream, counter: Arc<AtomicU64>) {
    let (r, mut w) = stream.into_split();
    let mut frames = FramedRead::new(r, SmppCodec::default());
    let (tx, mut rx) = mpsc::channel::<Pdu>(1024);
    let writer = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        while let Some(pdu) = rx.recv().await {
            let _ = pdu.encode(&mut buf);
            while buf.len() < 64 * 1024 {
                match rx.try_recv() {
                    Ok(pdu) => {
                        let _ = pdu.encode(&mut buf);
                    }
                    Err(_) => break,
                }
            }
            match tokio::time::timeout(RESPONSE_TIMEOUT, w.write_all(&buf)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            buf.clear();
        }
        let _ = w.shutdown().await;
    });
    loop {
        // An idle connection is closed after a while; nothing waits forever.
        let frame = match tokio::time::timeout(Duration::from_secs(600), frames.next()).await {
            Ok(Some(Ok(Ok(pdu)))) => pdu,
            _ => break,
        };
        let sequence = frame.sequence_number;
        let answer = match frame.body {
            Body::BindTransceiver(_) => Pdu::new(sequence, Body::BindTransceiverResp(BindResp::default())),
            Body::BindTransmitter(_) => Pdu::new(sequence, Body::BindTransmitterResp(BindResp::default())),
            Body::BindReceiver(_) => Pdu::new(sequence, Body::BindReceiverResp(BindResp::default())),
            Body::SubmitSm(_) => {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                // As long as the gateway's ids (23 hex digits).
                let id = format!("{n:023x}");
                Pdu::new(
                    sequence,
                    SubmitSmResp {
                        message_id: MessageId::try_from(id.as_str()).unwrap_or_default(),
                    },
                )
            }
            Body::EnquireLink => Pdu::new(sequence, Body::EnquireLinkResp),
            Body::Unbind => {
                let _ = tx.send(Pdu::new(sequence, Body::UnbindResp)).await;
                break;
            }
            _ if frame.command_id().is_response() => continue,
            _ => Pdu::generic_nack(sequence, CommandStatus::ESME_RINVCMDID),
        };
        match tokio::time::timeout(RESPONSE_TIMEOUT, tx.send(answer)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    drop(tx);
    let _ = tokio::time::timeout(RESPONSE_TIMEOUT, writer).await;
}
