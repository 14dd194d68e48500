//! Cross-check against the independent `smpp34` crate (v1.5.x): for every
//! operation both crates can express,
//!
//! (a) the octets *we* encode decode with smpp34 to the expected field values
//!     (compared through [`conv`], which turns smpp34's types into ours), and
//! (b) the octets *smpp34* encodes decode with us to the same values (and
//!     re-encode with us byte for byte).
//!
//! What smpp34's public API does not allow is noted where it matters:
//! - the bind requests and `alert_notification` / `cancel_sm` have crate-private
//!   constructors; bind requests are obtained by decoding our octets (their
//!   header is private too), the others are built as struct literals (all
//!   their fields are public, `command_length` included, which their
//!   `encode()` writes as given);
//! - `unbind` has neither a public constructor nor a public decoder, so only
//!   its header is checked; `enquire_link_resp` has no decoder;
//! - `outbind`'s fields and the `message_id` of `deliver_sm_resp` /
//!   `data_sm_resp` are private: (a) is checked by smpp34 re-encoding the
//!   decoded PDU to the identical octets.
//!
//! Disagreements found, all on smpp34's side, are pinned in
//! `known_smpp34_deviations` with the SMPP 3.4 reference and are otherwise
//! left out of the cross-check.

use bytes::Bytes;
use proptest::{collection::vec, prelude::*};
use smpp34 as s;
use smpp34::TlvTag;
use smsmax_protocol::{
    decode_frame,
    pdu::*,
    tlv::{NetworkErrorCode, Tlv},
    types::{Address, COctetString, SmppTime},
    Body, CommandId, CommandStatus, Pdu, PduError,
};

// ---------------------------------------------------------------- helpers

fn cs<const N: usize>(value: &str) -> COctetString<N> {
    COctetString::try_from(value).unwrap_or_else(|e| panic!("{value:?} does not fit COctetString<{N}>: {e}"))
}

fn time(value: &str) -> SmppTime {
    SmppTime::try_from(value).unwrap_or_else(|e| panic!("{value:?} is not an SMPP time: {e}"))
}

fn addr<const N: usize>(ton: u8, npi: u8, value: &str) -> Address<N> {
    Address {
        ton,
        npi,
        addr: cs(value),
    }
}

fn text<const N: usize>(value: &COctetString<N>) -> String {
    value.as_str().expect("ASCII").to_owned()
}

/// Our octets for `pdu`.
fn ours(pdu: &Pdu) -> Vec<u8> {
    pdu.to_bytes().expect("encodes").to_vec()
}

/// Decodes with us, and checks that we re-encode the identical octets.
fn decode_ours(wire: &[u8]) -> Pdu {
    let frame = Bytes::copy_from_slice(wire);
    let pdu = decode_frame(&frame).unwrap_or_else(|e| panic!("we refuse smpp34's {:02x?}: {e}", wire));
    assert_eq!(ours(&pdu), wire, "we do not re-encode smpp34's octets byte for byte");
    pdu
}

/// smpp34's header decoder on our octets, checked against `pdu`'s header.
fn their_header(wire: &[u8], pdu: &Pdu) -> s::CommandHeader {
    let header = s::CommandHeader::decode(wire).expect("smpp34 refuses our header");
    assert_eq!(header.command_length as usize, wire.len());
    assert_eq!(header.command_id, pdu.command_id().as_u32());
    assert_eq!(header.command_status, pdu.command_status.0);
    assert_eq!(header.sequence_number, pdu.sequence_number);
    header
}

fn status(e: s::SmppError) -> CommandStatus {
    CommandStatus(e as u32)
}

/// Conversions from smpp34's types to ours, field by field.
mod conv {
    use super::*;

    pub fn tlv(t: &s::Tlv) -> Tlv {
        let v = t.value.as_slice();
        let u8v = || -> u8 {
            assert_eq!(v.len(), 1, "tag {:#06x}", t.tag);
            v[0]
        };
        let u16v = || -> u16 { u16::from_be_bytes(v.try_into().expect("2 octets")) };
        let cstr = || -> &str {
            let body = v.strip_suffix(&[0]).expect("C-Octet String TLV without NUL");
            std::str::from_utf8(body).expect("ASCII")
        };
        match t.tag {
            0x0017 => Tlv::QosTimeToLive(u32::from_be_bytes(v.try_into().expect("4 octets"))),
            0x0019 => Tlv::PayloadType(u8v()),
            0x001D => Tlv::AdditionalStatusInfoText(cs(cstr())),
            0x001E => Tlv::ReceiptedMessageId(cs(cstr())),
            0x0204 => Tlv::UserMessageReference(u16v()),
            0x020A => Tlv::SourcePort(u16v()),
            0x020B => Tlv::DestinationPort(u16v()),
            0x020C => Tlv::SarMsgRefNum(u16v()),
            0x020E => Tlv::SarTotalSegments(u8v()),
            0x020F => Tlv::SarSegmentSeqnum(u8v()),
            0x0210 => Tlv::ScInterfaceVersion(u8v()),
            0x0420 => Tlv::DpfResult(u8v()),
            0x0422 => Tlv::MsAvailabilityStatus(u8v()),
            0x0423 => match v {
                [network_type, hi, lo] => Tlv::NetworkErrorCode(NetworkErrorCode {
                    network_type: *network_type,
                    error_code: u16::from_be_bytes([*hi, *lo]),
                }),
                _ => panic!("network_error_code of {} octets", v.len()),
            },
            0x0424 => Tlv::MessagePayload(Bytes::copy_from_slice(v)),
            0x0425 => Tlv::DeliveryFailureReason(u8v()),
            0x0426 => Tlv::MoreMessagesToSend(u8v()),
            0x0427 => Tlv::MessageState(u8v()),
            tag @ 0x1400..=0x3FFF => Tlv::Unknown {
                tag,
                value: Bytes::copy_from_slice(v),
            },
            other => panic!("tag {other:#06x} not mapped in conv::tlv"),
        }
    }

    pub fn tlvs(t: &[s::Tlv]) -> Vec<Tlv> {
        t.iter().map(tlv).collect()
    }

    /// `submit_sm` and `deliver_sm` are distinct types in smpp34 with the same fields.
    macro_rules! sm {
        ($t:expr) => {{
            let t = $t;
            assert_eq!(t.sm_length as usize, t.short_message.len());
            SubmitSm {
                service_type: cs(&t.service_type),
                source: addr(t.source_addr_ton, t.source_addr_npi, &t.source_addr),
                dest: addr(t.dest_addr_ton, t.dest_addr_npi, &t.destination_addr),
                esm_class: t.esm_class,
                protocol_id: t.protocol_id,
                priority_flag: t.priority_flag,
                schedule_delivery_time: time(&t.schedule_delivery_time),
                validity_period: time(&t.validity_period),
                registered_delivery: t.registered_delivery,
                replace_if_present_flag: t.replace_if_present_flag,
                data_coding: t.data_coding,
                sm_default_msg_id: t.sm_default_msg_id,
                short_message: Bytes::copy_from_slice(&t.short_message),
                tlvs: tlvs(&t.tlvs),
            }
        }};
    }

    pub fn submit_sm(t: &s::submit_sm) -> SubmitSm {
        sm!(t)
    }

    pub fn deliver_sm(t: &s::deliver_sm) -> DeliverSm {
        sm!(t)
    }

    macro_rules! bind {
        ($t:expr) => {{
            let t = $t;
            Bind {
                system_id: cs(&t.system_id),
                password: cs(&t.password),
                system_type: cs(&t.system_type),
                interface_version: t.interface_version,
                addr_ton: t.addr_ton,
                addr_npi: t.addr_npi,
                address_range: cs(&t.address_range),
            }
        }};
    }

