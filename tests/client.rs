//! The reusable ESME session (`smsmax::client`) against the real gateway and
//! against small scripted SMSCs that misbehave on purpose.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use smsmax::client::{self, BindRequest, BindType, ClientError, ClientHandle, ClientSettings, CloseReason, Inbound};
use smsmax_protocol::{
    pdu::{BindResp, SubmitSm, SubmitSmResp},
    types::{esm_class, MessageId},
    Body, CommandStatus, Pdu, SmppCodec,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

fn alice() -> BindRequest {
    BindRequest::new(BindType::Transceiver, "alice", common::PASSWORD)
}

fn settings(window: usize, response_timeout: Duration) -> ClientSettings {
    ClientSettings {
        window,
        response_timeout,
        ..ClientSettings::default()
    }
}

fn submit(text: &str) -> Body {
    Body::SubmitSm(common::submit_sm("447700900123", text))
}

/// A scripted SMSC: accepts one connection and hands it to `script` as a
/// framed stream.
async fn fake_smsc<F, Fut>(script: F) -> std::net::SocketAddr
where
    F: FnOnce(Framed<TcpStream, SmppCodec>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            script(Framed::new(stream, SmppCodec::default())).await;
        }
    });
    addr
}

async fn next_pdu(framed: &mut Framed<TcpStream, SmppCodec>) -> Option<Pdu> {
    match tokio::time::timeout(Duration::from_secs(5), framed.next()).await {
        Ok(Some(Ok(Ok(pdu)))) => Some(pdu),
        _ => None,
    }
}

/// Answers the bind with ESME_ROK.
async fn accept_bind(framed: &mut Framed<TcpStream, SmppCodec>) {
    let bind = next_pdu(framed).await.expect("bind");
    assert!(matches!(bind.body, Body::BindTransceiver(_)), "{bind:?}");
    let resp = Pdu::new(bind.sequence_number, Body::BindTransceiverResp(BindResp::default()));
    framed.send(resp).await.unwrap();
}

#[tokio::test]
async fn submits_many_in_flight_to_the_gateway() {
    let gw = common::start("").await;
    let (handle, _inbound) = client::connect(gw.addr, alice(), settings(64, Duration::from_secs(5)))
        .await
        .expect("bind");
    let calls = (0..500).map(|i| {
        let handle = handle.clone();
        async move {
            let pdu = handle.request(submit(&format!("message {i}"))).await.expect("response");
            assert!(handle.in_flight() <= 64);
            pdu
        }
    });
    let responses = futures::future::join_all(calls).await;
    let mut ids = std::collections::HashSet::new();
    for pdu in &responses {
        assert_eq!(pdu.command_status, CommandStatus::ESME_ROK, "{pdu:?}");
        let Body::SubmitSmResp(resp) = &pdu.body else {
            panic!("not a submit_sm_resp: {pdu:?}")
        };
        assert!(
            ids.insert(resp.message_id.to_string_lossy().into_owned()),
            "ids are unique"
        );
    }
    assert_eq!(ids.len(), 500);
    // An explicit enquire_link through request() works too.
    let pong = handle.request(Body::EnquireLink).await.unwrap();
    assert_eq!(pong.body, Body::EnquireLinkResp);
    handle.unbind().await.expect("clean unbind");
    gw.running.stop().await.unwrap();
}

#[tokio::test]
async fn out_of_order_responses_reach_their_callers() {
    const N: usize = 16;
    let addr = fake_smsc(|mut framed| async move {
        accept_bind(&mut framed).await;
        let mut requests = Vec::new();
        while requests.len() < N {
            requests.push(next_pdu(&mut framed).await.expect("submit_sm"));
        }
        // Answer the last first; the message id echoes the request's text.
        for req in requests.into_iter().rev() {
            let Body::SubmitSm(sm) = req.body else {
                panic!("{req:?}")
            };
            let id = MessageId::new(sm.short_message.clone()).unwrap();
            framed
                .send(Pdu::new(req.sequence_number, SubmitSmResp { message_id: id }))
                .await
                .unwrap();
        }
        // Keep the connection until the client goes.
        while next_pdu(&mut framed).await.is_some() {}
    })
    .await;
    let (handle, _inbound) = client::connect(addr, alice(), settings(N, Duration::from_secs(5)))
        .await
        .unwrap();
    let calls = (0..N).map(|i| {
        let handle = handle.clone();
        async move {
            let text = format!("m{i}");
            let pdu = handle.request(submit(&text)).await.expect("response");
            let Body::SubmitSmResp(resp) = pdu.body else {
                panic!("{pdu:?}")
            };
            assert_eq!(
                resp.message_id.as_str(),
                Some(text.as_str()),
                "each caller gets its own answer"
            );
        }
    });
    futures::future::join_all(calls).await;
}

