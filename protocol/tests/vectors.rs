//! Hex vectors for every SMPP 3.4 PDU, laid out one field per line after the
//! field tables of the SMPP 3.4 specification (sections 4.1 to 4.12 for the
//! bodies, 5.3.2 for the optional parameters). `command_length` of each
//! vector was counted by hand from the lines below it.
//!
//! Each vector must decode to exactly the typed value written next to it, and
//! encoding that value must give back the identical octets.

use std::collections::BTreeSet;

use bytes::Bytes;
use smsmax_protocol::{
    decode_frame,
    pdu::{
        AlertNotification, Bind, BindResp, CancelSm, DataSm, DataSmResp, DestAddress, Outbind, QuerySm, QuerySmResp,
        ReplaceSm, SubmitMulti, SubmitMultiResp, SubmitSm, SubmitSmResp, UnsuccessSme,
    },
    tlv::{self, NetworkErrorCode},
    types::{Address, COctetString, MessageState, SmppTime},
    Body, CommandId, CommandStatus, Pdu, Tlv,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Octets of a vector: everything after `#` on a line is a comment, white
/// space is ignored.
fn wire(vector: &str) -> Bytes {
    let hex: String = vector
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|part| part.chars().filter(|c| !c.is_whitespace()))
        .collect();
    Bytes::from(hex::decode(&hex).unwrap_or_else(|e| panic!("bad hex in vector: {e}: {hex}")))
}

/// Decodes the vector, checks it equals `expected` and that both `expected`
/// and the decoded value encode to the vector's octets.
fn check(vector: &str, expected: Pdu) -> Pdu {
    let octets = wire(vector);
    let declared = u32::from_be_bytes(octets[..4].try_into().unwrap()) as usize;
    assert_eq!(declared, octets.len(), "command_length of the vector itself");
    let decoded = decode_frame(&octets).unwrap_or_else(|e| panic!("vector does not decode: {e:?}"));
    assert_eq!(decoded, expected, "decoded value");
    assert_eq!(decoded.to_bytes().unwrap(), octets, "re-encoding the decoded value");
    assert_eq!(expected.to_bytes().unwrap(), octets, "encoding the expected value");
    decoded
}

fn cs<const MAX: usize>(s: &str) -> COctetString<MAX> {
    COctetString::try_from(s).unwrap()
}

fn addr<const MAX: usize>(ton: u8, npi: u8, s: &str) -> Address<MAX> {
    Address::new(ton, npi, s).unwrap()
}

fn time(s: &str) -> SmppTime {
    SmppTime::try_from(s).unwrap()
}

fn b(octets: &'static [u8]) -> Bytes {
    Bytes::from_static(octets)
}

// ---------------------------------------------------------------------------
// generic_nack (4.3.1)
// ---------------------------------------------------------------------------

const GENERIC_NACK: &str = "
    00000010  # command_length 16
    80000000  # command_id generic_nack
    00000003  # command_status ESME_RINVCMDID
    00000007  # sequence_number 7
";

#[test]
fn generic_nack() {
    let pdu = check(GENERIC_NACK, Pdu::generic_nack(7, CommandStatus::ESME_RINVCMDID));
    assert_eq!(pdu.command_id(), CommandId::GenericNack);
    assert_eq!(pdu.command_status, CommandStatus(3));
}

// ---------------------------------------------------------------------------
// bind_transmitter / bind_receiver / bind_transceiver (4.1.1, 4.1.3, 4.1.5)
// ---------------------------------------------------------------------------

const BIND_TRANSMITTER: &str = "
    0000001F          # command_length 31
    00000002          # command_id bind_transmitter
    00000000          # command_status (NULL in requests)
    00000001          # sequence_number 1
    736D736D617800    # system_id 'smsmax'
    707700            # password 'pw'
    00                # system_type NULL
    34                # interface_version 0x34
    00                # addr_ton
    00                # addr_npi
    00                # address_range NULL
";

#[test]
fn bind_transmitter() {
    let pdu = check(
        BIND_TRANSMITTER,
        Pdu::new(
            1,
            Body::BindTransmitter(Bind {
                system_id: cs("smsmax"),
                password: cs("pw"),
                system_type: cs(""),
                interface_version: 0x34,
                addr_ton: 0,
                addr_npi: 0,
                address_range: cs(""),
            }),
        ),
    );
    let Body::BindTransmitter(bind) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(bind.system_id.as_str(), Some("smsmax"));
    assert_eq!(bind.password.as_str(), Some("pw"));
    assert!(bind.system_type.is_empty());
    assert_eq!(bind.interface_version, smsmax_protocol::pdu::INTERFACE_VERSION_34);
}

const BIND_RECEIVER: &str = "
    0000002F              # command_length 47
    00000001              # command_id bind_receiver
    00000000              # command_status
    00000002              # sequence_number 2
    534D50503354455354 00 # system_id 'SMPP3TEST'
    7365637265743038 00   # password 'secret08' (8 octets, the maximum)
    5355424D495431 00     # system_type 'SUBMIT1'
    34                    # interface_version 0x34
    01                    # addr_ton international
    01                    # addr_npi ISDN
    00                    # address_range NULL
";

#[test]
fn bind_receiver() {
    let pdu = check(
        BIND_RECEIVER,
        Pdu::new(
            2,
            Body::BindReceiver(Bind {
                system_id: cs("SMPP3TEST"),
                password: cs("secret08"),
                system_type: cs("SUBMIT1"),
                interface_version: 0x34,
                addr_ton: 1,
                addr_npi: 1,
                address_range: cs(""),
            }),
        ),
    );
    let Body::BindReceiver(bind) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(bind.password.len(), 8);
    assert_eq!(bind.system_type.as_str(), Some("SUBMIT1"));
    assert_eq!((bind.addr_ton, bind.addr_npi), (1, 1));
}

const BIND_TRANSCEIVER: &str = "
    0000002A              # command_length 42
    00000009              # command_id bind_transceiver
    00000000              # command_status
    00000003              # sequence_number 3
    65736D6531 00         # system_id 'esme1'
    3132333435363738 00   # password '12345678'
    564D41 00             # system_type 'VMA'
    34                    # interface_version 0x34
    01                    # addr_ton international
    01                    # addr_npi ISDN
    343437 00             # address_range '447'
";

