//! Checks of submit_sm, data_sm and submit_multi fields, each failure with
//! the precise SMPP status, and the conversion of an accepted submit into the
//! [`MessageRecord`] that is stored.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use smsmax_protocol::{
    pdu::{DataSm, SubmitMulti, SubmitSm},
    tlv::put_tlvs,
    types::{esm_class, Address, COctetString},
    CommandStatus, Tlv,
};

use crate::{
    smpp_time,
    store::{AddressRecord, MessageRecord, MessageState},
};

/// The message text the longest we accept in message_payload (octets).
pub const MAX_PAYLOAD_OCTETS: usize = 64 * 1024;

/// Numbering plans SMPP 3.4 defines (section 5.2.6).
const KNOWN_NPI: [u8; 10] = [0, 1, 3, 4, 6, 8, 9, 10, 14, 18];

/// The fields that make a message, common to submit_sm, data_sm and submit_multi.
struct Submission<'a> {
    service_type: &'a [u8],
    esm_class: u8,
    protocol_id: u8,
    priority_flag: u8,
    schedule_delivery_time: &'a [u8],
    validity_period: &'a [u8],
    registered_delivery: u8,
    replace_if_present_flag: u8,
    data_coding: u8,
    sm_default_msg_id: u8,
    short_message: &'a Bytes,
    tlvs: &'a [Tlv],
}

/// The [`Submission`] of submit_sm and submit_multi, which share these fields.
macro_rules! submission {
    ($sm:expr) => {
        Submission {
            service_type: $sm.service_type.as_bytes(),
            esm_class: $sm.esm_class,
            protocol_id: $sm.protocol_id,
            priority_flag: $sm.priority_flag,
            schedule_delivery_time: $sm.schedule_delivery_time.as_bytes(),
            validity_period: $sm.validity_period.as_bytes(),
            registered_delivery: $sm.registered_delivery,
            replace_if_present_flag: $sm.replace_if_present_flag,
            data_coding: $sm.data_coding,
            sm_default_msg_id: $sm.sm_default_msg_id,
            short_message: &$sm.short_message,
            tlvs: &$sm.tlvs,
        }
    };
}

/// Validates a submit_sm and makes its record (state ACCEPTED).
pub fn submit_sm(sm: &SubmitSm, system_id: &Arc<str>, id: String, now_ms: u64) -> Result<MessageRecord, CommandStatus> {
    let source = source_address(&sm.source)?;
    let dest = dest_address(&sm.dest)?;
    record(submission!(sm), system_id, id, source, dest, now_ms)
}

/// Validates a data_sm (message in message_payload) and makes its record.
pub fn data_sm(sm: &DataSm, system_id: &Arc<str>, id: String, now_ms: u64) -> Result<MessageRecord, CommandStatus> {
    let source = source_address(&sm.source)?;
    let dest = dest_address(&sm.dest)?;
    let empty = Bytes::new();
    record(
        Submission {
            service_type: sm.service_type.as_bytes(),
            esm_class: sm.esm_class,
            protocol_id: 0,
            priority_flag: 0,
            schedule_delivery_time: &[],
            validity_period: &[],
            registered_delivery: sm.registered_delivery,
            replace_if_present_flag: 0,
            data_coding: sm.data_coding,
            sm_default_msg_id: 0,
            short_message: &empty,
            tlvs: &sm.tlvs,
        },
        system_id,
        id,
        source,
        dest,
        now_ms,
    )
}

/// One destination of a submit_multi: its record, or the status for the
/// unsuccess_sme list.
pub enum MultiDestination {
    Accepted(Box<MessageRecord>),
    Refused {
        address: Address<21>,
        status: CommandStatus,
    },
}