#[tokio::test]
async fn the_window_bounds_outstanding_requests() {
    let addr = fake_smsc(|mut framed| async move {
        accept_bind(&mut framed).await;
        // Hold the first requests: only the window's worth may arrive.
        let mut held = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_millis(400);
        while let Ok(Some(Ok(Ok(pdu)))) = tokio::time::timeout_at(until, framed.next()).await {
            held.push(pdu);
        }
        assert_eq!(held.len(), 2, "window 2: {held:?}");
        let answer = |pdu: Pdu| Pdu::new(pdu.sequence_number, SubmitSmResp::default());
        for pdu in held {
            framed.send(answer(pdu)).await.unwrap();
        }
        while let Some(pdu) = next_pdu(&mut framed).await {
            if matches!(pdu.body, Body::SubmitSm(_)) {
                framed.send(answer(pdu)).await.unwrap();
            } else if pdu.body == Body::Unbind {
                framed
                    .send(Pdu::new(pdu.sequence_number, Body::UnbindResp))
                    .await
                    .unwrap();
            }
        }
    })
    .await;
    let (handle, _inbound) = client::connect(addr, alice(), settings(2, Duration::from_secs(3)))
        .await
        .unwrap();
    let calls = (0..5).map(|i| {
        let handle = handle.clone();
        async move { handle.request(submit(&format!("w{i}"))).await }
    });
    for result in futures::future::join_all(calls).await {
        assert_eq!(result.expect("answered").command_status, CommandStatus::ESME_ROK);
    }
    handle.unbind().await.expect("unbind answered");
}

#[tokio::test]
async fn requests_time_out_when_the_server_stops_answering() {
    let addr = fake_smsc(|mut framed| async move {
        accept_bind(&mut framed).await;
        // Read and never answer.
        while next_pdu(&mut framed).await.is_some() {}
    })
    .await;
    let timeout = Duration::from_millis(300);
    let (handle, _inbound) = client::connect(addr, alice(), settings(1, timeout)).await.unwrap();
    let started = Instant::now();
    let (first, second) = tokio::join!(handle.request(submit("a")), async {
        // Give the first request the only slot.
        tokio::time::sleep(Duration::from_millis(20)).await;
        handle.request(submit("b")).await
    });
    let elapsed = started.elapsed();
    assert!(
        matches!(first, Err(ClientError::ResponseTimeout { after, .. }) if after == timeout),
        "{first:?}"
    );
    // Waits for the slot (which frees when the first request times out), then for its response.
    assert!(
        matches!(
            second,
            Err(ClientError::WindowTimeout(_) | ClientError::ResponseTimeout { .. })
        ),
        "{second:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    // The session itself is still up: a timeout is the request's failure only.
    assert_eq!(handle.close_reason(), None);
}

#[tokio::test]
async fn bind_to_a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keep = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(stream);
    });
    let started = Instant::now();
    let result = client::connect(addr, alice(), settings(4, Duration::from_millis(300))).await;
    assert!(
        matches!(result, Err(ClientError::ResponseTimeout { .. })),
        "{:?}",
        result.map(|_| ())
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    keep.abort();
}

#[tokio::test]
async fn a_closed_session_is_a_typed_error() {
    let addr = fake_smsc(|mut framed| async move {
        accept_bind(&mut framed).await;
        let _ = next_pdu(&mut framed).await;
        // Hang up with the request unanswered.
    })
    .await;
    let (handle, mut inbound) = client::connect(addr, alice(), settings(8, Duration::from_secs(5)))
        .await
        .unwrap();
    let result = handle.request(submit("lost")).await;
    assert!(
        matches!(result, Err(ClientError::Closed(CloseReason::PeerClosed))),
        "{result:?}"
    );
    let again = handle.request(submit("after")).await;
    assert!(
        matches!(again, Err(ClientError::Closed(CloseReason::PeerClosed))),
        "{again:?}"
    );
    assert_eq!(handle.closed().await, CloseReason::PeerClosed);
    assert!(
        inbound.recv().await.is_none(),
        "the inbound channel ends with the session"
    );
    assert!(matches!(handle.unbind().await, Err(ClientError::Closed(_))));
}

#[tokio::test]
async fn refused_bind_is_a_typed_error() {
    let gw = common::start("").await;
    let bind = BindRequest::new(BindType::Transceiver, "alice", "wrong");
    let result = client::connect(gw.addr, bind, ClientSettings::default()).await;
    match result {
        Err(ClientError::BindRejected(status)) => assert!(!status.is_ok()),
        other => panic!("expected BindRejected, got {:?}", other.map(|_| ())),
    }
    let too_long = BindRequest::new(BindType::Transceiver, "alice", "longer than nine");
    let result = client::connect(gw.addr, too_long, ClientSettings::default()).await;
    assert!(matches!(
        result,
        Err(ClientError::InvalidBindField { field: "password", .. })
    ));
    gw.running.stop().await.unwrap();
}