#[test]
fn bind_transceiver() {
    let pdu = check(
        BIND_TRANSCEIVER,
        Pdu::new(
            3,
            Body::BindTransceiver(Bind {
                system_id: cs("esme1"),
                password: cs("12345678"),
                system_type: cs("VMA"),
                interface_version: 0x34,
                addr_ton: 1,
                addr_npi: 1,
                address_range: cs("447"),
            }),
        ),
    );
    let Body::BindTransceiver(bind) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(bind.address_range.as_str(), Some("447"));
}

// ---------------------------------------------------------------------------
// bind_*_resp (4.1.2, 4.1.4, 4.1.6) with sc_interface_version (5.3.2.25)
// ---------------------------------------------------------------------------

const BIND_TRANSMITTER_RESP: &str = "
    0000001A      # command_length 26
    80000002      # command_id bind_transmitter_resp
    00000000      # command_status ESME_ROK
    00000001      # sequence_number 1
    534D5343 00   # system_id 'SMSC'
    0210          # TLV tag sc_interface_version
    0001          # TLV length 1
    34            # TLV value 0x34
";

const BIND_RECEIVER_RESP: &str = "
    0000001A      # command_length 26
    80000001      # command_id bind_receiver_resp
    00000000      # command_status ESME_ROK
    00000002      # sequence_number 2
    534D5343 00   # system_id 'SMSC'
    0210          # TLV tag sc_interface_version
    0001          # TLV length 1
    33            # TLV value 0x33 (the SMSC speaks 3.3)
";

const BIND_TRANSCEIVER_RESP: &str = "
    0000001D          # command_length 29
    80000009          # command_id bind_transceiver_resp
    00000000          # command_status ESME_ROK
    00000003          # sequence_number 3
    736D73632D3031 00 # system_id 'smsc-01'
    0210              # TLV tag sc_interface_version
    0001              # TLV length 1
    34                # TLV value 0x34
";

fn bind_resp(system_id: &str, version: u8) -> BindResp {
    BindResp {
        system_id: cs(system_id),
        tlvs: vec![Tlv::ScInterfaceVersion(version)],
    }
}

#[test]
fn bind_transmitter_resp() {
    let pdu = check(
        BIND_TRANSMITTER_RESP,
        Pdu::new(1, Body::BindTransmitterResp(bind_resp("SMSC", 0x34))),
    );
    let Body::BindTransmitterResp(resp) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(resp.tlvs[0].tag(), tlv::tag::ScInterfaceVersion);
    assert_eq!(resp.tlvs[0].name(), Some("sc_interface_version"));
    assert_eq!(resp.tlvs[0].value_len(), 1);
}

#[test]
fn bind_receiver_resp() {
    let pdu = check(
        BIND_RECEIVER_RESP,
        Pdu::new(2, Body::BindReceiverResp(bind_resp("SMSC", 0x33))),
    );
    let Body::BindReceiverResp(resp) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(resp.tlvs, vec![Tlv::ScInterfaceVersion(0x33)]);
}

#[test]
fn bind_transceiver_resp() {
    let pdu = check(
        BIND_TRANSCEIVER_RESP,
        Pdu::new(3, Body::BindTransceiverResp(bind_resp("smsc-01", 0x34))),
    );
    let Body::BindTransceiverResp(resp) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(resp.system_id.as_str(), Some("smsc-01"));
}

/// A refused bind: the specification says the body is not returned.
const BIND_TRANSMITTER_RESP_FAILED: &str = "
    00000010  # command_length 16 (header only)
    80000002  # command_id bind_transmitter_resp
    0000000E  # command_status ESME_RINVPASWD
    00000004  # sequence_number 4
";

#[test]
fn bind_transmitter_resp_failed_has_no_body() {
    let pdu = check(
        BIND_TRANSMITTER_RESP_FAILED,
        Pdu::error_response(CommandId::BindTransmitterResp, 4, CommandStatus::ESME_RINVPASWD),
    );
    assert_eq!(pdu.body, Body::BindTransmitterResp(BindResp::default()));
}

// ---------------------------------------------------------------------------
// outbind (4.1.7)
// ---------------------------------------------------------------------------

const OUTBIND: &str = "
    0000001A      # command_length 26
    0000000B      # command_id outbind
    00000000      # command_status
    00000001      # sequence_number 1
    534D5343 00   # system_id 'SMSC'
    70617373 00   # password 'pass'
";

#[test]
fn outbind() {
    let pdu = check(
        OUTBIND,
        Pdu::new(
            1,
            Outbind {
                system_id: cs("SMSC"),
                password: cs("pass"),
            },
        ),
    );
    assert_eq!(pdu.command_id(), CommandId::Outbind);
}

// ---------------------------------------------------------------------------
// unbind, unbind_resp, enquire_link, enquire_link_resp (4.2, 4.11): header only
// ---------------------------------------------------------------------------

const UNBIND: &str = "
    00000010  # command_length 16
    00000006  # command_id unbind
    00000000  # command_status
    0000000A  # sequence_number 10
";

const UNBIND_RESP: &str = "
    00000010  # command_length 16
    80000006  # command_id unbind_resp
    00000000  # command_status ESME_ROK
    0000000A  # sequence_number 10
";

const ENQUIRE_LINK: &str = "
    00000010  # command_length 16
    00000015  # command_id enquire_link
    00000000  # command_status
    7FFFFFFF  # sequence_number 0x7FFFFFFF (the largest the specification allows)
";

const ENQUIRE_LINK_RESP: &str = "
    00000010  # command_length 16
    80000015  # command_id enquire_link_resp
    00000000  # command_status ESME_ROK
    7FFFFFFF  # sequence_number 0x7FFFFFFF
";

#[test]
fn unbind_and_unbind_resp() {
    check(UNBIND, Pdu::new(10, Body::Unbind));
    check(UNBIND_RESP, Pdu::new(10, Body::UnbindResp));
}

#[test]
fn enquire_link_and_enquire_link_resp() {
    check(ENQUIRE_LINK, Pdu::new(0x7FFF_FFFF, Body::EnquireLink));
    check(ENQUIRE_LINK_RESP, Pdu::new(0x7FFF_FFFF, Body::EnquireLinkResp));
}

// ---------------------------------------------------------------------------
// submit_sm (4.4.1)
// ---------------------------------------------------------------------------

