//! The upstream pool (`smsmax::upstream`) against the SMSC simulator.

use std::time::{Duration, Instant};

use smsmax::{
    sim::{self, SimConfig, SimHandle},
    upstream::{BindMode, SubmitError, TransientCause, UpstreamConfig, UpstreamPool},
};
use smsmax_protocol::{pdu::SubmitSm, types::Address, Body};

async fn sim_with(f: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut config = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        receipt_delay: Duration::from_millis(20),
        response_timeout: Duration::from_secs(2),
        ..SimConfig::default()
    };
    f(&mut config);
    sim::start(config).await.expect("sim starts")
}

fn upstream(sim: &SimHandle, binds: usize) -> UpstreamConfig {
    let mut c = UpstreamConfig::new("carrier", "127.0.0.1", sim.addr.port(), "smsmax", "pw");
    c.binds = binds;
    c.window = 16;
    c.response_timeout_ms = 2_000;
    c.reconnect_min_ms = 20;
    c.reconnect_max_ms = 200;
    c.throttle_backoff_min_ms = 400;
    c.throttle_backoff_max_ms = 2_000;
    c
}

fn sm(i: usize, receipt: bool) -> SubmitSm {
    SubmitSm {
        source: Address::new(1, 1, "447700900001").unwrap(),
        dest: Address::new(1, 1, "447700900123").unwrap(),
        registered_delivery: u8::from(receipt),
        short_message: bytes::Bytes::from(format!("message {i}")),
        ..SubmitSm::default()
    }
}

async fn started(config: UpstreamConfig, bound: usize) -> std::sync::Arc<UpstreamPool> {
    let pool = UpstreamPool::start(config).expect("pool starts");
    assert!(
        pool.wait_bound(bound, Duration::from_secs(3)).await,
        "{bound} sessions bind"
    );
    pool
}

#[tokio::test]
async fn binds_every_session_and_submits_get_the_sims_ids() {
    let sim = sim_with(|c| c.id_start = Some(0x1000)).await;
    let pool = started(upstream(&sim, 3), 3).await;
    assert_eq!(pool.bound(), 3);
    assert!(pool.is_available());
    let submits = (0..60).map(|i| {
        let pool = pool.clone();
        async move { pool.submit(sm(i, false)).await }
    });
    let mut ids: Vec<String> = futures::future::join_all(submits)
        .await
        .into_iter()
        .map(|r| r.expect("accepted"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60);
    let expected: Vec<String> = (0x1000..0x1000 + 60).map(|n| format!("{n:x}")).collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(ids, expected);
    let stats = sim.stats();
    assert_eq!(stats.binds.transceiver, 3);
    assert_eq!(stats.submits_accepted, 60);
    pool.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn transmitter_receiver_mode_binds_pairs_and_receipts_arrive_on_inbound() {
    let sim = sim_with(|_| {}).await;
    let mut config = upstream(&sim, 2);
    config.bind_mode = BindMode::TransmitterReceiver;
    let pool = started(config, 4).await;
    let mut inbound = pool.inbound().expect("first call");
    assert!(pool.inbound().is_none());
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(pool.submit(sm(i, true)).await.expect("accepted"));
    }
    let stats = sim.stats();
    assert_eq!((stats.binds.transmitter, stats.binds.receiver), (2, 2));
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let item = tokio::time::timeout(Duration::from_secs(3), inbound.recv())
            .await
            .expect("receipt in time")
            .expect("channel open");
        assert_eq!(&*item.upstream, "carrier");
        assert!(item.bind >= 2, "receipts come on the receivers, got bind {}", item.bind);
        let Body::DeliverSm(dsm) = &item.pdu.body else {
            panic!("not a deliver_sm: {:?}", item.pdu)
        };
        assert!(dsm.is_delivery_receipt());
        let text = String::from_utf8_lossy(dsm.message()).into_owned();
        got.push(text);
        assert!(item.responder.ok());
    }
    for id in &ids {
        assert!(
            got.iter().any(|t| t.contains(&format!("id:{id} "))),
            "receipt for {id} in {got:?}"
        );
    }
    pool.stop().await;
    let stats = sim.stop().await;
    assert_eq!(stats.receipts_acked, 10);
}

