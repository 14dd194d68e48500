//! The delivery receipts the gateway sends its clients.
//!
//! One builder for both sources of a client receipt, so that a client sees
//! the same format whoever decided the outcome: the relay, when it ends a
//! message itself (no route, refused, out of attempts, expired), and the
//! correlator, when an upstream's receipt matched one of our messages.
//!
//! The receipt always names the message by OUR id (the one the client got
//! in submit_sm_resp), never the upstream's: in the text (`id:`), in
//! `receipted_message_id` and in [`OutboxEntry::message_id`].

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use smsmax_protocol::{
    receipt::{Receipt, ReceiptState, RECEIPT_TEXT_MAX_CHARS},
    text::{decode_short_message, TextEncoding},
    tlv::{put_tlvs, Tlv},
    types::{esm_class, registered_delivery, MessageId},
};

use crate::{
    queue::outbox::OutboxEntry,
    smpp_time,
    store::{MessageRecord, MessageState},
};

/// The Appendix B `stat:` a client is told for one of our states.
pub fn receipt_state(state: MessageState) -> ReceiptState {
    match state {
        MessageState::Accepted => ReceiptState::Accepted,
        MessageState::Enroute => ReceiptState::Enroute,
        MessageState::Delivered => ReceiptState::Delivered,
        MessageState::Undeliverable => ReceiptState::Undeliverable,
        MessageState::Expired => ReceiptState::Expired,
        MessageState::Rejected => ReceiptState::Rejected,
        MessageState::Deleted => ReceiptState::Deleted,
    }
}

/// The state an upstream receipt's `stat:` (or `message_state`) puts our
/// message in.
///
/// `ACCEPTD` is final in SMPP (read on behalf of the subscriber), and our
/// [`MessageState::Accepted`] means "queued here, not sent", so it is
/// recorded as DELIVERED (the client's receipt still says `ACCEPTD`).
/// `ENROUTE`, `UNKNOWN` (which SMPP says "may be intermediate") and
/// unrecognised values are intermediate: ENROUTE, which the message already is.
pub fn upstream_state(stat: &ReceiptState) -> MessageState {
    match stat {
        ReceiptState::Delivered | ReceiptState::Accepted => MessageState::Delivered,
        ReceiptState::Undeliverable => MessageState::Undeliverable,
        ReceiptState::Expired => MessageState::Expired,
        ReceiptState::Rejected => MessageState::Rejected,
        ReceiptState::Deleted => MessageState::Deleted,
        ReceiptState::Enroute | ReceiptState::Unknown | ReceiptState::Other(_) => MessageState::Enroute,
    }
}

/// Whether a client whose message had `registered_delivery` asked for a
/// receipt about `state` (section 5.2.17): bits 1-0 `01` any final
/// outcome, `10` failures only (anything but DELIVERED); bit 4 an
/// intermediate notification for a state that is not final.
pub fn wants_receipt(registered: u8, state: MessageState) -> bool {
    if !state.is_final() {
        return registered & registered_delivery::INTERMEDIATE != 0;
    }
    match registered & registered_delivery::RECEIPT_MASK {
        registered_delivery::RECEIPT_ALWAYS => true,
        registered_delivery::RECEIPT_ON_FAILURE => state != MessageState::Delivered,
        _ => false,
    }
}

/// The deliver_sm telling `record`'s client that its message reached
/// `stat`, as an outbox entry:
///
/// - esm_class 0x04 (SMSC delivery receipt; 0x20 intermediate notification
///   for a state that is not final), from the message's destination to its
///   source, data_coding 0;
/// - `short_message`: `id:<ours> sub:001 dlvrd:001|000 submit date:… done
///   date:… stat:… err:NNN text:…` where `text` is the start of the
///   message when it is GSM or ASCII text (nothing otherwise);
/// - TLVs `receipted_message_id` (our id) and `message_state`;
/// - due now, dropped after `max_age` if the client never takes it.
pub fn client_receipt(
    record: &MessageRecord,
    stat: &ReceiptState,
    error_code: Option<u32>,
    done_at_ms: u64,
    now_ms: u64,
    max_age: Duration,
) -> OutboxEntry {
    let state = upstream_state(stat);
    let mut receipt = Receipt::new(record.id.clone(), stat.clone())
        .with_sub(1)
        .with_dlvrd(u32::from(state == MessageState::Delivered))
        .with_err_code(error_code.unwrap_or(0));
    if let Some(date) = smpp_time::receipt_date(record.submitted_at_ms) {
        receipt = receipt.with_submit_date(date);
    }
    if let Some(date) = smpp_time::receipt_date(done_at_ms) {
        receipt = receipt.with_done_date(date);
    }
    if let Some(text) = text_start(record) {
        receipt = receipt.with_text(text);
    }
    let mut tlvs = Vec::with_capacity(2);
    // Our ids are at most 64 characters (see `ids`), which always fits.
    if let Ok(id) = MessageId::try_from(record.id.as_str()) {
        tlvs.push(Tlv::ReceiptedMessageId(id));
    }
    if let Some(value) = stat.message_state() {
        tlvs.push(Tlv::MessageState(value));
    }
    let mut octets = BytesMut::new();
    if let Err(e) = put_tlvs(&tlvs, &mut octets) {
        // Cannot happen for these two TLVs; a receipt without them still carries the text.
        tracing::warn!(id = %record.id, error = %e, "receipt TLVs not encodable");
        octets.clear();
    }
    OutboxEntry {
        id: String::new(),
        system_id: record.system_id.clone(),
        created_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX)),
        attempts: 0,
        message_id: Some(record.id.clone()),
        service_type: String::new(),
        source: record.dest.clone(),
        dest: record.source.clone(),
        esm_class: if state.is_final() {
            esm_class::DELIVERY_RECEIPT
        } else {
            esm_class::INTERMEDIATE_NOTIFICATION
        },
        protocol_id: 0,
        data_coding: 0,
        short_message: Bytes::from(receipt.to_text()),
        tlvs: octets.freeze(),
    }
}