/// SAR segmentation TLVs, the message in message_payload (sm_length 0) and a
/// vendor TLV this crate does not know.
const SUBMIT_SM_TLVS: &str = "
    00000069                            # command_length 105
    00000004                            # command_id submit_sm
    00000000                            # command_status
    00000002                            # sequence_number 2
    00                                  # service_type NULL
    05                                  # source_addr_ton alphanumeric
    00                                  # source_addr_npi unknown
    534D534D6178 00                     # source_addr 'SMSMax'
    01                                  # dest_addr_ton international
    01                                  # dest_addr_npi ISDN
    343437373030393030313233 00         # destination_addr '447700900123'
    00                                  # esm_class default
    00                                  # protocol_id
    01                                  # priority_flag 1
    00                                  # schedule_delivery_time NULL
    30303030303130303030303030303052 00 # validity_period '000001000000000R' (relative, 1 day)
    01                                  # registered_delivery receipt always
    00                                  # replace_if_present_flag
    00                                  # data_coding SMSC default
    00                                  # sm_default_msg_id
    00                                  # sm_length 0 (message in message_payload)
                                        # short_message: none
    020C 0002 1234                      # sar_msg_ref_num 0x1234
    020E 0001 02                        # sar_total_segments 2
    020F 0001 01                        # sar_segment_seqnum 1
    0424 000B 48656C6C6F20776F726C64    # message_payload 'Hello world'
    1401 0003 ABCDEF                    # unknown vendor TLV 0x1401, 3 octets
";

#[test]
fn submit_sm_with_sar_message_payload_and_unknown_tlv() {
    let expected = Pdu::new(
        2,
        SubmitSm {
            service_type: cs(""),
            source: addr(5, 0, "SMSMax"),
            dest: addr(1, 1, "447700900123"),
            esm_class: 0,
            protocol_id: 0,
            priority_flag: 1,
            schedule_delivery_time: SmppTime::empty(),
            validity_period: time("000001000000000R"),
            registered_delivery: 1,
            replace_if_present_flag: 0,
            data_coding: 0,
            sm_default_msg_id: 0,
            short_message: Bytes::new(),
            tlvs: vec![
                Tlv::SarMsgRefNum(0x1234),
                Tlv::SarTotalSegments(2),
                Tlv::SarSegmentSeqnum(1),
                Tlv::MessagePayload(b(b"Hello world")),
                Tlv::Unknown {
                    tag: 0x1401,
                    value: b(&[0xAB, 0xCD, 0xEF]),
                },
            ],
        },
    );
    let pdu = check(SUBMIT_SM_TLVS, expected);
    let Body::SubmitSm(sm) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert!(sm.short_message.is_empty());
    assert_eq!(&sm.message()[..], b"Hello world");
    assert!(sm.validity_period.is_relative());
    assert_eq!(sm.source.addr.as_str(), Some("SMSMax"));
    let unknown = &sm.tlvs[4];
    assert_eq!(unknown.tag(), 0x1401);
    assert_eq!(unknown.name(), None);
    assert_eq!(unknown.value_len(), 3);
    // The unknown TLV is the last 7 octets of the frame, untouched.
    let octets = wire(SUBMIT_SM_TLVS);
    assert_eq!(&octets[octets.len() - 7..], &[0x14, 0x01, 0x00, 0x03, 0xAB, 0xCD, 0xEF]);
}

/// A short_message together with the TLVs section 4.4.1 lists for submit_sm.
const SUBMIT_SM_SHORT_MESSAGE_TLVS: &str = "
    00000087                            # command_length 135
    00000004                            # command_id submit_sm
    00000000                            # command_status
    00000003                            # sequence_number 3
    434D54 00                           # service_type 'CMT'
    01                                  # source_addr_ton international
    01                                  # source_addr_npi ISDN
    343437373030393030303031 00         # source_addr '447700900001'
    01                                  # dest_addr_ton international
    01                                  # dest_addr_npi ISDN
    343437373030393030303032 00         # destination_addr '447700900002'
    00                                  # esm_class
    00                                  # protocol_id
    00                                  # priority_flag
    3234303430313132303030303030342B 00 # schedule_delivery_time '240401120000004+'
    00                                  # validity_period NULL
    00                                  # registered_delivery
    00                                  # replace_if_present_flag
    00                                  # data_coding
    00                                  # sm_default_msg_id
    02                                  # sm_length 2
    4869                                # short_message 'Hi'
    0204 0002 0007                      # user_message_reference 7
    020A 0002 0B84                      # source_port 2948
    020B 0002 23F0                      # destination_port 9200
    0019 0001 00                        # payload_type 0 (WDP)
    0201 0001 01                        # privacy_indicator 1 (restricted)
    020D 0001 01                        # language_indicator 1 (English)
    1201 0001 01                        # display_time 1 (default)
    1204 0001 03                        # ms_validity 3 (display only)
    130C 0000                           # alert_on_message_delivery (no value)
    0501 0001 02                        # ussd_service_op 2 (USSR request)
    0426 0001 01                        # more_messages_to_send 1
";

#[test]
fn submit_sm_with_short_message_and_tlvs() {
    let expected = Pdu::new(
        3,
        SubmitSm {
            service_type: cs("CMT"),
            source: addr(1, 1, "447700900001"),
            dest: addr(1, 1, "447700900002"),
            esm_class: 0,
            protocol_id: 0,
            priority_flag: 0,
            schedule_delivery_time: time("240401120000004+"),
            validity_period: SmppTime::empty(),
            registered_delivery: 0,
            replace_if_present_flag: 0,
            data_coding: 0,
            sm_default_msg_id: 0,
            short_message: b(b"Hi"),
            tlvs: vec![
                Tlv::UserMessageReference(7),
                Tlv::SourcePort(2948),
                Tlv::DestinationPort(9200),
                Tlv::PayloadType(0),
                Tlv::PrivacyIndicator(1),
                Tlv::LanguageIndicator(1),
                Tlv::DisplayTime(1),
                Tlv::MsValidity(3),
                Tlv::AlertOnMessageDelivery,
                Tlv::UssdServiceOp(2),
                Tlv::MoreMessagesToSend(1),
            ],
        },
    );
    let pdu = check(SUBMIT_SM_SHORT_MESSAGE_TLVS, expected);
    let Body::SubmitSm(sm) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(sm.service_type.as_str(), Some("CMT"));
    assert_eq!(sm.schedule_delivery_time.as_str(), Some("240401120000004+"));
    assert!(!sm.schedule_delivery_time.is_relative());
    assert_eq!(&sm.message()[..], b"Hi");
    assert_eq!(sm.tlvs[8].value_len(), 0);
}

// ---------------------------------------------------------------------------
// submit_sm_resp (4.4.2)
// ---------------------------------------------------------------------------