    pub fn bind_transmitter(t: &s::bind_transmitter) -> Bind {
        bind!(t)
    }
    pub fn bind_receiver(t: &s::bind_receiver) -> Bind {
        bind!(t)
    }
    pub fn bind_transceiver(t: &s::bind_transceiver) -> Bind {
        bind!(t)
    }

    /// The bind responses: smpp34 keeps only `sc_interface_version` of the TLVs.
    pub fn bind_resp(system_id: &Option<String>, sc_interface_version: Option<u8>) -> BindResp {
        BindResp {
            system_id: cs(system_id.as_deref().unwrap_or("")),
            tlvs: sc_interface_version.map(Tlv::ScInterfaceVersion).into_iter().collect(),
        }
    }

    pub fn submit_multi(t: &s::submit_sm_multi) -> SubmitMulti {
        assert_eq!(t.number_of_dests as usize, t.dest_addresses.len());
        assert_eq!(t.sm_length as usize, t.short_message.len());
        SubmitMulti {
            service_type: cs(&t.service_type),
            source: addr(t.source_addr_ton, t.source_addr_npi, &t.source_addr),
            dest_addresses: t
                .dest_addresses
                .iter()
                .map(|d| match d {
                    s::DestAddress::Sme {
                        dest_addr_ton,
                        dest_addr_npi,
                        destination_addr,
                    } => DestAddress::SmeAddress(addr(*dest_addr_ton, *dest_addr_npi, destination_addr)),
                    s::DestAddress::DistributionList { dl_name } => DestAddress::DistributionList(cs(dl_name)),
                })
                .collect(),
            esm_class: t.esm_class,
            protocol_id: t.protocol_id,
            priority_flag: t.priority_flag,
            schedule_delivery_time: time(&t.schedule_delivery_time),
            validity_period: time(&t.validity_period),
            registered_delivery: t.registered_delivery,
            replace_if_present_flag: t.replace_if_present_flag,
            data_coding: t.data_coding,
            sm_default_msg_id: t.sm_default_msg_id,
            short_message: Bytes::copy_from_slice(&t.short_message),
            tlvs: tlvs(&t.tlvs),
        }
    }

    pub fn submit_multi_resp(t: &s::submit_sm_multi_resp) -> SubmitMultiResp {
        assert_eq!(t.no_unsuccess as usize, t.unsuccess_sme.len());
        SubmitMultiResp {
            message_id: cs(t.message_id.as_deref().unwrap_or("")),
            unsuccess_smes: t
                .unsuccess_sme
                .iter()
                .map(|u| UnsuccessSme {
                    address: addr(u.dest_addr_ton, u.dest_addr_npi, &u.destination_addr),
                    error_status_code: CommandStatus(u.error_status_code),
                })
                .collect(),
        }
    }

    pub fn data_sm(t: &s::data_sm) -> DataSm {
        DataSm {
            service_type: cs(&t.service_type),
            source: addr(t.source_addr_ton, t.source_addr_npi, &t.source_addr),
            dest: addr(t.dest_addr_ton, t.dest_addr_npi, &t.destination_addr),
            esm_class: t.esm_class,
            registered_delivery: t.registered_delivery,
            data_coding: t.data_coding,
            tlvs: tlvs(&t.tlvs),
        }
    }

    pub fn query_sm(t: &s::query_sm) -> QuerySm {
        QuerySm {
            message_id: cs(&t.message_id),
            source: addr(t.source_addr_ton, t.source_addr_npi, &t.source_addr),
        }
    }

    pub fn query_sm_resp(t: &s::query_sm_resp) -> QuerySmResp {
        QuerySmResp {
            message_id: cs(&t.message_id),
            final_date: time(&t.final_date),
            message_state: t.message_state,
            error_code: t.error_code,
        }
    }

    pub fn cancel_sm(t: &s::cancel_sm) -> CancelSm {
        CancelSm {
            service_type: cs(&t.service_type),
            message_id: cs(&t.message_id),
            source: addr(t.source_addr_ton, t.source_addr_npi, &t.source_addr),
            dest: addr(t.dest_addr_ton, t.dest_addr_npi, &t.destination_addr),
        }
    }

    pub fn replace_sm(t: &s::replace_sm) -> ReplaceSm {
        assert_eq!(t.sm_length as usize, t.short_message.len());
        ReplaceSm {
            message_id: cs(&t.message_id),
            source: addr(t.source_addr_ton, t.source_addr_npi, &t.source_addr),
            schedule_delivery_time: time(&t.schedule_delivery_time),
            validity_period: time(&t.validity_period),
            registered_delivery: t.registered_delivery,
            sm_default_msg_id: t.sm_default_msg_id,
            short_message: Bytes::copy_from_slice(&t.short_message),
        }
    }

    /// smpp34 keeps only `ms_availability_status` of the TLVs.
    pub fn alert_notification(t: &s::alert_notification) -> AlertNotification {
        AlertNotification {
            source: addr(t.source_addr_ton, t.source_addr_npi, &t.source_addr),
            esme: addr(t.esme_addr_ton, t.esme_addr_npi, &t.esme_addr),
            tlvs: t
                .ms_availability_status
                .map(Tlv::MsAvailabilityStatus)
                .into_iter()
                .collect(),
        }
    }
}

// ---------------------------------------------------------------- fixtures

const MESSAGE_ID: &str = "0d3f6a52-8c1e-4b7a-9f21-6c5e8d7b4a10"; // 36 characters

fn plain_submit_sm() -> SubmitSm {
    SubmitSm {
        service_type: cs(""),
        source: addr(5, 0, "SMSMax"),
        dest: addr(1, 1, "447700900123"),
        esm_class: 0,
        protocol_id: 0,
        priority_flag: 0,
        schedule_delivery_time: time(""),
        validity_period: time("260101120000000+"),
        registered_delivery: 1,
        replace_if_present_flag: 0,
        data_coding: 0,
        sm_default_msg_id: 0,
        short_message: Bytes::from_static(b"Hello from SMSMax"),
        tlvs: vec![],
    }
}

fn payload_submit_sm() -> SubmitSm {
    SubmitSm {
        service_type: cs("WAP"),
        source: addr(1, 1, "447700900999"),
        dest: addr(1, 1, "447700900123"),
        esm_class: 0x03,
        priority_flag: 1,
        schedule_delivery_time: time("000000010000000R"),
        registered_delivery: 0x11,
        data_coding: 0x08,
        short_message: Bytes::new(),
        tlvs: vec![
            Tlv::MessagePayload(Bytes::from((0..300u32).map(|i| (i % 251) as u8).collect::<Vec<_>>())),
            Tlv::UserMessageReference(0x1234),
            Tlv::SourcePort(5000),
            Tlv::DestinationPort(2948),
            Tlv::QosTimeToLive(86_400),
            Tlv::Unknown {
                tag: 0x1403,
                value: Bytes::from_static(&[0xAA, 0xBB, 0xCC]),
            },
        ],
        ..plain_submit_sm()
    }
}

fn sar_submit_sm() -> SubmitSm {
    SubmitSm {
        data_coding: 0x08,
        short_message: Bytes::from([0x00, 0x41].repeat(67)),
        tlvs: vec![
            Tlv::SarMsgRefNum(0xBEEF),
            Tlv::SarTotalSegments(3),
            Tlv::SarSegmentSeqnum(2),
        ],
        ..plain_submit_sm()
    }
}

