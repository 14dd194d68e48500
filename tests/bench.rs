//! `smsmax bench` (the library `run` and the command) against the real
//! gateway, and its receipt accounting against a scripted SMSC.

mod common;

use std::{process::Command, time::Duration};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use smsmax::bench::{self, BenchConfig, BindMode, Mix};
use smsmax_protocol::{
    pdu::{BindResp, SubmitSm, SubmitSmResp},
    types::{esm_class, MessageId},
    Body, Pdu, SmppCodec,
};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

fn config(addr: std::net::SocketAddr, system_id: &str) -> BenchConfig {
    BenchConfig {
        response_timeout: Duration::from_secs(5),
        ..BenchConfig::new(addr.to_string(), system_id, common::PASSWORD)
    }
}

#[tokio::test]
async fn two_binds_window_32_acknowledge_2000_messages() {
    let gw = common::start("").await;
    let report = bench::run(BenchConfig {
        binds: 2,
        window: 32,
        count: Some(2_000),
        ..config(gw.addr, "alice")
    })
    .await
    .expect("bench runs");
    assert_eq!(report.messages, 2_000, "{report}");
    assert_eq!(report.submitted, 2_000, "{report}");
    assert_eq!(report.acknowledged, 2_000, "{report}");
    assert_eq!(report.rejected, 0, "{report}");
    assert_eq!(report.throttled, 0, "{report}");
    assert_eq!(report.timeouts + report.errors, 0, "{report}");
    assert!(report.sessions_lost.is_empty(), "{report}");
    assert_eq!(report.latency.samples, 2_000);
    assert!(report.latency.p50_ms <= report.latency.p99_ms && report.latency.p99_ms <= report.latency.max_ms);
    assert!(report.throughput_per_sec > 0.0);
    assert!(!report.receipts.requested);
    assert!(report.is_clean());
    gw.running.stop().await.unwrap();
}

#[tokio::test]
async fn the_mix_sends_long_messages_as_three_parts() {
    let gw = common::start("").await;
    let report = bench::run(BenchConfig {
        window: 16,
        count: Some(300),
        mix: "gsm=50,ucs2=25,long=25".parse::<Mix>().unwrap(),
        ..config(gw.addr, "alice")
    })
    .await
    .unwrap();
    assert_eq!(report.messages, 300);
    let long = (1..=300).filter(|n| report_mix().pick(*n) == bench::Kind::Long).count() as u64;
    assert_eq!(report.submitted, 300 + 2 * long, "{report}");
    assert_eq!(report.acknowledged, report.submitted, "{report}");
    gw.running.stop().await.unwrap();
}

fn report_mix() -> Mix {
    "gsm=50,ucs2=25,long=25".parse().unwrap()
}

#[tokio::test]
async fn a_throttled_client_is_counted_as_throttled() {
    let extra = format!(
        r#"
[[clients]]
system_id = "slow"
password_hash = "{hash}"
allowed_networks = ["127.0.0.0/8"]
max_binds = 2
window = 64
throughput = 50
"#,
        hash = common::password_hash()
    );
    let gw = common::start(&extra).await;
    let report = bench::run(BenchConfig {
        window: 32,
        count: Some(400),
        ..config(gw.addr, "slow")
    })
    .await
    .unwrap();
    assert!(report.throttled > 0, "{report}");
    assert!(report.acknowledged > 0, "{report}");
    assert_eq!(report.rejected, 0, "throttling is not counted as rejection: {report}");
    assert_eq!(report.acknowledged + report.throttled, report.submitted, "{report}");
    gw.running.stop().await.unwrap();
}

