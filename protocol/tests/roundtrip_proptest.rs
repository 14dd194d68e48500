//! Property tests of the codec.
//!
//! 1. Every valid PDU (every body type, every TLV) survives encode + decode:
//!    `decode_frame(&pdu.to_bytes()?) == Ok(pdu)`.
//! 2. `decode_frame` never panics: on arbitrary octets, on arbitrary bodies
//!    behind a sound header of each known command_id, and on mutated valid
//!    frames; whatever it accepts re-encodes to a frame that decodes to the
//!    same value.
//! 3. `SmppCodec` cuts any concatenation of valid PDUs, delivered in arbitrary
//!    pieces, back into exactly those PDUs in order.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::{collection::vec, prelude::*, sample::Index};
use smsmax_protocol::{
    decode_frame,
    pdu::{
        AlertNotification, Bind, BindResp, CancelSm, DataSm, DataSmResp, DestAddress, Outbind, QuerySm, QuerySmResp,
        ReplaceSm, SubmitMulti, SubmitMultiResp, SubmitSm, SubmitSmResp, UnsuccessSme,
    },
    tlv::NetworkErrorCode,
    types::{Address, COctetString, SmppTime},
    Body, CommandId, CommandStatus, Pdu, SmppCodec, Tlv,
};
use tokio_util::codec::Decoder;

/// Cases per property; `PROPTEST_CASES` overrides it for a longer hunt.
const CASES: u32 = 512;

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var("PROPTEST_CASES").unwrap_or_default().is_empty() {
        config.cases = CASES;
    }
    config
}

/// The tags SMPP 3.4 defines; an unknown TLV must use none of them (the
/// decoder would type it, and a known tag's value may not even be valid).
const KNOWN_TAGS: [u16; 44] = [
    0x0005, 0x0006, 0x0007, 0x0008, 0x000D, 0x000E, 0x000F, 0x0010, 0x0017, 0x0019, 0x001D, 0x001E, 0x0030, 0x0201,
    0x0202, 0x0203, 0x0204, 0x0205, 0x020A, 0x020B, 0x020C, 0x020D, 0x020E, 0x020F, 0x0210, 0x0302, 0x0303, 0x0304,
    0x0381, 0x0420, 0x0421, 0x0422, 0x0423, 0x0424, 0x0425, 0x0426, 0x0427, 0x0501, 0x1201, 0x1203, 0x1204, 0x130C,
    0x1380, 0x1383,
];

// ---------------------------------------------------------------------------
// Field strategies
// ---------------------------------------------------------------------------

/// A C-Octet String within its limit (MAX - 1 octets) and without NUL.
fn cstring<const MAX: usize>() -> impl Strategy<Value = COctetString<MAX>> {
    let octets = prop_oneof![
        vec(0x20u8..=0x7E, 0..MAX),    // printable ASCII, the usual case
        vec(1u8..=0xFF, 0..MAX),       // any octet but NUL
        vec(1u8..=0xFF, MAX - 1..MAX), // exactly at the limit
    ];
    octets.prop_map(|v| COctetString::new(v).expect("strategy keeps to the limits"))
}

fn smpp_time() -> impl Strategy<Value = SmppTime> {
    prop_oneof![
        Just(SmppTime::empty()),
        "[0-9]{15}[-+R]".prop_map(|s| SmppTime::try_from(s.as_str()).expect("well formed")),
    ]
}

fn address<const MAX: usize>() -> impl Strategy<Value = Address<MAX>> {
    (any::<u8>(), any::<u8>(), cstring::<MAX>()).prop_map(|(ton, npi, addr)| Address { ton, npi, addr })
}

fn octets(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), len).prop_map(Bytes::from)
}

fn short_message() -> impl Strategy<Value = Bytes> {
    prop_oneof![Just(Bytes::new()), octets(0..=254), octets(250..=254)]
}

fn status() -> impl Strategy<Value = CommandStatus> {
    prop_oneof![3 => Just(CommandStatus::ESME_ROK), 1 => any::<u32>().prop_map(CommandStatus)]
}

// ---------------------------------------------------------------------------
// TLVs
// ---------------------------------------------------------------------------

fn unknown_tlv() -> impl Strategy<Value = Tlv> {
    (
        any::<u16>().prop_filter("tag must be unknown", |t| !KNOWN_TAGS.contains(t)),
        octets(0..=40),
    )
        .prop_map(|(tag, value)| Tlv::Unknown { tag, value })
}