const SUBMIT_SM_RESP: &str = "
    00000017          # command_length 23
    80000004          # command_id submit_sm_resp
    00000000          # command_status ESME_ROK
    00000002          # sequence_number 2
    314132423343 00   # message_id '1A2B3C'
";

#[test]
fn submit_sm_resp() {
    let pdu = check(
        SUBMIT_SM_RESP,
        Pdu::new(
            2,
            SubmitSmResp {
                message_id: cs("1A2B3C"),
            },
        ),
    );
    let Body::SubmitSmResp(resp) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(resp.message_id.as_str(), Some("1A2B3C"));
}

/// A failed submit_sm_resp: "the body is not returned" (4.4.2).
const SUBMIT_SM_RESP_FAILED: &str = "
    00000010  # command_length 16 (header only)
    80000004  # command_id submit_sm_resp
    0000000B  # command_status ESME_RINVDSTADR
    00000003  # sequence_number 3
";

#[test]
fn submit_sm_resp_failed_without_body() {
    let pdu = check(
        SUBMIT_SM_RESP_FAILED,
        Pdu::with_status(3, CommandStatus::ESME_RINVDSTADR, SubmitSmResp::default()),
    );
    let Body::SubmitSmResp(resp) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert!(resp.message_id.is_empty());
    assert_eq!(pdu.command_status, CommandStatus(0x0000_000B));
    assert_eq!(pdu.to_bytes().unwrap().len(), 16);
    assert_eq!(
        Pdu::error_response(CommandId::SubmitSmResp, 3, CommandStatus::ESME_RINVDSTADR),
        pdu
    );
}

// ---------------------------------------------------------------------------
// deliver_sm (4.6.1) carrying an SMSC delivery receipt (appendix B)
// ---------------------------------------------------------------------------

const DELIVER_SM_RECEIPT: &str = "
    000000B7                            # command_length 183
    00000005                            # command_id deliver_sm
    00000000                            # command_status
    00000004                            # sequence_number 4
    00                                  # service_type NULL
    01                                  # source_addr_ton international
    01                                  # source_addr_npi ISDN
    343437373030393030313233 00         # source_addr '447700900123' (the original destination)
    05                                  # dest_addr_ton alphanumeric
    00                                  # dest_addr_npi unknown
    534D534D6178 00                     # destination_addr 'SMSMax' (the original source)
    04                                  # esm_class 0x04: SMSC delivery receipt
    00                                  # protocol_id
    00                                  # priority_flag
    00                                  # schedule_delivery_time NULL (unused)
    00                                  # validity_period NULL (unused)
    00                                  # registered_delivery
    00                                  # replace_if_present_flag (unused)
    00                                  # data_coding
    00                                  # sm_default_msg_id (unused)
    6D                                  # sm_length 109
    69643A314132423343                  # short_message 'id:1A2B3C'
    207375623A303031                    #   ' sub:001'
    20646C7672643A303031                #   ' dlvrd:001'
    207375626D697420646174653A          #   ' submit date:'
    32343033313531343330                #   '2403151430'
    20646F6E6520646174653A              #   ' done date:'
    32343033313531343331                #   '2403151431'
    20737461743A44454C49565244          #   ' stat:DELIVRD'
    206572723A303030                    #   ' err:000'
    20746578743A48656C6C6F20776F726C64  #   ' text:Hello world'
    001E 0007 314132423343 00           # receipted_message_id '1A2B3C'
    0427 0001 02                        # message_state 2 (DELIVERED)
    0423 0003 03 0000                   # network_error_code GSM (3), error 0
";

const RECEIPT_TEXT: &str = "id:1A2B3C sub:001 dlvrd:001 submit date:2403151430 done date:2403151431 \
                            stat:DELIVRD err:000 text:Hello world";

#[test]
fn deliver_sm_delivery_receipt() {
    let expected = Pdu::new(
        4,
        Body::DeliverSm(SubmitSm {
            service_type: cs(""),
            source: addr(1, 1, "447700900123"),
            dest: addr(5, 0, "SMSMax"),
            esm_class: 0x04,
            protocol_id: 0,
            priority_flag: 0,
            schedule_delivery_time: SmppTime::empty(),
            validity_period: SmppTime::empty(),
            registered_delivery: 0,
            replace_if_present_flag: 0,
            data_coding: 0,
            sm_default_msg_id: 0,
            short_message: Bytes::from_static(RECEIPT_TEXT.as_bytes()),
            tlvs: vec![
                Tlv::ReceiptedMessageId(cs("1A2B3C")),
                Tlv::MessageState(MessageState::Delivered as u8),
                Tlv::NetworkErrorCode(NetworkErrorCode {
                    network_type: 3,
                    error_code: 0,
                }),
            ],
        }),
    );
    let pdu = check(DELIVER_SM_RECEIPT, expected);
    let Body::DeliverSm(dlr) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert!(dlr.is_delivery_receipt());
    assert_eq!(dlr.short_message.len(), 109);
    assert_eq!(&dlr.short_message[..], RECEIPT_TEXT.as_bytes());
    let receipted = tlv::find_tlv(&dlr.tlvs, |t| match t {
        Tlv::ReceiptedMessageId(id) => Some(id),
        _ => None,
    });
    assert_eq!(receipted.and_then(|id| id.as_str()), Some("1A2B3C"));
    // The C-Octet String TLV counts its NUL in the length.
    assert_eq!(dlr.tlvs[0].value_len(), 7);
    let state = tlv::find_tlv(&dlr.tlvs, |t| match t {
        Tlv::MessageState(s) => MessageState::from_u8(*s),
        _ => None,
    });
    assert_eq!(state, Some(MessageState::Delivered));
}

// ---------------------------------------------------------------------------
// deliver_sm_resp (4.6.2)
// ---------------------------------------------------------------------------

const DELIVER_SM_RESP: &str = "
    00000011  # command_length 17
    80000005  # command_id deliver_sm_resp
    00000000  # command_status ESME_ROK
    00000004  # sequence_number 4
    00        # message_id NULL (unused)
";

#[test]
fn deliver_sm_resp() {
    let pdu = check(
        DELIVER_SM_RESP,
        Pdu::new(4, Body::DeliverSmResp(SubmitSmResp::default())),
    );
    assert_eq!(pdu.command_id(), CommandId::DeliverSmResp);
}

// ---------------------------------------------------------------------------
// submit_multi (4.5.1): an SME address and a distribution list
// ---------------------------------------------------------------------------

