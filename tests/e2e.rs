//! The receipt path end to end, over real sockets:
//!
//! ```text
//! ESME (src/client) --submit_sm--> gateway (serve) --relay--> upstream SMSC (smsmax sim, or the
//! node `smpp` package's smsc.js) --deliver_sm receipt (ITS id)--> gateway --deliver_sm receipt
//! (OUR id)--> ESME receiver / transceiver
//! ```
//!
//! Every test checks the same promise: each message the gateway
//! acknowledged gets exactly one receipt, which names the gateway's own id
//! in both `receipted_message_id` and the text's `id:`; no receipt arrives
//! for an id the gateway never gave, none twice. The faults: the upstream's
//! connections killed mid-run and the upstream stopped and restarted,
//! receipts before submit_sm_resp, hex ids at submit and decimal in the
//! receipt, the client not bound while its receipts arrive, a throttling
//! upstream. Plus `smsmax demo`'s run, small.
//!
//! Each test is bounded: a few hundred messages, every wait with a deadline.

mod common;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use smsmax::{
    client::{self, BindRequest, BindType, ClientHandle, ClientSettings, Inbound},
    sim::{IdFormat, ReceiptIdFormat},
};
use smsmax_protocol::{pdu::SubmitSm, receipt::Receipt, types::Address, Body, CommandStatus, Tlv};
use tokio::{io::AsyncBufReadExt, sync::mpsc};

/// Longest wait for every receipt of a test.
const RECEIPTS_WITHIN: Duration = Duration::from_secs(30);
/// After the last expected receipt, how long a duplicate is given to show up.
const DUPLICATE_GRACE: Duration = Duration::from_millis(500);

/// One upstream `carrier` at `port` (with `upstream_extra` keys), a
/// catch-all route to it, short retry and receipt timers, and `extra`.
fn gateway_config(port: u16, upstream_extra: &str, extra: &str) -> String {
    format!(
        r#"
[[upstreams]]
name = "carrier"
host = "127.0.0.1"
port = {port}
system_id = "smsmax"
password = "pw"
binds = 2
window = 32
response_timeout_ms = 2000
reconnect_min_ms = 20
reconnect_max_ms = 200
throttle_backoff_min_ms = 20
throttle_backoff_max_ms = 200
{upstream_extra}

[[routes]]
prefix = ""
upstreams = [{{ name = "carrier" }}]

[relay]
idle_poll_ms = 10

[retry]
max_attempts = 1000
initial_backoff_ms = 20
max_backoff_ms = 200
congestion_min_backoff_ms = 20
jitter = "none"

[outbox]
retry_min_ms = 50
retry_max_ms = 500

{extra}
"#
    )
}

fn client_settings() -> ClientSettings {
    ClientSettings {
        window: 64,
        response_timeout: Duration::from_secs(10),
        ..ClientSettings::default()
    }
}

/// `alice` bound as `bind_type` with the crate's own ESME client.
async fn bind(addr: SocketAddr, bind_type: BindType) -> (ClientHandle, mpsc::Receiver<Inbound>) {
    let request = BindRequest::new(bind_type, "alice", common::PASSWORD);
    client::connect(addr.to_string().as_str(), request, client_settings())
        .await
        .unwrap_or_else(|e| panic!("{bind_type:?} bind of alice: {e}"))
}

fn message(test: &str, i: usize) -> SubmitSm {
    SubmitSm {
        source: Address::new(1, 1, "447700900001").unwrap(),
        dest: Address::new(1, 1, &format!("44770{:07}", i)).unwrap(),
        registered_delivery: 1,
        short_message: bytes::Bytes::from(format!("e2e {test} #{i}")),
        ..SubmitSm::default()
    }
}