fn receipt_deliver_sm() -> DeliverSm {
    let receipt = format!(
        "id:{MESSAGE_ID} sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:Hello from SMSMax"
    );
    DeliverSm {
        service_type: cs(""),
        source: addr(1, 1, "447700900123"),
        dest: addr(5, 0, "SMSMax"),
        esm_class: 0x04,
        short_message: Bytes::from(receipt),
        tlvs: vec![
            Tlv::ReceiptedMessageId(cs(MESSAGE_ID)),
            Tlv::MessageState(2),
            Tlv::NetworkErrorCode(NetworkErrorCode {
                network_type: 3,
                error_code: 0,
            }),
        ],
        ..Default::default()
    }
}

fn bind(interface_version: u8) -> Bind {
    Bind {
        system_id: cs("smsmax"),
        password: cs("secret"),
        system_type: cs("VMA"),
        interface_version,
        addr_ton: 1,
        addr_npi: 1,
        address_range: cs("^44"),
    }
}

fn submit_multi() -> SubmitMulti {
    SubmitMulti {
        service_type: cs(""),
        source: addr(5, 0, "SMSMax"),
        dest_addresses: vec![
            DestAddress::SmeAddress(addr(1, 1, "447700900123")),
            DestAddress::DistributionList(cs("friends")),
            DestAddress::SmeAddress(addr(2, 8, "07700900124")),
        ],
        esm_class: 0,
        protocol_id: 0,
        priority_flag: 2,
        schedule_delivery_time: time("260101120000004+"),
        validity_period: time(""),
        registered_delivery: 1,
        replace_if_present_flag: 0,
        data_coding: 3,
        sm_default_msg_id: 0,
        short_message: Bytes::from_static(b"Hello, all of you"),
        tlvs: vec![Tlv::UserMessageReference(7)],
    }
}

fn data_sm() -> DataSm {
    DataSm {
        service_type: cs(""),
        source: addr(1, 1, "447700900123"),
        dest: addr(
            0,
            0x0E,
            "wap.example.org:9200/push/and-some-more-to-exceed-twenty-octets",
        ),
        esm_class: 0,
        registered_delivery: 1,
        data_coding: 4,
        tlvs: vec![
            Tlv::SourcePort(9200),
            Tlv::DestinationPort(2948),
            Tlv::PayloadType(0),
            Tlv::MessagePayload(Bytes::from_static(b"\x01\x06\x04payload")),
        ],
    }
}

fn alert_notification() -> AlertNotification {
    AlertNotification {
        source: addr(1, 1, "447700900123"),
        esme: addr(5, 0, "SMSMax"),
        tlvs: vec![Tlv::MsAvailabilityStatus(0)],
    }
}

// ---------------------------------------------------------------- bind

macro_rules! bind_test {
    ($name:ident, $req:ident, $resp:ident, $Req:ident, $Resp:ident, $conv:ident) => {
        #[test]
        fn $name() {
            // (a) our bind request decodes with smpp34.
            let pdu = Pdu::new(11, Body::$Req(bind(0x34)));
            let wire = ours(&pdu);
            let header = their_header(&wire, &pdu);
            let theirs = s::$req::decode(header, &wire).expect("smpp34 refuses our bind");
            assert_eq!(theirs.system_id, "smsmax");
            assert_eq!(theirs.password, "secret");
            assert_eq!(theirs.interface_version, 0x34);
            assert_eq!(conv::$conv(&theirs), bind(0x34));
            // (b) smpp34's encoding of it (the only way to get one of their
            // bind requests is to decode one) decodes with us.
            assert_eq!(theirs.clone().encode(), wire);
            assert_eq!(decode_ours(&theirs.clone().encode()), pdu);

            // (b) smpp34's responses decode with us: with and without
            // sc_interface_version, and rejected.
            let resp = theirs.clone().accept("SMSC01".into(), Some(0x34));
            assert_eq!(
                decode_ours(&resp.encode()),
                Pdu::new(
                    11,
                    Body::$Resp(BindResp {
                        system_id: cs("SMSC01"),
                        tlvs: vec![Tlv::ScInterfaceVersion(0x34)]
                    })
                )
            );
            let resp = theirs.clone().accept("SMSC01".into(), None);
            assert_eq!(
                decode_ours(&resp.encode()),
                Pdu::new(11, Body::$Resp(conv::bind_resp(&Some("SMSC01".into()), None)))
            );
            let resp = theirs.clone().reject(s::SmppError::ESME_RINVPASWD);
            assert_eq!(
                decode_ours(&resp.encode()),
                Pdu::error_response(CommandId::$Resp, 11, CommandStatus::ESME_RINVPASWD)
            );
            let resp = s::$req::generic_reject(12, s::SmppError::ESME_RBINDFAIL);
            assert_eq!(
                decode_ours(&resp.encode()),
                Pdu::error_response(CommandId::$Resp, 12, CommandStatus::ESME_RBINDFAIL)
            );

            // (a) our responses decode with smpp34.
            let body = BindResp {
                system_id: cs("SMSC01"),
                tlvs: vec![Tlv::ScInterfaceVersion(0x34)],
            };
            let pdu = Pdu::new(11, Body::$Resp(body.clone()));
            let wire = ours(&pdu);
            let theirs = s::$resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses our bind_resp");
            assert!(theirs.is_success());
            assert_eq!(theirs.system_id.as_deref(), Some("SMSC01"));
            assert_eq!(
                conv::bind_resp(&theirs.system_id, theirs.sc_interface_version),
                body
            );
            assert_eq!(theirs.encode(), wire);

            let pdu = Pdu::error_response(CommandId::$Resp, 13, CommandStatus::ESME_RINVPASWD);
            let wire = ours(&pdu);
            assert_eq!(wire.len(), 16, "no body on a failed bind_resp (section 4.1.2)");
            let theirs = s::$resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses our bind_resp");
            assert_eq!(theirs.get_error(), s::SmppError::ESME_RINVPASWD);
            assert_eq!(theirs.system_id, None);
            assert_eq!(theirs.encode(), wire);
        }
    };
}

bind_test!(
    bind_transmitter_and_resp,
    bind_transmitter,
    bind_transmitter_resp,
    BindTransmitter,
    BindTransmitterResp,
    bind_transmitter
);
bind_test!(
    bind_receiver_and_resp,
    bind_receiver,
    bind_receiver_resp,
    BindReceiver,
    BindReceiverResp,
    bind_receiver
);
bind_test!(
    bind_transceiver_and_resp,
    bind_transceiver,
    bind_transceiver_resp,
    BindTransceiver,
    BindTransceiverResp,
    bind_transceiver
);

#[test]
fn outbind() {
    // (a) Their fields are private: smpp34 must decode ours and re-encode it identically.
    let pdu = Pdu::new(
        3,
        Outbind {
            system_id: cs("SMSC01"),
            password: cs("pw"),
        },
    );
    let wire = ours(&pdu);
    let theirs = s::outbind::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses our outbind");
    assert_eq!(theirs.encode(), wire);
    // (b)
    let theirs = s::outbind::new(4, "SMSC01".into(), "pw".into());
    assert_eq!(
        decode_ours(&theirs.encode()),
        Pdu::new(
            4,
            Outbind {
                system_id: cs("SMSC01"),
                password: cs("pw"),
            }
        )
    );
    // Both empty (passwordless) is allowed.
    assert_eq!(
        decode_ours(&s::outbind::new(5, String::new(), String::new()).encode()),
        Pdu::new(5, Outbind::default())
    );
}

// ---------------------------------------------------------------- submit_sm / deliver_sm