const SUBMIT_MULTI: &str = "
    0000006B                        # command_length 107
    00000021                        # command_id submit_multi
    00000000                        # command_status
    00000005                        # sequence_number 5
    00                              # service_type NULL
    05                              # source_addr_ton alphanumeric
    00                              # source_addr_npi unknown
    534D534D6178 00                 # source_addr 'SMSMax'
    02                              # number_of_dests 2
    01                              # dest_address[0].dest_flag 1 (SME address)
    01                              # dest_address[0].dest_addr_ton international
    01                              # dest_address[0].dest_addr_npi ISDN
    343437373030393030313233 00     # dest_address[0].destination_addr '447700900123'
    02                              # dest_address[1].dest_flag 2 (distribution list)
    667269656E6473 00               # dest_address[1].dl_name 'friends'
    00                              # esm_class
    00                              # protocol_id
    00                              # priority_flag
    00                              # schedule_delivery_time NULL
    00                              # validity_period NULL
    00                              # registered_delivery
    00                              # replace_if_present_flag
    00                              # data_coding
    00                              # sm_default_msg_id
    05                              # sm_length 5
    48656C6C6F                      # short_message 'Hello'
    0381 0007 01 01 01 34343737     # callback_num: ASCII digits, TON 1, NPI 1, '4477'
    0302 0001 01                    # callback_num_pres_ind 1
    0303 0004 00 426F62             # callback_num_atag: data coding 0, 'Bob'
    1203 0002 0001                  # sms_signal 1
    0030 0001 80                    # ms_msg_wait_facilities: indication active, voicemail
    0304 0001 03                    # number_of_messages 3
";

#[test]
fn submit_multi_with_sme_and_distribution_list() {
    let expected = Pdu::new(
        5,
        SubmitMulti {
            service_type: cs(""),
            source: addr(5, 0, "SMSMax"),
            dest_addresses: vec![
                DestAddress::SmeAddress(addr(1, 1, "447700900123")),
                DestAddress::DistributionList(cs("friends")),
            ],
            esm_class: 0,
            protocol_id: 0,
            priority_flag: 0,
            schedule_delivery_time: SmppTime::empty(),
            validity_period: SmppTime::empty(),
            registered_delivery: 0,
            replace_if_present_flag: 0,
            data_coding: 0,
            sm_default_msg_id: 0,
            short_message: b(b"Hello"),
            tlvs: vec![
                Tlv::CallbackNum(b(&[0x01, 0x01, 0x01, b'4', b'4', b'7', b'7'])),
                Tlv::CallbackNumPresInd(1),
                Tlv::CallbackNumAtag(b(&[0x00, b'B', b'o', b'b'])),
                Tlv::SmsSignal(1),
                Tlv::MsMsgWaitFacilities(0x80),
                Tlv::NumberOfMessages(3),
            ],
        },
    );
    let pdu = check(SUBMIT_MULTI, expected);
    let Body::SubmitMulti(sm) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(sm.dest_addresses.len(), 2);
    assert!(matches!(&sm.dest_addresses[1], DestAddress::DistributionList(dl) if dl.as_str() == Some("friends")));
}

// ---------------------------------------------------------------------------
// submit_multi_resp (4.5.2) with two unsuccess_sme entries
// ---------------------------------------------------------------------------

const SUBMIT_MULTI_RESP: &str = "
    0000003E                        # command_length 62
    80000021                        # command_id submit_multi_resp
    00000000                        # command_status ESME_ROK
    00000005                        # sequence_number 5
    4D53472D30303031 00             # message_id 'MSG-0001'
    02                              # no_unsuccess 2
    01                              # unsuccess_sme[0].dest_addr_ton international
    01                              # unsuccess_sme[0].dest_addr_npi ISDN
    343437373030393030313234 00     # unsuccess_sme[0].destination_addr '447700900124'
    0000000B                        # unsuccess_sme[0].error_status_code ESME_RINVDSTADR
    02                              # unsuccess_sme[1].dest_addr_ton national
    08                              # unsuccess_sme[1].dest_addr_npi national
    30363132333435363738 00         # unsuccess_sme[1].destination_addr '0612345678'
    00000045                        # unsuccess_sme[1].error_status_code ESME_RSUBMITFAIL
";

#[test]
fn submit_multi_resp_with_two_unsuccessful_smes() {
    let expected = Pdu::new(
        5,
        SubmitMultiResp {
            message_id: cs("MSG-0001"),
            unsuccess_smes: vec![
                UnsuccessSme {
                    address: addr(1, 1, "447700900124"),
                    error_status_code: CommandStatus::ESME_RINVDSTADR,
                },
                UnsuccessSme {
                    address: addr(2, 8, "0612345678"),
                    error_status_code: CommandStatus::ESME_RSUBMITFAIL,
                },
            ],
        },
    );
    let pdu = check(SUBMIT_MULTI_RESP, expected);
    let Body::SubmitMultiResp(resp) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(resp.unsuccess_smes[1].error_status_code, CommandStatus(0x45));
}

// ---------------------------------------------------------------------------
// data_sm (4.7.1) with TLVs
// ---------------------------------------------------------------------------

const DATA_SM: &str = "
    000000A0                                              # command_length 160
    00000103                                              # command_id data_sm
    00000000                                              # command_status
    00000006                                              # sequence_number 6
    574150 00                                             # service_type 'WAP'
    01                                                    # source_addr_ton international
    01                                                    # source_addr_npi ISDN
    343437373030393030303031 00                           # source_addr '447700900001'
    00                                                    # dest_addr_ton unknown
    0E                                                    # dest_addr_npi Internet
    737562736372696265722E6E616D65406578616D706C652E6F7267 00 # destination_addr 'subscriber.name@example.org' (27 > 20: data_sm allows 64)
    00                                                    # esm_class
    01                                                    # registered_delivery receipt always
    04                                                    # data_coding 8-bit binary
    000D 0001 01                                          # source_addr_subunit 1 (MS display)
    000E 0001 01                                          # source_network_type 1 (GSM)
    000F 0001 01                                          # source_bearer_type 1 (SMS)
    0010 0001 00                                          # source_telematics_id 0 (Integer 1)
    0005 0001 02                                          # dest_addr_subunit 2 (mobile equipment)
    0006 0001 01                                          # dest_network_type 1 (GSM)
    0007 0001 01                                          # dest_bearer_type 1 (SMS)
    0008 0002 0000                                        # dest_telematics_id 0 (Integer 2)
    0017 0004 00000E10                                    # qos_time_to_live 3600 s
    0421 0001 01                                          # set_dpf 1
    0202 0003 A0 1234                                     # source_subaddress: user specified, 0x1234
    0203 0003 A0 5678                                     # dest_subaddress: user specified, 0x5678
    0205 0001 07                                          # user_response_code 7
    1380 0001 00                                          # its_reply_type 0 (digit)
    1383 0002 0100                                        # its_session_info session 1, sequence 0
    0424 0004 DEADBEEF                                    # message_payload 4 octets
