//! Long messages cut into parts by the relay, end to end: test ESME ->
//! gateway (serve) -> relay -> `smsmax sim` (which keeps what it accepted,
//! in order) -> receipts -> correlator -> the client's outbox.
//!
//! Clients bind as transmitters so that no session takes entries out of the
//! outbox; the outbox is read through the `Outbox` trait after the gateway
//! has stopped.

mod common;

use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use bytes::Bytes;
use smsmax::{
    queue::{outbox::Outbox, Queue},
    relay::parts,
    sim::{KeptSubmit, SimConfig, SimHandle},
    store::{MessageState, Store},
};
use smsmax_protocol::{
    concat::parse_udh,
    pdu::{CancelSm, SubmitSm},
    tlv::Tlv,
    types::Address,
    Body, CommandStatus,
};

const DEST: &str = "447700900123";

/// A simulator that keeps the submits it accepted, in order.
async fn sim_with(f: impl FnOnce(&mut SimConfig)) -> SimHandle {
    common::start_sim(|c| {
        c.keep_submits = 100;
        f(c)
    })
    .await
}

/// One upstream `carrier` taking long messages as `method`, a route to it,
/// and the given extra TOML.
fn multipart_config(port: u16, method: &str, extra: &str) -> String {
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
long_messages = "{method}"

[[routes]]
prefix = ""
upstreams = [{{ name = "carrier" }}]

[relay]
idle_poll_ms = 10

{extra}
"#
    )
}

/// A 400-character GSM text (in message_payload: over 254 octets).
fn long_text() -> Vec<u8> {
    (0..400u32).map(|i| b'a' + (i % 26) as u8).collect()
}

fn long_submit() -> SubmitSm {
    SubmitSm {
        short_message: Bytes::new(),
        tlvs: vec![Tlv::MessagePayload(Bytes::from(long_text()))],
        ..common::submit_sm(DEST, "")
    }
}