/// The first 20 characters of the message when it is GSM 7-bit or ASCII
/// text (after any UDH), with anything unprintable as `?`; `None` for other
/// alphabets and binary data, which would not survive a data_coding 0 receipt.
fn text_start(record: &MessageRecord) -> Option<String> {
    let encoding = TextEncoding::from_data_coding(record.data_coding)?;
    if !matches!(encoding, TextEncoding::Gsm7 | TextEncoding::Ia5) {
        return None;
    }
    let mut octets: &[u8] = &record.short_message;
    if record.esm_class & esm_class::UDHI != 0 {
        let udh_len = octets.first().map_or(0, |l| usize::from(*l) + 1);
        octets = octets.get(udh_len..).unwrap_or_default();
    }
    // Both alphabets are 7-bit: an octet above 0x7F anywhere makes the
    // message undecodable (no text, as before this shortcut). Past that
    // check only the first characters are decoded: a GSM character is one
    // or two octets (an escape pair), so RECEIPT_TEXT_MAX_CHARS of them
    // are within twice as many octets.
    if !octets.is_ascii() {
        return None;
    }
    let prefix = octets.get(..2 * RECEIPT_TEXT_MAX_CHARS).unwrap_or(octets);
    let text = decode_short_message(record.data_coding, prefix).ok()?;
    let text: String = text
        .chars()
        .take(RECEIPT_TEXT_MAX_CHARS)
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AddressRecord;
    use smsmax_protocol::tlv::decode_tlvs;

    pub(crate) fn record(registered_delivery: u8, data_coding: u8, message: &[u8]) -> MessageRecord {
        MessageRecord {
            id: "0a1b2c".into(),
            system_id: "alice".into(),
            service_type: String::new(),
            source: AddressRecord {
                ton: 5,
                npi: 0,
                addr: "ACME".into(),
            },
            dest: AddressRecord {
                ton: 1,
                npi: 1,
                addr: "447700900123".into(),
            },
            esm_class: 0,
            protocol_id: 0,
            priority_flag: 0,
            registered_delivery,
            data_coding,
            short_message: Bytes::copy_from_slice(message),
            tlvs: Bytes::new(),
            parts: 1,
            state: MessageState::Enroute,
            // 2026-01-01 12:00 UTC
            submitted_at_ms: 1_767_268_800_000,
            updated_at_ms: 1_767_268_800_000,
            schedule_at_ms: None,
            expires_at_ms: None,
            upstream_id: Some("FF".into()),
            error_code: None,
            attempts: 1,
            parts_sent: 1,
            upstream: Some("up".into()),
        }
    }

    #[test]
    fn receipt_names_our_id_and_swaps_addresses() {
        let r = record(1, 0, b"Hello there, this is longer than twenty");
        let e = client_receipt(
            &r,
            &ReceiptState::Delivered,
            None,
            1_767_268_860_000,
            1_000,
            Duration::from_secs(60),
        );
        assert_eq!(
            std::str::from_utf8(&e.short_message).unwrap(),
            "id:0a1b2c sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:Hello there, this is"
        );
        assert_eq!(e.esm_class, 0x04);
        assert_eq!(e.data_coding, 0);
        assert_eq!(e.source, r.dest);
        assert_eq!(e.dest, r.source);
        assert_eq!(&*e.system_id, "alice");
        assert_eq!(e.message_id.as_deref(), Some("0a1b2c"));
        assert_eq!((e.created_at_ms, e.expires_at_ms), (1_000, 61_000));
        let tlvs = decode_tlvs(&e.tlvs).unwrap();
        assert_eq!(
            tlvs,
            vec![
                Tlv::ReceiptedMessageId("0a1b2c".try_into().unwrap()),
                Tlv::MessageState(2)
            ]
        );
        // It parses back as a receipt.
        let parsed = Receipt::parse_bytes(&e.short_message).unwrap();
        assert_eq!(parsed.id, "0a1b2c");
    }

    #[test]
    fn failures_carry_the_error_and_no_text_for_ucs2() {
        let r = record(2, 8, &[0x4E, 0x2D]);
        let e = client_receipt(&r, &ReceiptState::Undeliverable, Some(69), 0, 0, Duration::ZERO);
        let text = std::str::from_utf8(&e.short_message).unwrap();
        assert!(text.contains("dlvrd:000"), "{text}");
        assert!(text.contains("stat:UNDELIV err:069 text:"), "{text}");
        assert!(text.ends_with("text:"), "{text}");
        assert!(decode_tlvs(&e.tlvs).unwrap().contains(&Tlv::MessageState(5)));
        // An intermediate state goes out as an intermediate notification.
        let i = client_receipt(&r, &ReceiptState::Enroute, None, 0, 0, Duration::ZERO);
        assert_eq!(i.esm_class, 0x20);
        // ACCEPTD and UNKNOWN are told as such.
        let a = client_receipt(&r, &ReceiptState::Accepted, None, 0, 0, Duration::ZERO);
        assert!(std::str::from_utf8(&a.short_message).unwrap().contains("stat:ACCEPTD"));
        assert_eq!(a.esm_class, 0x04);
    }

    #[test]
    fn udh_is_skipped_and_gsm_decoded() {
        let mut r = record(1, 0, &[0x05, 0x00, 0x03, 0x01, 0x02, 0x01, 0x48, 0x00, 0x0A]);
        r.esm_class = 0x40;
        let e = client_receipt(&r, &ReceiptState::Delivered, None, 0, 0, Duration::ZERO);
        assert!(std::str::from_utf8(&e.short_message).unwrap().ends_with("text:H@?"));
    }

    #[test]
    fn text_is_the_first_twenty_characters_of_a_7bit_message() {
        let text = |data_coding: u8, message: &[u8]| {
            let e = client_receipt(
                &record(1, data_coding, message),
                &ReceiptState::Delivered,
                None,
                0,
                0,
                Duration::ZERO,
            );
            let receipt = String::from_utf8(e.short_message.to_vec()).unwrap();
            receipt.split_once("text:").unwrap().1.to_string()
        };
        // Twenty GSM escape pairs ('[' is 0x1B 0x3C) fill the first 40 octets.
        let mut escapes = [0x1B, 0x3C].repeat(20);
        escapes.extend_from_slice(b"after");
        assert_eq!(text(0, &escapes), "[".repeat(20));
        // One pair fewer: the 20th character comes after them.
        assert_eq!(text(0, &escapes[2..]), format!("{}a", "[".repeat(19)));
        // IA5 too.
        assert_eq!(text(1, b"plain ASCII text that goes on"), "plain ASCII text tha");
        // An octet above 0x7F, even past the first twenty characters,
        // makes the message undecodable in a 7-bit alphabet: no text.
        let mut late = b"Hello there, this is longer than twenty".to_vec();
        late.push(0x80);
        assert_eq!(text(0, &late), "");
        assert_eq!(text(1, &late), "");
        assert_eq!(text(0, b""), "");
    }

    #[test]
    fn who_asked_for_what() {
        use MessageState::*;
        for state in [Delivered, Undeliverable, Expired, Rejected, Deleted] {
            assert!(wants_receipt(1, state), "{state:?}");
            assert!(!wants_receipt(0, state), "{state:?}");
            assert!(!wants_receipt(3, state), "reserved value: {state:?}");
            assert!(!wants_receipt(0x10, state), "{state:?}");
            assert_eq!(wants_receipt(2, state), state != Delivered, "{state:?}");
        }
        assert!(!wants_receipt(1, Enroute));
        assert!(wants_receipt(0x11, Enroute));
        assert_eq!(upstream_state(&ReceiptState::Accepted), Delivered);
        assert_eq!(upstream_state(&ReceiptState::Unknown), Enroute);
        assert_eq!(upstream_state(&ReceiptState::Other("X".into())), Enroute);
        for state in [Delivered, Undeliverable, Expired, Rejected, Deleted, Enroute] {
            assert_eq!(upstream_state(&receipt_state(state)), state);
        }
    }
}