fn submit_sm_both_ways(seq: u32, sm: SubmitSm) {
    // (a)
    let pdu = Pdu::new(seq, Body::SubmitSm(sm.clone()));
    let wire = ours(&pdu);
    let theirs = s::submit_sm::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses our submit_sm");
    assert_eq!(theirs.source_addr, text(&sm.source.addr));
    assert_eq!(theirs.destination_addr, text(&sm.dest.addr));
    assert_eq!(theirs.short_message, &sm.short_message[..]);
    assert_eq!(theirs.tlvs.len(), sm.tlvs.len());
    assert_eq!(conv::submit_sm(&theirs), sm);
    // (b) smpp34 re-encodes the very octets, which we decode to the same PDU.
    let again = theirs.encode();
    assert_eq!(again, wire);
    assert_eq!(decode_ours(&again), pdu);
}

#[test]
fn submit_sm_plain() {
    submit_sm_both_ways(1, plain_submit_sm());
}

#[test]
fn submit_sm_with_message_payload_and_other_tlvs() {
    submit_sm_both_ways(2, payload_submit_sm());
}

#[test]
fn submit_sm_with_sar_tlvs() {
    submit_sm_both_ways(3, sar_submit_sm());
}

#[test]
fn submit_sm_built_by_smpp34() {
    // (b) with smpp34's own constructor and typed TLV helpers.
    let theirs = s::submit_sm::new(
        0x1234_5678,
        String::new(),
        5,
        0,
        "SMSMax".into(),
        1,
        1,
        "447700900123".into(),
        0x40,
        0,
        0,
        String::new(),
        "260101120000000+".into(),
        1,
        0,
        0,
        0,
        b"\x05\x00\x03\xBE\x02\x01Hello".to_vec(),
    )
    .with_tlvs([
        s::Tlv::from_u16(TlvTag::UserMessageReference, 0x1234),
        s::Tlv::from_u16(TlvTag::SarMsgRefNum, 0xBEEF),
        s::Tlv::from_u8(TlvTag::SarTotalSegments, 2),
        s::Tlv::from_u8(TlvTag::SarSegmentSeqnum, 1),
        s::Tlv::new(0x1403, vec![0xAA, 0xBB, 0xCC]),
    ]);
    let expected = SubmitSm {
        esm_class: 0x40,
        short_message: Bytes::from_static(b"\x05\x00\x03\xBE\x02\x01Hello"),
        tlvs: vec![
            Tlv::UserMessageReference(0x1234),
            Tlv::SarMsgRefNum(0xBEEF),
            Tlv::SarTotalSegments(2),
            Tlv::SarSegmentSeqnum(1),
            Tlv::Unknown {
                tag: 0x1403,
                value: Bytes::from_static(&[0xAA, 0xBB, 0xCC]),
            },
        ],
        ..plain_submit_sm()
    };
    assert_eq!(conv::submit_sm(&theirs), expected);
    assert_eq!(
        decode_ours(&theirs.encode()),
        Pdu::new(0x1234_5678, Body::SubmitSm(expected))
    );

    // message_payload instead of short_message.
    let theirs = s::submit_sm::new(
        9,
        String::new(),
        1,
        1,
        "447700900999".into(),
        1,
        1,
        "447700900123".into(),
        0,
        0,
        0,
        String::new(),
        String::new(),
        0,
        0,
        8,
        0,
        Vec::new(),
    )
    .with_tlvs([s::Tlv::from_tag(TlvTag::MessagePayload, vec![0x04; 400])]);
    let ours_pdu = decode_ours(&theirs.clone().encode());
    let Body::SubmitSm(sm) = &ours_pdu.body else {
        panic!("{ours_pdu:?}")
    };
    assert_eq!(sm.message().len(), 400);
    assert_eq!(*sm, conv::submit_sm(&theirs));
}

#[test]
fn submit_sm_resp() {
    // (a)
    let pdu = Pdu::new(
        21,
        SubmitSmResp {
            message_id: cs(MESSAGE_ID),
        },
    );
    let wire = ours(&pdu);
    let theirs = s::submit_sm_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses our resp");
    assert!(theirs.is_success());
    assert_eq!(theirs.message_id.as_deref(), Some(MESSAGE_ID));
    assert_eq!(theirs.encode(), wire);

    let pdu = Pdu::error_response(CommandId::SubmitSmResp, 22, CommandStatus::ESME_RTHROTTLED);
    let wire = ours(&pdu);
    assert_eq!(wire.len(), 16, "no body on a failed submit_sm_resp (section 4.4.2)");
    let theirs = s::submit_sm_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses our resp");
    assert_eq!(theirs.get_error(), s::SmppError::ESME_RTHROTTLED);
    assert_eq!(theirs.message_id, None);
    assert_eq!(theirs.encode(), wire);

    // (b)
    let request = s::submit_sm::new(
        23,
        String::new(),
        0,
        0,
        String::new(),
        0,
        0,
        String::new(),
        0,
        0,
        0,
        String::new(),
        String::new(),
        0,
        0,
        0,
        0,
        Vec::new(),
    );
    assert_eq!(
        decode_ours(&request.clone().accept(MESSAGE_ID.into()).encode()),
        Pdu::new(
            23,
            SubmitSmResp {
                message_id: cs(MESSAGE_ID)
            }
        )
    );
    assert_eq!(
        decode_ours(&request.reject(s::SmppError::ESME_RMSGQFUL).encode()),
        Pdu::error_response(CommandId::SubmitSmResp, 23, CommandStatus::ESME_RMSGQFUL)
    );
    assert_eq!(
        decode_ours(&s::submit_sm::generic_reject(24, s::SmppError::ESME_RINVDSTADR).encode()),
        Pdu::error_response(CommandId::SubmitSmResp, 24, CommandStatus::ESME_RINVDSTADR)
    );
}

#[test]
fn deliver_sm_with_receipt() {
    // (a)
    let dsm = receipt_deliver_sm();
    let pdu = Pdu::new(31, Body::DeliverSm(dsm.clone()));
    let wire = ours(&pdu);
    let theirs = s::deliver_sm::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses our deliver_sm");
    {
        use smpp34::TlvList;
        assert_eq!(theirs.tlvs.receipted_message_id().as_deref(), Some(MESSAGE_ID));
        assert_eq!(theirs.tlvs.message_state(), Some(2));
        assert_eq!(theirs.tlvs.network_error_code(), Some((3, 0)));
    }
    assert_eq!(theirs.esm_class, 0x04);
    assert!(String::from_utf8_lossy(&theirs.short_message).starts_with(&format!("id:{MESSAGE_ID} ")));
    assert_eq!(conv::deliver_sm(&theirs), dsm);
    assert_eq!(theirs.clone().encode(), wire);

    // (b) built by smpp34.
    let receipt = dsm.short_message.to_vec();
    let theirs = s::deliver_sm::new(
        32,
        String::new(),
        1,
        1,
        "447700900123".into(),
        5,
        0,
        "SMSMax".into(),
        0x04,
        0,
        0,
        String::new(),
        String::new(),
        0,
        0,
        0,
        0,
        receipt,
    )
    .with_tlvs([
        s::Tlv::from_c_string(TlvTag::ReceiptedMessageId, MESSAGE_ID),
        s::Tlv::from_u8(TlvTag::MessageStateTlv, 2),
        s::Tlv::from_tag(TlvTag::NetworkErrorCode, vec![3, 0, 0]),
    ]);
    let decoded = decode_ours(&theirs.clone().encode());
    assert_eq!(decoded, Pdu::new(32, Body::DeliverSm(dsm.clone())));
    let Body::DeliverSm(d) = &decoded.body else {
        unreachable!()
    };
    assert!(d.is_delivery_receipt());
    assert_eq!(conv::deliver_sm(&theirs), dsm);
}