#[tokio::test]
async fn transceiver_receipts_arrive_on_inbound() {
    let sim = sim_with(|_| {}).await;
    let pool = started(upstream(&sim, 2), 2).await;
    let mut inbound = pool.inbound().expect("first call");
    for i in 0..6 {
        pool.submit(sm(i, true)).await.expect("accepted");
    }
    for _ in 0..6 {
        let item = tokio::time::timeout(Duration::from_secs(3), inbound.recv())
            .await
            .expect("receipt in time")
            .expect("channel open");
        assert!(matches!(&item.pdu.body, Body::DeliverSm(d) if d.is_delivery_receipt()));
        assert!(item.responder.ok());
    }
    pool.stop().await;
    assert_eq!(sim.stop().await.receipts_acked, 6);
}

#[tokio::test]
async fn throttling_upstream_makes_the_bind_back_off() {
    let sim = sim_with(|c| c.throttle_share = 1.0).await;
    let pool = started(upstream(&sim, 1), 1).await;
    assert!(pool.is_available());
    let err = pool.submit(sm(0, false)).await.unwrap_err();
    assert!(matches!(err, SubmitError::Throttled(s) if s.0 == 0x58), "{err:?}");
    assert!(!pool.is_available());
    // While backing off the pool does not send at all.
    let started_at = Instant::now();
    assert_eq!(pool.submit(sm(1, false)).await, Err(SubmitError::BackingOff));
    assert!(started_at.elapsed() < Duration::from_millis(50));
    assert_eq!(sim.stats().submits_received, 1);
    // Available again after the backoff (400 ms), throttled again, and the pause doubles.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(pool.is_available());
    assert!(matches!(
        pool.submit(sm(2, false)).await,
        Err(SubmitError::Throttled(_))
    ));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(!pool.is_available(), "second pause is 800 ms");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(pool.is_available());
    assert_eq!(sim.stats().submits_received, 2);
    pool.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn permanent_and_transient_statuses_are_classified() {
    let sim = sim_with(|c| {
        c.error_share = 1.0;
        c.error_status = smsmax_protocol::CommandStatus::ESME_RINVDSTADR;
    })
    .await;
    let pool = started(upstream(&sim, 1), 1).await;
    let err = pool.submit(sm(0, false)).await.unwrap_err();
    assert_eq!(
        err,
        SubmitError::Permanent(smsmax_protocol::CommandStatus::ESME_RINVDSTADR)
    );
    assert!(pool.is_available());
    pool.stop().await;
    sim.stop().await;

    let sim = sim_with(|c| c.error_share = 1.0).await; // ESME_RSYSERR
    let pool = started(upstream(&sim, 1), 1).await;
    let err = pool.submit(sm(0, false)).await.unwrap_err();
    assert_eq!(
        err,
        SubmitError::Transient(TransientCause::Status(smsmax_protocol::CommandStatus::ESME_RSYSERR))
    );
    pool.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn reconnects_after_dropped_connections_and_later_submits_succeed() {
    let sim = sim_with(|c| c.drop_every = 7).await;
    let pool = started(upstream(&sim, 2), 2).await;
    let deadline = Instant::now() + Duration::from_secs(8);
    let (mut ok, mut lost, mut nobind) = (0, 0, 0);
    let mut i = 0;
    while ok < 40 {
        assert!(Instant::now() < deadline, "ok {ok} lost {lost} nobind {nobind}");
        match pool.submit(sm(i, false)).await {
            Ok(id) => {
                assert!(!id.is_empty());
                ok += 1;
            }
            Err(SubmitError::Transient(TransientCause::ConnectionLost(_))) => lost += 1,
            Err(SubmitError::NoBind) => {
                nobind += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
        i += 1;
    }
    assert!(lost >= 4, "drops seen: {lost}");
    assert!(pool.wait_bound(2, Duration::from_secs(2)).await, "both binds back");
    let stats = sim.stats();
    assert!(stats.connections_dropped >= 4);
    // Every dropped session was replaced by a new bind.
    assert!(stats.binds.transceiver >= 2 + stats.connections_dropped, "{stats:?}");
    assert_eq!(stats.submits_accepted, 40);
    pool.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn submit_after_the_sim_stops_fails_fast_and_the_pool_recovers_when_it_returns() {
    let sim = sim_with(|_| {}).await;
    let port = sim.addr.port();
    let pool = started(upstream(&sim, 2), 2).await;
    pool.submit(sm(0, false)).await.expect("accepted");
    sim.stop().await;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let t = Instant::now();
        let r = pool.submit(sm(1, false)).await;
        assert!(t.elapsed() < Duration::from_millis(500), "fails fast: {r:?}");
        match r {
            Err(SubmitError::NoBind) => break,
            Err(SubmitError::Transient(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(Instant::now() < deadline, "NoBind once the sessions are gone");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!pool.is_available());
    assert_eq!(pool.bound(), 0);
    // The simulator comes back on the same port: the pool rebinds by itself.
    let sim = sim_with(|c| c.listen = format!("127.0.0.1:{port}").parse().unwrap()).await;
    assert!(pool.wait_bound(2, Duration::from_secs(3)).await);
    pool.submit(sm(2, false)).await.expect("accepted after reconnect");
    pool.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn bind_refused_is_retried_without_binding() {
    let sim = sim_with(|c| c.password = Some("right".into())).await;
    let mut config = upstream(&sim, 1);
    config.password = "wrong".into();
    let pool = UpstreamPool::start(config).unwrap();
    assert!(!pool.wait_bound(1, Duration::from_millis(500)).await);
    assert_eq!(pool.submit(sm(0, false)).await, Err(SubmitError::NoBind));
    assert!(
        sim.stats().bind_failures >= 2,
        "retried: {:?}",
        sim.stats().bind_failures
    );
    pool.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn stop_unbinds_every_session() {
    let sim = sim_with(|_| {}).await;
    let pool = started(upstream(&sim, 3), 3).await;
    assert_eq!(sim.stats().sessions_open, 3);
    let t = Instant::now();
    pool.stop().await;
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(pool.bound(), 0);
    assert_eq!(pool.submit(sm(0, false)).await, Err(SubmitError::NoBind));
    let deadline = Instant::now() + Duration::from_secs(2);
    while sim.stats().sessions_open > 0 {
        assert!(Instant::now() < deadline, "sim sessions close");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = sim.stop().await;
    assert_eq!(stats.connections_dropped, 0);
    assert_eq!(stats.connections, 3, "no reconnect after stop");
}

#[tokio::test]
async fn throughput_cap_spaces_submits() {
    let sim = sim_with(|_| {}).await;
    let mut config = upstream(&sim, 2);
    config.throughput = 50;
    let pool = started(config, 2).await;
    // GCRA at 50/s lets a burst of 50 through at once; the next 30 are
    // spaced 20 ms apart, so 80 submits take at least ~0.6 s.
    let t = Instant::now();
    let submits = (0..80).map(|i| {
        let pool = pool.clone();
        async move { pool.submit(sm(i, false)).await }
    });
    for r in futures::future::join_all(submits).await {
        r.expect("accepted");
    }
    assert!(t.elapsed() >= Duration::from_millis(550), "{:?}", t.elapsed());
    assert_eq!(sim.stats().submits_accepted, 80);
    pool.stop().await;
    sim.stop().await;
}

/// A TLS terminator in front of the simulator, with a throwaway certificate
/// for `localhost`; returns its address and the certificate's PEM.
async fn tls_front(sim: &SimHandle) -> (std::net::SocketAddr, String) {
    use tokio_rustls::rustls::{self, pki_types};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = sim.addr;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, certified.cert.pem())
}

#[tokio::test]
async fn binds_and_submits_over_tls() {
    let sim = sim_with(|_| {}).await;
    let (addr, pem) = tls_front(&sim).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let mut config = upstream(&sim, 2);
    config.port = addr.port();
    config.tls = true;
    config.tls_ca_file = Some(ca);
    config.tls_server_name = Some("localhost".into());
    let pool = started(config, 2).await;
    let mut inbound = pool.inbound().unwrap();
    pool.submit(sm(0, true)).await.expect("accepted over TLS");
    let item = tokio::time::timeout(Duration::from_secs(3), inbound.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(item.responder.ok());
    pool.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn tls_with_an_untrusted_certificate_never_binds() {
    let sim = sim_with(|_| {}).await;
    let (addr, _) = tls_front(&sim).await;
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("other.pem");
    std::fs::write(&ca, other.cert.pem()).unwrap();
    let mut config = upstream(&sim, 1);
    config.port = addr.port();
    config.tls = true;
    config.tls_ca_file = Some(ca);
    config.tls_server_name = Some("localhost".into());
    let pool = UpstreamPool::start(config).unwrap();
    assert!(!pool.wait_bound(1, Duration::from_millis(400)).await);
    assert_eq!(pool.submit(sm(0, false)).await, Err(SubmitError::NoBind));
    assert_eq!(sim.stats().binds.total(), 0);
    pool.stop().await;
    sim.stop().await;
}

#[test]
fn tls_without_a_readable_ca_file_is_refused_at_start() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let mut config = UpstreamConfig::new("c", "127.0.0.1", 2775, "s", "p");
    config.tls = true;
    assert!(UpstreamPool::start(config.clone()).is_err());
    config.tls_ca_file = Some("/nonexistent/ca.pem".into());
    let err = UpstreamPool::start(config).unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/ca.pem"), "{err:#}");
}

/// A bare SMSC for the round-robin test: every accepted connection answers
/// binds, enquire_link and unbind, and answers submit_sm with an id naming
/// the connection (`c{n}-{k}`), so the caller can see which bind took it.
async fn counting_smsc() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use futures::{SinkExt, StreamExt};
    use smsmax_protocol::{
        pdu::{BindResp, SubmitSmResp},
        Pdu, SmppCodec,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        for conn in 0.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut framed = tokio_util::codec::Framed::new(stream, SmppCodec::default());
                let mut k = 0;
                while let Some(Ok(Ok(pdu))) = framed.next().await {
                    let seq = pdu.sequence_number;
                    let answer = match pdu.body {
                        Body::BindTransceiver(_) => Pdu::new(seq, Body::BindTransceiverResp(BindResp::default())),
                        Body::SubmitSm(_) => {
                            k += 1;
                            let message_id = format!("c{conn}-{k}").as_str().try_into().unwrap();
                            Pdu::new(seq, Body::SubmitSmResp(SubmitSmResp { message_id }))
                        }
                        Body::EnquireLink => Pdu::new(seq, Body::EnquireLinkResp),
                        Body::Unbind => Pdu::new(seq, Body::UnbindResp),
                        _ => continue,
                    };
                    if framed.send(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accept)
}

#[tokio::test]
async fn submits_are_spread_over_every_bind_in_turn() {
    // A regression: a fail-fast check took a round-robin turn as well, so
    // every submit moved two places and, with an even number of binds, half
    // of them never carried a submit.
    let (addr, smsc) = counting_smsc().await;
    let mut config = UpstreamConfig::new("carrier", "127.0.0.1", addr.port(), "smsmax", "pw");
    config.binds = 4;
    config.response_timeout_ms = 2_000;
    // A throughput cap (far above what the test sends) is what makes submit
    // check for a session before it waits for the cap.
    config.throughput = 100_000;
    let pool = started(config, 4).await;
    let mut per_connection = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..40 {
        let id = pool.submit(sm(i, false)).await.expect("accepted");
        let connection = id.split('-').next().unwrap().to_string();
        *per_connection.entry(connection).or_default() += 1;
    }
    assert_eq!(
        per_connection.len(),
        4,
        "every bind carries submits: {per_connection:?}"
    );
    assert!(
        per_connection.values().all(|&n| n == 10),
        "one submit per bind in turn: {per_connection:?}"
    );
    pool.stop().await;
    smsc.abort();
}