";

#[test]
fn data_sm_with_tlvs() {
    let expected = Pdu::new(
        6,
        DataSm {
            service_type: cs("WAP"),
            source: addr(1, 1, "447700900001"),
            dest: addr(0, 0x0E, "subscriber.name@example.org"),
            esm_class: 0,
            registered_delivery: 1,
            data_coding: 4,
            tlvs: vec![
                Tlv::SourceAddrSubunit(1),
                Tlv::SourceNetworkType(1),
                Tlv::SourceBearerType(1),
                Tlv::SourceTelematicsId(0),
                Tlv::DestAddrSubunit(2),
                Tlv::DestNetworkType(1),
                Tlv::DestBearerType(1),
                Tlv::DestTelematicsId(0),
                Tlv::QosTimeToLive(3600),
                Tlv::SetDpf(1),
                Tlv::SourceSubaddress(b(&[0xA0, 0x12, 0x34])),
                Tlv::DestSubaddress(b(&[0xA0, 0x56, 0x78])),
                Tlv::UserResponseCode(7),
                Tlv::ItsReplyType(0),
                Tlv::ItsSessionInfo(b(&[0x01, 0x00])),
                Tlv::MessagePayload(b(&[0xDE, 0xAD, 0xBE, 0xEF])),
            ],
        },
    );
    let pdu = check(DATA_SM, expected);
    let Body::DataSm(d) = &pdu.body else { panic!("{pdu:?}") };
    assert_eq!(d.dest.addr.len(), 27);
    assert_eq!(d.tlvs[8].value_len(), 4);
}

// ---------------------------------------------------------------------------
// data_sm_resp (4.7.2) with TLVs
// ---------------------------------------------------------------------------

const DATA_SM_RESP: &str = "
    00000040                                     # command_length 64
    80000103                                     # command_id data_sm_resp
    000000FE                                     # command_status ESME_RDELIVERYFAILURE
    00000006                                     # sequence_number 6
    4D53472D30303032 00                          # message_id 'MSG-0002'
    0425 0001 01                                 # delivery_failure_reason 1 (destination unavailable)
    0423 0003 03 0022                            # network_error_code GSM (3), error 34
    001D 0012 7375627363726962657220616273656E74 00 # additional_status_info_text 'subscriber absent'
    0420 0001 00                                 # dpf_result 0 (DPF not set)
";

#[test]
fn data_sm_resp_with_tlvs() {
    let expected = Pdu::with_status(
        6,
        CommandStatus::ESME_RDELIVERYFAILURE,
        DataSmResp {
            message_id: cs("MSG-0002"),
            tlvs: vec![
                Tlv::DeliveryFailureReason(1),
                Tlv::NetworkErrorCode(NetworkErrorCode {
                    network_type: 3,
                    error_code: 34,
                }),
                Tlv::AdditionalStatusInfoText(cs("subscriber absent")),
                Tlv::DpfResult(0),
            ],
        },
    );
    let pdu = check(DATA_SM_RESP, expected);
    let Body::DataSmResp(resp) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(resp.tlvs[2].value_len(), 18);
    assert_eq!(resp.tlvs[2].name(), Some("additional_status_info_text"));
}

// ---------------------------------------------------------------------------
// query_sm / query_sm_resp (4.8)
// ---------------------------------------------------------------------------

const QUERY_SM: &str = "
    00000026                        # command_length 38
    00000003                        # command_id query_sm
    00000000                        # command_status
    00000008                        # sequence_number 8
    314132423343 00                 # message_id '1A2B3C'
    01                              # source_addr_ton international
    01                              # source_addr_npi ISDN
    343437373030393030313233 00     # source_addr '447700900123'
";

#[test]
fn query_sm() {
    check(
        QUERY_SM,
        Pdu::new(
            8,
            QuerySm {
                message_id: cs("1A2B3C"),
                source: addr(1, 1, "447700900123"),
            },
        ),
    );
}

const QUERY_SM_RESP: &str = "
    0000002A                            # command_length 42
    80000003                            # command_id query_sm_resp
    00000000                            # command_status ESME_ROK
    00000008                            # sequence_number 8
    314132423343 00                     # message_id '1A2B3C'
    3234303331353134333032323030342B 00 # final_date '240315143022004+'
    02                                  # message_state 2 (DELIVERED)
    00                                  # error_code 0
";

#[test]
fn query_sm_resp_with_final_date() {
    let pdu = check(
        QUERY_SM_RESP,
        Pdu::new(
            8,
            QuerySmResp {
                message_id: cs("1A2B3C"),
                final_date: time("240315143022004+"),
                message_state: 2,
                error_code: 0,
            },
        ),
    );
    let Body::QuerySmResp(resp) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(resp.final_date.as_bytes(), b"240315143022004+");
    assert_eq!(MessageState::from_u8(resp.message_state), Some(MessageState::Delivered));
}

// ---------------------------------------------------------------------------
// cancel_sm / cancel_sm_resp (4.9)
// ---------------------------------------------------------------------------

const CANCEL_SM: &str = "
    00000036                        # command_length 54
    00000008                        # command_id cancel_sm
    00000000                        # command_status
    00000009                        # sequence_number 9
    00                              # service_type NULL
    314132423343 00                 # message_id '1A2B3C'
    01                              # source_addr_ton international
    01                              # source_addr_npi ISDN
    343437373030393030303031 00     # source_addr '447700900001'
    01                              # dest_addr_ton international
    01                              # dest_addr_npi ISDN
    343437373030393030313233 00     # destination_addr '447700900123'
";

const CANCEL_SM_RESP: &str = "
    00000010  # command_length 16
    80000008  # command_id cancel_sm_resp
    00000000  # command_status ESME_ROK
    00000009  # sequence_number 9
";

#[test]
fn cancel_sm_and_cancel_sm_resp() {
    check(
        CANCEL_SM,
        Pdu::new(
            9,
            CancelSm {
                service_type: cs(""),
                message_id: cs("1A2B3C"),
                source: addr(1, 1, "447700900001"),
                dest: addr(1, 1, "447700900123"),
            },
        ),
    );
    check(CANCEL_SM_RESP, Pdu::new(9, Body::CancelSmResp));
}

