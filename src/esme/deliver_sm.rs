//! The deliver_sm a client receives for one outbox entry.

use bytes::Bytes;
use smsmax_protocol::{
    pdu::DeliverSm,
    tlv::{decode_tlvs, Tlv},
    types::Address,
};

use crate::{queue::outbox::OutboxEntry, relay::worker::MAX_SHORT_MESSAGE};

/// Why an entry cannot become a deliver_sm. It never will (stored data does
/// not change), so the entry is dropped and counted as undeliverable.
#[derive(Debug, thiserror::Error)]
pub enum DeliverSmError {
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

fn field(field: &'static str) -> impl FnOnce(String) -> DeliverSmError {
    move |reason| DeliverSmError::Field { field, reason }
}

/// The entry's fields and its stored TLVs as they were; a message longer
/// than `short_message` can carry (254 octets) goes in `message_payload`.
/// schedule_delivery_time, validity_period, replace_if_present_flag and
/// sm_default_msg_id are unused in deliver_sm (section 4.6.1) and stay empty.
pub fn build(entry: &OutboxEntry) -> Result<DeliverSm, DeliverSmError> {
    let mut tlvs: Vec<Tlv> = decode_tlvs(&entry.tlvs).map_err(|e| field("tlvs")(e.to_string()))?;
    let short_message = if entry.short_message.len() <= MAX_SHORT_MESSAGE {
        entry.short_message.clone()
    } else {
        tlvs.retain(|t| !matches!(t, Tlv::MessagePayload(_)));
        tlvs.push(Tlv::MessagePayload(entry.short_message.clone()));
        Bytes::new()
    };
    let source = Address::new(entry.source.ton, entry.source.npi, &entry.source.addr)
        .map_err(|e| field("source_addr")(e.to_string()))?;
    let dest = Address::new(entry.dest.ton, entry.dest.npi, &entry.dest.addr)
        .map_err(|e| field("destination_addr")(e.to_string()))?;
    let service_type = entry
        .service_type
        .as_str()
        .try_into()
        .map_err(|e: smsmax_protocol::FieldError| field("service_type")(e.to_string()))?;
    Ok(DeliverSm {
        service_type,
        source,
        dest,
        esm_class: entry.esm_class,
        protocol_id: entry.protocol_id,
        data_coding: entry.data_coding,
        short_message,
        tlvs,
        ..DeliverSm::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AddressRecord;

    fn entry() -> OutboxEntry {
        // receipted_message_id "abc", as stored.
        let tlvs = Bytes::from_static(&[0x00, 0x1E, 0x00, 0x04, b'a', b'b', b'c', 0x00]);
        OutboxEntry {
            id: "1".into(),
            system_id: "alice".into(),
            created_at_ms: 0,
            expires_at_ms: u64::MAX,
            attempts: 0,
            message_id: Some("abc".into()),
            service_type: "CMT".into(),
            source: AddressRecord {
                ton: 1,
                npi: 1,
                addr: "447700900123".into(),
            },
            dest: AddressRecord {
                ton: 5,
                npi: 0,
                addr: "Shop".into(),
            },
            esm_class: 0x04,
            protocol_id: 0,
            data_coding: 0,
            short_message: Bytes::from_static(b"id:abc sub:001 dlvrd:001 stat:DELIVRD"),
            tlvs,
        }
    }

    #[test]
    fn fields_and_stored_tlvs_are_carried() {
        let sm = build(&entry()).unwrap();
        assert_eq!(sm.service_type.to_string_lossy(), "CMT");
        assert_eq!(sm.source, Address::new(1, 1, "447700900123").unwrap());
        assert_eq!(sm.dest, Address::new(5, 0, "Shop").unwrap());
        assert!(sm.is_delivery_receipt());
        assert_eq!(&sm.short_message[..], b"id:abc sub:001 dlvrd:001 stat:DELIVRD");
        assert_eq!(sm.tlvs, vec![Tlv::ReceiptedMessageId("abc".try_into().unwrap())]);
    }

    #[test]
    fn long_messages_go_in_message_payload_and_bad_entries_are_refused() {
        let mut long = entry();
        long.short_message = Bytes::from(vec![b'x'; 300]);
        let sm = build(&long).unwrap();
        assert!(sm.short_message.is_empty());
        assert_eq!(sm.message().len(), 300);

        let mut bad = entry();
        bad.tlvs = Bytes::from_static(&[0x02, 0x04, 0x00]);
        assert!(build(&bad).is_err(), "truncated TLVs");
        let mut bad = entry();
        bad.source.addr = "1".repeat(30).into();
        assert!(build(&bad).is_err(), "address too long");
    }
}