/// Validates a submit_multi. A problem with the message itself fails the
/// whole request; a bad or unsupported destination only goes into
/// unsuccess_sme. `next_id` gives one id per accepted destination.
pub fn submit_multi(
    sm: &SubmitMulti,
    system_id: &Arc<str>,
    mut next_id: impl FnMut() -> String,
    now_ms: u64,
) -> Result<Vec<MultiDestination>, CommandStatus> {
    use smsmax_protocol::pdu::DestAddress;
    let source = source_address(&sm.source)?;
    // Check and build the message once, against a placeholder destination;
    // nothing in it depends on the destination, so each accepted one gets a
    // copy with its own id and address.
    let template = record(
        submission!(sm),
        system_id,
        String::new(),
        source,
        AddressRecord::default(),
        now_ms,
    )?;
    let mut out = Vec::with_capacity(sm.dest_addresses.len());
    for dest in &sm.dest_addresses {
        match dest {
            DestAddress::SmeAddress(address) => match dest_address(address) {
                Ok(dest) => out.push(MultiDestination::Accepted(Box::new(MessageRecord {
                    id: next_id(),
                    dest,
                    ..template.clone()
                }))),
                Err(status) => out.push(MultiDestination::Refused {
                    address: address.clone(),
                    status,
                }),
            },
            DestAddress::DistributionList(name) => out.push(MultiDestination::Refused {
                // Distribution lists are not provisioned in this gateway.
                address: Address {
                    ton: 0,
                    npi: 0,
                    addr: COctetString::new(name.bytes().clone()).unwrap_or_default(),
                },
                status: CommandStatus::ESME_RCNTSUBDL,
            }),
        }
    }
    Ok(out)
}

fn record(
    s: Submission<'_>,
    system_id: &Arc<str>,
    id: String,
    source: AddressRecord,
    dest: AddressRecord,
    now_ms: u64,
) -> Result<MessageRecord, CommandStatus> {
    check_esm_class(s.esm_class)?;
    if s.priority_flag > 3 {
        return Err(CommandStatus::ESME_RINVPRTFLG);
    }
    check_registered_delivery(s.registered_delivery)?;
    if s.replace_if_present_flag > 1 {
        return Err(CommandStatus::ESME_RINVREPFLAG);
    }
    if s.sm_default_msg_id != 0 {
        // No canned messages are provisioned.
        return Err(CommandStatus::ESME_RINVDFTMSGID);
    }
    let schedule_at_ms =
        smpp_time::parse(s.schedule_delivery_time, now_ms).map_err(|_| CommandStatus::ESME_RINVSCHED)?;
    let expires_at_ms = smpp_time::parse(s.validity_period, now_ms).map_err(|_| CommandStatus::ESME_RINVEXPIRY)?;
    if let Some(expiry) = expires_at_ms {
        if expiry <= now_ms || schedule_at_ms.is_some_and(|at| at >= expiry) {
            return Err(CommandStatus::ESME_RINVEXPIRY);
        }
    }
    // The message: short_message, or message_payload (the codec already
    // refused both at once). Other TLVs travel on as encoded.
    let mut message = s.short_message.clone();
    for tlv in s.tlvs {
        if let Tlv::MessagePayload(payload) = tlv {
            if payload.len() > MAX_PAYLOAD_OCTETS {
                return Err(CommandStatus::ESME_RINVMSGLEN);
            }
            message = payload.clone();
        }
    }
    if s.data_coding == 0x08 && !message.len().is_multiple_of(2) {
        return Err(CommandStatus::ESME_RINVMSGLEN);
    }
    let udhi = s.esm_class & esm_class::UDHI != 0;
    if udhi && !udh_is_well_formed(&message) {
        return Err(CommandStatus::ESME_RINVMSGLEN);
    }
    // Encoded in place, one at a time: no owned copy of the TLVs. An empty
    // BytesMut freezes into an empty Bytes without allocating.
    let mut tlvs = BytesMut::new();
    for tlv in s.tlvs.iter().filter(|t| !matches!(t, Tlv::MessagePayload(_))) {
        put_tlvs(std::slice::from_ref(tlv), &mut tlvs).map_err(|_| CommandStatus::ESME_RINVOPTPARSTREAM)?;
    }
    let tlvs = tlvs.freeze();
    Ok(MessageRecord {
        id,
        system_id: system_id.clone(),
        service_type: String::from_utf8_lossy(s.service_type).into_owned(),
        source,
        dest,
        esm_class: s.esm_class,
        protocol_id: s.protocol_id,
        priority_flag: s.priority_flag,
        registered_delivery: s.registered_delivery,
        data_coding: s.data_coding,
        parts: parts(s.data_coding, message.len(), udhi),
        short_message: message,
        tlvs,
        state: MessageState::Accepted,
        submitted_at_ms: now_ms,
        updated_at_ms: now_ms,
        schedule_at_ms,
        expires_at_ms,
        upstream_id: None,
        error_code: None,
        attempts: 0,
        parts_sent: 0,
        upstream: None,
    })
}