#[test]
fn deliver_sm_resp() {
    // (a) message_id is private in smpp34: decode and re-encode identically.
    let pdu = Pdu::new(41, Body::DeliverSmResp(DeliverSmResp::default()));
    let wire = ours(&pdu);
    assert_eq!(wire.len(), 17, "deliver_sm_resp carries a NULL message_id");
    let theirs = s::deliver_sm_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert!(theirs.is_success());
    assert_eq!(theirs.encode(), wire);

    let pdu = Pdu::error_response(CommandId::DeliverSmResp, 42, CommandStatus::ESME_RX_T_APPN);
    let wire = ours(&pdu);
    let theirs = s::deliver_sm_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert_eq!(theirs.get_error(), s::SmppError::ESME_RX_T_APPN);

    // (b) accept(); reject() is a known deviation (see known_smpp34_deviations).
    let request = s::deliver_sm::new(
        43,
        String::new(),
        0,
        0,
        String::new(),
        0,
        0,
        String::new(),
        0,
        0,
        0,
        String::new(),
        String::new(),
        0,
        0,
        0,
        0,
        Vec::new(),
    );
    assert_eq!(
        decode_ours(&request.accept().encode()),
        Pdu::new(43, Body::DeliverSmResp(DeliverSmResp::default()))
    );
}

// ---------------------------------------------------------------- header-only PDUs

#[test]
fn enquire_link_and_resp() {
    // (a)
    let pdu = Pdu::new(51, Body::EnquireLink);
    let wire = ours(&pdu);
    let theirs = s::enquire_link::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert_eq!(theirs.clone().encode(), wire);
    // (b)
    assert_eq!(
        decode_ours(&s::enquire_link::new(52).encode()),
        Pdu::new(52, Body::EnquireLink)
    );
    assert_eq!(
        decode_ours(&s::enquire_link::new(53).accept().encode()),
        Pdu::new(53, Body::EnquireLinkResp)
    );
    assert_eq!(
        decode_ours(&s::enquire_link::generic_reject(54, s::SmppError::ESME_RSYSERR).encode()),
        Pdu::with_status(54, CommandStatus::ESME_RSYSERR, Body::EnquireLinkResp)
    );
    // (a) enquire_link_resp: smpp34 has no decoder for it, only the header can be checked.
    let pdu = Pdu::new(55, Body::EnquireLinkResp);
    let wire = ours(&pdu);
    their_header(&wire, &pdu);
    assert_eq!(wire, s::enquire_link::new(55).accept().encode());
}

#[test]
fn unbind_and_resp() {
    // (a) unbind: smpp34 has no public decoder nor constructor for it; the
    // header is all that can be compared.
    let pdu = Pdu::new(61, Body::Unbind);
    let wire = ours(&pdu);
    assert_eq!(wire.len(), 16);
    their_header(&wire, &pdu);
    // (a) unbind_resp
    for pdu in [
        Pdu::new(62, Body::UnbindResp),
        Pdu::with_status(63, CommandStatus::ESME_RINVBNDSTS, Body::UnbindResp),
    ] {
        let wire = ours(&pdu);
        let theirs = s::unbind_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
        assert_eq!(theirs.command_status(), pdu.command_status.0);
        assert_eq!(theirs.encode(), wire);
    }
    // (b) unbind_resp, through the one public constructor.
    assert_eq!(
        decode_ours(&s::unbind::generic_reject(64, s::SmppError::ESME_ROK).encode()),
        Pdu::new(64, Body::UnbindResp)
    );
    assert_eq!(
        decode_ours(&s::unbind::generic_reject(65, s::SmppError::ESME_RINVBNDSTS).encode()),
        Pdu::with_status(65, CommandStatus::ESME_RINVBNDSTS, Body::UnbindResp)
    );
}

#[test]
fn generic_nack() {
    for (seq, st) in [
        (71, s::SmppError::ESME_RINVCMDID),
        (0, s::SmppError::ESME_RINVCMDLEN),
        (72, s::SmppError::ESME_RTHROTTLED),
    ] {
        // (a)
        let pdu = Pdu::generic_nack(seq, status(st));
        let wire = ours(&pdu);
        let theirs = s::generic_nack::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
        assert_eq!(theirs.get_error(), st);
        assert_eq!(theirs.encode(), wire);
        // (b)
        assert_eq!(decode_ours(&s::generic_nack::new(st, seq).encode()), pdu);
    }
}

// ---------------------------------------------------------------- query / cancel / replace

#[test]
fn query_sm_and_resp() {
    let body = QuerySm {
        message_id: cs(MESSAGE_ID),
        source: addr(5, 0, "SMSMax"),
    };
    // (a)
    let pdu = Pdu::new(81, body.clone());
    let wire = ours(&pdu);
    let theirs = s::query_sm::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert_eq!(theirs.message_id, MESSAGE_ID);
    assert_eq!(conv::query_sm(&theirs), body);
    assert_eq!(theirs.clone().encode(), wire);
    // (b)
    let theirs = s::query_sm::new(82, MESSAGE_ID.into(), 5, 0, "SMSMax".into());
    assert_eq!(
        decode_ours(&theirs.clone().encode()),
        Pdu::new(82, conv::query_sm(&theirs))
    );
    assert_eq!(conv::query_sm(&theirs), body);

    let resp_body = QuerySmResp {
        message_id: cs(MESSAGE_ID),
        final_date: time("260101120100000+"),
        message_state: 2,
        error_code: 0,
    };
    // (b) resp
    let resp = theirs
        .clone()
        .accept(MESSAGE_ID.into(), "260101120100000+".into(), 2, 0);
    assert_eq!(conv::query_sm_resp(&resp), resp_body);
    assert_eq!(decode_ours(&resp.encode()), Pdu::new(82, resp_body.clone()));
    let resp = theirs.reject(s::SmppError::ESME_RQUERYFAIL);
    assert_eq!(
        decode_ours(&resp.encode()),
        Pdu::error_response(CommandId::QuerySmResp, 82, CommandStatus::ESME_RQUERYFAIL)
    );
    // (a) resp
    let pdu = Pdu::new(83, resp_body.clone());
    let wire = ours(&pdu);
    let theirs = s::query_sm_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert_eq!(conv::query_sm_resp(&theirs), resp_body);
    assert_eq!(theirs.encode(), wire);
    let pdu = Pdu::error_response(CommandId::QuerySmResp, 84, CommandStatus::ESME_RQUERYFAIL);
    let wire = ours(&pdu);
    let theirs = s::query_sm_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert_eq!(theirs.get_error(), s::SmppError::ESME_RQUERYFAIL);
    assert_eq!(theirs.encode(), wire);
}