/// Any valid TLV: every variant SMPP 3.4 defines, with values within the
/// sizes of section 5.3.2, or an unknown tag.
fn tlv() -> impl Strategy<Value = Tlv> {
    prop_oneof![
        any::<u8>().prop_map(Tlv::DestAddrSubunit),
        any::<u8>().prop_map(Tlv::DestNetworkType),
        any::<u8>().prop_map(Tlv::DestBearerType),
        any::<u16>().prop_map(Tlv::DestTelematicsId),
        any::<u8>().prop_map(Tlv::SourceAddrSubunit),
        any::<u8>().prop_map(Tlv::SourceNetworkType),
        any::<u8>().prop_map(Tlv::SourceBearerType),
        any::<u8>().prop_map(Tlv::SourceTelematicsId),
        any::<u32>().prop_map(Tlv::QosTimeToLive),
        any::<u8>().prop_map(Tlv::PayloadType),
        cstring::<256>().prop_map(Tlv::AdditionalStatusInfoText),
        cstring::<65>().prop_map(Tlv::ReceiptedMessageId),
        any::<u8>().prop_map(Tlv::MsMsgWaitFacilities),
        any::<u8>().prop_map(Tlv::PrivacyIndicator),
        octets(2..=23).prop_map(Tlv::SourceSubaddress),
        octets(2..=23).prop_map(Tlv::DestSubaddress),
        any::<u16>().prop_map(Tlv::UserMessageReference),
        any::<u8>().prop_map(Tlv::UserResponseCode),
        any::<u16>().prop_map(Tlv::SourcePort),
        any::<u16>().prop_map(Tlv::DestinationPort),
        any::<u16>().prop_map(Tlv::SarMsgRefNum),
        any::<u8>().prop_map(Tlv::LanguageIndicator),
        any::<u8>().prop_map(Tlv::SarTotalSegments),
        any::<u8>().prop_map(Tlv::SarSegmentSeqnum),
        any::<u8>().prop_map(Tlv::ScInterfaceVersion),
        any::<u8>().prop_map(Tlv::CallbackNumPresInd),
        octets(0..=65).prop_map(Tlv::CallbackNumAtag),
        any::<u8>().prop_map(Tlv::NumberOfMessages),
        octets(4..=19).prop_map(Tlv::CallbackNum),
        any::<u8>().prop_map(Tlv::DpfResult),
        any::<u8>().prop_map(Tlv::SetDpf),
        any::<u8>().prop_map(Tlv::MsAvailabilityStatus),
        (any::<u8>(), any::<u16>()).prop_map(|(network_type, error_code)| Tlv::NetworkErrorCode(NetworkErrorCode {
            network_type,
            error_code
        })),
        octets(0..=600).prop_map(Tlv::MessagePayload),
        any::<u8>().prop_map(Tlv::DeliveryFailureReason),
        any::<u8>().prop_map(Tlv::MoreMessagesToSend),
        any::<u8>().prop_map(Tlv::MessageState),
        any::<u8>().prop_map(Tlv::UssdServiceOp),
        any::<u8>().prop_map(Tlv::DisplayTime),
        any::<u16>().prop_map(Tlv::SmsSignal),
        any::<u8>().prop_map(Tlv::MsValidity),
        Just(Tlv::AlertOnMessageDelivery),
        any::<u8>().prop_map(Tlv::ItsReplyType),
        octets(2..=2).prop_map(Tlv::ItsSessionInfo),
        unknown_tlv(),
        unknown_tlv(),
    ]
}

fn tlvs() -> impl Strategy<Value = Vec<Tlv>> {
    vec(tlv(), 0..6)
}