/// How many SMS parts a message of `len` octets is on the air: a message the
/// client already split (UDHI set) is one part; otherwise 160/153 GSM
/// septets (SMPP carries them one per octet), 70/67 UCS-2 characters, or
/// 140/134 octets.
pub fn parts(data_coding: u8, len: usize, udhi: bool) -> u16 {
    if udhi || len == 0 {
        return 1;
    }
    let (units, single, multi) = match data_coding {
        0x00 | 0x01 => (len, 160, 153),
        0x08 => (len / 2, 70, 67),
        _ => (len, 140, 134),
    };
    if units <= single {
        1
    } else {
        u16::try_from(units.div_ceil(multi)).unwrap_or(u16::MAX)
    }
}

fn udh_is_well_formed(message: &[u8]) -> bool {
    match message.first() {
        Some(&udhl) => usize::from(udhl) < message.len() && smsmax_protocol::concat::parse_udh(message).is_ok(),
        None => false,
    }
}

fn check_esm_class(value: u8) -> Result<(), CommandStatus> {
    // From an ESME the message type may be default, SME delivery ack or
    // user ack; receipts (0x04) and intermediate notifications come only
    // from an SMSC.
    match value & esm_class::TYPE_MASK {
        0x00 | esm_class::DELIVERY_ACK | esm_class::USER_ACK => Ok(()),
        _ => Err(CommandStatus::ESME_RINVESMCLASS),
    }
}

fn check_registered_delivery(value: u8) -> Result<(), CommandStatus> {
    // Bits 1-0: 0, 1 or 2 (3 is reserved); bits 7-5 reserved.
    if value & 0x03 == 0x03 || value & 0xE0 != 0 {
        return Err(CommandStatus::ESME_RINVREGDLVFLG);
    }
    Ok(())
}

fn source_address<const N: usize>(address: &Address<N>) -> Result<AddressRecord, CommandStatus> {
    if address.ton > 6 {
        return Err(CommandStatus::ESME_RINVSRCTON);
    }
    if !KNOWN_NPI.contains(&address.npi) {
        return Err(CommandStatus::ESME_RINVSRCNPI);
    }
    let addr = address.addr.as_bytes();
    let ok = if address.ton == 5 {
        // Alphanumeric sender: at most 11 characters (GSM 03.40).
        addr.len() <= 11 && addr.iter().all(|c| (0x20..0x7F).contains(c))
    } else {
        addr.len() <= 20 && addr.iter().all(u8::is_ascii_digit)
    };
    if !ok {
        return Err(CommandStatus::ESME_RINVSRCADR);
    }
    Ok(AddressRecord {
        ton: address.ton,
        npi: address.npi,
        addr: String::from_utf8_lossy(addr).into(),
    })
}