/// Submits messages number `range` at once (the client's window paces
/// them) and returns the gateway's ids; every one must be acknowledged.
async fn submit_all(handle: &ClientHandle, test: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let requests = range.map(|i| {
        let handle = handle.clone();
        let sm = message(test, i);
        async move {
            let resp = handle.request(Body::SubmitSm(sm)).await.expect("submit_sm answered");
            assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "submit_sm #{i}");
            match resp.body {
                Body::SubmitSmResp(r) => r.message_id.to_string_lossy().into_owned(),
                other => panic!("{other:?}"),
            }
        }
    });
    let ids = futures::future::join_all(requests).await;
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "the gateway's ids are distinct");
    ids
}

/// Unbinds the client, then waits (bounded) for its consumer to see the
/// session end.
async fn unbind(handle: ClientHandle, consumer: tokio::task::JoinHandle<()>) {
    handle.unbind().await.expect("unbind");
    let _ = tokio::time::timeout(Duration::from_secs(5), consumer).await;
}

/// What the client's sessions received.
#[derive(Default, Debug)]
struct Received {
    /// Receipts per our id (from `receipted_message_id`).
    receipts: HashMap<String, u32>,
    /// Receipts whose TLV and text disagree, or lack an id.
    malformed: Vec<String>,
    /// deliver_sm that were not receipts.
    other: u64,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Received>>);

impl Collector {
    /// Takes a session's inbound deliver_sm, records them, answers ESME_ROK.
    fn consume(&self, mut inbound: mpsc::Receiver<Inbound>) -> tokio::task::JoinHandle<()> {
        let received = self.0.clone();
        tokio::spawn(async move {
            while let Some(Inbound { pdu, responder }) = inbound.recv().await {
                {
                    let mut r = received.lock().unwrap();
                    match &pdu.body {
                        Body::DeliverSm(sm) if sm.is_delivery_receipt() => match receipt_ids(sm) {
                            Ok(id) => *r.receipts.entry(id).or_default() += 1,
                            Err(why) => r.malformed.push(why),
                        },
                        _ => r.other += 1,
                    }
                }
                responder.ok();
            }
        })
    }

    /// How many of `ids` have at least one receipt.
    fn receipted(&self, ids: &[String]) -> usize {
        let r = self.0.lock().unwrap();
        ids.iter().filter(|id| r.receipts.contains_key(*id)).count()
    }

    /// Waits (bounded) until every one of `ids` has a receipt, then a little
    /// longer for duplicates, and checks the promise.
    async fn expect_exactly_once(&self, ids: &[String]) {
        let deadline = Instant::now() + RECEIPTS_WITHIN;
        while self.receipted(ids) < ids.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(DUPLICATE_GRACE).await;
        let r = self.0.lock().unwrap();
        let expected: HashSet<&String> = ids.iter().collect();
        let missing: Vec<&String> = ids.iter().filter(|id| !r.receipts.contains_key(*id)).collect();
        let twice: Vec<(&String, &u32)> = r.receipts.iter().filter(|(_, n)| **n > 1).collect();
        let unknown: Vec<&String> = r.receipts.keys().filter(|id| !expected.contains(id)).collect();
        assert!(r.malformed.is_empty(), "receipts with wrong ids: {:?}", r.malformed);
        assert!(
            missing.is_empty(),
            "{} of {} messages got no receipt within {RECEIPTS_WITHIN:?}, e.g. {:?}",
            missing.len(),
            ids.len(),
            &missing[..missing.len().min(5)]
        );
        assert!(twice.is_empty(), "receipts delivered more than once: {twice:?}");
        assert!(
            unknown.is_empty(),
            "receipts for ids the gateway never gave: {unknown:?}"
        );
        assert_eq!(r.other, 0, "only receipts were sent to the client");
    }
}

