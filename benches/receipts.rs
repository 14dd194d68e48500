//! The per-message receipt work of the full flow, outside the network:
//! building the client's receipt deliver_sm from a matched upstream receipt
//! (`dlr::client_receipt`, once per message in the correlator) and parsing
//! an upstream receipt's text (`dlr::inbound::parse_receipt`'s core).
//!
//! Inputs are what the full-flow benchmark (`scripts/bench-e2e.sh`) sends:
//! a 160-character GSM message, our 23-digit hex id, a DELIVRD receipt.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use smsmax::dlr::client_receipt::client_receipt;
use smsmax::protocol::receipt::{Receipt, ReceiptState};
use smsmax::store::{AddressRecord, MessageRecord, MessageState};

fn record() -> MessageRecord {
    let text: String = "Your SMSMax verification code is 493817. It expires in 10 minutes. \
                        Do not share this code with anyone; SMSMax staff will never ask for it."
        .chars()
        .cycle()
        .take(160)
        .collect();
    MessageRecord {
        id: "19a7f3c2b4d0e1f2a3b4c5d".into(),
        system_id: "bench".into(),
        service_type: String::new(),
        source: AddressRecord {
            ton: 5,
            npi: 0,
            addr: "SMSMax".into(),
        },
        dest: AddressRecord {
            ton: 1,
            npi: 1,
            addr: "447700900123".into(),
        },
        esm_class: 0,
        protocol_id: 0,
        priority_flag: 0,
        registered_delivery: 1,
        data_coding: 0,
        short_message: Bytes::from(text),
        tlvs: Bytes::new(),
        parts: 1,
        state: MessageState::Enroute,
        submitted_at_ms: 1_767_268_800_000,
        updated_at_ms: 1_767_268_800_000,
        schedule_at_ms: None,
        expires_at_ms: None,
        upstream_id: Some("5f3a2b1c".into()),
        error_code: None,
        attempts: 1,
        parts_sent: 1,
        upstream: Some("sim".into()),
    }
}

fn receipts(c: &mut Criterion) {
    let record = record();
    c.bench_function("client_receipt", |b| {
        b.iter(|| {
            client_receipt(
                black_box(&record),
                &ReceiptState::Delivered,
                None,
                1_767_268_860_123,
                1_767_268_860_200,
                Duration::from_secs(3600),
            )
        })
    });
    let upstream = "id:5f3a2b1c sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 \
                    stat:DELIVRD err:000 text:Your SMSMax verific";
    c.bench_function("receipt_parse", |b| {
        b.iter(|| Receipt::parse_bytes(black_box(upstream.as_bytes())))
    });
}

criterion_group!(benches, receipts);
criterion_main!(benches);
