//! The ESME-facing server over real sockets on 127.0.0.1: binds, state
//! rules, submits with durable ids, query/cancel/replace, throttling,
//! unbind, timeouts, malformed input and graceful shutdown.

mod common;

use std::time::Duration;

use common::{bound, connect, hex, start, submit_sm, PASSWORD};
use smsmax_protocol::{
    pdu::{CancelSm, QuerySm, ReplaceSm},
    types::MessageId,
    Body, CommandId, CommandStatus, Pdu,
};

const BOB: &str = r#"
[[clients]]
system_id = "bob"
password_hash = "HASH"
allowed_networks = ["10.0.0.0/8"]

[[clients]]
system_id = "rx-only"
password_hash = "HASH"
bind_types = ["receiver"]

[[clients]]
system_id = "slow"
password_hash = "HASH"
throughput = 5
"#;

fn extra() -> String {
    BOB.replace("HASH", common::password_hash())
}

fn message_id(pdu: &Pdu) -> MessageId {
    match &pdu.body {
        Body::SubmitSmResp(r) => r.message_id.clone(),
        other => panic!("not a submit_sm_resp: {other:?}"),
    }
}

#[tokio::test]
async fn binds_are_checked_with_precise_statuses() {
    let gw = start(&extra()).await;
    let mut esme = connect(gw.addr).await;
    assert_eq!(
        esme.bind("transmitter", "alice", "wrong").await,
        CommandStatus::ESME_RINVPASWD
    );
    assert_eq!(
        esme.bind("transmitter", "nobody", PASSWORD).await,
        CommandStatus::ESME_RINVSYSID
    );
    // bob may only bind from 10.0.0.0/8.
    assert_eq!(
        esme.bind("transmitter", "bob", PASSWORD).await,
        CommandStatus::ESME_RBINDFAIL
    );
    assert_eq!(
        esme.bind("transmitter", "rx-only", PASSWORD).await,
        CommandStatus::ESME_RBINDFAIL
    );
    assert_eq!(
        esme.bind("transceiver", "alice", PASSWORD).await,
        CommandStatus::ESME_ROK
    );
    assert_eq!(
        esme.bind("transceiver", "alice", PASSWORD).await,
        CommandStatus::ESME_RALYBND
    );
    gw.running.stop().await.unwrap();
}

#[tokio::test]
async fn bind_response_carries_system_id_and_interface_version() {
    let gw = start("").await;
    let mut esme = connect(gw.addr).await;
    let bind = smsmax_protocol::pdu::Bind {
        system_id: "alice".try_into().unwrap(),
        password: PASSWORD.try_into().unwrap(),
        interface_version: 0x34,
        ..Default::default()
    };
    let resp = esme.call(Body::BindReceiver(bind)).await;
    let Body::BindReceiverResp(resp) = resp.body else {
        panic!("{resp:?}")
    };
    assert_eq!(resp.system_id.as_str(), Some("SMSMax"));
    assert_eq!(resp.tlvs, vec![smsmax_protocol::Tlv::ScInterfaceVersion(0x34)]);
}

#[tokio::test]
async fn maximum_binds_per_system_id() {
    let gw = start("").await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut esme = connect(gw.addr).await;
        assert_eq!(
            esme.bind("transmitter", "alice", PASSWORD).await,
            CommandStatus::ESME_ROK
        );
        sessions.push(esme);
    }
    let mut fourth = connect(gw.addr).await;
    assert_eq!(
        fourth.bind("transmitter", "alice", PASSWORD).await,
        CommandStatus::ESME_RBINDFAIL
    );
    // Closing one frees its slot.
    drop(sessions.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        fourth.bind("transmitter", "alice", PASSWORD).await,
        CommandStatus::ESME_ROK
    );
}

#[tokio::test]
async fn requests_outside_the_bound_state_get_rinvbndsts() {
    let gw = start(&extra()).await;
    let mut esme = connect(gw.addr).await;
    let resp = esme.call(submit_sm("447700900002", "too early")).await;
    assert_eq!(resp.command_id(), CommandId::SubmitSmResp);
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVBNDSTS);
    // enquire_link is answered in any state.
    assert_eq!(
        esme.call(Body::EnquireLink).await.command_id(),
        CommandId::EnquireLinkResp
    );

    let mut rx = connect(gw.addr).await;
    assert_eq!(rx.bind("receiver", "alice", PASSWORD).await, CommandStatus::ESME_ROK);
    let resp = rx.call(submit_sm("447700900002", "receivers cannot submit")).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVBNDSTS);
}