/// short_message and TLVs where message_payload only appears when
/// short_message is empty (section 4.4.1: not both).
fn message_and_tlvs() -> impl Strategy<Value = (Bytes, Vec<Tlv>)> {
    (short_message(), tlvs()).prop_map(|(sm, mut tlvs)| {
        if !sm.is_empty() {
            tlvs.retain(|t| !matches!(t, Tlv::MessagePayload(_)));
        }
        (sm, tlvs)
    })
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

fn bind() -> impl Strategy<Value = Bind> {
    (
        cstring::<16>(),
        cstring::<9>(),
        cstring::<13>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        cstring::<41>(),
    )
        .prop_map(
            |(system_id, password, system_type, interface_version, addr_ton, addr_npi, address_range)| Bind {
                system_id,
                password,
                system_type,
                interface_version,
                addr_ton,
                addr_npi,
                address_range,
            },
        )
}

fn bind_resp() -> impl Strategy<Value = BindResp> {
    (cstring::<16>(), tlvs()).prop_map(|(system_id, tlvs)| BindResp { system_id, tlvs })
}

/// The fields submit_sm and submit_multi share after the addresses.
#[derive(Debug, Clone)]
struct MessageFields {
    esm_class: u8,
    protocol_id: u8,
    priority_flag: u8,
    schedule_delivery_time: SmppTime,
    validity_period: SmppTime,
    registered_delivery: u8,
    replace_if_present_flag: u8,
    data_coding: u8,
    sm_default_msg_id: u8,
    short_message: Bytes,
    tlvs: Vec<Tlv>,
}

fn message_fields() -> impl Strategy<Value = MessageFields> {
    (
        any::<[u8; 3]>(),
        smpp_time(),
        smpp_time(),
        any::<[u8; 4]>(),
        message_and_tlvs(),
    )
        .prop_map(
            |([esm, pid, prio], sched, validity, [rd, rip, dc, def], (short_message, tlvs))| MessageFields {
                esm_class: esm,
                protocol_id: pid,
                priority_flag: prio,
                schedule_delivery_time: sched,
                validity_period: validity,
                registered_delivery: rd,
                replace_if_present_flag: rip,
                data_coding: dc,
                sm_default_msg_id: def,
                short_message,
                tlvs,
            },
        )
}

fn submit_sm() -> impl Strategy<Value = SubmitSm> {
    (cstring::<6>(), address::<21>(), address::<21>(), message_fields()).prop_map(|(service_type, source, dest, m)| {
        SubmitSm {
            service_type,
            source,
            dest,
            esm_class: m.esm_class,
            protocol_id: m.protocol_id,
            priority_flag: m.priority_flag,
            schedule_delivery_time: m.schedule_delivery_time,
            validity_period: m.validity_period,
            registered_delivery: m.registered_delivery,
            replace_if_present_flag: m.replace_if_present_flag,
            data_coding: m.data_coding,
            sm_default_msg_id: m.sm_default_msg_id,
            short_message: m.short_message,
            tlvs: m.tlvs,
        }
    })
}

fn dest_address() -> impl Strategy<Value = DestAddress> {
    prop_oneof![
        address::<21>().prop_map(DestAddress::SmeAddress),
        cstring::<21>().prop_map(DestAddress::DistributionList),
    ]
}

fn submit_multi() -> impl Strategy<Value = SubmitMulti> {
    let dests = prop_oneof![
        6 => vec(dest_address(), 1..=4),
        1 => vec(dest_address(), 1..=254),
        1 => vec(dest_address(), 254..=254),
    ];
    (cstring::<6>(), address::<21>(), dests, message_fields()).prop_map(|(service_type, source, dest_addresses, m)| {
        SubmitMulti {
            service_type,
            source,
            dest_addresses,
            esm_class: m.esm_class,
            protocol_id: m.protocol_id,
            priority_flag: m.priority_flag,
            schedule_delivery_time: m.schedule_delivery_time,
            validity_period: m.validity_period,
            registered_delivery: m.registered_delivery,
            replace_if_present_flag: m.replace_if_present_flag,
            data_coding: m.data_coding,
            sm_default_msg_id: m.sm_default_msg_id,
            short_message: m.short_message,
            tlvs: m.tlvs,
        }
    })
}

fn unsuccess_sme() -> impl Strategy<Value = UnsuccessSme> {
    (address::<21>(), any::<u32>()).prop_map(|(address, code)| UnsuccessSme {
        address,
        error_status_code: CommandStatus(code),
    })
}

fn submit_multi_resp() -> impl Strategy<Value = SubmitMultiResp> {
    let unsuccess_smes = prop_oneof![4 => vec(unsuccess_sme(), 0..4), 1 => vec(unsuccess_sme(), 0..=255)];
    (cstring::<65>(), unsuccess_smes).prop_map(|(message_id, unsuccess_smes)| SubmitMultiResp {
        message_id,
        unsuccess_smes,
    })
}

fn data_sm() -> impl Strategy<Value = DataSm> {
    (
        cstring::<6>(),
        address::<65>(),
        address::<65>(),
        any::<[u8; 3]>(),
        tlvs(),
    )
        .prop_map(
            |(service_type, source, dest, [esm_class, registered_delivery, data_coding], tlvs)| DataSm {
                service_type,
                source,
                dest,
                esm_class,
                registered_delivery,
                data_coding,
                tlvs,
            },
        )
}

fn replace_sm() -> impl Strategy<Value = ReplaceSm> {
    (
        cstring::<65>(),
        address::<21>(),
        smpp_time(),
        smpp_time(),
        any::<[u8; 2]>(),
        short_message(),
    )
        .prop_map(
            |(message_id, source, schedule_delivery_time, validity_period, [rd, def], short_message)| ReplaceSm {
                message_id,
                source,
                schedule_delivery_time,
                validity_period,
                registered_delivery: rd,
                sm_default_msg_id: def,
                short_message,
            },
        )
}

/// A body of every one of the 27 types.
fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::GenericNack),
        bind().prop_map(Body::BindReceiver),
        bind_resp().prop_map(Body::BindReceiverResp),
        bind().prop_map(Body::BindTransmitter),
        bind_resp().prop_map(Body::BindTransmitterResp),
        (cstring::<65>(), address::<21>())
            .prop_map(|(message_id, source)| Body::QuerySm(QuerySm { message_id, source })),
        (cstring::<65>(), smpp_time(), any::<u8>(), any::<u8>()).prop_map(
            |(message_id, final_date, message_state, error_code)| Body::QuerySmResp(QuerySmResp {
                message_id,
                final_date,
                message_state,
                error_code
            })
        ),
        submit_sm().prop_map(Body::SubmitSm),
        cstring::<65>().prop_map(|message_id| Body::SubmitSmResp(SubmitSmResp { message_id })),
        submit_sm().prop_map(Body::DeliverSm),
        cstring::<65>().prop_map(|message_id| Body::DeliverSmResp(SubmitSmResp { message_id })),
        Just(Body::Unbind),
        Just(Body::UnbindResp),
        replace_sm().prop_map(Body::ReplaceSm),
        Just(Body::ReplaceSmResp),
        (cstring::<6>(), cstring::<65>(), address::<21>(), address::<21>()).prop_map(
            |(service_type, message_id, source, dest)| Body::CancelSm(CancelSm {
                service_type,
                message_id,
                source,
                dest
            })
        ),
        Just(Body::CancelSmResp),
        bind().prop_map(Body::BindTransceiver),
        bind_resp().prop_map(Body::BindTransceiverResp),
        (cstring::<16>(), cstring::<9>())
            .prop_map(|(system_id, password)| Body::Outbind(Outbind { system_id, password })),
        Just(Body::EnquireLink),
        Just(Body::EnquireLinkResp),
        submit_multi().prop_map(Body::SubmitMulti),
        submit_multi_resp().prop_map(Body::SubmitMultiResp),
        (address::<65>(), address::<65>(), tlvs())
            .prop_map(|(source, esme, tlvs)| Body::AlertNotification(AlertNotification { source, esme, tlvs })),
        data_sm().prop_map(Body::DataSm),
        (cstring::<65>(), tlvs()).prop_map(|(message_id, tlvs)| Body::DataSmResp(DataSmResp { message_id, tlvs })),
    ]
}