// ---------------------------------------------------------------------------
// replace_sm / replace_sm_resp (4.10)
// ---------------------------------------------------------------------------

const REPLACE_SM: &str = "
    00000042                            # command_length 66
    00000007                            # command_id replace_sm
    00000000                            # command_status
    0000000B                            # sequence_number 11
    314132423343 00                     # message_id '1A2B3C'
    01                                  # source_addr_ton international
    01                                  # source_addr_npi ISDN
    343437373030393030303031 00         # source_addr '447700900001'
    00                                  # schedule_delivery_time NULL
    30303030303230303030303030303052 00 # validity_period '000002000000000R' (relative, 2 days)
    01                                  # registered_delivery receipt always
    00                                  # sm_default_msg_id
    07                                  # sm_length 7
    55706461746564                      # short_message 'Updated'
";

const REPLACE_SM_RESP: &str = "
    00000010  # command_length 16
    80000007  # command_id replace_sm_resp
    00000000  # command_status ESME_ROK
    0000000B  # sequence_number 11
";

#[test]
fn replace_sm_and_replace_sm_resp() {
    check(
        REPLACE_SM,
        Pdu::new(
            11,
            ReplaceSm {
                message_id: cs("1A2B3C"),
                source: addr(1, 1, "447700900001"),
                schedule_delivery_time: SmppTime::empty(),
                validity_period: time("000002000000000R"),
                registered_delivery: 1,
                sm_default_msg_id: 0,
                short_message: b(b"Updated"),
            },
        ),
    );
    check(REPLACE_SM_RESP, Pdu::new(11, Body::ReplaceSmResp));
}

// ---------------------------------------------------------------------------
// alert_notification (4.12.1) with ms_availability_status
// ---------------------------------------------------------------------------

const ALERT_NOTIFICATION: &str = "
    0000002D                        # command_length 45
    00000102                        # command_id alert_notification
    00000000                        # command_status
    0000000C                        # sequence_number 12
    01                              # source_addr_ton international
    01                              # source_addr_npi ISDN
    343437373030393030313233 00     # source_addr '447700900123'
    05                              # esme_addr_ton alphanumeric
    00                              # esme_addr_npi unknown
    534D534D6178 00                 # esme_addr 'SMSMax'
    0422 0001 00                    # ms_availability_status 0 (available)
";

#[test]
fn alert_notification() {
    let pdu = check(
        ALERT_NOTIFICATION,
        Pdu::new(
            12,
            AlertNotification {
                source: addr(1, 1, "447700900123"),
                esme: addr(5, 0, "SMSMax"),
                tlvs: vec![Tlv::MsAvailabilityStatus(0)],
            },
        ),
    );
    let Body::AlertNotification(a) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(a.tlvs[0].tag(), 0x0422);
    assert_eq!(a.tlvs[0].name(), Some("ms_availability_status"));
}

// ---------------------------------------------------------------------------
// Coverage of the whole set
// ---------------------------------------------------------------------------

const ALL_VECTORS: &[&str] = &[
    GENERIC_NACK,
    BIND_TRANSMITTER,
    BIND_RECEIVER,
    BIND_TRANSCEIVER,
    BIND_TRANSMITTER_RESP,
    BIND_RECEIVER_RESP,
    BIND_TRANSCEIVER_RESP,
    BIND_TRANSMITTER_RESP_FAILED,
    OUTBIND,
    UNBIND,
    UNBIND_RESP,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    SUBMIT_SM_TLVS,
    SUBMIT_SM_SHORT_MESSAGE_TLVS,
    SUBMIT_SM_RESP,
    SUBMIT_SM_RESP_FAILED,
    DELIVER_SM_RECEIPT,
    DELIVER_SM_RESP,
    SUBMIT_MULTI,
    SUBMIT_MULTI_RESP,
    DATA_SM,
    DATA_SM_RESP,
    QUERY_SM,
    QUERY_SM_RESP,
    CANCEL_SM,
    CANCEL_SM_RESP,
    REPLACE_SM,
    REPLACE_SM_RESP,
    ALERT_NOTIFICATION,
];

fn tlvs_of(body: &Body) -> &[Tlv] {
    match body {
        Body::BindReceiverResp(r) | Body::BindTransmitterResp(r) | Body::BindTransceiverResp(r) => &r.tlvs,
        Body::SubmitSm(sm) | Body::DeliverSm(sm) => &sm.tlvs,
        Body::SubmitMulti(sm) => &sm.tlvs,
        Body::DataSm(d) => &d.tlvs,
        Body::DataSmResp(r) => &r.tlvs,
        Body::AlertNotification(a) => &a.tlvs,
        _ => &[],
    }
}

#[test]
fn vectors_cover_every_command_id() {
    let seen: BTreeSet<u32> = ALL_VECTORS
        .iter()
        .map(|v| decode_frame(&wire(v)).unwrap().command_id().as_u32())
        .collect();
    let all: BTreeSet<u32> = CommandId::ALL.iter().map(|id| id.as_u32()).collect();
    assert_eq!(all.len(), 27);
    assert_eq!(seen, all, "missing: {:x?}", all.difference(&seen).collect::<Vec<_>>());
}

/// Every TLV tag of SMPP 3.4 (section 5.3.2), written out independently of
/// `tlv::tag` and checked against it.
const SMPP34_TLV_TAGS: &[(u16, &str)] = &[
    (0x0005, "dest_addr_subunit"),
    (0x0006, "dest_network_type"),
    (0x0007, "dest_bearer_type"),
    (0x0008, "dest_telematics_id"),
    (0x000D, "source_addr_subunit"),
    (0x000E, "source_network_type"),
    (0x000F, "source_bearer_type"),
    (0x0010, "source_telematics_id"),
    (0x0017, "qos_time_to_live"),
    (0x0019, "payload_type"),
    (0x001D, "additional_status_info_text"),
    (0x001E, "receipted_message_id"),
    (0x0030, "ms_msg_wait_facilities"),
    (0x0201, "privacy_indicator"),
    (0x0202, "source_subaddress"),
    (0x0203, "dest_subaddress"),
    (0x0204, "user_message_reference"),
    (0x0205, "user_response_code"),
    (0x020A, "source_port"),
    (0x020B, "destination_port"),
    (0x020C, "sar_msg_ref_num"),
    (0x020D, "language_indicator"),
    (0x020E, "sar_total_segments"),
    (0x020F, "sar_segment_seqnum"),
    (0x0210, "sc_interface_version"),
    (0x0302, "callback_num_pres_ind"),
    (0x0303, "callback_num_atag"),
    (0x0304, "number_of_messages"),
    (0x0381, "callback_num"),
    (0x0420, "dpf_result"),
    (0x0421, "set_dpf"),
    (0x0422, "ms_availability_status"),
    (0x0423, "network_error_code"),
    (0x0424, "message_payload"),
    (0x0425, "delivery_failure_reason"),
    (0x0426, "more_messages_to_send"),
    (0x0427, "message_state"),
    (0x0501, "ussd_service_op"),
    (0x1201, "display_time"),
    (0x1203, "sms_signal"),
    (0x1204, "ms_validity"),
    (0x130C, "alert_on_message_delivery"),
    (0x1380, "its_reply_type"),
    (0x1383, "its_session_info"),
];