#[tokio::test]
async fn submit_query_cancel_replace() {
    let gw = start(&extra()).await;
    let mut esme = bound(gw.addr, "transceiver", "alice").await;

    let resp = esme.call(submit_sm("447700900002", "hello")).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    let id = message_id(&resp);
    assert!(!id.is_empty() && id.len() <= 64);

    let query = |id: &MessageId| QuerySm {
        message_id: id.clone(),
        ..QuerySm::default()
    };
    let resp = esme.call(query(&id)).await;
    let Body::QuerySmResp(state) = &resp.body else {
        panic!("{resp:?}")
    };
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    assert_eq!(state.message_id, id);
    assert_eq!(state.message_state, 6, "ACCEPTED");
    assert!(state.final_date.is_empty());

    let replace = ReplaceSm {
        message_id: id.clone(),
        short_message: bytes::Bytes::from_static(b"hello again"),
        ..ReplaceSm::default()
    };
    assert_eq!(esme.call(replace.clone()).await.command_status, CommandStatus::ESME_ROK);

    let cancel = CancelSm {
        message_id: id.clone(),
        ..CancelSm::default()
    };
    assert_eq!(esme.call(cancel.clone()).await.command_status, CommandStatus::ESME_ROK);
    let resp = esme.call(query(&id)).await;
    let Body::QuerySmResp(state) = &resp.body else {
        panic!("{resp:?}")
    };
    assert_eq!(state.message_state, 4, "DELETED");
    assert!(!state.final_date.is_empty());
    // Too late now.
    assert_eq!(esme.call(cancel).await.command_status, CommandStatus::ESME_RCANCELFAIL);
    assert_eq!(
        esme.call(replace).await.command_status,
        CommandStatus::ESME_RREPLACEFAIL
    );

    // Unknown ids.
    let unknown: MessageId = "nope".try_into().unwrap();
    assert_eq!(
        esme.call(query(&unknown)).await.command_status,
        CommandStatus::ESME_RQUERYFAIL
    );
}

#[tokio::test]
async fn another_clients_message_is_not_visible() {
    let extra = r#"
[[clients]]
system_id = "carol"
password_hash = "HASH"
"#
    .replace("HASH", common::password_hash());
    let gw = start(&extra).await;
    let mut alice = bound(gw.addr, "transmitter", "alice").await;
    let id = message_id(&alice.call(submit_sm("447700900002", "mine")).await);

    let mut carol = bound(gw.addr, "transmitter", "carol").await;
    let cancel = CancelSm {
        message_id: id.clone(),
        ..CancelSm::default()
    };
    assert_eq!(carol.call(cancel).await.command_status, CommandStatus::ESME_RINVMSGID);
    let query = QuerySm {
        message_id: id,
        ..QuerySm::default()
    };
    assert_eq!(carol.call(query).await.command_status, CommandStatus::ESME_RQUERYFAIL);
}

#[tokio::test]
async fn invalid_submits_get_the_fields_status() {
    let gw = start("").await;
    let mut esme = bound(gw.addr, "transmitter", "alice").await;
    let mut bad = submit_sm("447700900002", "x");
    bad.dest.addr = "".try_into().unwrap();
    assert_eq!(esme.call(bad).await.command_status, CommandStatus::ESME_RINVDSTADR);
    let mut bad = submit_sm("447700900002", "x");
    bad.registered_delivery = 3;
    assert_eq!(esme.call(bad).await.command_status, CommandStatus::ESME_RINVREGDLVFLG);
    // The session goes on.
    assert_eq!(
        esme.call(submit_sm("447700900002", "ok")).await.command_status,
        CommandStatus::ESME_ROK
    );
}

