//! The relay end to end: test ESME -> gateway (serve) -> relay -> upstream pool -> `smsmax sim`.

mod common;

use std::time::{Duration, Instant};

use smsmax_protocol::{pdu::SubmitSm, CommandStatus};
use tokio::net::TcpStream;

/// One upstream `carrier` at `port`, a route for `prefix` to it, and the given extra TOML.
fn relay_config(port: u16, prefix: &str, extra: &str) -> String {
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
throttle_backoff_min_ms = 50
throttle_backoff_max_ms = 200

[[routes]]
prefix = "{prefix}"
upstreams = [{{ name = "carrier" }}]

[relay]
idle_poll_ms = 10

{extra}
"#
    )
}

fn message(dest: &str, i: usize) -> SubmitSm {
    SubmitSm {
        registered_delivery: 0,
        ..common::submit_sm(dest, &format!("relay test message {i}"))
    }
}

async fn bound_esme(addr: std::net::SocketAddr) -> common::Esme<TcpStream> {
    let mut esme = common::connect(addr).await;
    assert_eq!(
        esme.bind("transceiver", "alice", common::PASSWORD).await,
        CommandStatus::ESME_ROK
    );
    esme
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_submitted_once_and_becomes_enroute() {
    let sim = common::start_sim(|_| {}).await;
    let gateway = common::start(&relay_config(sim.addr.port(), "", "")).await;
    let mut esme = bound_esme(gateway.addr).await;
    let mut ids = Vec::new();
    for i in 0..200 {
        ids.push(common::submit_ok(&mut esme, message("447700900123", i)).await);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in &ids {
        let left = deadline.saturating_duration_since(Instant::now());
        assert_eq!(
            common::wait_state(&mut esme, id, &[1], left).await,
            1,
            "{id} is ENROUTE"
        );
    }
    // The upstream id is recorded.
    let record = {
        // Read through the store after the gateway has stopped.
        gateway.running.stop().await.expect("gateway stops");
        let storage = smsmax::store::journal::JournalStorage::open(gateway.dir.path(), Default::default())
            .await
            .expect("reopen storage");
        use smsmax::queue::Queue;
        use smsmax::store::Store;
        let mut records = Vec::new();
        for id in &ids {
            records.push(storage.get(id).await.unwrap().expect("record"));
        }
        assert_eq!(storage.depth().await.unwrap(), 0, "nothing left queued");
        storage.close().await.unwrap();
        records
    };
    let mut upstream_ids = std::collections::HashSet::new();
    for r in &record {
        assert_eq!(r.state, smsmax::store::MessageState::Enroute);
        assert_eq!(r.attempts, 1);
        upstream_ids.insert(r.upstream_id.clone().expect("upstream id"));
    }
    assert_eq!(upstream_ids.len(), 200, "distinct upstream ids");
    let stats = sim.stop().await;
    assert_eq!(stats.submits_accepted, 200, "{stats:?}");
    assert_eq!(stats.distinct_messages, 200, "{stats:?}");
    assert_eq!(stats.duplicates, 0, "{stats:?}");
}

#[tokio::test]
async fn a_message_without_a_route_is_rejected() {
    let sim = common::start_sim(|_| {}).await;
    let gateway = common::start(&relay_config(sim.addr.port(), "33", "")).await;
    let mut esme = bound_esme(gateway.addr).await;
    let routed = common::submit_ok(&mut esme, message("33612345678", 0)).await;
    let unrouted = common::submit_ok(&mut esme, message("447700900123", 1)).await;
    assert_eq!(
        common::wait_state(&mut esme, &unrouted, &[8], Duration::from_secs(10)).await,
        8,
        "REJECTED"
    );
    assert_eq!(
        common::wait_state(&mut esme, &routed, &[1], Duration::from_secs(10)).await,
        1,
        "ENROUTE"
    );
    gateway.running.stop().await.unwrap();
    let stats = sim.stop().await;
    assert_eq!(stats.submits_accepted, 1, "{stats:?}");
}

#[tokio::test]
async fn a_throttled_message_stays_queued_and_is_retried() {
    let sim = common::start_sim(|c| c.throttle_share = 1.0).await;
    let retry = r#"
[retry]
max_attempts = 1000
initial_backoff_ms = 20
max_backoff_ms = 100
congestion_min_backoff_ms = 20
jitter = "none"
"#;
    let gateway = common::start(&relay_config(sim.addr.port(), "", retry)).await;
    let mut esme = bound_esme(gateway.addr).await;
    let id = common::submit_ok(&mut esme, message("447700900123", 0)).await;
    // Throttled again and again: the message stays ACCEPTED (6).
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.stats().throttled < 3 {
        assert!(Instant::now() < deadline, "retried: {:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(common::query_state(&mut esme, &id).await, 6, "still ACCEPTED");
    // The carrier comes back without throttling, on the same address: the
    // pool reconnects and the next retry goes through.
    let addr = sim.addr;
    let stats = sim.stop().await;
    assert_eq!(stats.submits_accepted, 0, "{stats:?}");
    assert!(stats.throttled >= 3, "{stats:?}");
    let sim = common::start_sim(|c| c.listen = addr).await;
    assert_eq!(
        common::wait_state(&mut esme, &id, &[1], Duration::from_secs(15)).await,
        1,
        "ENROUTE"
    );
    gateway.running.stop().await.unwrap();
    let stats = sim.stop().await;
    assert_eq!(stats.submits_accepted, 1, "{stats:?}");
    assert_eq!(stats.duplicates, 0, "{stats:?}");
}