#[test]
fn vectors_cover_every_tlv_with_its_spec_name() {
    let mut seen = BTreeSet::new();
    for v in ALL_VECTORS {
        let pdu = decode_frame(&wire(v)).unwrap();
        for t in tlvs_of(&pdu.body) {
            if let Tlv::Unknown { tag, .. } = t {
                assert!(SMPP34_TLV_TAGS.iter().all(|(known, _)| known != tag));
                continue;
            }
            let (_, name) = SMPP34_TLV_TAGS
                .iter()
                .find(|(tag, _)| *tag == t.tag())
                .unwrap_or_else(|| panic!("{t:?} has a tag SMPP 3.4 does not define"));
            assert_eq!(t.name(), Some(*name), "{t:?}");
            seen.insert(t.tag());
        }
    }
    let all: BTreeSet<u16> = SMPP34_TLV_TAGS.iter().map(|(tag, _)| *tag).collect();
    assert_eq!(all.len(), 44);
    assert_eq!(seen, all, "missing: {:x?}", all.difference(&seen).collect::<Vec<_>>());
}

#[test]
fn tag_constants_match_the_specification() {
    use tlv::tag;
    let constants = [
        tag::DestAddrSubunit,
        tag::DestNetworkType,
        tag::DestBearerType,
        tag::DestTelematicsId,
        tag::SourceAddrSubunit,
        tag::SourceNetworkType,
        tag::SourceBearerType,
        tag::SourceTelematicsId,
        tag::QosTimeToLive,
        tag::PayloadType,
        tag::AdditionalStatusInfoText,
        tag::ReceiptedMessageId,
        tag::MsMsgWaitFacilities,
        tag::PrivacyIndicator,
        tag::SourceSubaddress,
        tag::DestSubaddress,
        tag::UserMessageReference,
        tag::UserResponseCode,
        tag::SourcePort,
        tag::DestinationPort,
        tag::SarMsgRefNum,
        tag::LanguageIndicator,
        tag::SarTotalSegments,
        tag::SarSegmentSeqnum,
        tag::ScInterfaceVersion,
        tag::CallbackNumPresInd,
        tag::CallbackNumAtag,
        tag::NumberOfMessages,
        tag::CallbackNum,
        tag::DpfResult,
        tag::SetDpf,
        tag::MsAvailabilityStatus,
        tag::NetworkErrorCode,
        tag::MessagePayload,
        tag::DeliveryFailureReason,
        tag::MoreMessagesToSend,
        tag::MessageState,
        tag::UssdServiceOp,
        tag::DisplayTime,
        tag::SmsSignal,
        tag::MsValidity,
        tag::AlertOnMessageDelivery,
        tag::ItsReplyType,
        tag::ItsSessionInfo,
    ];
    let expected: Vec<u16> = SMPP34_TLV_TAGS.iter().map(|(tag, _)| *tag).collect();
    assert_eq!(constants.to_vec(), expected);
}

/// Fixed-size TLVs of the vectors above, checked against the value sizes of
/// section 5.3.2 (Integer 1, 2, 4; network_error_code 3; its_session_info 2;
/// alert_on_message_delivery 0).
#[test]
fn fixed_tlv_value_lengths_match_the_specification() {
    let sizes: &[(Tlv, usize)] = &[
        (Tlv::DestAddrSubunit(0), 1),
        (Tlv::DestNetworkType(0), 1),
        (Tlv::DestBearerType(0), 1),
        (Tlv::DestTelematicsId(0), 2),
        (Tlv::SourceAddrSubunit(0), 1),
        (Tlv::SourceNetworkType(0), 1),
        (Tlv::SourceBearerType(0), 1),
        (Tlv::SourceTelematicsId(0), 1),
        (Tlv::QosTimeToLive(0), 4),
        (Tlv::PayloadType(0), 1),
        (Tlv::MsMsgWaitFacilities(0), 1),
        (Tlv::PrivacyIndicator(0), 1),
        (Tlv::UserMessageReference(0), 2),
        (Tlv::UserResponseCode(0), 1),
        (Tlv::SourcePort(0), 2),
        (Tlv::DestinationPort(0), 2),
        (Tlv::SarMsgRefNum(0), 2),
        (Tlv::LanguageIndicator(0), 1),
        (Tlv::SarTotalSegments(0), 1),
        (Tlv::SarSegmentSeqnum(0), 1),
        (Tlv::ScInterfaceVersion(0), 1),
        (Tlv::CallbackNumPresInd(0), 1),
        (Tlv::NumberOfMessages(0), 1),
        (Tlv::DpfResult(0), 1),
        (Tlv::SetDpf(0), 1),
        (Tlv::MsAvailabilityStatus(0), 1),
        (
            Tlv::NetworkErrorCode(NetworkErrorCode {
                network_type: 0,
                error_code: 0,
            }),
            3,
        ),
        (Tlv::DeliveryFailureReason(0), 1),
        (Tlv::MoreMessagesToSend(0), 1),
        (Tlv::MessageState(0), 1),
        (Tlv::UssdServiceOp(0), 1),
        (Tlv::DisplayTime(0), 1),
        (Tlv::SmsSignal(0), 2),
        (Tlv::MsValidity(0), 1),
        (Tlv::AlertOnMessageDelivery, 0),
        (Tlv::ItsReplyType(0), 1),
        (Tlv::ItsSessionInfo(Bytes::from_static(&[0, 0])), 2),
    ];
    for (t, size) in sizes {
        assert_eq!(t.value_len(), *size, "{t:?}");
    }
}