#[tokio::test]
async fn throughput_over_the_rate_is_throttled() {
    let gw = start(&extra()).await;
    let mut esme = bound(gw.addr, "transmitter", "slow").await;
    let mut throttled = 0;
    let mut accepted = 0;
    for _ in 0..20 {
        match esme.call(submit_sm("447700900002", "burst")).await.command_status {
            CommandStatus::ESME_ROK => accepted += 1,
            CommandStatus::ESME_RTHROTTLED => throttled += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        accepted >= 5 && throttled >= 10,
        "accepted {accepted}, throttled {throttled}"
    );
}

#[tokio::test]
async fn a_full_window_answers_rthrottled_and_many_in_flight_are_all_answered() {
    let gw = start("").await;
    let mut esme = bound(gw.addr, "transmitter", "alice").await;
    // 200 requests written without waiting: the window is 64, so every
    // request is answered, each either with an id or ESME_RTHROTTLED.
    let mut sent = std::collections::HashSet::new();
    for i in 0..200 {
        sent.insert(esme.send(submit_sm("447700900002", &format!("m{i}"))).await);
    }
    let mut ok = 0;
    for _ in 0..200 {
        let pdu = esme.recv().await.expect("answer");
        assert!(sent.remove(&pdu.sequence_number), "each request answered once");
        match pdu.command_status {
            CommandStatus::ESME_ROK => ok += 1,
            CommandStatus::ESME_RTHROTTLED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 64, "at least a window's worth accepted, got {ok}");
}

#[tokio::test]
async fn unknown_commands_get_generic_nack_and_the_session_survives() {
    let gw = start("").await;
    let mut esme = bound(gw.addr, "transmitter", "alice").await;
    // command_id 0x00000099, sequence 77, empty body.
    esme.send_raw(&hex("00000010 00000099 00000000 0000004D")).await;
    let nack = esme.recv().await.unwrap();
    assert_eq!(nack.command_id(), CommandId::GenericNack);
    assert_eq!(nack.command_status, CommandStatus::ESME_RINVCMDID);
    assert_eq!(nack.sequence_number, 77);
    // submit_sm whose source_addr has no NUL within 21 octets.
    let mut frame = hex("00000000 00000004 00000000 00000058 00 0101");
    frame.extend_from_slice(&[b'1'; 30]);
    frame.push(0);
    let len = frame.len() as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    esme.send_raw(&frame).await;
    let resp = esme.recv().await.unwrap();
    assert_eq!(resp.command_id(), CommandId::SubmitSmResp);
    assert_eq!(resp.command_status, CommandStatus::ESME_RINVSRCADR);
    assert_eq!(resp.sequence_number, 0x58);
    assert_eq!(
        esme.call(submit_sm("447700900002", "still fine")).await.command_status,
        CommandStatus::ESME_ROK
    );
}

#[tokio::test]
async fn an_unframeable_stream_is_closed() {
    let gw = start("").await;
    let mut esme = connect(gw.addr).await;
    esme.send_raw(&hex("FFFFFFFF 00000004 00000000 00000001")).await;
    let nack = esme.recv().await.expect("generic_nack before close");
    assert_eq!(nack.command_status, CommandStatus::ESME_RINVCMDLEN);
    assert!(esme.recv().await.is_none(), "connection closed");
}

#[tokio::test]
async fn unbind_is_answered_and_the_connection_closes() {
    let gw = start("").await;
    let mut esme = bound(gw.addr, "transmitter", "alice").await;
    let resp = esme.call(Body::Unbind).await;
    assert_eq!(resp.command_id(), CommandId::UnbindResp);
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    assert!(esme.recv().await.is_none());
}

#[tokio::test]
async fn no_bind_within_the_bind_timeout_closes() {
    let gw = start("").await;
    let mut esme = connect(gw.addr).await;
    let started = std::time::Instant::now();
    assert!(esme.recv().await.is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
}

#[tokio::test]
async fn idle_sessions_get_enquire_link_and_silent_ones_are_closed() {
    // Separate config: enquire_link after 1 s of silence, 1 s to answer.
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path(), "");
    config.smpp.enquire_link_interval_secs = 1;
    config.smpp.response_timeout_secs = 1;
    let running = smsmax::serve::start(config).await.unwrap();
    let mut esme = bound(running.smpp_addr, "transceiver", "alice").await;
    let probe = esme.recv().await.expect("enquire_link");
    assert_eq!(probe.command_id(), CommandId::EnquireLink);
    // Answer it: the session stays.
    esme.framed
        .send_pdu(Pdu::new(probe.sequence_number, Body::EnquireLinkResp))
        .await;
    let probe = esme.recv().await.expect("another enquire_link");
    assert_eq!(probe.command_id(), CommandId::EnquireLink);
    // Do not answer: closed after the response timeout.
    assert!(esme.recv().await.is_none());
    running.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_answers_in_flight_work_and_unbinds_clients() {
    let gw = start("").await;
    let mut esme = bound(gw.addr, "transceiver", "alice").await;
    let sequence = esme.send(submit_sm("447700900002", "in flight")).await;
    let stop = tokio::spawn(gw.running.stop());
    // The submit is answered (accepted if it was read before the shutdown,
    // ESME_RSYSERR if after), and the gateway unbinds.
    let mut answered = false;
    let mut unbind = None;
    while !(answered && unbind.is_some()) {
        let pdu = esme.recv().await.expect("answer and unbind before close");
        match pdu.command_id() {
            CommandId::SubmitSmResp => {
                assert_eq!(pdu.sequence_number, sequence);
                assert!(matches!(
                    pdu.command_status,
                    CommandStatus::ESME_ROK | CommandStatus::ESME_RSYSERR
                ));
                answered = true;
            }
            CommandId::Unbind => unbind = Some(pdu.sequence_number),
            other => panic!("unexpected {other}"),
        }
    }
    esme.framed.send_pdu(Pdu::new(unbind.unwrap(), Body::UnbindResp)).await;
    assert!(esme.recv().await.is_none());
    stop.await.unwrap().unwrap();
}

trait SendPdu {
    async fn send_pdu(&mut self, pdu: Pdu);
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> SendPdu
    for tokio_util::codec::Framed<S, smsmax_protocol::SmppCodec>
{
    async fn send_pdu(&mut self, pdu: Pdu) {
        use futures::SinkExt;
        self.send(pdu).await.unwrap();
    }
}

#[tokio::test]
async fn failed_binds_are_rate_limited_per_address() {
    let gw = start("[security]\nfailed_binds_per_address_per_minute = 3\n").await;
    let mut esme = connect(gw.addr).await;
    for _ in 0..3 {
        assert_eq!(
            esme.bind("transmitter", "alice", "wrong").await,
            CommandStatus::ESME_RINVPASWD
        );
    }
    // The address is now blocked for the rest of the minute, even with the
    // right password, and without any password work.
    assert_eq!(
        esme.bind("transmitter", "alice", PASSWORD).await,
        CommandStatus::ESME_RBINDFAIL
    );
    assert_eq!(
        esme.bind("transmitter", "nobody", PASSWORD).await,
        CommandStatus::ESME_RBINDFAIL
    );
}

#[tokio::test]
async fn failed_binds_are_rate_limited_per_system_id() {
    let gw =
        start("[security]\nfailed_binds_per_system_id_per_minute = 2\nfailed_binds_per_address_per_minute = 100\n")
            .await;
    let mut esme = connect(gw.addr).await;
    for _ in 0..2 {
        assert_eq!(
            esme.bind("transmitter", "alice", "wrong").await,
            CommandStatus::ESME_RINVPASWD
        );
    }
    assert_eq!(
        esme.bind("transmitter", "alice", PASSWORD).await,
        CommandStatus::ESME_RBINDFAIL
    );
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path(), "");
    config.smpp.max_connections = 2;
    let running = smsmax::serve::start(config).await.unwrap();
    let mut first = connect(running.smpp_addr).await;
    let mut second = connect(running.smpp_addr).await;
    assert_eq!(
        first.bind("transmitter", "alice", PASSWORD).await,
        CommandStatus::ESME_ROK
    );
    assert_eq!(
        second.bind("transmitter", "alice", PASSWORD).await,
        CommandStatus::ESME_ROK
    );
    let mut third = connect(running.smpp_addr).await;
    assert!(third.recv().await.is_none(), "closed without a word");
    // A slot frees when a connection ends.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fourth = bound(running.smpp_addr, "transmitter", "alice").await;
    drop((second, fourth));
    running.stop().await.unwrap();
}

/// The journal engine at its `max_messages` with every record in flight:
/// the next submit gets ESME_RMSGQFUL, not a silent loss or a crash, and the
/// session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_answers_message_queue_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path(), "");
    config.storage.max_messages = 3;
    let running = smsmax::serve::start(config).await.expect("gateway starts");
    let mut esme = bound(running.smpp_addr, "transceiver", "alice").await;
    for i in 0..3 {
        let resp = esme
            .call(Body::SubmitSm(submit_sm("447700900123", &format!("m{i}"))))
            .await;
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "{resp:?}");
    }
    let resp = esme
        .call(Body::SubmitSm(submit_sm("447700900123", "one too many")))
        .await;
    assert_eq!(resp.command_status, CommandStatus::ESME_RMSGQFUL, "{resp:?}");
    let resp = esme.call(Body::EnquireLink).await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "the session goes on");
    running.stop().await.expect("gateway stops");
}
