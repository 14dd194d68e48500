//! Each client's outbox reaches its receiver and transceiver sessions as
//! deliver_sm, over real sockets: entries pushed through the gateway's
//! `Outbox`, read by test ESMEs (our raw codec ESME and the crate's client).

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use smsmax::{
    client::{self, BindRequest, BindType, ClientSettings, Inbound},
    config::Config,
    esme::outbox::OutboxDelivery,
    queue::outbox::{Outbox, OutboxEntry},
    smpp_time::now_ms,
    store::AddressRecord,
};
use smsmax_protocol::{
    pdu::{DeliverSm, DeliverSmResp},
    types::Address,
    Body, CommandId, CommandStatus, Pdu, Tlv,
};
use tokio::{net::TcpStream, sync::mpsc};

/// A running gateway and its outbox.
struct Harness {
    gateway: common::Gateway,
    outbox: Arc<dyn Outbox>,
    deliveries: Arc<OutboxDelivery>,
}

impl Harness {
    async fn start(extra: &str) -> Harness {
        Harness::with(extra, |_| {}).await
    }

    async fn with(extra: &str, tweak: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = common::config(dir.path(), extra);
        tweak(&mut config);
        let running = smsmax::serve::start(config).await.expect("gateway starts");
        let outbox = running.outbox.clone();
        let deliveries = running.deliveries.clone();
        let addr = running.smpp_addr;
        Harness {
            gateway: common::Gateway { running, addr, dir },
            outbox,
            deliveries,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.gateway.addr
    }

    /// Pushes receipts for alice with texts `texts` and tells the delivery side.
    async fn push(&self, texts: &[String]) {
        let entries = texts.iter().map(|t| entry("alice", t, 3_600_000)).collect();
        self.outbox.push(entries).await.expect("push");
        self.deliveries.notify("alice");
    }

    async fn depth(&self) -> u64 {
        self.outbox.depth_for("alice").await.expect("depth")
    }

    /// Waits (bounded) until alice's outbox is empty.
    async fn wait_empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let depth = self.depth().await;
            if depth == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "outbox still holds {depth} entries");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.gateway.running.stop().await.expect("clean stop");
    }
}

/// receipted_message_id "m-1" and a vendor TLV 0x1400, as stored (encoded).
const STORED_TLVS: &[u8] = &[
    0x00, 0x1E, 0x00, 0x04, b'm', b'-', b'1', 0x00, 0x14, 0x00, 0x00, 0x02, 0xAB, 0xCD,
];

fn entry(system_id: &str, text: &str, max_age_ms: u64) -> OutboxEntry {
    let now = now_ms();
    OutboxEntry {
        id: String::new(),
        system_id: system_id.into(),
        created_at_ms: now,
        expires_at_ms: now + max_age_ms,
        attempts: 0,
        message_id: Some("m-1".into()),
        service_type: "CMT".into(),
        source: AddressRecord {
            ton: 1,
            npi: 1,
            addr: "447700900123".into(),
        },
        dest: AddressRecord {
            ton: 5,
            npi: 0,
            addr: "Shop".into(),
        },
        esm_class: 0x04,
        protocol_id: 0x00,
        data_coding: 0x00,
        short_message: Bytes::copy_from_slice(text.as_bytes()),
        tlvs: Bytes::from_static(STORED_TLVS),
    }
}

fn texts(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i}")).collect()
}

fn deliver_sm(pdu: &Pdu) -> &DeliverSm {
    match &pdu.body {
        Body::DeliverSm(sm) => sm,
        other => panic!("expected deliver_sm, got {other:?}"),
    }
}

fn text(pdu: &Pdu) -> String {
    String::from_utf8_lossy(&deliver_sm(pdu).short_message).into_owned()
}

/// A receiving session of alice through the crate's client.
async fn receiver(addr: std::net::SocketAddr, kind: BindType) -> (client::ClientHandle, mpsc::Receiver<Inbound>) {
    client::connect(
        addr,
        BindRequest::new(kind, "alice", common::PASSWORD),
        ClientSettings::default(),
    )
    .await
    .expect("bind")
}

/// Takes inbound deliver_sm, answering each with `status`, until `n` have
/// arrived (bounded).
async fn take(inbound: &mut mpsc::Receiver<Inbound>, n: usize, status: CommandStatus) -> Vec<Pdu> {
    let mut got = Vec::new();
    while got.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(10), inbound.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} deliver_sm arrived", got.len()))
            .expect("session open");
        item.responder.respond(status);
        got.push(item.pdu);
    }
    got
}

/// The next PDU within `wait`, or `None` if nothing arrived.
async fn next_within(esme: &mut common::Esme<TcpStream>, wait: Duration) -> Option<Pdu> {
    match tokio::time::timeout(wait, esme.framed.next()).await {
        Ok(Some(Ok(Ok(pdu)))) => Some(pdu),
        Ok(other) => panic!("connection ended or bad PDU: {other:?}"),
        Err(_) => None,
    }
}