#[tokio::test]
async fn transmitter_and_receiver_pairs_work_too() {
    let gw = common::start("").await;
    let report = bench::run(BenchConfig {
        bind_mode: BindMode::TxRx,
        window: 8,
        count: Some(200),
        rate: std::num::NonZeroU32::new(2_000),
        ..config(gw.addr, "alice")
    })
    .await
    .unwrap();
    assert_eq!(report.acknowledged, 200, "{report}");
    // 200 submit_sm at 2000/s take about 0.1 s.
    assert!(report.elapsed_secs >= 0.05, "{report}");
    gw.running.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_bind_fails_the_run() {
    let gw = common::start("").await;
    let result = bench::run(BenchConfig::new(gw.addr.to_string(), "alice", "nope")).await;
    let error = format!("{:#}", result.expect_err("refused"));
    assert!(error.contains("bind refused"), "{error}");
    gw.running.stop().await.unwrap();
}

/// An SMSC that acknowledges every submit_sm with id `m<n>` and sends its
/// receipt on the same transceiver, except for the 5th message (no receipt)
/// and the 7th (two receipts).
async fn receipting_smsc() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, SmppCodec::default());
        let mut submits = 0u32;
        let mut next_seq = 1000u32;
        while let Some(Ok(Ok(pdu))) = framed.next().await {
            let seq = pdu.sequence_number;
            let answer = match pdu.body {
                Body::BindTransceiver(_) => Pdu::new(seq, Body::BindTransceiverResp(BindResp::default())),
                Body::Unbind => Pdu::new(seq, Body::UnbindResp),
                Body::EnquireLink => Pdu::new(seq, Body::EnquireLinkResp),
                Body::SubmitSm(_) => {
                    submits += 1;
                    let id = format!("m{submits}");
                    let resp = Pdu::new(
                        seq,
                        SubmitSmResp {
                            message_id: MessageId::try_from(id.as_str()).unwrap(),
                        },
                    );
                    framed.send(resp).await.unwrap();
                    let copies = match submits {
                        5 => 0,
                        7 => 2,
                        _ => 1,
                    };
                    for _ in 0..copies {
                        next_seq += 1;
                        let stat = if submits.is_multiple_of(10) {
                            "UNDELIV"
                        } else {
                            "DELIVRD"
                        };
                        let text = format!("id:{id} sub:001 dlvrd:001 submit date:2601011200 done date:2601011200 stat:{stat} err:000 text:");
                        let receipt = SubmitSm {
                            esm_class: esm_class::DELIVERY_RECEIPT,
                            short_message: Bytes::from(text),
                            ..SubmitSm::default()
                        };
                        framed.send(Pdu::new(next_seq, Body::DeliverSm(receipt))).await.unwrap();
                    }
                    continue;
                }
                // deliver_sm_resp and the like.
                _ => continue,
            };
            framed.send(answer).await.unwrap();
        }
    });
    addr
}

#[tokio::test]
async fn receipts_are_matched_counted_by_state_and_missing_ones_reported() {
    let addr = receipting_smsc().await;
    let report = bench::run(BenchConfig {
        window: 4,
        count: Some(50),
        receipts: true,
        receipt_timeout: Duration::from_millis(500),
        ..config(addr, "alice")
    })
    .await
    .unwrap();
    let r = &report.receipts;
    assert_eq!(report.acknowledged, 50, "{report}");
    assert_eq!(r.matched, 49, "{report}");
    assert_eq!(r.by_state.get("DELIVRD"), Some(&44), "{report}");
    assert_eq!(r.by_state.get("UNDELIV"), Some(&5), "{report}");
    assert_eq!(r.duplicates, 1, "{report}");
    assert_eq!(r.never_receipted, 1, "{report}");
    assert_eq!(r.unmatched, 0, "{report}");
    assert!(!report.is_clean());
}

#[test]
fn the_command_prints_a_json_report() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let gw = runtime.block_on(common::start(""));
    let output = Command::new(env!("CARGO_BIN_EXE_smsmax"))
        .args([
            "bench",
            "--addr",
            &gw.addr.to_string(),
            "--system-id",
            "alice",
            "--password",
        ])
        .arg(common::PASSWORD)
        .args(["--count", "100", "--window", "8", "--json", "--quiet"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(report["acknowledged"], 100);
    assert_eq!(report["rejected"], 0);
    assert!(report["latency"]["p99_ms"].as_f64().is_some());

    let text = Command::new(env!("CARGO_BIN_EXE_smsmax"))
        .args([
            "bench",
            "--addr",
            &gw.addr.to_string(),
            "--system-id",
            "alice",
            "--password",
        ])
        .arg(common::PASSWORD)
        .args(["-n", "10", "--mix", "gsm=1,long=1", "--quiet"])
        .output()
        .unwrap();
    assert!(text.status.success());
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("acknowledged") && stdout.contains("p99.9"), "{stdout}");

    let bad = Command::new(env!("CARGO_BIN_EXE_smsmax"))
        .args(["bench", "--mix", "sms=1"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "bad usage");
    runtime.block_on(gw.running.stop()).unwrap();
}

#[tokio::test]
async fn a_duration_bounds_the_run() {
    let gw = common::start("").await;
    let started = std::time::Instant::now();
    let report = bench::run(BenchConfig {
        count: None,
        duration: Some(Duration::from_millis(300)),
        rate: std::num::NonZeroU32::new(1_000),
        ..config(gw.addr, "alice")
    })
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!((100..=700).contains(&report.acknowledged), "{report}");
    assert_eq!(report.acknowledged, report.submitted, "{report}");
    gw.running.stop().await.unwrap();
}