#[tokio::test]
async fn gateway_shutdown_unbinds_the_client() {
    let gw = common::start("").await;
    let (handle, _inbound) = client::connect(gw.addr, alice(), ClientSettings::default())
        .await
        .unwrap();
    let pdu = handle.request(submit("before shutdown")).await.unwrap();
    assert!(pdu.command_status.is_ok());
    gw.running.stop().await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), handle.closed())
        .await
        .unwrap();
    assert_eq!(reason, CloseReason::UnboundByPeer);
    let after = handle.request(submit("after")).await;
    assert!(
        matches!(after, Err(ClientError::Closed(CloseReason::UnboundByPeer))),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_missed_enquire_link_resp_ends_the_session() {
    let addr = fake_smsc(|mut framed| async move {
        accept_bind(&mut framed).await;
        while next_pdu(&mut framed).await.is_some() {}
    })
    .await;
    let settings = ClientSettings {
        enquire_link_interval: Duration::from_millis(100),
        response_timeout: Duration::from_millis(300),
        ..ClientSettings::default()
    };
    let (handle, _inbound) = client::connect(addr, alice(), settings).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(3), handle.closed())
        .await
        .unwrap();
    assert_eq!(reason, CloseReason::EnquireLinkTimeout);
}

#[tokio::test]
async fn inbound_requests_are_answered_as_the_consumer_decides() {
    let (report_tx, report_rx) = tokio::sync::oneshot::channel();
    let addr = fake_smsc(|mut framed| async move {
        accept_bind(&mut framed).await;
        framed.send(Pdu::new(100, Body::EnquireLink)).await.unwrap();
        for seq in 1..=3 {
            let receipt = SubmitSm {
                esm_class: esm_class::DELIVERY_RECEIPT,
                short_message: Bytes::from(format!("id:{seq} sub:001 dlvrd:001 stat:DELIVRD err:000")),
                ..SubmitSm::default()
            };
            framed.send(Pdu::new(seq, Body::DeliverSm(receipt))).await.unwrap();
        }
        let mut answers = Vec::new();
        while answers.len() < 4 {
            let pdu = next_pdu(&mut framed).await.expect("answer");
            answers.push((pdu.sequence_number, pdu.command_id(), pdu.command_status));
        }
        answers.sort_by_key(|a| a.0);
        let _ = report_tx.send(answers);
        while next_pdu(&mut framed).await.is_some() {}
    })
    .await;
    let settings = ClientSettings {
        inbound_timeout: Duration::from_millis(300),
        ..ClientSettings::default()
    };
    let (_handle, mut inbound): (ClientHandle, _) = client::connect(addr, alice(), settings).await.unwrap();
    let mut held = None;
    for _ in 0..3 {
        let Inbound { pdu, responder } = inbound.recv().await.expect("deliver_sm");
        match pdu.sequence_number {
            1 => assert!(responder.ok()),
            2 => assert!(responder.respond(CommandStatus::ESME_RX_P_APPN)),
            // Held past the timeout: the fallback goes out, a late answer is refused.
            _ => held = Some(responder),
        }
    }
    let answers = tokio::time::timeout(Duration::from_secs(5), report_rx)
        .await
        .unwrap()
        .unwrap();
    use smsmax_protocol::CommandId::{DeliverSmResp, EnquireLinkResp};
    assert_eq!(
        answers,
        vec![
            (1, DeliverSmResp, CommandStatus::ESME_ROK),
            (2, DeliverSmResp, CommandStatus::ESME_RX_P_APPN),
            (3, DeliverSmResp, CommandStatus::ESME_RX_T_APPN),
            (100, EnquireLinkResp, CommandStatus::ESME_ROK),
        ]
    );
    assert!(!held.unwrap().ok(), "too late");
}

#[tokio::test]
async fn requests_that_are_not_requests_are_refused() {
    let gw = common::start("").await;
    let (handle, _inbound) = client::connect(gw.addr, alice(), ClientSettings::default())
        .await
        .unwrap();
    for body in [
        Body::Unbind,
        Body::EnquireLinkResp,
        Body::BindTransmitter(Default::default()),
    ] {
        assert!(matches!(handle.request(body).await, Err(ClientError::NotARequest(_))));
    }
    handle.unbind().await.unwrap();
    gw.running.stop().await.unwrap();
}