const RESPONSE_IDS: [CommandId; 14] = [
    CommandId::GenericNack,
    CommandId::BindReceiverResp,
    CommandId::BindTransmitterResp,
    CommandId::BindTransceiverResp,
    CommandId::QuerySmResp,
    CommandId::SubmitSmResp,
    CommandId::DeliverSmResp,
    CommandId::UnbindResp,
    CommandId::ReplaceSmResp,
    CommandId::CancelSmResp,
    CommandId::EnquireLinkResp,
    CommandId::SubmitMultiResp,
    CommandId::DataSmResp,
    CommandId::DataSmResp,
];

/// Any valid PDU, with a fair share of failed responses with an all-empty
/// body (the ones written as a bare header).
fn pdu() -> impl Strategy<Value = Pdu> {
    prop_oneof![
        6 => (any::<u32>(), status(), body()).prop_map(|(seq, status, body)| Pdu::with_status(seq, status, body)),
        1 => (any::<u32>(), 1u32.., prop::sample::select(&RESPONSE_IDS[..]))
            .prop_map(|(seq, status, id)| Pdu::error_response(id, seq, CommandStatus(status))),
    ]
}

fn frame(command_id: u32, status: u32, seq: u32, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(16 + body.len());
    buf.put_u32((16 + body.len()) as u32);
    buf.put_u32(command_id);
    buf.put_u32(status);
    buf.put_u32(seq);
    buf.put_slice(body);
    buf.freeze()
}