/// The next deliver_sm on a raw ESME (answering enquire_link on the way).
async fn next_deliver_sm(esme: &mut common::Esme<TcpStream>) -> Pdu {
    loop {
        let pdu = esme.recv().await.expect("connection open");
        match pdu.command_id() {
            CommandId::DeliverSm => return pdu,
            CommandId::EnquireLink => answer(esme, Pdu::new(pdu.sequence_number, Body::EnquireLinkResp)).await,
            other => panic!("unexpected {other}"),
        }
    }
}

async fn answer(esme: &mut common::Esme<TcpStream>, pdu: Pdu) {
    use futures::SinkExt;
    esme.framed.send(pdu).await.expect("send");
}

fn deliver_sm_resp(sequence: u32, status: CommandStatus) -> Pdu {
    if status.is_ok() {
        Pdu::new(sequence, Body::DeliverSmResp(DeliverSmResp::default()))
    } else {
        Pdu::error_response(CommandId::DeliverSmResp, sequence, status)
    }
}

#[tokio::test]
async fn a_receiver_gets_every_entry_exactly_once_with_its_fields() {
    let h = Harness::start("").await;
    let (handle, mut inbound) = receiver(h.addr(), BindType::Receiver).await;
    let sent = texts("receipt", 50);
    h.push(&sent).await;
    let got = take(&mut inbound, sent.len(), CommandStatus::ESME_ROK).await;
    h.wait_empty().await;

    let mut seen: HashMap<String, usize> = HashMap::new();
    for pdu in &got {
        *seen.entry(text(pdu)).or_default() += 1;
        let sm = deliver_sm(pdu);
        assert_eq!(sm.service_type.to_string_lossy(), "CMT");
        assert_eq!(sm.source, Address::new(1, 1, "447700900123").unwrap());
        assert_eq!(sm.dest, Address::new(5, 0, "Shop").unwrap());
        assert_eq!((sm.esm_class, sm.protocol_id, sm.data_coding), (0x04, 0, 0));
        assert_eq!(
            sm.tlvs,
            vec![
                Tlv::ReceiptedMessageId("m-1".try_into().unwrap()),
                Tlv::Unknown {
                    tag: 0x1400,
                    value: Bytes::from_static(&[0xAB, 0xCD])
                },
            ]
        );
    }
    assert_eq!(seen.len(), sent.len(), "every entry arrived");
    assert!(seen.values().all(|n| *n == 1), "none twice: {seen:?}");
    // Nothing more comes once all are acked.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), inbound.recv())
            .await
            .is_err(),
        "no duplicate after acking"
    );
    let counters = h.deliveries.counters();
    assert_eq!(counters.delivered, sent.len() as u64);
    assert_eq!(counters.retried, 0);
    handle.unbind().await.expect("unbind");
    h.stop().await;
}

#[tokio::test]
async fn a_transmitter_gets_nothing_and_a_later_receiver_gets_what_waited() {
    let h = Harness::start("").await;
    // Pushed while alice is not bound at all.
    let sent = texts("waiting", 10);
    h.push(&sent).await;
    let mut transmitter = common::bound(h.addr(), "transmitter", "alice").await;
    assert!(
        next_within(&mut transmitter, Duration::from_millis(500))
            .await
            .is_none(),
        "a transmitter bind receives no deliver_sm"
    );
    assert_eq!(h.depth().await, sent.len() as u64);

    let (handle, mut inbound) = receiver(h.addr(), BindType::Transceiver).await;
    let got = take(&mut inbound, sent.len(), CommandStatus::ESME_ROK).await;
    let got: HashSet<String> = got.iter().map(text).collect();
    assert_eq!(got, sent.into_iter().collect::<HashSet<_>>());
    h.wait_empty().await;
    assert!(next_within(&mut transmitter, Duration::from_millis(100))
        .await
        .is_none());
    handle.unbind().await.expect("unbind");
    drop(transmitter);
    h.stop().await;
}

#[tokio::test]
async fn a_temporary_error_is_retried_and_a_permanent_one_is_dropped() {
    let h = Harness::start("[outbox]\nretry_min_ms = 50\nretry_max_ms = 200").await;
    let mut esme = common::bound(h.addr(), "receiver", "alice").await;
    h.push(&texts("try again", 1)).await;
    let first = next_deliver_sm(&mut esme).await;
    assert_eq!(text(&first), "try again 0");
    answer(
        &mut esme,
        deliver_sm_resp(first.sequence_number, CommandStatus::ESME_RX_T_APPN),
    )
    .await;
    let again = next_deliver_sm(&mut esme).await;
    assert_eq!(text(&again), "try again 0", "the same entry comes again");
    assert_ne!(again.sequence_number, first.sequence_number);
    answer(
        &mut esme,
        deliver_sm_resp(again.sequence_number, CommandStatus::ESME_ROK),
    )
    .await;
    h.wait_empty().await;

    h.push(&texts("never", 1)).await;
    let refused = next_deliver_sm(&mut esme).await;
    assert_eq!(text(&refused), "never 0");
    answer(
        &mut esme,
        deliver_sm_resp(refused.sequence_number, CommandStatus::ESME_RX_P_APPN),
    )
    .await;
    h.wait_empty().await;
    assert!(
        next_within(&mut esme, Duration::from_millis(300)).await.is_none(),
        "a refused entry is not sent again"
    );
    let counters = h.deliveries.counters();
    assert_eq!((counters.delivered, counters.retried, counters.refused), (1, 1, 1));
    drop(esme);
    h.stop().await;
}