#[test]
fn cancel_sm_and_resp() {
    let body = CancelSm {
        service_type: cs(""),
        message_id: cs(MESSAGE_ID),
        source: addr(5, 0, "SMSMax"),
        dest: addr(1, 1, "447700900123"),
    };
    // (a) Unlike every other smpp34 decoder, cancel_sm::decode wants the body
    // without the header (as its own unit test calls it).
    let pdu = Pdu::new(91, body.clone());
    let wire = ours(&pdu);
    let theirs = s::cancel_sm::decode(their_header(&wire, &pdu), &wire[16..]).expect("smpp34 refuses ours");
    assert_eq!(theirs.message_id, MESSAGE_ID);
    assert_eq!(conv::cancel_sm(&theirs), body);
    assert_eq!(theirs.clone().encode(), wire);
    // (b) cancel_sm::new is crate-private in smpp34 (and its command_length
    // leaves out message_id, see known_smpp34_deviations); build the literal.
    let theirs = s::cancel_sm {
        header: s::CommandHeader {
            command_length: wire.len() as u32,
            command_id: 0x0000_0008,
            command_status: 0,
            sequence_number: 92,
        },
        service_type: String::new(),
        message_id: MESSAGE_ID.into(),
        source_addr_ton: 5,
        source_addr_npi: 0,
        source_addr: "SMSMax".into(),
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: "447700900123".into(),
    };
    assert_eq!(decode_ours(&theirs.clone().encode()), Pdu::new(92, body));
    // resp: (b)
    assert_eq!(
        decode_ours(&theirs.clone().accept().encode()),
        Pdu::new(92, Body::CancelSmResp)
    );
    assert_eq!(
        decode_ours(&theirs.reject(s::SmppError::ESME_RCANCELFAIL).encode()),
        Pdu::with_status(92, CommandStatus::ESME_RCANCELFAIL, Body::CancelSmResp)
    );
    // resp: (a)
    for pdu in [
        Pdu::new(93, Body::CancelSmResp),
        Pdu::with_status(94, CommandStatus::ESME_RCANCELFAIL, Body::CancelSmResp),
    ] {
        let wire = ours(&pdu);
        let theirs = s::cancel_sm_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
        assert_eq!(theirs.command_status(), pdu.command_status.0);
        assert_eq!(theirs.encode(), wire);
    }
}

#[test]
fn replace_sm_and_resp() {
    let body = ReplaceSm {
        message_id: cs(MESSAGE_ID),
        source: addr(5, 0, "SMSMax"),
        schedule_delivery_time: time(""),
        validity_period: time("260102120000000+"),
        registered_delivery: 1,
        sm_default_msg_id: 0,
        short_message: Bytes::from_static(b"Replacement text"),
    };
    // (a)
    let pdu = Pdu::new(101, body.clone());
    let wire = ours(&pdu);
    let theirs = s::replace_sm::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert_eq!(theirs.short_message, b"Replacement text");
    assert_eq!(conv::replace_sm(&theirs), body);
    assert_eq!(theirs.clone().encode(), wire);
    // (b)
    let theirs = s::replace_sm::new(
        102,
        MESSAGE_ID.into(),
        5,
        0,
        "SMSMax".into(),
        String::new(),
        "260102120000000+".into(),
        1,
        0,
        b"Replacement text".to_vec(),
    );
    assert_eq!(conv::replace_sm(&theirs), body);
    assert_eq!(decode_ours(&theirs.clone().encode()), Pdu::new(102, body));
    // resp: (b)
    assert_eq!(
        decode_ours(&theirs.clone().accept().encode()),
        Pdu::new(102, Body::ReplaceSmResp)
    );
    assert_eq!(
        decode_ours(&theirs.reject(s::SmppError::ESME_RREPLACEFAIL).encode()),
        Pdu::with_status(102, CommandStatus::ESME_RREPLACEFAIL, Body::ReplaceSmResp)
    );
    // resp: (a)
    let pdu = Pdu::new(103, Body::ReplaceSmResp);
    let wire = ours(&pdu);
    let theirs = s::replace_sm_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert!(theirs.is_success());
    assert_eq!(theirs.encode(), wire);
}

// ---------------------------------------------------------------- submit_multi / data_sm / alert

#[test]
fn submit_multi_and_resp() {
    let body = submit_multi();
    // (a)
    let pdu = Pdu::new(111, body.clone());
    let wire = ours(&pdu);
    let theirs = s::submit_sm_multi::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert_eq!(theirs.number_of_dests, 3);
    assert_eq!(conv::submit_multi(&theirs), body);
    assert_eq!(theirs.clone().encode(), wire);
    // (b)
    let theirs = s::submit_sm_multi::new(
        112,
        String::new(),
        5,
        0,
        "SMSMax".into(),
        vec![
            s::DestAddress::sme("447700900123"),
            s::DestAddress::distribution_list("friends"),
            s::DestAddress::Sme {
                dest_addr_ton: 2,
                dest_addr_npi: 8,
                destination_addr: "07700900124".into(),
            },
        ],
        0,
        0,
        2,
        "260101120000004+".into(),
        String::new(),
        1,
        0,
        3,
        0,
        b"Hello, all of you".to_vec(),
    )
    .with_tlvs([s::Tlv::from_u16(TlvTag::UserMessageReference, 7)]);
    assert_eq!(conv::submit_multi(&theirs), body);
    assert_eq!(decode_ours(&theirs.clone().encode()), Pdu::new(112, body));

    let resp_body = SubmitMultiResp {
        message_id: cs(MESSAGE_ID),
        unsuccess_smes: vec![UnsuccessSme {
            address: addr(2, 8, "07700900124"),
            error_status_code: CommandStatus::ESME_RINVDSTADR,
        }],
    };
    // (b) resp
    let resp = theirs.clone().accept(
        MESSAGE_ID.into(),
        vec![s::UnsuccessSme {
            dest_addr_ton: 2,
            dest_addr_npi: 8,
            destination_addr: "07700900124".into(),
            error_status_code: s::SmppError::ESME_RINVDSTADR as u32,
        }],
    );
    assert_eq!(conv::submit_multi_resp(&resp), resp_body);
    assert_eq!(decode_ours(&resp.encode()), Pdu::new(112, resp_body.clone()));
    assert_eq!(
        decode_ours(&theirs.clone().accept(MESSAGE_ID.into(), vec![]).encode()),
        Pdu::new(
            112,
            SubmitMultiResp {
                message_id: cs(MESSAGE_ID),
                unsuccess_smes: vec![]
            }
        )
    );
    assert_eq!(
        decode_ours(&theirs.reject(s::SmppError::ESME_RSUBMITFAIL).encode()),
        Pdu::error_response(CommandId::SubmitMultiResp, 112, CommandStatus::ESME_RSUBMITFAIL)
    );
    // (a) resp
    let pdu = Pdu::new(113, resp_body.clone());
    let wire = ours(&pdu);
    let theirs = s::submit_sm_multi_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert_eq!(conv::submit_multi_resp(&theirs), resp_body);
    assert_eq!(theirs.encode(), wire);
    let pdu = Pdu::error_response(CommandId::SubmitMultiResp, 114, CommandStatus::ESME_RSUBMITFAIL);
    let wire = ours(&pdu);
    let theirs = s::submit_sm_multi_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert_eq!(theirs.get_error(), s::SmppError::ESME_RSUBMITFAIL);
    assert_eq!(theirs.encode(), wire);
}