/// Whatever the decoder accepts must encode, and that encoding must decode
/// to the same value (decoding normalises, at most, once).
fn assert_accepted_value_is_stable(octets: &Bytes) -> Result<(), TestCaseError> {
    if let Ok(pdu) = decode_frame(octets) {
        let again = pdu
            .to_bytes()
            .map_err(|e| TestCaseError::fail(format!("decoded {pdu:?} but cannot encode it: {e}")))?;
        prop_assert_eq!(decode_frame(&again), Ok(pdu));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Property 1: encode then decode is the identity on valid PDUs.
    #[test]
    fn valid_pdus_round_trip(pdu in pdu()) {
        let octets = pdu.to_bytes().expect("a valid PDU encodes");
        prop_assert_eq!(u32::from_be_bytes(octets[..4].try_into().unwrap()) as usize, octets.len());
        prop_assert_eq!(u32::from_be_bytes(octets[4..8].try_into().unwrap()), pdu.command_id().as_u32());
        prop_assert_eq!(u32::from_be_bytes(octets[8..12].try_into().unwrap()), pdu.command_status.0);
        prop_assert_eq!(u32::from_be_bytes(octets[12..16].try_into().unwrap()), pdu.sequence_number);
        let decoded = decode_frame(&octets);
        prop_assert_eq!(decoded, Ok(pdu.clone()));
        // The codec's Encoder writes the same octets.
        let mut buf = BytesMut::new();
        tokio_util::codec::Encoder::encode(&mut SmppCodec::default(), &pdu, &mut buf).unwrap();
        prop_assert_eq!(buf.freeze(), octets);
    }

    /// Property 2a: arbitrary octets never make decode_frame panic.
    #[test]
    fn arbitrary_octets_never_panic(octets in vec(any::<u8>(), 0..300)) {
        let octets = Bytes::from(octets);
        assert_accepted_value_is_stable(&octets)?;
    }

    /// Property 2b: arbitrary bodies behind a sound header of every known
    /// command_id reach the body parsers; they never panic.
    #[test]
    fn arbitrary_bodies_never_panic(
        id in prop::sample::select(&CommandId::ALL[..]),
        status in any::<u32>(),
        seq in any::<u32>(),
        body in prop_oneof![vec(any::<u8>(), 0..24), vec(any::<u8>(), 0..400)],
    ) {
        let octets = frame(id.as_u32(), status, seq, &body);
        assert_accepted_value_is_stable(&octets)?;
        if let Err(e) = decode_frame(&octets) {
            prop_assert_eq!(e.sequence_number(), seq);
            // A body shorter than its fields is answered with generic_nack
            // ESME_RINVCMDLEN; any other bad request with its own response
            // (or nothing for outbind / alert_notification); a bad response
            // is never answered.
            if let Some(resp) = e.response() {
                prop_assert!(!id.is_response());
                if e.status() == CommandStatus::ESME_RINVCMDLEN {
                    prop_assert_eq!(resp.command_id(), CommandId::GenericNack);
                } else {
                    prop_assert_eq!(Some(resp.command_id()), id.response());
                }
                prop_assert_eq!(resp.command_status, e.status());
                prop_assert!(resp.to_bytes().is_ok());
            }
        }
    }

    /// Property 2c: valid frames with octets overwritten, inserted or removed
    /// (command_length kept right) never panic and, when accepted, are stable.
    #[test]
    fn mutated_valid_frames_never_panic(
        pdu in pdu(),
        edits in vec((any::<Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut body = pdu.to_bytes().unwrap()[16..].to_vec();
        for (at, octet, kind) in edits {
            match kind {
                0 if !body.is_empty() => {
                    let i = at.index(body.len());
                    body[i] = octet;
                }
                1 => {
                    let i = at.index(body.len() + 1);
                    body.insert(i, octet);
                }
                _ if !body.is_empty() => {
                    let i = at.index(body.len());
                    body.remove(i);
                }
                _ => {}
            }
        }
        let octets = frame(pdu.command_id().as_u32(), pdu.command_status.0, pdu.sequence_number, &body);
        assert_accepted_value_is_stable(&octets)?;
    }

    /// Property 3: the tokio codec yields exactly the PDUs, in order, however
    /// the stream is cut.
    #[test]
    fn codec_reassembles_split_streams(
        pdus in vec(pdu(), 1..8),
        cuts in vec(any::<Index>(), 0..12),
    ) {
        let mut stream = BytesMut::new();
        for pdu in &pdus {
            pdu.encode(&mut stream).unwrap();
        }
        let stream = stream.freeze();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        cuts.dedup();

        let mut codec = SmppCodec::new(u32::MAX);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in cuts.windows(2) {
            buf.extend_from_slice(&stream[piece[0]..piece[1]]);
            while let Some(item) = codec.decode(&mut buf).expect("no framing error on valid PDUs") {
                out.push(item.expect("valid PDU decodes"));
            }
        }
        prop_assert!(codec.decode_eof(&mut buf).expect("nothing left over").is_none());
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, pdus);
    }
}