#[tokio::test]
async fn an_entry_unanswered_when_the_client_drops_comes_again_on_rebind() {
    let h = Harness::start("[outbox]\nretry_min_ms = 50\nretry_max_ms = 200").await;
    let mut esme = common::bound(h.addr(), "receiver", "alice").await;
    h.push(&texts("lost?", 1)).await;
    let first = next_deliver_sm(&mut esme).await;
    assert_eq!(text(&first), "lost? 0");
    drop(esme); // no deliver_sm_resp
    assert_eq!(h.depth().await, 1, "still in the outbox");

    let (handle, mut inbound) = receiver(h.addr(), BindType::Receiver).await;
    let got = take(&mut inbound, 1, CommandStatus::ESME_ROK).await;
    assert_eq!(text(&got[0]), "lost? 0");
    h.wait_empty().await;
    handle.unbind().await.expect("unbind");
    h.stop().await;
}

#[tokio::test]
async fn two_receivers_share_the_load() {
    let h = Harness::start("").await;
    let (a, mut inbound_a) = receiver(h.addr(), BindType::Receiver).await;
    let (b, mut inbound_b) = receiver(h.addr(), BindType::Transceiver).await;
    let sent = texts("shared", 40);
    h.push(&sent).await;
    // Collect from both until all arrived (bounded).
    let mut by_a = Vec::new();
    let mut by_b = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while by_a.len() + by_b.len() < sent.len() {
        assert!(Instant::now() < deadline, "only {} arrived", by_a.len() + by_b.len());
        tokio::select! {
            Some(item) = inbound_a.recv() => { by_a.push(text(&item.pdu)); item.responder.ok(); }
            Some(item) = inbound_b.recv() => { by_b.push(text(&item.pdu)); item.responder.ok(); }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    assert!(
        !by_a.is_empty() && !by_b.is_empty(),
        "a: {}, b: {}",
        by_a.len(),
        by_b.len()
    );
    let all: HashSet<String> = by_a.iter().chain(&by_b).cloned().collect();
    assert_eq!(all.len(), sent.len(), "each exactly once");
    h.wait_empty().await;
    a.unbind().await.expect("unbind");
    b.unbind().await.expect("unbind");
    h.stop().await;
}

#[tokio::test]
async fn entries_past_their_maximum_age_are_dropped_and_counted() {
    let h = Harness::start("").await;
    let now = now_ms();
    let mut old = entry("alice", "too old", 1);
    old.created_at_ms = now - 10_000;
    old.expires_at_ms = now - 1;
    h.outbox
        .push(vec![old, entry("alice", "fresh", 3_600_000)])
        .await
        .expect("push");
    // (The periodic expiry may have run already; either way it is counted once.)
    h.deliveries.expire_now().await.expect("expire");
    assert_eq!(h.deliveries.counters().expired, 1);
    assert_eq!(h.depth().await, 1);

    let (handle, mut inbound) = receiver(h.addr(), BindType::Receiver).await;
    let got = take(&mut inbound, 1, CommandStatus::ESME_ROK).await;
    assert_eq!(text(&got[0]), "fresh");
    h.wait_empty().await;
    assert!(tokio::time::timeout(Duration::from_millis(300), inbound.recv())
        .await
        .is_err());
    assert_eq!(h.deliveries.counters().expired, 1);
    handle.unbind().await.expect("unbind");
    h.stop().await;
}

#[tokio::test]
async fn the_delivery_window_is_respected() {
    let h = Harness::with("[outbox]\nwindow = 3", |c| c.smpp.response_timeout_secs = 20).await;
    let mut esme = common::bound(h.addr(), "receiver", "alice").await;
    h.push(&texts("windowed", 10)).await;
    let mut outstanding = Vec::new();
    for _ in 0..3 {
        outstanding.push(next_deliver_sm(&mut esme).await);
    }
    assert!(
        next_within(&mut esme, Duration::from_millis(500)).await.is_none(),
        "no fourth deliver_sm while three are unanswered"
    );
    // Each answer lets exactly one more out.
    let mut received = outstanding.len();
    while received < 10 {
        let oldest = outstanding.remove(0);
        answer(
            &mut esme,
            deliver_sm_resp(oldest.sequence_number, CommandStatus::ESME_ROK),
        )
        .await;
        outstanding.push(next_deliver_sm(&mut esme).await);
        received += 1;
        assert!(
            next_within(&mut esme, Duration::from_millis(100)).await.is_none(),
            "still at most three unanswered"
        );
    }
    for pdu in outstanding {
        answer(&mut esme, deliver_sm_resp(pdu.sequence_number, CommandStatus::ESME_ROK)).await;
    }
    h.wait_empty().await;
    assert_eq!(h.deliveries.counters().delivered, 10);
    drop(esme);
    h.stop().await;
}
