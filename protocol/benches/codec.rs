//! Decode and encode of the four PDUs on a gateway's hot path, ours
//! (`smsmax`) against the `smpp34` crate on the very same octets.
//!
//! Each group (`decode/<pdu>`, `encode/<pdu>`) holds two functions, `smsmax`
//! and `smpp34`, and the setup asserts that both sides produce / accept the
//! identical octets, so they do the same work.
//!
//! What each side includes:
//! - decode, both: from one complete frame held in memory, header included,
//!   to the owned PDU value (the `Result`), which is observed through
//!   `black_box(&value)` and dropped inside the timed loop; neither side pays
//!   for moving its result into the harness (ours is a 256-octet `Pdu`).
//!   `smsmax`: `decode_frame(&Bytes)` (values are slices of the frame:
//!   a reference count each, no copy). `smpp34`: `CommandHeader::decode(&[u8])`
//!   then `<pdu>::decode(header, &[u8])` on the same frame: a borrowed slice is
//!   the cheapest input it takes (it copies every string and the message into
//!   fresh `String`s / `Vec`s).
//! - encode, `smsmax`: `buf.clear()` then `Pdu::encode(&mut BytesMut)` into one
//!   buffer reused across iterations (no allocation once it has grown).
//!   `smpp34`: its only encoder is `<pdu>::encode(self) -> Vec<u8>`, which
//!   consumes the PDU and allocates the output. The clone it needs as input is
//!   made in `iter_batched`'s untimed setup, and the returned `Vec` is dropped
//!   outside the timing too; what is timed is `encode` itself (its output
//!   allocation and, since it takes `self`, freeing the consumed PDU's
//!   strings, which its API makes part of encoding).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use smpp34 as s;
use smsmax_protocol::{
    decode_frame,
    pdu::{DeliverSm, DeliverSmResp, SubmitSm, SubmitSmResp},
    tlv::Tlv,
    types::{Address, COctetString, SmppTime},
    Body, Pdu,
};

const MESSAGE_ID: &str = "0d3f6a52-8c1e-4b7a-9f21-6c5e8d7b4a10";

fn address(ton: u8, npi: u8, addr: &str) -> Address<21> {
    Address::new(ton, npi, addr).unwrap()
}

/// A 160-character GSM 7-bit message (one octet per character, data_coding 0).
fn submit_sm() -> Pdu {
    let text: String = "Your SMSMax verification code is 493817. It expires in 10 minutes. \
                        Do not share this code with anyone; SMSMax staff will never ask for it. Thank you!"
        .chars()
        .cycle()
        .take(160)
        .collect();
    assert_eq!(text.len(), 160);
    Pdu::new(
        0x0001_2345,
        Body::SubmitSm(SubmitSm {
            service_type: COctetString::empty(),
            source: address(1, 1, "447700900123"),
            dest: address(1, 1, "4915123456789"),
            esm_class: 0,
            protocol_id: 0,
            priority_flag: 0,
            schedule_delivery_time: SmppTime::empty(),
            validity_period: SmppTime::empty(),
            registered_delivery: 1,
            replace_if_present_flag: 0,
            data_coding: 0,
            sm_default_msg_id: 0,
            short_message: Bytes::from(text),
            tlvs: vec![],
        }),
    )
}

fn submit_sm_resp() -> Pdu {
    Pdu::new(
        0x0001_2345,
        SubmitSmResp {
            message_id: COctetString::try_from(MESSAGE_ID).unwrap(),
        },
    )
}

fn deliver_sm_receipt() -> Pdu {
    let receipt = format!(
        "id:{MESSAGE_ID} sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:Your SMSMax verif"
    );
    Pdu::new(
        0x0000_0777,
        Body::DeliverSm(DeliverSm {
            service_type: COctetString::empty(),
            source: address(1, 1, "4915123456789"),
            dest: address(1, 1, "447700900123"),
            esm_class: 0x04,
            short_message: Bytes::from(receipt),
            tlvs: vec![
                Tlv::ReceiptedMessageId(COctetString::try_from(MESSAGE_ID).unwrap()),
                Tlv::MessageState(2),
            ],
            ..Default::default()
        }),
    )
}

fn deliver_sm_resp() -> Pdu {
    Pdu::new(0x0000_0777, Body::DeliverSmResp(DeliverSmResp::default()))
}

/// Benches one PDU. `their_decode` is smpp34's decoder for it; `Their` must
/// re-encode to our octets.
fn bench_pdu<Their: Clone>(
    c: &mut Criterion,
    name: &str,
    pdu: Pdu,
    their_decode: fn(s::CommandHeader, &[u8]) -> Result<Their, s::SmppError>,
    their_encode: fn(Their) -> Vec<u8>,
) {
    let frame: Bytes = pdu.to_bytes().unwrap();
    assert_eq!(decode_frame(&frame).unwrap(), pdu);
    let their_header = s::CommandHeader::decode(&frame).unwrap();
    let theirs: Their = their_decode(their_header, &frame).unwrap();
    assert_eq!(
        their_encode(theirs.clone()),
        frame,
        "{name}: smpp34 does not produce our octets"
    );

    let mut group = c.benchmark_group(format!("decode/{name}"));
    group.bench_function("smsmax", |b| {
        b.iter(|| {
            let pdu = decode_frame(black_box(&frame));
            black_box(&pdu);
        })
    });
    group.bench_function("smpp34", |b| {
        b.iter(|| {
            let wire: &[u8] = black_box(&frame[..]);
            let pdu = s::CommandHeader::decode(wire).and_then(|header| their_decode(header, wire));
            black_box(&pdu);
        })
    });
    group.finish();

    let mut group = c.benchmark_group(format!("encode/{name}"));
    let mut buf = BytesMut::with_capacity(512);
    group.bench_function("smsmax", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&pdu).encode(&mut buf).unwrap();
            black_box(&buf);
        })
    });
    group.bench_function("smpp34", |b| {
        b.iter_batched(|| theirs.clone(), |p| their_encode(black_box(p)), BatchSize::SmallInput)
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_pdu(c, "submit_sm", submit_sm(), s::submit_sm::decode, s::submit_sm::encode);
    bench_pdu(
        c,
        "submit_sm_resp",
        submit_sm_resp(),
        s::submit_sm_resp::decode,
        s::submit_sm_resp::encode,
    );
    bench_pdu(
        c,
        "deliver_sm",
        deliver_sm_receipt(),
        s::deliver_sm::decode,
        s::deliver_sm::encode,
    );
    bench_pdu(
        c,
        "deliver_sm_resp",
        deliver_sm_resp(),
        s::deliver_sm_resp::decode,
        s::deliver_sm_resp::encode,
    );
}

criterion_group!(benches, codec);
criterion_main!(benches);
