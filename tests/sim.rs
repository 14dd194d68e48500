//! `smsmax sim`, the SMSC simulator, over real sockets on 127.0.0.1.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{connect, submit_sm, Esme};
use futures::SinkExt;
use smsmax::sim::{self, IdFormat, ReceiptIdFormat, SimConfig, SimHandle, SimStats};
use smsmax_protocol::{
    pdu::{DataSm, DeliverSm, SubmitSmResp},
    receipt::{Receipt, ReceiptState},
    tlv::find_tlv,
    types::Address,
    Body, CommandId, CommandStatus, Pdu, Tlv,
};
use tokio::net::TcpStream;

fn config() -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        id_start: Some(0xabc),
        receipt_delay: Duration::ZERO,
        response_timeout: Duration::from_secs(2),
        ..SimConfig::default()
    }
}

async fn start(config: SimConfig) -> SimHandle {
    sim::start(config).await.expect("simulator starts")
}

async fn bound(sim: &SimHandle, kind: &str, system_id: &str) -> Esme<TcpStream> {
    let mut esme = connect(sim.addr).await;
    assert_eq!(esme.bind(kind, system_id, "pw").await, CommandStatus::ESME_ROK);
    esme
}

/// Polls the simulator's counts until `check` holds (at most 5 s).
async fn eventually(sim: &SimHandle, what: &str, check: impl Fn(&SimStats) -> bool) -> SimStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = sim.stats();
        if check(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}: not reached; {stats:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn message_id(pdu: &Pdu) -> String {
    match &pdu.body {
        Body::SubmitSmResp(resp) => resp.message_id.to_string_lossy().into_owned(),
        Body::DataSmResp(resp) => resp.message_id.to_string_lossy().into_owned(),
        other => panic!("not a submit response: {other:?}"),
    }
}

fn deliver_sm(pdu: &Pdu) -> &DeliverSm {
    match &pdu.body {
        Body::DeliverSm(dm) => dm,
        other => panic!("not a deliver_sm: {other:?}"),
    }
}

/// The receipt in a deliver_sm: parsed text and the receipted_message_id TLV.
fn receipt(pdu: &Pdu) -> (Receipt, String) {
    let dm = deliver_sm(pdu);
    assert_eq!(dm.esm_class, 0x04, "a delivery receipt");
    let text = Receipt::parse_bytes(&dm.short_message).expect("receipt text parses");
    let tlv_id = find_tlv(&dm.tlvs, |t| match t {
        Tlv::ReceiptedMessageId(id) => Some(id.to_string_lossy().into_owned()),
        _ => None,
    })
    .expect("receipted_message_id");
    (text, tlv_id)
}

async fn ack(esme: &mut Esme<TcpStream>, pdu: &Pdu) {
    let resp = Pdu::new(pdu.sequence_number, Body::DeliverSmResp(SubmitSmResp::default()));
    esme.framed.send(resp).await.expect("send deliver_sm_resp");
}

/// The next PDU within `wait`, `None` if nothing came.
async fn maybe_recv(esme: &mut Esme<TcpStream>, wait: Duration) -> Option<Pdu> {
    use futures::StreamExt;
    match tokio::time::timeout(wait, esme.framed.next()).await {
        Ok(Some(Ok(Ok(pdu)))) => Some(pdu),
        Ok(other) => panic!("connection ended or bad frame: {other:?}"),
        Err(_) => None,
    }
}

#[tokio::test]
async fn binds_of_every_type_with_any_credentials() {
    let sim = start(config()).await;
    for kind in ["transmitter", "receiver", "transceiver"] {
        let mut esme = connect(sim.addr).await;
        assert_eq!(esme.bind(kind, "anyone", "anything").await, CommandStatus::ESME_ROK);
        // A second bind on the same connection is refused.
        assert_eq!(esme.bind(kind, "anyone", "anything").await, CommandStatus::ESME_RALYBND);
    }
    let stats = sim.stop().await;
    assert_eq!(stats.binds.transmitter, 1);
    assert_eq!(stats.binds.receiver, 1);
    assert_eq!(stats.binds.transceiver, 1);
    assert_eq!(stats.bind_failures, 3);
}

#[tokio::test]
async fn configured_credentials_are_enforced() {
    let sim = start(SimConfig {
        system_id: Some("carrier".into()),
        password: Some("secret".into()),
        ..config()
    })
    .await;
    let mut esme = connect(sim.addr).await;
    assert_eq!(
        esme.bind("transceiver", "other", "secret").await,
        CommandStatus::ESME_RINVSYSID
    );
    assert_eq!(
        esme.bind("transceiver", "carrier", "wrong").await,
        CommandStatus::ESME_RINVPASWD
    );
    assert_eq!(
        esme.bind("transceiver", "carrier", "secret").await,
        CommandStatus::ESME_ROK
    );
    let stats = sim.stop().await;
    assert_eq!(stats.bind_failures, 2);
    assert_eq!(stats.binds.total(), 1);
}

#[tokio::test]
async fn submit_gets_a_hex_id_and_the_receipt_carries_it_to_a_receiver() {
    let sim = start(SimConfig {
        id_width: 6,
        ..config()
    })
    .await;
    let mut receiver = bound(&sim, "receiver", "alice").await;
    let mut transmitter = bound(&sim, "transmitter", "alice").await;

    let resp = transmitter.call(submit_sm("447700900123", "hello receipt")).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    assert_eq!(message_id(&resp), "000abc");
    let resp = transmitter.call(submit_sm("447700900123", "second")).await;
    assert_eq!(message_id(&resp), "000abd");

    let mut ids = Vec::new();
    for _ in 0..2 {
        let pdu = receiver.recv().await.expect("receipt");
        let (text, tlv_id) = receipt(&pdu);
        assert_eq!(text.id, tlv_id, "same id in the text and the TLV");
        assert_eq!(text.stat, ReceiptState::Delivered);
        assert_eq!(text.sub, Some(1));
        assert_eq!(text.dlvrd, Some(1));
        assert_eq!(text.err.as_deref(), Some("000"));
        assert!(text.submit_date.is_some() && text.done_date.is_some());
        let dm = deliver_sm(&pdu);
        assert!(dm.tlvs.contains(&Tlv::MessageState(2)));
        assert_eq!(
            dm.dest.addr.as_str(),
            Some("447700900001"),
            "back to the submit's source"
        );
        assert_eq!(dm.source.addr.as_str(), Some("447700900123"));
        ids.push((text.id.clone(), text.text.clone()));
        ack(&mut receiver, &pdu).await;
    }
    ids.sort();
    assert_eq!(ids[0], ("000abc".to_string(), Some("hello receipt".to_string())));
    assert_eq!(ids[1].0, "000abd");

    eventually(&sim, "receipts acknowledged", |s| s.receipts_acked == 2).await;
    let stats = sim.stop().await;
    assert_eq!(stats.submits_received, 2);
    assert_eq!(stats.submits_accepted, 2);
    assert_eq!(stats.receipts_sent.delivrd, 2);
    assert_eq!(stats.receipts_pending, 0);
}

#[tokio::test]
async fn receipt_has_the_configured_state_and_failure_details() {
    let sim = start(SimConfig {
        mix: "undeliv=1".parse().unwrap(),
        id_format: IdFormat::HexUpper,
        ..config()
    })
    .await;
    let mut esme = bound(&sim, "transceiver", "alice").await;
    let sequence = esme
        .send(submit_sm("447700900123", "this text is longer than twenty characters"))
        .await;
    let mut got_resp = None;
    let mut got_receipt = None;
    while got_resp.is_none() || got_receipt.is_none() {
        let pdu = esme.recv().await.expect("open");
        match pdu.command_id() {
            CommandId::SubmitSmResp => {
                assert_eq!(pdu.sequence_number, sequence);
                got_resp = Some(message_id(&pdu));
            }
            CommandId::DeliverSm => {
                ack(&mut esme, &pdu).await;
                got_receipt = Some(pdu);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(got_resp.as_deref(), Some("ABC"));
    let pdu = got_receipt.unwrap();
    let (text, tlv_id) = receipt(&pdu);
    assert_eq!((text.id.as_str(), tlv_id.as_str()), ("ABC", "ABC"));
    assert_eq!(text.stat, ReceiptState::Undeliverable);
    assert_eq!(text.dlvrd, Some(0));
    assert_eq!(text.err.as_deref(), Some("001"));
    assert_eq!(
        text.text.as_deref(),
        Some("this text is longer"),
        "20 characters, the trailing space trimmed by the parser"
    );
    let dm = deliver_sm(&pdu);
    assert!(dm.tlvs.contains(&Tlv::MessageState(5)));
    assert!(dm.tlvs.iter().any(|t| matches!(t, Tlv::NetworkErrorCode(_))));
    let stats = sim.stop().await;
    assert_eq!(stats.receipts_sent.undeliv, 1);
}

#[tokio::test]
async fn receipt_ids_can_be_decimal_while_submit_ids_are_hex() {
    let sim = start(SimConfig {
        id_start: Some(255),
        receipt_id_format: ReceiptIdFormat::Decimal,
        ..config()
    })
    .await;
    let mut receiver = bound(&sim, "receiver", "alice").await;
    let mut transmitter = bound(&sim, "transmitter", "alice").await;
    let resp = transmitter.call(submit_sm("447700900123", "decimal")).await;
    assert_eq!(message_id(&resp), "ff");
    let pdu = receiver.recv().await.expect("receipt");
    let (text, tlv_id) = receipt(&pdu);
    assert_eq!(text.id, "255");
    assert_eq!(tlv_id, "255");
    ack(&mut receiver, &pdu).await;
    sim.stop().await;
}

#[tokio::test]
async fn failure_only_receipts_skip_delivered_messages() {
    let sim = start(config()).await;
    let mut esme = bound(&sim, "transceiver", "alice").await;
    let mut sm = submit_sm("447700900123", "failure only");
    sm.registered_delivery = 2;
    let resp = esme.call(sm).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    assert!(maybe_recv(&mut esme, Duration::from_millis(200)).await.is_none());
    let stats = sim.stop().await;
    assert_eq!(stats.receipts_requested, 0);
    assert_eq!(stats.receipts_sent.total(), 0);
}

#[tokio::test]
async fn data_sm_is_answered_with_an_id_and_a_receipt() {
    let sim = start(config()).await;
    let mut esme = bound(&sim, "transceiver", "alice").await;
    let dm = DataSm {
        source: Address::new(1, 1, "447700900001").unwrap(),
        dest: Address::new(1, 1, "447700900777").unwrap(),
        registered_delivery: 1,
        tlvs: vec![Tlv::MessagePayload(bytes::Bytes::from_static(b"payload text"))],
        ..DataSm::default()
    };
    let sequence = esme.send(dm).await;
    let mut seen = 0;
    while seen < 2 {
        let pdu = esme.recv().await.expect("open");
        match pdu.command_id() {
            CommandId::DataSmResp => {
                assert_eq!(pdu.sequence_number, sequence);
                assert_eq!(message_id(&pdu), "abc");
            }
            CommandId::DeliverSm => {
                let (text, _) = receipt(&pdu);
                assert_eq!(text.text.as_deref(), Some("payload text"));
                ack(&mut esme, &pdu).await;
            }
            other => panic!("unexpected {other}"),
        }
        seen += 1;
    }
    sim.stop().await;
}

#[tokio::test]
async fn throttle_share_one_throttles_every_submit() {
    let sim = start(SimConfig {
        throttle_share: 1.0,
        ..config()
    })
    .await;
    let mut esme = bound(&sim, "transceiver", "alice").await;
    for i in 0..5 {
        let resp = esme.call(submit_sm("447700900123", &format!("m{i}"))).await;
        assert_eq!(resp.command_status, CommandStatus::ESME_RTHROTTLED);
        assert_eq!(resp.command_status, CommandStatus(0x58));
    }
    assert!(
        maybe_recv(&mut esme, Duration::from_millis(100)).await.is_none(),
        "no receipts"
    );
    let stats = sim.stop().await;
    assert_eq!(stats.throttled, 5);
    assert_eq!(stats.submits_accepted, 0);
    assert_eq!(stats.distinct_messages, 0);
}

#[tokio::test]
async fn error_share_answers_with_the_configured_status() {
    let sim = start(SimConfig {
        error_share: 1.0,
        error_status: CommandStatus(0x45),
        ..config()
    })
    .await;
    let mut esme = bound(&sim, "transmitter", "alice").await;
    let resp = esme.call(submit_sm("447700900123", "x")).await;
    assert_eq!(resp.command_status, CommandStatus(0x45));
    let stats = sim.stop().await;
    assert_eq!(stats.errored, 1);
}

#[tokio::test]
async fn drop_every_closes_the_connection_on_the_nth_submit() {
    let sim = start(SimConfig {
        drop_every: 3,
        ..config()
    })
    .await;
    let mut esme = bound(&sim, "transmitter", "alice").await;
    for i in 0..2 {
        let resp = esme.call(submit_sm("447700900123", &format!("m{i}"))).await;
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    }
    esme.send(submit_sm("447700900123", "m2")).await;
    assert!(esme.recv().await.is_none(), "closed without an answer");
    // Counted across the simulator: a new connection gets two more.
    let mut esme = bound(&sim, "transmitter", "alice").await;
    for i in 3..5 {
        let resp = esme.call(submit_sm("447700900123", &format!("m{i}"))).await;
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    }
    esme.send(submit_sm("447700900123", "m5")).await;
    assert!(esme.recv().await.is_none());
    let stats = eventually(&sim, "connections dropped", |s| s.connections_dropped == 2).await;
    assert_eq!(stats.submits_received, 6);
    assert_eq!(stats.submits_accepted, 4);
    sim.stop().await;
}

#[tokio::test]
async fn receipts_before_resp_come_first_with_the_id_the_resp_carries() {
    let sim = start(SimConfig {
        receipts_before_resp_share: 1.0,
        // Without the share, this delay would put the receipt well after the resp.
        receipt_delay: Duration::from_secs(30),
        ..config()
    })
    .await;
    let mut esme = bound(&sim, "transceiver", "alice").await;
    for i in 0..3 {
        let sequence = esme.send(submit_sm("447700900123", &format!("first {i}"))).await;
        let first = esme.recv().await.expect("receipt");
        assert_eq!(first.command_id(), CommandId::DeliverSm, "the receipt comes first");
        let (text, tlv_id) = receipt(&first);
        ack(&mut esme, &first).await;
        let second = esme.recv().await.expect("resp");
        assert_eq!(second.command_id(), CommandId::SubmitSmResp);
        assert_eq!(second.sequence_number, sequence);
        assert_eq!(message_id(&second), text.id);
        assert_eq!(tlv_id, text.id);
    }
    let stats = eventually(&sim, "acks", |s| s.receipts_acked == 3).await;
    assert_eq!(stats.receipts_before_resp, 3);
    sim.stop().await;
}

#[tokio::test]
async fn receipts_before_resp_across_binds() {
    let sim = start(SimConfig {
        receipts_before_resp_share: 1.0,
        receipt_delay: Duration::from_secs(30),
        ..config()
    })
    .await;
    let mut receiver = bound(&sim, "receiver", "alice").await;
    let mut transmitter = bound(&sim, "transmitter", "alice").await;
    let resp = transmitter.call(submit_sm("447700900123", "race")).await;
    // The receipt was written before the resp was even queued: it is there already.
    let pdu = maybe_recv(&mut receiver, Duration::from_millis(500))
        .await
        .expect("receipt already sent");
    let (text, _) = receipt(&pdu);
    assert_eq!(text.id, message_id(&resp));
    ack(&mut receiver, &pdu).await;
    sim.stop().await;
}

#[tokio::test]
async fn receipts_before_resp_do_not_hold_the_resp_without_a_receiver() {
    let sim = start(SimConfig {
        receipts_before_resp_share: 1.0,
        ..config()
    })
    .await;
    let mut transmitter = bound(&sim, "transmitter", "alice").await;
    let started = Instant::now();
    let resp = transmitter.call(submit_sm("447700900123", "nobody listens")).await;
    assert!(started.elapsed() < Duration::from_secs(1), "answered at once");
    let mut receiver = bound(&sim, "receiver", "alice").await;
    let pdu = receiver.recv().await.expect("receipt once a receiver binds");
    assert_eq!(receipt(&pdu).0.id, message_id(&resp));
    ack(&mut receiver, &pdu).await;
    let stats = sim.stop().await;
    assert_eq!(stats.receipts_before_resp, 0);
}

#[tokio::test]
async fn receipt_waits_for_a_receiver_and_is_delivered_when_one_binds() {
    let sim = start(config()).await;
    let mut transmitter = bound(&sim, "transmitter", "alice").await;
    let resp = transmitter.call(submit_sm("447700900123", "held")).await;
    // A transceiver of another system_id does not get it.
    let mut other = bound(&sim, "transceiver", "bob").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = sim.stats();
    assert_eq!(stats.receipts_pending, 1);
    assert_eq!(stats.receipts_sent.total(), 0);
    assert!(maybe_recv(&mut other, Duration::from_millis(50)).await.is_none());

    let mut receiver = bound(&sim, "receiver", "alice").await;
    let pdu = receiver.recv().await.expect("held receipt");
    let (text, _) = receipt(&pdu);
    assert_eq!(text.id, message_id(&resp));
    ack(&mut receiver, &pdu).await;
    let stats = eventually(&sim, "ack", |s| s.receipts_acked == 1).await;
    assert_eq!(stats.receipts_pending, 0);
    sim.stop().await;
}

#[tokio::test]
async fn pending_receipts_are_bounded_and_drops_counted() {
    let sim = start(SimConfig {
        max_pending: 2,
        ..config()
    })
    .await;
    let mut transmitter = bound(&sim, "transmitter", "alice").await;
    for i in 0..5 {
        transmitter.call(submit_sm("447700900123", &format!("m{i}"))).await;
    }
    let stats = sim.stop().await;
    assert_eq!(stats.receipts_pending, 2);
    assert_eq!(stats.receipts_dropped, 3);
}

#[tokio::test]
async fn unanswered_receipt_is_retried_once_then_given_up() {
    let sim = start(SimConfig {
        response_timeout: Duration::from_millis(200),
        ..config()
    })
    .await;
    let mut receiver = bound(&sim, "receiver", "alice").await;
    let mut transmitter = bound(&sim, "transmitter", "alice").await;
    transmitter.call(submit_sm("447700900123", "ignored")).await;
    let first = receiver.recv().await.expect("first send");
    let second = receiver.recv().await.expect("the retry");
    assert_ne!(first.sequence_number, second.sequence_number);
    assert_eq!(receipt(&first).0, receipt(&second).0);
    let stats = eventually(&sim, "given up", |s| s.receipts_failed == 1).await;
    assert_eq!(stats.receipts_retried, 1);
    assert_eq!(stats.receipts_sent.total(), 1, "counted once");
    assert_eq!(stats.receipts_pending, 0);
    assert!(maybe_recv(&mut receiver, Duration::from_millis(400)).await.is_none());
    sim.stop().await;
}

#[tokio::test]
async fn receipt_unanswered_on_a_closed_bind_goes_to_the_next_one() {
    let sim = start(config()).await;
    let mut first = bound(&sim, "receiver", "alice").await;
    let mut transmitter = bound(&sim, "transmitter", "alice").await;
    let resp = transmitter.call(submit_sm("447700900123", "survives")).await;
    let pdu = first.recv().await.expect("receipt");
    drop(first);
    let mut second = bound(&sim, "receiver", "alice").await;
    let again = second.recv().await.expect("the same receipt again");
    assert_eq!(receipt(&again).0.id, message_id(&resp));
    assert_eq!(receipt(&again).0, receipt(&pdu).0);
    ack(&mut second, &again).await;
    let stats = eventually(&sim, "ack", |s| s.receipts_acked == 1).await;
    assert_eq!(stats.receipts_failed, 0);
    sim.stop().await;
}

#[tokio::test]
async fn receipts_spread_over_the_receivers_of_a_system_id() {
    let sim = start(SimConfig { window: 1, ..config() }).await;
    let mut a = bound(&sim, "receiver", "alice").await;
    let mut b = bound(&sim, "receiver", "alice").await;
    let mut transmitter = bound(&sim, "transmitter", "alice").await;
    for i in 0..4 {
        transmitter.call(submit_sm("447700900123", &format!("m{i}"))).await;
    }
    // With a window of one, each bind holds one until it answers.
    let pa = a.recv().await.expect("a gets one");
    let pb = b.recv().await.expect("b gets one");
    assert_ne!(receipt(&pa).0.id, receipt(&pb).0.id);
    ack(&mut a, &pa).await;
    ack(&mut b, &pb).await;
    let pa = a.recv().await.expect("a gets another");
    let pb = b.recv().await.expect("b gets another");
    ack(&mut a, &pa).await;
    ack(&mut b, &pb).await;
    eventually(&sim, "acks", |s| s.receipts_acked == 4).await;
    sim.stop().await;
}

#[tokio::test]
async fn duplicates_are_counted_by_destination_and_text() {
    let sim = start(config()).await;
    let mut esme = bound(&sim, "transmitter", "alice").await;
    esme.call(submit_sm("447700900123", "seq 1")).await;
    esme.call(submit_sm("447700900123", "seq 2")).await;
    esme.call(submit_sm("447700900123", "seq 1")).await;
    esme.call(submit_sm("447700900999", "seq 1")).await;
    let stats = sim.stop().await;
    assert_eq!(stats.submits_accepted, 4);
    assert_eq!(stats.distinct_messages, 3);
    assert_eq!(stats.duplicates, 1);
}

#[tokio::test]
async fn mo_messages_are_sent_every_n_submits() {
    let sim = start(SimConfig {
        mo_every: 2,
        ..config()
    })
    .await;
    let mut receiver = bound(&sim, "receiver", "alice").await;
    let mut transmitter = bound(&sim, "transmitter", "alice").await;
    for i in 0..4 {
        let mut sm = submit_sm("447700900123", &format!("m{i}"));
        sm.registered_delivery = 0;
        transmitter.call(sm).await;
    }
    for _ in 0..2 {
        let pdu = receiver.recv().await.expect("MO");
        let dm = deliver_sm(&pdu);
        assert_eq!(dm.esm_class, 0, "not a receipt");
        assert_eq!(dm.dest.addr.as_str(), Some("447700900001"), "to the submit's source");
        assert_eq!(dm.source.addr.as_str(), Some("447700900123"));
        assert!(!dm.short_message.is_empty());
        ack(&mut receiver, &pdu).await;
    }
    let stats = eventually(&sim, "MO acks", |s| s.mo_acked == 2).await;
    assert_eq!(stats.mo_sent, 2);
    assert_eq!(stats.receipts_sent.total(), 0);
    sim.stop().await;
}

#[tokio::test]
async fn outcomes_follow_the_mix_deterministically() {
    async fn run(seed: u64) -> Vec<ReceiptState> {
        let sim = start(SimConfig {
            mix: "delivrd=50,undeliv=30,expired=10,rejectd=10".parse().unwrap(),
            seed,
            window: 256,
            ..config()
        })
        .await;
        let mut receiver = bound(&sim, "receiver", "alice").await;
        let mut transmitter = bound(&sim, "transmitter", "alice").await;
        let mut ids = Vec::new();
        for i in 0..200 {
            ids.push(message_id(
                &transmitter.call(submit_sm("447700900123", &format!("m{i}"))).await,
            ));
        }
        let mut by_id = std::collections::HashMap::new();
        for _ in 0..200 {
            let pdu = receiver.recv().await.expect("receipt");
            let (text, _) = receipt(&pdu);
            ack(&mut receiver, &pdu).await;
            by_id.insert(text.id, text.stat);
        }
        let stats = sim.stop().await;
        assert_eq!(stats.receipts_sent.total(), 200);
        assert!(
            stats.receipts_sent.delivrd > 60 && stats.receipts_sent.undeliv > 30,
            "{stats:?}"
        );
        ids.iter().map(|id| by_id[id].clone()).collect()
    }
    assert_eq!(run(7).await, run(7).await, "same seed, same outcomes");
}

#[tokio::test]
async fn session_basics_and_malformed_input() {
    let sim = start(config()).await;
    let mut esme = connect(sim.addr).await;
    // Before a bind: submit refused, enquire_link answered.
    let resp = esme.call(submit_sm("447700900123", "early")).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVBNDSTS);
    assert_eq!(
        esme.call(Body::EnquireLink).await.command_id(),
        CommandId::EnquireLinkResp
    );
    assert_eq!(esme.bind("receiver", "alice", "pw").await, CommandStatus::ESME_ROK);
    // A receiver may not submit.
    let resp = esme.call(submit_sm("447700900123", "rx")).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVBNDSTS);
    // Unknown command id: generic_nack ESME_RINVCMDID.
    esme.send_raw(&[0, 0, 0, 16, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 42])
        .await;
    let nack = esme.recv().await.expect("nack");
    assert_eq!(nack.command_id(), CommandId::GenericNack);
    assert_eq!(nack.command_status, CommandStatus::ESME_RINVCMDID);
    assert_eq!(nack.sequence_number, 42);
    // query_sm is not simulated: its response with ESME_RINVCMDID.
    let resp = esme
        .call(smsmax_protocol::pdu::QuerySm {
            message_id: "abc".try_into().unwrap(),
            source: Address::new(1, 1, "1").unwrap(),
        })
        .await;
    assert_eq!(resp.command_id(), CommandId::QuerySmResp);
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVCMDID);
    // Unbind answered, then the connection closes.
    assert_eq!(esme.call(Body::Unbind).await.command_id(), CommandId::UnbindResp);
    assert!(esme.recv().await.is_none());
    // A stream that cannot be re-framed is closed.
    let mut esme = connect(sim.addr).await;
    esme.send_raw(&[0, 0, 0, 4, 0, 0, 0, 21]).await;
    let nack = esme.recv().await.expect("nack before close");
    assert_eq!(nack.command_id(), CommandId::GenericNack);
    assert!(esme.recv().await.is_none());
    let stats = sim.stop().await;
    assert_eq!(stats.malformed, 2);
}

#[tokio::test]
async fn stop_unbinds_bound_sessions() {
    let sim = start(config()).await;
    let mut esme = bound(&sim, "transceiver", "alice").await;
    let stop = tokio::spawn(sim.stop());
    let pdu = esme.recv().await.expect("unbind");
    assert_eq!(pdu.command_id(), CommandId::Unbind);
    esme.framed
        .send(Pdu::new(pdu.sequence_number, Body::UnbindResp))
        .await
        .unwrap();
    assert!(esme.recv().await.is_none());
    let stats = tokio::time::timeout(Duration::from_secs(5), stop)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.sessions_open, 0);
}

#[test]
fn cli_runs_for_a_duration_and_prints_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_smsmax"))
        .args(["sim", "--listen", "127.0.0.1:0", "--duration", "0.3", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run smsmax sim");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("sim listening") && stderr.contains("addr=127.0.0.1:"),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(json["submits_received"], 0);
    assert!(json["receipts_sent"]["delivrd"].is_u64());
}

#[test]
fn cli_prints_a_human_summary_and_refuses_bad_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_smsmax"))
        .args(["sim", "--listen", "127.0.0.1:0", "--duration", "0.2"])
        .output()
        .expect("run smsmax sim");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("smsmax sim summary") && stdout.contains("receipts sent"),
        "{stdout}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_smsmax"))
        .args(["sim", "--throttle-share", "1.5"])
        .output()
        .expect("run smsmax sim");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_smsmax"))
        .args(["sim", "--mix", "delivrd=x"])
        .output()
        .expect("run smsmax sim");
    assert_eq!(out.status.code(), Some(2));
}