/// Waits until the sim has sent `n` receipts (or fails after 10 s).
async fn wait_receipts_sent(sim: &SimHandle, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.stats().receipts_sent.total() < n {
        assert!(Instant::now() < deadline, "{:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The kept submits are the three UDH parts of [`long_text`] for `id`, in order.
fn assert_udh_parts(kept: &[KeptSubmit], id: &str) {
    assert_eq!(kept.len(), 3, "{kept:#?}");
    let text = long_text();
    let mut joined = Vec::new();
    for (k, part) in kept.iter().enumerate() {
        assert_eq!(part.esm_class & 0x40, 0x40, "UDHI set on part {k}");
        assert_eq!(part.sar, None);
        assert_eq!(part.dest, DEST);
        let (udh, body) = parse_udh(&part.message).expect("a UDH");
        let info = udh.concat().expect("a concatenation element");
        assert_eq!(
            (info.reference, info.total, info.seqnum),
            (parts::reference(id) & 0xFF, 3, k as u8 + 1),
            "part {k}"
        );
        joined.extend_from_slice(body);
    }
    assert_eq!(joined, text, "the parts rejoin to the message");
}

/// Runs one long message through an upstream with `long_messages = "udh"`
/// under `policy`; returns the receipts its client got.
async fn udh_message_under(policy: &str) -> (String, Vec<String>) {
    let sim = sim_with(|_| {}).await;
    let extra = format!("[receipts]\npart_policy = \"{policy}\"\n");
    let gateway = common::start(&multipart_config(sim.addr.port(), "udh", &extra)).await;
    let counters = gateway.running.receipt_counters().expect("correlator runs");
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let id = common::submit_ok(&mut esme, long_submit()).await;
    assert_eq!(
        common::wait_state(&mut esme, &id, &[2], Duration::from_secs(15)).await,
        2,
        "DELIVERED"
    );
    wait_receipts_sent(&sim, 3).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while counters.matched.load(Relaxed) < 3 {
        assert!(Instant::now() < deadline, "{:?}", counters.snapshot());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(esme);
    let kept = sim.kept();
    let sim_stats = sim.stop().await;
    assert_udh_parts(&kept, &id);
    assert_eq!(sim_stats.duplicates, 0, "{sim_stats:?}");

    let (storage, _dir) = common::stopped_storage(gateway).await;
    let record = storage.get(&id).await.unwrap().expect("record");
    assert_eq!(
        (record.state, record.parts_sent, record.upstream.as_deref()),
        (MessageState::Delivered, 3, Some("carrier"))
    );
    let receipts = storage.receipts(&id).await.unwrap();
    let mut parts: Vec<u16> = receipts
        .iter()
        .filter_map(|r| r.matched.as_ref().map(|m| m.part))
        .collect();
    parts.sort();
    assert_eq!(parts, vec![0, 1, 2], "one receipt per part: {receipts:?}");
    let entries = storage
        .reserve_for("alice", 100, Duration::from_secs(60))
        .await
        .unwrap();
    let texts = entries
        .iter()
        .map(|e| {
            assert_eq!(e.message_id.as_deref(), Some(id.as_str()), "our id");
            String::from_utf8_lossy(&e.short_message).into_owned()
        })
        .collect();
    storage.close().await.unwrap();
    (id, texts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udh_parts_arrive_in_order_and_policy_final_gives_one_receipt() {
    let (id, texts) = udh_message_under("final").await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].starts_with(&format!("id:{id} ")), "{texts:?}");
    assert!(texts[0].contains("stat:DELIVRD"), "{texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_per_part_gives_a_receipt_per_part() {
    let (id, texts) = udh_message_under("per_part").await;
    assert_eq!(texts.len(), 3, "{texts:?}");
    for t in &texts {
        assert!(t.starts_with(&format!("id:{id} ")) && t.contains("stat:DELIVRD"), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sar_parts_carry_the_tlvs_and_no_udh() {
    let sim = sim_with(|_| {}).await;
    let gateway = common::start(&multipart_config(sim.addr.port(), "sar", "")).await;
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let id = common::submit_ok(&mut esme, long_submit()).await;
    assert_eq!(
        common::wait_state(&mut esme, &id, &[2], Duration::from_secs(15)).await,
        2,
        "DELIVERED"
    );
    drop(esme);
    let kept = sim.kept();
    sim.stop().await;
    assert_eq!(kept.len(), 3, "{kept:#?}");
    let text = long_text();
    let bounds = [0, 153, 306, 400];
    for (k, part) in kept.iter().enumerate() {
        assert_eq!(part.esm_class & 0x40, 0, "no UDHI");
        assert_eq!(part.sar, Some((parts::reference(&id), 3, k as u8 + 1)), "part {k}");
        assert_eq!(&part.message[..], &text[bounds[k]..bounds[k + 1]], "part {k}");
    }
    gateway.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_mid_message_sends_each_part_once_in_order() {
    // Every second submit the sim receives closes the connection unanswered:
    // part 2 and part 3 each fail once and are retried, from that part.
    let sim = sim_with(|c| c.drop_every = 2).await;
    let extra = "[retry]\ninitial_backoff_ms = 50\nmax_backoff_ms = 200\nmax_attempts = 50\n";
    let gateway = common::start(&multipart_config(sim.addr.port(), "udh", extra)).await;
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let id = common::submit_ok(&mut esme, long_submit()).await;
    assert_eq!(
        common::wait_state(&mut esme, &id, &[2], Duration::from_secs(20)).await,
        2,
        "DELIVERED"
    );
    drop(esme);
    let kept = sim.kept();
    let stats = sim.stop().await;
    assert_eq!(stats.connections_dropped, 2, "{stats:?}");
    assert_eq!(stats.duplicates, 0, "no part accepted twice: {stats:?}");
    assert_udh_parts(&kept, &id);
    let (storage, _dir) = common::stopped_storage(gateway).await;
    let record = storage.get(&id).await.unwrap().unwrap();
    assert_eq!(record.parts_sent, 3);
    assert!(record.attempts >= 3, "{record:?}");
    assert_eq!(
        storage
            .reserve_for("alice", 10, Duration::from_secs(60))
            .await
            .unwrap()
            .len(),
        1
    );
    storage.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_after_the_first_part_left_is_refused() {
    // Part 2 fails (connection dropped) and waits 3 s for its retry: the
    // message is ACCEPTED and not held by the relay, but part 1 left.
    let sim = sim_with(|c| c.drop_every = 2).await;
    let extra = "[retry]\ninitial_backoff_ms = 3000\nmax_backoff_ms = 3000\njitter = \"none\"\n";
    let gateway = common::start(&multipart_config(sim.addr.port(), "udh", extra)).await;
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let id = common::submit_ok(&mut esme, long_submit()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.stats().connections_dropped < 1 {
        assert!(Instant::now() < deadline, "{:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the relay record the failure and release the message.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.kept().len(), 1, "one part left");
    assert_eq!(
        common::query_state(&mut esme, &id).await,
        6,
        "still ACCEPTED while parts remain"
    );
    let cancel = CancelSm {
        message_id: id.as_str().try_into().unwrap(),
        source: Address::new(1, 1, "447700900001").unwrap(),
        ..CancelSm::default()
    };
    assert_eq!(esme.call(cancel).await.command_status, CommandStatus::ESME_RCANCELFAIL);
    // The rest goes out after the retry.
    assert_eq!(
        common::wait_state(&mut esme, &id, &[2], Duration::from_secs(20)).await,
        2,
        "DELIVERED"
    );
    drop(esme);
    let kept = sim.kept();
    sim.stop().await;
    assert_udh_parts(&kept, &id);
    gateway.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_goes_on_from_the_first_part_not_sent() {
    // Part 2 fails (connection dropped) and waits 2 s for its retry; the
    // gateway stops meanwhile and starts again on the same storage, with the
    // upstream `carrier` now at another simulator.
    let first = sim_with(|c| c.drop_every = 2).await;
    let extra = "[retry]\ninitial_backoff_ms = 2000\nmax_backoff_ms = 2000\njitter = \"none\"\n";
    let gateway = common::start(&multipart_config(first.addr.port(), "udh", extra)).await;
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let id = common::submit_ok(&mut esme, long_submit()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.stats().connections_dropped < 1 {
        assert!(Instant::now() < deadline, "{:?}", first.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(esme);
    let sent_first = first.kept();
    first.stop().await;
    gateway.running.stop().await.expect("gateway stops");

    let second = sim_with(|_| {}).await;
    let config = common::config(gateway.dir.path(), &multipart_config(second.addr.port(), "udh", extra));
    let running = smsmax::serve::start(config).await.expect("gateway restarts");
    let mut esme = common::bound(running.smpp_addr, "transmitter", "alice").await;
    assert_eq!(
        common::wait_state(&mut esme, &id, &[2], Duration::from_secs(20)).await,
        2,
        "DELIVERED"
    );
    drop(esme);
    let sent_second = second.kept();
    second.stop().await;
    running.stop().await.unwrap();
    assert_eq!(sent_first.len(), 1, "{sent_first:#?}");
    assert_eq!(sent_second.len(), 2, "only the parts not sent yet: {sent_second:#?}");
    let all: Vec<KeptSubmit> = sent_first.into_iter().chain(sent_second).collect();
    assert_udh_parts(&all, &id);
}

/// An SMSC that answers binds, enquire_links and submit_sm; the n-th
/// submit_sm (from 0) is answered with `statuses[n]` (ESME_ROK beyond the
/// list). Returns its address and the submits it got, in order.
async fn scripted_smsc(statuses: Vec<CommandStatus>) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<SubmitSm>>>) {
    use futures::{SinkExt, StreamExt};
    use smsmax_protocol::{
        pdu::{BindResp, SubmitSmResp},
        Pdu, SmppCodec,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut framed = tokio_util::codec::Framed::new(stream, SmppCodec::default());
            while let Some(Ok(Ok(pdu))) = framed.next().await {
                let seq = pdu.sequence_number;
                let reply = match pdu.body {
                    Body::BindTransceiver(_) => Pdu::new(
                        seq,
                        Body::BindTransceiverResp(BindResp {
                            system_id: "scripted".try_into().unwrap(),
                            tlvs: vec![],
                        }),
                    ),
                    Body::EnquireLink => Pdu::new(seq, Body::EnquireLinkResp),
                    Body::SubmitSm(sm) => {
                        let n = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(sm);
                            seen.len() - 1
                        };
                        match statuses.get(n).copied().unwrap_or(CommandStatus::ESME_ROK) {
                            CommandStatus::ESME_ROK => Pdu::new(
                                seq,
                                Body::SubmitSmResp(SubmitSmResp {
                                    message_id: format!("ab{n}").as_str().try_into().unwrap(),
                                }),
                            ),
                            status => Pdu::error_response(smsmax_protocol::CommandId::SubmitSmResp, seq, status),
                        }
                    }
                    _ => continue,
                };
                if framed.send(reply).await.is_err() {
                    break;
                }
            }
        }
    });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_of_a_part_ends_the_message_undeliverable() {
    let (addr, got) = scripted_smsc(vec![CommandStatus::ESME_ROK, CommandStatus::ESME_RINVDSTADR]).await;
    let gateway = common::start(&multipart_config(addr.port(), "udh", "")).await;
    let mut esme = common::bound(gateway.addr, "transmitter", "alice").await;
    let id = common::submit_ok(&mut esme, long_submit()).await;
    assert_eq!(
        common::wait_state(&mut esme, &id, &[5], Duration::from_secs(10)).await,
        5,
        "UNDELIVERABLE"
    );
    drop(esme);
    let submits = got.lock().unwrap().clone();
    assert_eq!(submits.len(), 2, "part 3 is never sent: {submits:#?}");
    let (storage, _dir) = common::stopped_storage(gateway).await;
    let record = storage.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.parts_sent, record.error_code),
        (MessageState::Undeliverable, 1, Some(CommandStatus::ESME_RINVDSTADR.0))
    );
    let entries = storage.reserve_for("alice", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(entries.len(), 1, "the client's receipt");
    assert!(String::from_utf8_lossy(&entries[0].short_message).contains("stat:UNDELIV"));
    storage.close().await.unwrap();
}