#[test]
fn data_sm_and_resp() {
    let body = data_sm();
    // (a)
    let pdu = Pdu::new(121, body.clone());
    let wire = ours(&pdu);
    let theirs = s::data_sm::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    {
        use smpp34::TlvList;
        assert_eq!(theirs.tlvs.message_payload(), Some(&b"\x01\x06\x04payload"[..]));
    }
    assert_eq!(conv::data_sm(&theirs), body);
    assert_eq!(theirs.clone().encode(), wire);
    // (b)
    let theirs = s::data_sm::new(
        122,
        String::new(),
        1,
        1,
        "447700900123".into(),
        0,
        0x0E,
        "wap.example.org:9200/push/and-some-more-to-exceed-twenty-octets".into(),
        0,
        1,
        4,
    )
    .with_tlvs([
        s::Tlv::from_u16(TlvTag::SourcePort, 9200),
        s::Tlv::from_u16(TlvTag::DestinationPort, 2948),
        s::Tlv::from_u8(TlvTag::PayloadType, 0),
        s::Tlv::from_tag(TlvTag::MessagePayload, b"\x01\x06\x04payload".to_vec()),
    ]);
    assert_eq!(conv::data_sm(&theirs), body);
    assert_eq!(decode_ours(&theirs.clone().encode()), Pdu::new(122, body));

    // (b) resp: message_id, with and without TLVs.
    assert_eq!(
        decode_ours(&theirs.clone().accept(MESSAGE_ID.into()).encode()),
        Pdu::new(
            122,
            DataSmResp {
                message_id: cs(MESSAGE_ID),
                tlvs: vec![]
            }
        )
    );
    let resp = theirs
        .clone()
        .accept(MESSAGE_ID.into())
        .with_tlvs([s::Tlv::from_c_string(TlvTag::AdditionalStatusInfoText, "queued")]);
    assert_eq!(
        decode_ours(&resp.encode()),
        Pdu::new(
            122,
            DataSmResp {
                message_id: cs(MESSAGE_ID),
                tlvs: vec![Tlv::AdditionalStatusInfoText(cs("queued"))]
            }
        )
    );
    // A failed data_sm_resp without TLVs.
    assert_eq!(
        decode_ours(&theirs.reject(s::SmppError::ESME_RDELIVERYFAILURE).encode()),
        Pdu::error_response(CommandId::DataSmResp, 122, CommandStatus::ESME_RDELIVERYFAILURE)
    );

    // (a) resp: message_id is private in smpp34; tlvs are public.
    let resp_body = DataSmResp {
        message_id: cs(MESSAGE_ID),
        tlvs: vec![Tlv::AdditionalStatusInfoText(cs("queued")), Tlv::DpfResult(0)],
    };
    let pdu = Pdu::new(123, resp_body.clone());
    let wire = ours(&pdu);
    let theirs = s::data_sm_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert!(theirs.is_success());
    assert_eq!(conv::tlvs(&theirs.tlvs), resp_body.tlvs);
    assert_eq!(theirs.encode(), wire);
    let pdu = Pdu::error_response(CommandId::DataSmResp, 124, CommandStatus::ESME_RDELIVERYFAILURE);
    let wire = ours(&pdu);
    let theirs = s::data_sm_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert_eq!(theirs.get_error(), s::SmppError::ESME_RDELIVERYFAILURE);
    assert!(theirs.tlvs.is_empty());
    assert_eq!(theirs.encode(), wire);
}

#[test]
fn alert_notification_both_ways() {
    let body = alert_notification();
    // (a)
    let pdu = Pdu::new(131, body.clone());
    let wire = ours(&pdu);
    let theirs = s::alert_notification::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses ours");
    assert_eq!(theirs.ms_availability_status, Some(0));
    assert_eq!(conv::alert_notification(&theirs), body);
    assert_eq!(theirs.clone().encode(), wire);
    // (b) alert_notification::new is crate-private; all fields are public.
    let theirs = s::alert_notification {
        header: s::CommandHeader {
            command_length: wire.len() as u32,
            command_id: 0x0000_0102,
            command_status: 0,
            sequence_number: 132,
        },
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: "447700900123".into(),
        esme_addr_ton: 5,
        esme_addr_npi: 0,
        esme_addr: "SMSMax".into(),
        ms_availability_status: Some(0),
    };
    assert_eq!(conv::alert_notification(&theirs), body);
    assert_eq!(decode_ours(&theirs.clone().encode()), Pdu::new(132, body));
    // Without the TLV, and with a 64-octet address (alert_notification allows 65 with the NUL).
    let long = "a".repeat(64);
    let theirs = s::alert_notification {
        header: s::CommandHeader {
            command_length: 16 + 2 + 13 + 2 + 65,
            ..theirs.header
        },
        esme_addr: long.clone(),
        ms_availability_status: None,
        ..theirs
    };
    assert_eq!(
        decode_ours(&theirs.encode()),
        Pdu::new(
            132,
            AlertNotification {
                source: addr(1, 1, "447700900123"),
                esme: addr(5, 0, &long),
                tlvs: vec![],
            }
        )
    );
}

// ---------------------------------------------------------------- known deviations

/// Where the two crates disagree. In each case the SMPP 3.4 specification
/// (Issue 1.2) sides with us; the cases are pinned here so a change in
/// smpp34 shows up, and are otherwise left out of the cross-check above.
#[test]
fn known_smpp34_deviations() {
    // 1. deliver_sm::reject() writes command_length 16 followed by a
    //    message_id NUL: 17 octets that claim to be 16. Section 3.2 defines
    //    command_length as the length of the whole PDU, so the frame is
    //    malformed; we refuse it (a stream decoder would lose sync by one octet).
    let request = s::deliver_sm::new(
        1,
        String::new(),
        0,
        0,
        String::new(),
        0,
        0,
        String::new(),
        0,
        0,
        0,
        String::new(),
        String::new(),
        0,
        0,
        0,
        0,
        Vec::new(),
    );
    let wire = request.reject(s::SmppError::ESME_RX_T_APPN).encode();
    assert_eq!(wire.len(), 17);
    assert_eq!(u32::from_be_bytes(wire[..4].try_into().unwrap()), 16);
    assert!(matches!(
        decode_frame(&Bytes::from(wire)),
        Err(PduError::InvalidCommandLength {
            command_length: 16,
            frame_len: 17,
            ..
        })
    ));

    // 2. A failed data_sm_resp with optional parameters. SMPP 3.4 section
    //    4.7.2 makes message_id a mandatory field of data_sm_resp, and, unlike
    //    submit_sm_resp (4.4.2) and the bind responses (4.1.2, 4.1.4, 4.1.6), it
    //    does not say the body is left out on error; a response that carries
    //    delivery_failure_reason (5.3.2.33, data_sm_resp only) therefore has a
    //    (NULL) message_id before it. smpp34 follows SMPP 5.0's reading
    //    instead: it writes the TLVs with no message_id, and decodes a failed
    //    data_sm_resp's body as TLVs from its first octet.
    let request = s::data_sm::new(2, String::new(), 0, 0, String::new(), 0, 0, String::new(), 0, 0, 0);
    let theirs = request
        .reject(s::SmppError::ESME_RDELIVERYFAILURE)
        .with_tlvs([s::Tlv::from_u8(TlvTag::DeliveryFailureReason, 1)]);
    let wire = theirs.encode();
    assert_eq!(
        &wire[16..],
        [0x04, 0x25, 0x00, 0x01, 0x01],
        "no message_id before the TLV"
    );
    assert!(decode_frame(&Bytes::from(wire)).is_err());
    let pdu = Pdu::with_status(
        3,
        CommandStatus::ESME_RDELIVERYFAILURE,
        DataSmResp {
            message_id: cs(""),
            tlvs: vec![Tlv::DeliveryFailureReason(1)],
        },
    );
    let wire = ours(&pdu);
    assert_eq!(&wire[16..], [0x00, 0x04, 0x25, 0x00, 0x01, 0x01]);
    let theirs = s::data_sm_resp::decode(their_header(&wire, &pdu), &wire).expect("smpp34 decodes it");
    assert_ne!(
        conv_raw(&theirs.tlvs),
        vec![(0x0425, vec![1])],
        "smpp34 misreads the TLV"
    );

    // 3. cancel_sm::new (crate-private, used by smpp34's client) computes a
    //    command_length without message_id: their own unit test expects 0x2A
    //    for a 52-octet PDU. Not reachable from here; noted for completeness.
    //    cancel_sm::decode also expects the body without the header while the
    //    smpp34 server hands it the whole PDU (see cancel_sm_and_resp).
}

fn conv_raw(tlvs: &[s::Tlv]) -> Vec<(u16, Vec<u8>)> {
    tlvs.iter().map(|t| (t.tag, t.value.clone())).collect()
}

