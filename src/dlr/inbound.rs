//! What an upstream's deliver_sm or data_sm is: a delivery receipt about one
//! of our submits, or a mobile-originated message for a client.
//!
//! # Which esm_class is a receipt
//!
//! Section 5.2.12 gives the message type in bits 5-2 of esm_class. Two of
//! them are the SMSC reporting on a message it was given, and go to the
//! correlator: `0x04` (SMSC delivery receipt) and `0x20` (intermediate
//! delivery notification). `0x08` and `0x10` are acknowledgements written by
//! the recipient's handset, which the relay never asks for
//! (`registered_delivery` bits 3-2 are not passed upstream); like type 0 they
//! are treated as mobile-originated and routed by `[[mo_routes]]`, with the
//! type bits cleared so that no client mistakes them for our receipts.
//!
//! # Where the receipt's fields come from
//!
//! The TLVs first, as SMPP 3.4 defines them precisely, then the Appendix B
//! text, which is vendor specific: the id is `receipted_message_id`, else
//! `id:`; the state `message_state`, else `stat:`; the error
//! `network_error_code`, else a numeric `err:` (0 means none).

use bytes::{Bytes, BytesMut};
use smsmax_protocol::{
    receipt::{Receipt, ReceiptState},
    tlv::{put_tlvs, Tlv},
    types::{esm_class, Address},
    Body, Pdu,
};

use crate::store::AddressRecord;

/// The fields of a deliver_sm or data_sm the gateway uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundMessage {
    pub service_type: String,
    pub source: AddressRecord,
    pub dest: AddressRecord,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub data_coding: u8,
    /// `short_message` (empty for data_sm, whose message is in `message_payload`).
    pub short_message: Bytes,
    pub tlvs: Vec<Tlv>,
}

impl InboundMessage {
    /// The fields of a deliver_sm or data_sm; `None` for any other PDU.
    pub fn from_pdu(pdu: &Pdu) -> Option<InboundMessage> {
        match &pdu.body {
            Body::DeliverSm(sm) => Some(InboundMessage {
                service_type: sm.service_type.to_string_lossy().into_owned(),
                source: address(&sm.source),
                dest: address(&sm.dest),
                esm_class: sm.esm_class,
                protocol_id: sm.protocol_id,
                data_coding: sm.data_coding,
                short_message: sm.short_message.clone(),
                tlvs: sm.tlvs.clone(),
            }),
            Body::DataSm(sm) => Some(InboundMessage {
                service_type: sm.service_type.to_string_lossy().into_owned(),
                source: address(&sm.source),
                dest: address(&sm.dest),
                esm_class: sm.esm_class,
                protocol_id: 0,
                data_coding: sm.data_coding,
                short_message: Bytes::new(),
                tlvs: sm.tlvs.clone(),
            }),
            _ => None,
        }
    }

    /// `true` for an SMSC delivery receipt or intermediate notification (see the module documentation).
    pub fn is_receipt(&self) -> bool {
        is_receipt_type(self.esm_class)
    }

    /// The message octets: `short_message`, or `message_payload` when that is empty.
    pub fn message(&self) -> &Bytes {
        if self.short_message.is_empty() {
            if let Some(payload) = self.tlvs.iter().find_map(|t| match t {
                Tlv::MessagePayload(p) => Some(p),
                _ => None,
            }) {
                return payload;
            }
        }
        &self.short_message
    }

    /// The TLVs encoded as stored (tag, length, value).
    pub fn encoded_tlvs(&self) -> Result<Bytes, smsmax_protocol::EncodeError> {
        let mut octets = BytesMut::new();
        put_tlvs(&self.tlvs, &mut octets)?;
        Ok(octets.freeze())
    }
}

/// `true` when esm_class's message type is 0x04 or 0x20.
pub fn is_receipt_type(esm: u8) -> bool {
    matches!(
        esm & esm_class::TYPE_MASK,
        esm_class::DELIVERY_RECEIPT | esm_class::INTERMEDIATE_NOTIFICATION
    )
}

fn address<const N: usize>(a: &Address<N>) -> AddressRecord {
    AddressRecord {
        ton: a.ton,
        npi: a.npi,
        addr: a.addr.to_string_lossy().into(),
    }
}

/// What a receipt from an upstream says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamReceipt {
    /// The upstream's id for the message, as sent (not normalised).
    pub id: String,
    pub stat: ReceiptState,
    /// The network error code, or a numeric `err:`; `None` when zero or absent.
    pub error_code: Option<u32>,
}

/// Why a receipt could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnreadableReceipt {
    #[error("no receipted_message_id and no id: in the text")]
    NoId,
    #[error("no message_state and no stat: in the text")]
    NoState,
}