fn dest_address<const N: usize>(address: &Address<N>) -> Result<AddressRecord, CommandStatus> {
    if address.ton > 6 {
        return Err(CommandStatus::ESME_RINVDSTTON);
    }
    if !KNOWN_NPI.contains(&address.npi) {
        return Err(CommandStatus::ESME_RINVDSTNPI);
    }
    let addr = address.addr.as_bytes();
    if addr.is_empty() || addr.len() > 20 || !addr.iter().all(u8::is_ascii_digit) {
        return Err(CommandStatus::ESME_RINVDSTADR);
    }
    Ok(AddressRecord {
        ton: address.ton,
        npi: address.npi,
        addr: String::from_utf8_lossy(addr).into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smsmax_protocol::types::SmppTime;

    const NOW: u64 = 1_767_268_800_000;

    fn sm() -> SubmitSm {
        SubmitSm {
            source: Address::new(1, 1, "447700900001").unwrap(),
            dest: Address::new(1, 1, "447700900002").unwrap(),
            short_message: Bytes::from_static(b"hello"),
            registered_delivery: 1,
            ..SubmitSm::default()
        }
    }

    fn check(sm: &SubmitSm) -> Result<MessageRecord, CommandStatus> {
        submit_sm(sm, &Arc::from("demo"), "id1".into(), NOW)
    }

    #[test]
    fn a_plain_submit_becomes_an_accepted_record() {
        let record = check(&sm()).unwrap();
        assert_eq!(record.state, MessageState::Accepted);
        assert_eq!(&*record.dest.addr, "447700900002");
        assert_eq!(record.parts, 1);
        assert_eq!(&record.short_message[..], b"hello");
        assert!(record.tlvs.is_empty());
    }

    #[test]
    fn each_bad_field_gets_its_status() {
        type Change = Box<dyn Fn(&mut SubmitSm)>;
        let cases: Vec<(Change, CommandStatus)> = vec![
            (Box::new(|s| s.source.ton = 7), CommandStatus::ESME_RINVSRCTON),
            (Box::new(|s| s.source.npi = 2), CommandStatus::ESME_RINVSRCNPI),
            (
                Box::new(|s| s.source.addr = "12a".try_into().unwrap()),
                CommandStatus::ESME_RINVSRCADR,
            ),
            (
                Box::new(|s| {
                    s.source.ton = 5;
                    s.source.addr = "TwelveChars!".try_into().unwrap()
                }),
                CommandStatus::ESME_RINVSRCADR,
            ),
            (Box::new(|s| s.dest.ton = 9), CommandStatus::ESME_RINVDSTTON),
            (Box::new(|s| s.dest.npi = 5), CommandStatus::ESME_RINVDSTNPI),
            (
                Box::new(|s| s.dest.addr = "".try_into().unwrap()),
                CommandStatus::ESME_RINVDSTADR,
            ),
            (
                Box::new(|s| s.dest.addr = "+4477".try_into().unwrap()),
                CommandStatus::ESME_RINVDSTADR,
            ),
            (Box::new(|s| s.esm_class = 0x04), CommandStatus::ESME_RINVESMCLASS),
            (Box::new(|s| s.priority_flag = 4), CommandStatus::ESME_RINVPRTFLG),
            (
                Box::new(|s| s.registered_delivery = 3),
                CommandStatus::ESME_RINVREGDLVFLG,
            ),
            (
                Box::new(|s| s.registered_delivery = 0x21),
                CommandStatus::ESME_RINVREGDLVFLG,
            ),
            (
                Box::new(|s| s.replace_if_present_flag = 2),
                CommandStatus::ESME_RINVREPFLAG,
            ),
            (Box::new(|s| s.sm_default_msg_id = 1), CommandStatus::ESME_RINVDFTMSGID),
            (
                Box::new(|s| s.schedule_delivery_time = SmppTime::try_from("261301120000000+").unwrap()),
                CommandStatus::ESME_RINVSCHED,
            ),
            (
                Box::new(|s| s.validity_period = SmppTime::try_from("200101120000000+").unwrap()),
                CommandStatus::ESME_RINVEXPIRY,
            ),
            (
                Box::new(|s| {
                    s.data_coding = 8;
                    s.short_message = Bytes::from_static(&[0, 0x41, 0]);
                }),
                CommandStatus::ESME_RINVMSGLEN,
            ),
            (
                Box::new(|s| {
                    s.esm_class = 0x40;
                    s.short_message = Bytes::from_static(&[5, 0, 3, 1]);
                }),
                CommandStatus::ESME_RINVMSGLEN,
            ),
        ];
        for (i, (change, status)) in cases.iter().enumerate() {
            let mut s = sm();
            change(&mut s);
            assert_eq!(check(&s).map(|_| ()), Err(*status), "case {i}");
        }
    }

    #[test]
    fn message_payload_becomes_the_message_and_other_tlvs_are_kept() {
        let mut s = sm();
        s.short_message = Bytes::new();
        let long = Bytes::from(vec![b'a'; 400]);
        s.tlvs = vec![Tlv::UserMessageReference(7), Tlv::MessagePayload(long.clone())];
        let record = check(&s).unwrap();
        assert_eq!(record.short_message, long);
        assert_eq!(record.parts, 3);
        assert_eq!(&record.tlvs[..], &[0x02, 0x04, 0x00, 0x02, 0x00, 0x07]);
    }

    #[test]
    fn part_counts() {
        assert_eq!(parts(0, 160, false), 1);
        assert_eq!(parts(0, 161, false), 2);
        assert_eq!(parts(0, 306, false), 2);
        assert_eq!(parts(0, 307, false), 3);
        assert_eq!(parts(8, 140, false), 1);
        assert_eq!(parts(8, 142, false), 2);
        assert_eq!(parts(4, 141, false), 2);
        assert_eq!(parts(0, 159, true), 1);
    }

    #[test]
    fn schedule_and_validity_are_resolved() {
        let mut s = sm();
        s.schedule_delivery_time = SmppTime::try_from("000000010000000R").unwrap();
        s.validity_period = SmppTime::try_from("000001000000000R").unwrap();
        let record = check(&s).unwrap();
        assert_eq!(record.schedule_at_ms, Some(NOW + 3_600_000));
        assert_eq!(record.expires_at_ms, Some(NOW + 86_400_000));
    }
}