// ---------------------------------------------------------------- properties

fn time_strategy() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[0-9]{12}[0-9][0-4][0-9][+-]", "[0-9]{12}000R",]
}

fn tlv_strategy() -> impl Strategy<Value = Tlv> {
    prop_oneof![
        any::<u16>().prop_map(Tlv::SarMsgRefNum),
        any::<u8>().prop_map(Tlv::SarTotalSegments),
        any::<u8>().prop_map(Tlv::SarSegmentSeqnum),
        any::<u16>().prop_map(Tlv::UserMessageReference),
        any::<u16>().prop_map(Tlv::SourcePort),
        any::<u16>().prop_map(Tlv::DestinationPort),
        any::<u32>().prop_map(Tlv::QosTimeToLive),
        any::<u8>().prop_map(Tlv::MessageState),
        any::<u8>().prop_map(Tlv::MoreMessagesToSend),
        (any::<u8>(), any::<u16>()).prop_map(|(network_type, error_code)| Tlv::NetworkErrorCode(NetworkErrorCode {
            network_type,
            error_code
        })),
        "[ -~]{0,64}".prop_map(|id| Tlv::ReceiptedMessageId(cs(&id))),
        "[ -~]{0,255}".prop_map(|t| Tlv::AdditionalStatusInfoText(cs(&t))),
        (0x1400u16..=0x3FFF, vec(any::<u8>(), 0..32)).prop_map(|(tag, value)| Tlv::Unknown {
            tag,
            value: Bytes::from(value)
        }),
    ]
}

/// Our TLV as smpp34 builds it with its own helpers (for the reverse direction).
fn tlv_to_theirs(t: &Tlv) -> s::Tlv {
    match t {
        Tlv::SarMsgRefNum(v) => s::Tlv::from_u16(TlvTag::SarMsgRefNum, *v),
        Tlv::SarTotalSegments(v) => s::Tlv::from_u8(TlvTag::SarTotalSegments, *v),
        Tlv::SarSegmentSeqnum(v) => s::Tlv::from_u8(TlvTag::SarSegmentSeqnum, *v),
        Tlv::UserMessageReference(v) => s::Tlv::from_u16(TlvTag::UserMessageReference, *v),
        Tlv::SourcePort(v) => s::Tlv::from_u16(TlvTag::SourcePort, *v),
        Tlv::DestinationPort(v) => s::Tlv::from_u16(TlvTag::DestinationPort, *v),
        Tlv::QosTimeToLive(v) => s::Tlv::from_u32(TlvTag::QosTimeToLive, *v),
        Tlv::MessageState(v) => s::Tlv::from_u8(TlvTag::MessageStateTlv, *v),
        Tlv::MoreMessagesToSend(v) => s::Tlv::from_u8(TlvTag::MoreMessagesToSend, *v),
        Tlv::NetworkErrorCode(n) => {
            let [hi, lo] = n.error_code.to_be_bytes();
            s::Tlv::from_tag(TlvTag::NetworkErrorCode, vec![n.network_type, hi, lo])
        }
        Tlv::ReceiptedMessageId(v) => s::Tlv::from_c_string(TlvTag::ReceiptedMessageId, text(v)),
        Tlv::AdditionalStatusInfoText(v) => s::Tlv::from_c_string(TlvTag::AdditionalStatusInfoText, text(v)),
        Tlv::MessagePayload(v) => s::Tlv::from_tag(TlvTag::MessagePayload, v.to_vec()),
        Tlv::Unknown { tag, value } => s::Tlv::new(*tag, value.to_vec()),
        other => panic!("{other:?} not generated"),
    }
}

fn submit_sm_strategy() -> impl Strategy<Value = SubmitSm> {
    let strings = (
        "[0-9A-Za-z]{0,5}",
        (any::<u8>(), any::<u8>(), "[ -~]{0,20}"),
        (any::<u8>(), any::<u8>(), "[ -~]{0,20}"),
        time_strategy(),
        time_strategy(),
    );
    let flags = any::<[u8; 7]>();
    let message = prop_oneof![
        // short_message, and TLVs without message_payload.
        (vec(any::<u8>(), 0..=254), vec(tlv_strategy(), 0..6)),
        // message_payload in place of short_message.
        (vec(any::<u8>(), 0..1200), vec(tlv_strategy(), 0..4)).prop_map(|(payload, mut tlvs)| {
            tlvs.insert(0, Tlv::MessagePayload(Bytes::from(payload)));
            (Vec::new(), tlvs)
        }),
    ];
    (strings, flags, message).prop_map(|((st, src, dst, sched, validity), f, (sm, tlvs))| SubmitSm {
        service_type: cs(&st),
        source: addr(src.0, src.1, &src.2),
        dest: addr(dst.0, dst.1, &dst.2),
        esm_class: f[0],
        protocol_id: f[1],
        priority_flag: f[2],
        schedule_delivery_time: time(&sched),
        validity_period: time(&validity),
        registered_delivery: f[3],
        replace_if_present_flag: f[4],
        data_coding: f[5],
        sm_default_msg_id: f[6],
        short_message: Bytes::from(sm),
        tlvs,
    })
}

macro_rules! their_new {
    ($ty:ident, $seq:expr, $sm:expr) => {{
        let sm = $sm;
        s::$ty::new(
            $seq,
            text(&sm.service_type),
            sm.source.ton,
            sm.source.npi,
            text(&sm.source.addr),
            sm.dest.ton,
            sm.dest.npi,
            text(&sm.dest.addr),
            sm.esm_class,
            sm.protocol_id,
            sm.priority_flag,
            sm.schedule_delivery_time.as_str().unwrap().to_owned(),
            sm.validity_period.as_str().unwrap().to_owned(),
            sm.registered_delivery,
            sm.replace_if_present_flag,
            sm.data_coding,
            sm.sm_default_msg_id,
            sm.short_message.to_vec(),
        )
        .with_tlvs(sm.tlvs.iter().map(tlv_to_theirs))
    }};
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Our submit_sm octets decode in smpp34 to the same fields and smpp34
    /// re-encodes them to the identical octets; smpp34's own encoding of the
    /// same values decodes with us to the same PDU.
    #[test]
    fn random_submit_sm(seq in 1u32..0x7FFF_FFFF, sm in submit_sm_strategy()) {
        let pdu = Pdu::new(seq, Body::SubmitSm(sm.clone()));
        let wire = ours(&pdu);
        let theirs = s::submit_sm::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses our submit_sm");
        prop_assert_eq!(conv::submit_sm(&theirs), sm.clone());
        prop_assert_eq!(theirs.encode(), wire.clone());

        let theirs = their_new!(submit_sm, seq, &sm).encode();
        prop_assert_eq!(&theirs, &wire);
        prop_assert_eq!(decode_ours(&theirs), pdu);
    }

    #[test]
    fn random_deliver_sm(seq in 1u32..0x7FFF_FFFF, sm in submit_sm_strategy()) {
        let pdu = Pdu::new(seq, Body::DeliverSm(sm.clone()));
        let wire = ours(&pdu);
        let theirs = s::deliver_sm::decode(their_header(&wire, &pdu), &wire).expect("smpp34 refuses our deliver_sm");
        prop_assert_eq!(conv::deliver_sm(&theirs), sm.clone());
        prop_assert_eq!(theirs.encode(), wire.clone());

        let theirs = their_new!(deliver_sm, seq, &sm).encode();
        prop_assert_eq!(&theirs, &wire);
        prop_assert_eq!(decode_ours(&theirs), pdu);
    }
}