/// Reads a receipt: TLVs first, then the text (see the module documentation).
pub fn parse_receipt(message: &InboundMessage) -> Result<UpstreamReceipt, UnreadableReceipt> {
    let mut tlv_id = None;
    let mut tlv_state = None;
    let mut tlv_error = None;
    for tlv in &message.tlvs {
        match tlv {
            Tlv::ReceiptedMessageId(id) => {
                let id = id.to_string_lossy();
                let id = id.trim();
                if !id.is_empty() {
                    tlv_id = Some(id.to_string());
                }
            }
            Tlv::MessageState(value) => tlv_state = ReceiptState::from_message_state(*value),
            Tlv::NetworkErrorCode(code) => tlv_error = Some(u32::from(code.error_code)),
            _ => {}
        }
    }
    let text = Receipt::parse_bytes(message.message()).ok();
    let id = tlv_id
        .or_else(|| text.as_ref().map(|t| t.id.clone()))
        .ok_or(UnreadableReceipt::NoId)?;
    let stat = tlv_state
        .or_else(|| text.as_ref().map(|t| t.stat.clone()))
        .ok_or(UnreadableReceipt::NoState)?;
    let error_code = tlv_error
        .or_else(|| {
            let err = text.as_ref()?.err.as_deref()?;
            err.parse::<u32>().ok()
        })
        .filter(|code| *code != 0);
    Ok(UpstreamReceipt { id, stat, error_code })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smsmax_protocol::{pdu::DeliverSm, tlv::NetworkErrorCode};

    fn receipt(text: &str, tlvs: Vec<Tlv>) -> InboundMessage {
        let sm = DeliverSm {
            source: Address::new(1, 1, "447700900123").unwrap(),
            dest: Address::new(5, 0, "ACME").unwrap(),
            esm_class: 0x04,
            short_message: Bytes::copy_from_slice(text.as_bytes()),
            tlvs,
            ..DeliverSm::default()
        };
        InboundMessage::from_pdu(&Pdu::new(1, Body::DeliverSm(sm))).unwrap()
    }

    #[test]
    fn text_only() {
        let m = receipt(
            "id:00FF sub:001 dlvrd:000 submit date:2601011200 done date:2601011201 stat:UNDELIV err:012 text:x",
            vec![],
        );
        assert!(m.is_receipt());
        assert_eq!(&*m.dest.addr, "ACME");
        let r = parse_receipt(&m).unwrap();
        assert_eq!(
            r,
            UpstreamReceipt {
                id: "00FF".into(),
                stat: ReceiptState::Undeliverable,
                error_code: Some(12)
            }
        );
        let ok = parse_receipt(&receipt("id:1 stat:DELIVRD err:000", vec![])).unwrap();
        assert_eq!(ok.error_code, None);
        let text_err = parse_receipt(&receipt("id:1 stat:UNDELIV err:ABC", vec![])).unwrap();
        assert_eq!(text_err.error_code, None, "a non-numeric err: is not a code");
    }

    #[test]
    fn tlvs_win_over_the_text() {
        let m = receipt(
            "id:111 stat:DELIVRD err:000",
            vec![
                Tlv::ReceiptedMessageId("222".try_into().unwrap()),
                Tlv::MessageState(5),
                Tlv::NetworkErrorCode(NetworkErrorCode {
                    network_type: 3,
                    error_code: 27,
                }),
            ],
        );
        let r = parse_receipt(&m).unwrap();
        assert_eq!(
            (r.id.as_str(), &r.stat, r.error_code),
            ("222", &ReceiptState::Undeliverable, Some(27))
        );
        // TLVs alone are enough.
        let r = parse_receipt(&receipt(
            "",
            vec![Tlv::ReceiptedMessageId("abc".try_into().unwrap()), Tlv::MessageState(2)],
        ))
        .unwrap();
        assert_eq!((r.id.as_str(), &r.stat), ("abc", &ReceiptState::Delivered));
        // An undefined message_state falls back to the text.
        let r = parse_receipt(&receipt("id:1 stat:EXPIRED", vec![Tlv::MessageState(0)])).unwrap();
        assert_eq!(r.stat, ReceiptState::Expired);
    }

    #[test]
    fn unreadable() {
        assert_eq!(parse_receipt(&receipt("hello", vec![])), Err(UnreadableReceipt::NoId));
        assert_eq!(
            parse_receipt(&receipt("", vec![Tlv::ReceiptedMessageId("1".try_into().unwrap())])),
            Err(UnreadableReceipt::NoState)
        );
        assert_eq!(
            parse_receipt(&receipt(
                "id: stat:DELIVRD",
                vec![Tlv::ReceiptedMessageId("".try_into().unwrap())]
            )),
            Err(UnreadableReceipt::NoId)
        );
    }

    #[test]
    fn receipt_types() {
        assert!(is_receipt_type(0x04));
        assert!(is_receipt_type(0x20));
        assert!(is_receipt_type(0x44), "UDHI does not change the type");
        assert!(!is_receipt_type(0x00));
        assert!(!is_receipt_type(0x08));
        assert!(!is_receipt_type(0x10));
        assert!(!is_receipt_type(0x40));
    }

    #[test]
    fn data_sm_message_is_in_the_payload() {
        let sm = smsmax_protocol::pdu::DataSm {
            esm_class: 0,
            tlvs: vec![Tlv::MessagePayload(Bytes::from_static(b"hi"))],
            ..Default::default()
        };
        let m = InboundMessage::from_pdu(&Pdu::new(1, Body::DataSm(sm))).unwrap();
        assert_eq!(&m.message()[..], b"hi");
        assert!(!m.is_receipt());
        assert!(InboundMessage::from_pdu(&Pdu::new(1, Body::EnquireLink)).is_none());
    }
}