/// The id a client receipt names: `receipted_message_id`, which must agree
/// with the text's `id:`; its `message_state` must agree with `stat:`.
fn receipt_ids(sm: &SubmitSm) -> Result<String, String> {
    let tlv_id = sm.tlvs.iter().find_map(|t| match t {
        Tlv::ReceiptedMessageId(id) => Some(id.to_string_lossy().into_owned()),
        _ => None,
    });
    let tlv_state = sm.tlvs.iter().find_map(|t| match t {
        Tlv::MessageState(s) => Some(*s),
        _ => None,
    });
    let text = Receipt::parse_bytes(sm.message())
        .map_err(|e| format!("receipt text {:?}: {e}", String::from_utf8_lossy(sm.message())))?;
    let id = tlv_id.ok_or_else(|| format!("no receipted_message_id in {sm:?}"))?;
    if id != text.id {
        return Err(format!("receipted_message_id {id:?} but text id {:?}", text.id));
    }
    if let Some(state) = tlv_state {
        if text.state().message_state() != Some(state) {
            return Err(format!("message_state {state} but text stat {:?}", text.state()));
        }
    }
    Ok(id)
}

/// The common scenario: a transceiver submits `count` messages through a
/// gateway relaying to `upstream_port` and gets every receipt exactly once.
async fn round_trip(test: &str, upstream_port: u16, upstream_extra: &str, count: usize) -> common::Gateway {
    let gateway = common::start(&gateway_config(upstream_port, upstream_extra, "")).await;
    let (handle, inbound) = bind(gateway.addr, BindType::Transceiver).await;
    let collector = Collector::default();
    let consumer = collector.consume(inbound);
    let ids = submit_all(&handle, test, 0..count).await;
    collector.expect_exactly_once(&ids).await;
    unbind(handle, consumer).await;
    gateway
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_receipt_comes_back_once_with_our_id() {
    let sim = common::start_sim(|c| c.mix = "delivrd=90,undeliv=5,expired=3,rejectd=2".parse().unwrap()).await;
    let gateway = round_trip("sim", sim.addr.port(), "", 300).await;
    gateway.running.stop().await.expect("gateway stops");
    let stats = sim.stop().await;
    assert_eq!(stats.submits_accepted, 300, "{stats:?}");
    assert_eq!(stats.duplicates, 0, "{stats:?}");
    assert_eq!(stats.receipts_acked, 300, "{stats:?}");
}

/// The same flow on the other embedded engine (`[storage] engine = "redb"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redb_engine_carries_the_same_flow() {
    let sim = common::start_sim(|_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path(), &gateway_config(sim.addr.port(), "", ""));
    config.storage.engine = smsmax::config::EmbeddedEngine::Redb;
    let running = smsmax::serve::start(config).await.expect("gateway starts");
    let (handle, inbound) = bind(running.smpp_addr, BindType::Transceiver).await;
    let collector = Collector::default();
    let consumer = collector.consume(inbound);
    let ids = submit_all(&handle, "redb", 0..100).await;
    collector.expect_exactly_once(&ids).await;
    unbind(handle, consumer).await;
    running.stop().await.expect("gateway stops");
    assert!(
        dir.path().join(smsmax::store::embedded::FILE_NAME).exists(),
        "the redb file, not a journal"
    );
    let stats = sim.stop().await;
    assert_eq!(stats.submits_accepted, 100, "{stats:?}");
    assert_eq!(stats.duplicates, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_before_responses_are_matched() {
    let sim = common::start_sim(|c| c.receipts_before_resp_share = 1.0).await;
    let gateway = round_trip("early", sim.addr.port(), "", 200).await;
    gateway.running.stop().await.expect("gateway stops");
    let stats = sim.stop().await;
    assert!(stats.receipts_before_resp > 0, "the fault was injected: {stats:?}");
    assert_eq!(stats.duplicates, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hex_ids_at_submit_and_decimal_in_receipts_are_matched() {
    let sim = common::start_sim(|c| {
        c.id_format = IdFormat::HexUpper;
        c.id_width = 16;
        c.receipt_id_format = ReceiptIdFormat::Decimal;
    })
    .await;
    let styles = r#"
submit_id_style = "hex_to_decimal"
receipt_id_style = "decimal"
"#;
    let gateway = round_trip("hexdec", sim.addr.port(), styles, 200).await;
    gateway.running.stop().await.expect("gateway stops");
    let stats = sim.stop().await;
    assert_eq!(stats.receipts_acked, 200, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_upstream_loses_nothing() {
    let sim = common::start_sim(|c| c.throttle_share = 0.3).await;
    let gateway = round_trip("throttled", sim.addr.port(), "", 200).await;
    gateway.running.stop().await.expect("gateway stops");
    let stats = sim.stop().await;
    assert!(stats.throttled > 0, "the fault was injected: {stats:?}");
    assert_eq!(stats.submits_accepted, 200, "{stats:?}");
    assert_eq!(stats.duplicates, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_wait_for_a_client_that_binds_later() {
    let sim = common::start_sim(|_| {}).await;
    let gateway = common::start(&gateway_config(sim.addr.port(), "", "")).await;
    // A transmitter only: nobody can take the receipts yet.
    let (handle, inbound) = bind(gateway.addr, BindType::Transmitter).await;
    let ids = submit_all(&handle, "later", 0..200).await;
    drop(inbound);
    // The carrier has handed every receipt to the gateway.
    let deadline = Instant::now() + RECEIPTS_WITHIN;
    while sim.stats().receipts_acked < 200 {
        assert!(
            Instant::now() < deadline,
            "the gateway took the receipts: {:?}",
            sim.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.unbind().await.expect("unbind");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Now the client binds a receiver and gets all of them.
    let (receiver, inbound) = bind(gateway.addr, BindType::Receiver).await;
    let collector = Collector::default();
    let consumer = collector.consume(inbound);
    collector.expect_exactly_once(&ids).await;
    unbind(receiver, consumer).await;
    gateway.running.stop().await.expect("gateway stops");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_killed_and_upstream_restarted_lose_nothing() {
    // Phase 1: the carrier closes its connection abruptly, unanswered, on
    // every 37th submit: the gateway reconnects and submits those again.
    let sim1 = common::start_sim(|c| c.drop_every = 37).await;
    let port = sim1.addr.port();
    let gateway = common::start(&gateway_config(port, "", "")).await;
    let (handle, inbound) = bind(gateway.addr, BindType::Transceiver).await;
    let collector = Collector::default();
    let consumer = collector.consume(inbound);
    let mut ids = submit_all(&handle, "restart", 0..150).await;
    // Every receipt this carrier owes has been sent before it goes down
    // (what an SMSC keeps across its own restart is its business).
    let deadline = Instant::now() + RECEIPTS_WITHIN;
    while collector.receipted(&ids) < ids.len() {
        assert!(Instant::now() < deadline, "phase 1 receipts: {:?}", sim1.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Receipts for submits whose response the dropped connections lost
    // (the gateway submitted those again) are settled too.
    while sim1.stats().receipts_pending > 0 {
        assert!(Instant::now() < deadline, "phase 1 receipts settle: {:?}", sim1.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats1 = sim1.stop().await;
    assert!(stats1.connections_dropped > 0, "the fault was injected: {stats1:?}");

    // Phase 2: the carrier is down; the gateway accepts and queues.
    ids.extend(submit_all(&handle, "restart", 150..300).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(collector.receipted(&ids[150..]), 0, "no carrier, no receipts");
    // It comes back on the same address with new ids.
    let sim2 = common::start_sim(|c| c.listen = SocketAddr::from(([127, 0, 0, 1], port))).await;
    collector.expect_exactly_once(&ids).await;
    unbind(handle, consumer).await;
    gateway.running.stop().await.expect("gateway stops");
    let stats2 = sim2.stop().await;
    assert_eq!(
        stats2.distinct_messages, 150,
        "phase 2 went to the new carrier: {stats2:?}"
    );
    assert_eq!(stats2.duplicates, 0, "{stats2:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_outage_while_it_owes_receipts_loses_none_and_repeats_none() {
    // Receipts 0.3 to 1.8 s after each submit; the carrier goes down for 2 s
    // once every submit is answered: some receipts were delivered before,
    // some may be out unanswered when the connections drop, the rest come
    // due while it is down and wait in its store for the next bind.
    let sim = common::start_sim(|c| {
        c.receipt_delay = Duration::from_millis(300);
        c.receipt_jitter = Duration::from_millis(1500);
    })
    .await;
    let gateway = common::start(&gateway_config(sim.addr.port(), "", "")).await;
    let (handle, inbound) = bind(gateway.addr, BindType::Transceiver).await;
    let collector = Collector::default();
    let consumer = collector.consume(inbound);
    let ids = submit_all(&handle, "outage", 0..200).await;
    let deadline = Instant::now() + RECEIPTS_WITHIN;
    while sim.stats().submits_accepted < 200 {
        assert!(Instant::now() < deadline, "relayed: {:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Down while receipts flow: after the first few reached the client.
    while collector.receipted(&ids) < 10 {
        assert!(Instant::now() < deadline, "first receipts: {:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let before = sim.stats();
    assert!(before.receipts_pending > 0, "the carrier owes receipts: {before:?}");
    let delivered_before = collector.receipted(&ids);

    sim.outage(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = sim.stats();
    assert!(during.connections_dropped >= 2, "both binds were cut: {during:?}");
    assert_eq!(during.sessions_open, 0, "nobody bound during the outage: {during:?}");
    assert!(
        collector.receipted(&ids) < ids.len(),
        "receipts were still owed when the carrier came back ({delivered_before} delivered before the outage)"
    );

    collector.expect_exactly_once(&ids).await;
    unbind(handle, consumer).await;
    gateway.running.stop().await.expect("gateway stops");
    let after = sim.stop().await;
    assert!(
        after.connections > before.connections,
        "the gateway bound again: {after:?}"
    );
    assert_eq!(after.distinct_messages, 200, "{after:?}");
    assert_eq!(after.duplicates, 0, "nothing was submitted twice: {after:?}");
    assert_eq!(after.receipts_acked, 200, "every owed receipt was taken: {after:?}");
}

// --- the node `smpp` package as the upstream ----------------------------

fn node_smsc() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance/interop/node/smsc.js")
}

/// Starts smsc.js; `None` (after saying so) when it cannot run and
/// SMSMAX_SKIP_INTEROP=1 asks to skip; panics with how to install it otherwise.
async fn start_node_smsc() -> Option<(tokio::process::Child, u16)> {
    let spawned = tokio::process::Command::new("node")
        .arg(node_smsc())
        .args(["--receipt-delay-ms", "20", "--lifetime-s", "120"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn();
    let failure = match spawned {
        Ok(mut child) => {
            let stdout = child.stdout.take().expect("stdout piped");
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            match tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await {
                Ok(Ok(Some(line))) => match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) if v["port"].is_u64() => {
                        let port = u16::try_from(v["port"].as_u64().unwrap_or(0)).expect("a port");
                        // Keep reading stdout so that the child never blocks on it.
                        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                        return Some((child, port));
                    }
                    _ => format!("smsc.js said {line}"),
                },
                Ok(_) => "smsc.js ended without saying its port".to_string(),
                Err(_) => "smsc.js said nothing within 10 s".to_string(),
            }
        }
        Err(e) => format!("cannot run `node`: {e}"),
    };
    if std::env::var("SMSMAX_SKIP_INTEROP").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED the node smpp upstream (SMSMAX_SKIP_INTEROP=1): {failure}");
        return None;
    }
    panic!(
        "the node smpp upstream cannot run. Install it with:\n    (cd conformance/interop/node && npm ci)\n\
         (.ci/run does this; set SMSMAX_SKIP_INTEROP=1 to skip)\ncause: {failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_from_the_node_smpp_upstream_come_back_once_with_our_id() {
    let Some((mut smsc, port)) = start_node_smsc().await else {
        return;
    };
    let gateway = round_trip("node", port, "", 200).await;
    gateway.running.stop().await.expect("gateway stops");
    // Closing its stdin stops it; bounded.
    drop(smsc.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(10), smsc.wait()).await;
    assert!(
        matches!(status, Ok(Ok(s)) if s.success()),
        "smsc.js exits 0 on stdin close: {status:?}"
    );
}

// --- smsmax demo, small --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_passes_and_cleans_up() {
    let workspace = smsmax::demo::Workspace::create().expect("temp dir");
    let path = workspace.path().to_path_buf();
    let config = smsmax::demo::DemoConfig {
        messages: 500,
        binds: 2,
        window: 32,
        bind_mode: smsmax::bench::BindMode::Transceiver,
        upstream_binds: 2,
        outcomes: "delivrd=90,undeliv=10".parse().unwrap(),
        receipt_delay: Duration::from_millis(20),
        receipt_jitter: Duration::from_millis(50),
        receipt_timeout: Duration::from_secs(20),
        progress: false,
        announce: false,
    };
    let outcome = workspace.run(&config).await.expect("the demo runs");
    assert!(outcome.is_ok(), "{:?}\n{}", outcome.problems, outcome.report);
    assert_eq!(outcome.report.acknowledged, 500);
    assert_eq!(outcome.report.receipts.matched, 500);
    assert_eq!(outcome.sim.submits_accepted, 500, "{:?}", outcome.sim);
    assert!(
        outcome.report.receipts.by_state.contains_key("UNDELIV"),
        "{}",
        outcome.report
    );
    assert_eq!(workspace.finish(false).expect("removed"), None);
    assert!(!path.exists(), "the temporary directory is gone");
}

#[test]
fn the_demo_refuses_what_it_cannot_promise() {
    // The judgement, on a report that lost one receipt and duplicated another.
    let mut report = smsmax::bench::BenchReport {
        target: "x".into(),
        binds: 1,
        bind_mode: "transceiver".into(),
        window: 1,
        rate: None,
        mix: "gsm=100".into(),
        messages: 10,
        submitted: 10,
        acknowledged: 10,
        throttled: 0,
        rejected: 0,
        rejected_by_status: Default::default(),
        timeouts: 0,
        errors: 0,
        sessions_lost: Vec::new(),
        elapsed_secs: 1.0,
        throughput_per_sec: 10.0,
        latency: smsmax::bench::stats::LatencyReport {
            samples: 10,
            mean_ms: 1.0,
            p50_ms: 1.0,
            p90_ms: 1.0,
            p99_ms: 1.0,
            p999_ms: 1.0,
            max_ms: 1.0,
        },
        receipts: smsmax::bench::stats::ReceiptReport {
            requested: true,
            matched: 10,
            by_state: [("DELIVRD".to_string(), 10)].into_iter().collect(),
            duplicates: 0,
            unmatched: 0,
            unparseable: 0,
            never_receipted: 0,
            never_receipted_sample: Vec::new(),
            waited_secs: 0.1,
        },
        mo_received: 0,
    };
    let timeout = Duration::from_secs(1);
    assert!(smsmax::demo::judge(&report, timeout).is_empty());
    report.receipts.matched = 9;
    report.receipts.never_receipted = 1;
    report.receipts.never_receipted_sample = vec![7];
    report.receipts.duplicates = 1;
    let problems = smsmax::demo::judge(&report, timeout);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("1 of 10 acknowledged messages got no receipt"),
        "{problems:?}"
    );
    assert!(problems[0].contains("#7"), "{problems:?}");
    assert!(
        problems[1].contains("1 receipts arrived more than once"),
        "{problems:?}"
    );
}

#[test]
fn the_demo_command_exits_0_and_says_so() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smsmax"))
        .args(["demo", "--messages", "300", "--binds", "2", "--window", "16", "--quiet"])
        .args([
            "--receipt-delay-ms",
            "10",
            "--receipt-jitter-ms",
            "20",
            "--receipt-timeout",
            "20s",
        ])
        .env_remove("SMSMAX_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run smsmax demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let never = stdout
        .lines()
        .find_map(|l| l.strip_prefix("never receipted"))
        .and_then(|rest| rest.split_whitespace().next());
    assert_eq!(never, Some("0"), "{stdout}");
    assert!(
        stdout.contains("demo: ok: all 300 acknowledged messages got exactly one receipt"),
        "{stdout}"
    );
}
