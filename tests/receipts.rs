//! The receipts path end to end: test ESME -> gateway (serve) -> relay ->
//! upstream (`smsmax sim`, or a scripted SMSC for exact sequences) -> receipt
//! -> correlator -> store and the client's outbox.
//!
//! Clients bind as transmitters here so that no session takes entries out of
//! the outbox; the outbox is read through the `Outbox` trait after the
//! gateway has stopped.

mod common;

use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use smsmax::{
    dlr::DlrCounters,
    queue::{outbox::Outbox, Queue},
    sim::{IdFormat, OutcomeMix, ReceiptIdFormat, SimConfig},
    store::{MessageState, Store},
};
use smsmax_protocol::{
    pdu::{BindResp, DeliverSm, SubmitSm, SubmitSmResp},
    tlv::Tlv,
    types::Address,
    Body, CommandStatus, Pdu, SmppCodec,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::codec::Framed;

/// One upstream `carrier` at `port` (with `upstream_extra` keys), a route
/// for `prefix` to it, client `bob`, and the given extra TOML.
fn receipts_config(port: u16, upstream_extra: &str, prefix: &str, extra: &str) -> String {
    format!(
        r#"
[[upstreams]]
name = "carrier"
host = "127.0.0.1"
port = {port}
system_id = "smsmax"
password = "pw"
binds = 1
window = 32
response_timeout_ms = 2000
reconnect_min_ms = 20
reconnect_max_ms = 200
{upstream_extra}

[[routes]]
prefix = "{prefix}"
upstreams = [{{ name = "carrier" }}]

[relay]
idle_poll_ms = 10

[[clients]]
system_id = "bob"
password_hash = "{hash}"
allowed_networks = ["127.0.0.0/8"]

{extra}
"#,
        hash = common::password_hash(),
    )
}

fn message(dest: &str, i: usize, registered_delivery: u8) -> SubmitSm {
    SubmitSm {
        registered_delivery,
        ..common::submit_sm(dest, &format!("receipt test {i}"))
    }
}

/// Waits until `check` holds for the counters, or fails after `within`.
async fn wait_counters(counters: &DlrCounters, within: Duration, what: &str, check: impl Fn(&DlrCounters) -> bool) {
    let deadline = Instant::now() + within;
    while !check(counters) {
        assert!(Instant::now() < deadline, "{what}: {:?}", counters.snapshot());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).expect("ASCII receipt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_make_messages_final_and_reach_the_outbox() {
    let sim = common::start_sim(|c| c.mix = "delivrd=1,undeliv=1".parse::<OutcomeMix>().unwrap()).await;
    let gateway = common::start(&receipts_config(sim.addr.port(), "", "", "")).await;
    let counters = gateway.running.receipt_counters().expect("correlator runs");
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(common::submit_ok(&mut esme, message("447700900123", i, 1)).await);
    }
    let mut by_state = std::collections::HashMap::new();
    for id in &ids {
        let s = common::wait_state(&mut esme, id, &[2, 5], Duration::from_secs(15)).await;
        assert!(s == 2 || s == 5, "{id} is DELIVERED or UNDELIVERABLE, not {s}");
        *by_state.entry(s).or_insert(0u64) += 1;
    }
    wait_counters(&counters, Duration::from_secs(5), "all matched", |c| {
        c.matched.load(Relaxed) == 20
    })
    .await;
    let stats = counters.snapshot();
    assert_eq!(stats.duplicates, 0, "{stats:?}");
    assert_eq!(stats.forwarded, 20, "{stats:?}");
    assert_eq!(stats.unparseable, 0, "{stats:?}");
    drop(esme);
    let sim_stats = sim.stop().await;
    assert_eq!(sim_stats.receipts_sent.delivrd, by_state.get(&2).copied().unwrap_or(0));
    assert_eq!(sim_stats.receipts_sent.undeliv, by_state.get(&5).copied().unwrap_or(0));
    assert!(sim_stats.receipts_sent.delivrd > 0 && sim_stats.receipts_sent.undeliv > 0);

    let (storage, _dir) = common::stopped_storage(gateway).await;
    for id in &ids {
        let record = storage.get(id).await.unwrap().expect("record");
        assert!(
            matches!(record.state, MessageState::Delivered | MessageState::Undeliverable),
            "{record:?}"
        );
        let receipts = storage.receipts(id).await.unwrap();
        assert_eq!(receipts.len(), 1, "{receipts:?}");
        assert_eq!(receipts[0].state, record.state);
    }
    let entries = storage
        .reserve_for("alice", 100, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(entries.len(), 20, "one receipt per message");
    for entry in &entries {
        let id = entry.message_id.clone().expect("receipt for one of our messages");
        assert!(ids.contains(&id));
        let record = storage.get(&id).await.unwrap().unwrap();
        let stat = if record.state == MessageState::Delivered {
            "stat:DELIVRD"
        } else {
            "stat:UNDELIV"
        };
        let body = text(&entry.short_message);
        assert!(body.starts_with(&format!("id:{id} ")), "{body}");
        assert!(body.contains(stat), "{body}");
        assert_eq!(entry.esm_class, 0x04);
        assert_eq!(&*entry.dest.addr, "447700900001", "back to the message's source");
    }
    assert_eq!(storage.unmatched_count().await.unwrap(), 0);
    storage.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hex_answers_and_decimal_receipts_match_with_the_right_styles() {
    let hex_decimal = |c: &mut SimConfig| {
        c.id_format = IdFormat::HexUpper;
        c.id_start = Some(0xABC000);
        c.receipt_id_format = ReceiptIdFormat::Decimal;
        c.receipt_id_width = 14;
    };
    // Styled: every receipt matches.
    let sim = common::start_sim(hex_decimal).await;
    let styles = "submit_id_style = \"hex_to_decimal\"\nreceipt_id_style = \"decimal\"";
    let gateway = common::start(&receipts_config(sim.addr.port(), styles, "", "")).await;
    let counters = gateway.running.receipt_counters().unwrap();
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(common::submit_ok(&mut esme, message("447700900123", i, 1)).await);
    }
    for id in &ids {
        assert_eq!(
            common::wait_state(&mut esme, id, &[2], Duration::from_secs(10)).await,
            2,
            "{id}"
        );
    }
    assert_eq!(counters.matched.load(Relaxed), 5);
    drop(esme);
    sim.stop().await;
    gateway.running.stop().await.unwrap();

    // Default styles: the same carrier's receipts never match; they are kept as unmatched.
    let sim = common::start_sim(hex_decimal).await;
    let gateway = common::start(&receipts_config(sim.addr.port(), "", "", "[receipts]\nhold_secs = 1\n")).await;
    let counters = gateway.running.receipt_counters().unwrap();
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(common::submit_ok(&mut esme, message("447700900123", i, 1)).await);
    }
    wait_counters(&counters, Duration::from_secs(10), "given up", |c| {
        c.unmatched.load(Relaxed) == 3
    })
    .await;
    for id in &ids {
        assert_eq!(common::query_state(&mut esme, id).await, 1, "still ENROUTE");
    }
    assert_eq!(counters.matched.load(Relaxed), 0);
    drop(esme);
    sim.stop().await;
    let (storage, _dir) = common::stopped_storage(gateway).await;
    assert_eq!(storage.unmatched_count().await.unwrap(), 3);
    storage.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_before_the_submit_resp_is_held_and_matched() {
    let sim = common::start_sim(|c| c.receipts_before_resp_share = 1.0).await;
    let gateway = common::start(&receipts_config(sim.addr.port(), "", "", "")).await;
    let counters = gateway.running.receipt_counters().unwrap();
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(common::submit_ok(&mut esme, message("447700900123", i, 1)).await);
    }
    for id in &ids {
        assert_eq!(
            common::wait_state(&mut esme, id, &[2], Duration::from_secs(10)).await,
            2,
            "{id}"
        );
    }
    wait_counters(&counters, Duration::from_secs(5), "matched", |c| {
        c.matched.load(Relaxed) == 5
    })
    .await;
    let stats = counters.snapshot();
    assert!(stats.held >= 1, "early receipts were held: {stats:?}");
    assert_eq!(stats.matched_after_hold, stats.held, "{stats:?}");
    assert_eq!(stats.unmatched, 0, "{stats:?}");
    drop(esme);
    let sim_stats = sim.stop().await;
    assert_eq!(sim_stats.receipts_before_resp, 5, "{sim_stats:?}");
    let (storage, _dir) = common::stopped_storage(gateway).await;
    assert_eq!(
        storage.unmatched_count().await.unwrap(),
        0,
        "matched copies replace the unmatched ones"
    );
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_rejected_message_gets_a_gateway_receipt_with_our_id() {
    let sim = common::start_sim(|_| {}).await;
    let gateway = common::start(&receipts_config(sim.addr.port(), "", "33", "")).await;
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let asked = common::submit_ok(&mut esme, message("447700900123", 0, 1)).await;
    let silent = common::submit_ok(&mut esme, message("447700900124", 1, 0)).await;
    let failures_only = common::submit_ok(&mut esme, message("447700900125", 2, 2)).await;
    for id in [&asked, &silent, &failures_only] {
        assert_eq!(
            common::wait_state(&mut esme, id, &[8], Duration::from_secs(10)).await,
            8,
            "REJECTED"
        );
    }
    let relay = gateway.running.relay_counters().unwrap().snapshot();
    assert_eq!(relay.gateway_receipts, 2, "{relay:?}");
    drop(esme);
    sim.stop().await;
    let (storage, _dir) = common::stopped_storage(gateway).await;
    let mut entries = storage.reserve_for("alice", 10, Duration::from_secs(60)).await.unwrap();
    entries.sort_by_key(|e| e.message_id.clone());
    let mut want = vec![asked.clone(), failures_only.clone()];
    want.sort();
    assert_eq!(
        entries.iter().filter_map(|e| e.message_id.clone()).collect::<Vec<_>>(),
        want
    );
    for entry in &entries {
        let id = entry.message_id.as_deref().unwrap();
        let body = text(&entry.short_message);
        assert!(body.starts_with(&format!("id:{id} sub:001 dlvrd:000 ")), "{body}");
        assert!(body.contains("stat:REJECTD"), "{body}");
        assert_eq!(entry.esm_class, 0x04);
        assert!(entry.tlvs.len() > 4);
    }
    storage.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// A scripted SMSC: answers binds and submits (ids 0xABC0, 0xABC1, ... in
// uppercase hex) and sends the deliver_sm the test gives it, reporting the
// status of each deliver_sm_resp.
// ---------------------------------------------------------------------------

struct ScriptedSmsc {
    addr: std::net::SocketAddr,
    deliver: mpsc::Sender<DeliverSm>,
    answers: mpsc::Receiver<CommandStatus>,
    submits: mpsc::Receiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedSmsc {
    async fn start() -> ScriptedSmsc {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (deliver, mut to_deliver) = mpsc::channel::<DeliverSm>(16);
        let (answer_tx, answers) = mpsc::channel(16);
        let (submit_tx, submits) = mpsc::channel(16);
        let task = tokio::spawn(async move {
            let mut next_id = 0xABC0u32;
            // One session at a time; a reconnect is served by the next accept.
            while let Ok((stream, _)) = listener.accept().await {
                let mut framed = Framed::new(stream, SmppCodec::default());
                let mut sequence = 0u32;
                loop {
                    tokio::select! {
                        pdu = framed.next() => {
                            let Some(Ok(Ok(pdu))) = pdu else { break };
                            let seq = pdu.sequence_number;
                            let reply = match pdu.body {
                                Body::BindTransceiver(_) => Some(Body::BindTransceiverResp(BindResp {
                                    system_id: "scripted".try_into().unwrap(),
                                    tlvs: vec![],
                                })),
                                Body::EnquireLink => Some(Body::EnquireLinkResp),
                                Body::SubmitSm(_) => {
                                    let id = format!("{next_id:X}");
                                    next_id += 1;
                                    let _ = submit_tx.send(id.clone()).await;
                                    Some(Body::SubmitSmResp(SubmitSmResp {
                                        message_id: id.as_str().try_into().unwrap(),
                                    }))
                                }
                                Body::DeliverSmResp(_) => {
                                    let _ = answer_tx.send(pdu.command_status).await;
                                    None
                                }
                                Body::Unbind => {
                                    let _ = framed.send(Pdu::new(seq, Body::UnbindResp)).await;
                                    break;
                                }
                                _ => None,
                            };
                            if let Some(body) = reply {
                                if framed.send(Pdu::new(seq, body)).await.is_err() {
                                    break;
                                }
                            }
                        }
                        sm = to_deliver.recv() => {
                            let Some(sm) = sm else { return };
                            sequence += 1;
                            if framed.send(Pdu::new(sequence, Body::DeliverSm(sm))).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        ScriptedSmsc {
            addr,
            deliver,
            answers,
            submits,
            task,
        }
    }

    /// Sends a deliver_sm and returns the status of its deliver_sm_resp.
    async fn deliver(&mut self, sm: DeliverSm) -> CommandStatus {
        self.deliver.send(sm).await.unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.answers.recv())
            .await
            .expect("deliver_sm answered in time")
            .expect("SMSC running")
    }
}

fn receipt_pdu(text: &str, tlvs: Vec<Tlv>) -> DeliverSm {
    DeliverSm {
        source: Address::new(1, 1, "447700900123").unwrap(),
        dest: Address::new(1, 1, "447700900001").unwrap(),
        esm_class: 0x04,
        short_message: Bytes::copy_from_slice(text.as_bytes()),
        tlvs,
        ..DeliverSm::default()
    }
}

fn mo_pdu(dest: &str, text: &str) -> DeliverSm {
    DeliverSm {
        source: Address::new(1, 1, "447700900555").unwrap(),
        dest: Address::new(1, 1, dest).unwrap(),
        esm_class: 0x00,
        data_coding: 0,
        short_message: Bytes::copy_from_slice(text.as_bytes()),
        tlvs: vec![Tlv::UserMessageReference(7)],
        ..DeliverSm::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_unknown_ids_unreadable_receipts_and_mo_messages() {
    let mut smsc = ScriptedSmsc::start().await;
    let extra = r#"
[receipts]
hold_secs = 1

[[mo_routes]]
prefix = "4477009"
system_id = "bob"
"#;
    let gateway = common::start(&receipts_config(smsc.addr.port(), "", "", extra)).await;
    let counters = gateway.running.receipt_counters().unwrap();
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let id = common::submit_ok(&mut esme, message("447700900123", 0, 1)).await;
    let upstream_id = tokio::time::timeout(Duration::from_secs(10), smsc.submits.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(upstream_id, "ABC0");
    assert_eq!(
        common::wait_state(&mut esme, &id, &[1], Duration::from_secs(10)).await,
        1,
        "ENROUTE"
    );

    // The receipt (id in lowercase: case_insensitive by default) and the same receipt again.
    let receipt = receipt_pdu("id:abc0 sub:001 dlvrd:001 stat:DELIVRD err:000 text:x", vec![]);
    assert_eq!(smsc.deliver(receipt.clone()).await, CommandStatus::ESME_ROK);
    assert_eq!(common::query_state(&mut esme, &id).await, 2, "DELIVERED");
    assert_eq!(smsc.deliver(receipt).await, CommandStatus::ESME_ROK);
    // A later contradicting receipt in the TLVs changes nothing.
    let late = receipt_pdu(
        "",
        vec![
            Tlv::ReceiptedMessageId("ABC0".try_into().unwrap()),
            Tlv::MessageState(5),
        ],
    );
    assert_eq!(smsc.deliver(late).await, CommandStatus::ESME_ROK);
    assert_eq!(common::query_state(&mut esme, &id).await, 2, "still DELIVERED");
    let stats = counters.snapshot();
    assert_eq!(
        (stats.matched, stats.duplicates, stats.forwarded),
        (2, 1, 1),
        "{stats:?}"
    );

    // A receipt nobody knows: answered OK, held, then kept as unmatched.
    let unknown = receipt_pdu("id:FFFF stat:UNDELIV err:001", vec![]);
    assert_eq!(smsc.deliver(unknown).await, CommandStatus::ESME_ROK);
    wait_counters(&counters, Duration::from_secs(10), "unknown receipt given up", |c| {
        c.unmatched.load(Relaxed) == 1
    })
    .await;
    assert_eq!(counters.held.load(Relaxed), 1);

    // Unreadable receipts are refused permanently.
    let unreadable = receipt_pdu("this is not a receipt", vec![]);
    assert_eq!(smsc.deliver(unreadable).await, CommandStatus::ESME_RX_P_APPN);
    assert_eq!(counters.unparseable.load(Relaxed), 1);

    // MO: routed to bob's outbox; unrouted answered ESME_RINVDSTADR.
    assert_eq!(
        smsc.deliver(mo_pdu("447700900999", "hello gateway")).await,
        CommandStatus::ESME_ROK
    );
    assert_eq!(
        smsc.deliver(mo_pdu("33612345678", "nobody")).await,
        CommandStatus::ESME_RINVDSTADR
    );
    let stats = counters.snapshot();
    assert_eq!((stats.mo_routed, stats.mo_unrouted), (1, 1), "{stats:?}");

    drop(esme);
    let (storage, _dir) = common::stopped_storage(gateway).await;
    smsc.task.abort();
    let record = storage.get(&id).await.unwrap().unwrap();
    assert_eq!(record.state, MessageState::Delivered);
    let unmatched = storage.unmatched_receipts(10).await.unwrap();
    assert_eq!(unmatched.len(), 1, "{unmatched:?}");
    assert_eq!(
        (unmatched[0].upstream.as_str(), unmatched[0].key.as_str()),
        ("carrier", "ffff")
    );
    assert_eq!(unmatched[0].state, MessageState::Undeliverable);
    // One receipt for alice (the duplicate and the late one were not forwarded).
    let alice = storage.reserve_for("alice", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert_eq!(alice[0].message_id.as_deref(), Some(id.as_str()));
    assert!(text(&alice[0].short_message).contains("stat:DELIVRD"));
    // The MO message for bob, as received.
    let bob = storage.reserve_for("bob", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(bob.len(), 1, "{bob:?}");
    assert_eq!(bob[0].message_id, None);
    assert_eq!(&bob[0].short_message[..], b"hello gateway");
    assert_eq!(&*bob[0].source.addr, "447700900555");
    assert_eq!(&*bob[0].dest.addr, "447700900999");
    assert_eq!(bob[0].esm_class, 0);
    assert_eq!(
        smsmax_protocol::tlv::decode_tlvs(&bob[0].tlvs).unwrap(),
        vec![Tlv::UserMessageReference(7)]
    );
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_permanently_refused_message_gets_an_undeliv_receipt() {
    let sim = common::start_sim(|c| {
        c.error_share = 1.0;
        c.error_status = CommandStatus::ESME_RINVDSTADR;
    })
    .await;
    let gateway = common::start(&receipts_config(sim.addr.port(), "", "", "")).await;
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let id = common::submit_ok(&mut esme, message("447700900123", 0, 1)).await;
    assert_eq!(
        common::wait_state(&mut esme, &id, &[5], Duration::from_secs(10)).await,
        5,
        "UNDELIVERABLE"
    );
    drop(esme);
    sim.stop().await;
    let (storage, _dir) = common::stopped_storage(gateway).await;
    let entries = storage.reserve_for("alice", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let body = text(&entries[0].short_message);
    assert!(body.starts_with(&format!("id:{id} ")), "{body}");
    assert!(body.contains("stat:UNDELIV err:011"), "the refusal's status: {body}");
    storage.close().await.unwrap();
}

#[tokio::test]
async fn an_upstream_id_that_does_not_fit_its_style_is_counted_and_not_linked() {
    // Hex ids, but the upstream is configured as decimal on both sides.
    let sim = common::start_sim(|c| c.id_start = Some(0xABC000)).await;
    let styles = "submit_id_style = \"decimal\"\nreceipt_id_style = \"decimal\"";
    let gateway = common::start(&receipts_config(sim.addr.port(), styles, "", "")).await;
    let counters = gateway.running.receipt_counters().unwrap();
    let relay = gateway.running.relay_counters().unwrap();
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let id = common::submit_ok(&mut esme, message("447700900123", 0, 1)).await;
    assert_eq!(
        common::wait_state(&mut esme, &id, &[1], Duration::from_secs(10)).await,
        1,
        "ENROUTE"
    );
    // Its receipt (hex id) cannot be read as decimal: refused, counted.
    wait_counters(&counters, Duration::from_secs(10), "receipt refused", |c| {
        c.unparseable.load(Relaxed) >= 1
    })
    .await;
    assert_eq!(relay.snapshot().unlinked, 1);
    assert_eq!(common::query_state(&mut esme, &id).await, 1, "still ENROUTE");
    drop(esme);
    sim.stop().await;
    gateway.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_receiver_gets_its_receipt_and_mo_as_deliver_sm() {
    let sim = common::start_sim(|c| c.mo_every = 1).await;
    let routes = "[[mo_routes]]\nprefix = \"447700900001\"\nsystem_id = \"alice\"\n";
    let gateway = common::start(&receipts_config(sim.addr.port(), "", "", routes)).await;
    let mut tx = common::bound(gateway.addr, "transmitter", "alice").await;
    let mut rx = common::bound(gateway.addr, "receiver", "alice").await;
    let id = common::submit_ok(&mut tx, message("447700900123", 0, 1)).await;
    let (mut receipt, mut mo) = (None, None);
    while receipt.is_none() || mo.is_none() {
        let pdu = rx.recv().await.expect("session open");
        let Body::DeliverSm(sm) = &pdu.body else { continue };
        rx.framed
            .send(Pdu::new(
                pdu.sequence_number,
                Body::DeliverSmResp(SubmitSmResp::default()),
            ))
            .await
            .unwrap();
        if sm.esm_class == 0x04 {
            receipt = Some(sm.clone());
        } else {
            mo = Some(sm.clone());
        }
    }
    let receipt = receipt.unwrap();
    let body = text(&receipt.short_message);
    assert!(body.starts_with(&format!("id:{id} ")), "{body}");
    assert!(body.contains("stat:DELIVRD"), "{body}");
    assert!(receipt
        .tlvs
        .contains(&Tlv::ReceiptedMessageId(id.as_str().try_into().unwrap())));
    let mo = mo.unwrap();
    assert!(text(&mo.short_message).starts_with("MO reply"), "{mo:?}");
    assert_eq!(mo.dest.addr.as_str(), Some("447700900001"));
    drop((tx, rx));
    sim.stop().await;
    gateway.running.stop().await.unwrap();
}
