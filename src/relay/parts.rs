//! Splitting a stored message into the submits an upstream takes.
//!
//! A client may send a long message in one `submit_sm` (`message_payload`,
//! or up to 254 octets of `short_message`). Many carriers take only one SMS
//! (140 octets) per submit, so each upstream says how it wants long
//! messages ([`LongMessages`]): as they are (`message_payload`), or cut into
//! concatenated parts with a UDH or with SAR TLVs.
//!
//! The cut works on the stored octets, not on decoded text, so nothing is
//! re-encoded: GSM 03.38 (data_coding 0 and 1, one septet per octet as SMPP
//! carries it) is cut at 153 septets but never between an escape (0x1B) and
//! the character it escapes; UCS-2 (data_coding 8) at 67 characters but
//! never inside a surrogate pair; anything else at 134 octets. A message
//! that fits one SMS, or that the client already split (UDHI set), is sent
//! as it is.
//!
//! [`split`] is deterministic, so the relay (which sends the parts in order
//! and records how many left) and the receipt correlator (which needs the
//! number of parts to know when a message is final) agree on the count.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use smsmax_protocol::concat::{ConcatInfo, Sar};

/// How an upstream takes messages longer than one SMS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongMessages {
    /// One submit_sm with the whole message in `message_payload` (when over 254 octets).
    #[default]
    Payload,
    /// Concatenated parts, each with an 8-bit-reference UDH (esm_class UDHI set).
    Udh,
    /// Concatenated parts, each with the SAR TLVs and no UDH.
    Sar,
}

/// One submit's worth of a stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The octets to send (UDH first when `udhi`).
    pub short_message: Bytes,
    /// Set esm_class bit 0x40.
    pub udhi: bool,
    /// The SAR TLVs to add.
    pub sar: Option<Sar>,
}

/// esm_class bit: short_message starts with a UDH.
pub const ESM_UDHI: u8 = 0x40;

/// Octets of one SMS without a UDH, and per part with an 8-bit concatenation UDH.
const SINGLE_OCTETS: usize = 140;
const PART_OCTETS: usize = 134;
/// GSM septets (one per octet in SMPP) of one SMS, and per concatenated part.
const SINGLE_SEPTETS: usize = 160;
const PART_SEPTETS: usize = 153;
/// The GSM 03.38 escape to the extension table.
const GSM_ESCAPE: u8 = 0x1B;

/// A concatenation reference for a message, the same on every attempt (so
/// a part sent again after a failure joins the parts already delivered).
pub fn reference(id: &str) -> u16 {
    // FNV-1a, folded to 16 bits: cheap, stable across versions and nodes.
    let mut hash: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    ((hash >> 16) ^ (hash & 0xFFFF)) as u16
}

/// The parts `message` is sent in to an upstream that takes long messages
/// as `method`. Always at least one part; at most 255 (the UDH count is one
/// octet): a longer message goes as one `message_payload` part whatever the
/// method, so it is never cut wrongly.
pub fn split(data_coding: u8, message: &Bytes, udhi: bool, method: LongMessages, reference: u16) -> Vec<Part> {
    let whole = || {
        vec![Part {
            short_message: message.clone(),
            udhi,
            sar: None,
        }]
    };
    if method == LongMessages::Payload || udhi {
        return whole();
    }
    let cuts = match data_coding {
        0x00 | 0x01 => cut(
            message,
            SINGLE_SEPTETS,
            PART_SEPTETS,
            |chunk| chunk.last() == Some(&GSM_ESCAPE),
            1,
        ),
        0x08 => cut(message, SINGLE_OCTETS, PART_OCTETS, ends_in_high_surrogate, 2),
        _ => cut(message, SINGLE_OCTETS, PART_OCTETS, |_| false, 1),
    };
    let Some(cuts) = cuts else { return whole() };
    let Ok(total) = u8::try_from(cuts.len()) else {
        return whole();
    };
    cuts.into_iter()
        .zip(1..=total)
        .map(|(segment, seqnum)| {
            let info = ConcatInfo {
                reference,
                total,
                seqnum,
            };
            match method {
                LongMessages::Udh => {
                    let udh = info.udh(false);
                    let mut sm = BytesMut::with_capacity(udh.len() + segment.len());
                    sm.extend_from_slice(&udh);
                    sm.extend_from_slice(&segment);
                    Part {
                        short_message: sm.freeze(),
                        udhi: true,
                        sar: None,
                    }
                }
                LongMessages::Sar | LongMessages::Payload => Part {
                    short_message: segment,
                    udhi: false,
                    sar: Some(Sar {
                        msg_ref_num: reference,
                        total_segments: total,
                        segment_seqnum: seqnum,
                    }),
                },
            }
        })
        .collect()
}

/// How many parts [`split`] makes (for the receipt policy).
pub fn count(data_coding: u8, message: &Bytes, udhi: bool, method: LongMessages) -> u16 {
    split(data_coding, message, udhi, method, 0).len() as u16
}

/// Cuts `message` into chunks of at most `per_part` octets (stepping back
/// `unit` octets while `splits_unit` says a chunk would end inside a
/// character); `None` when it fits in `single`.
fn cut(
    message: &Bytes,
    single: usize,
    per_part: usize,
    splits_unit: impl Fn(&[u8]) -> bool,
    unit: usize,
) -> Option<Vec<Bytes>> {
    if message.len() <= single {
        return None;
    }
    let mut chunks = Vec::with_capacity(message.len().div_ceil(per_part));
    let mut start = 0;
    while start < message.len() {
        let mut end = (start + per_part).min(message.len());
        if end < message.len() && splits_unit(&message[start..end]) && end - start > unit {
            end -= unit;
        }
        chunks.push(message.slice(start..end));
        start = end;
    }
    Some(chunks)
}

fn ends_in_high_surrogate(chunk: &[u8]) -> bool {
    match chunk {
        [.., hi, _lo] => (0xD8..=0xDB).contains(hi),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smsmax_protocol::concat::parse_udh;

    fn joined(parts: &[Part]) -> Vec<u8> {
        parts
            .iter()
            .flat_map(|p| {
                let body = if p.udhi {
                    parse_udh(&p.short_message).expect("udh").1.to_vec()
                } else {
                    p.short_message.to_vec()
                };
                body
            })
            .collect()
    }

    #[test]
    fn short_or_client_split_or_payload_messages_are_one_part() {
        let msg = Bytes::from(vec![b'a'; 160]);
        assert_eq!(split(0, &msg, false, LongMessages::Udh, 7).len(), 1);
        let long = Bytes::from(vec![b'a'; 200]);
        assert_eq!(split(0, &long, false, LongMessages::Payload, 7).len(), 1);
        let parts = split(0, &long, true, LongMessages::Udh, 7);
        assert_eq!(parts.len(), 1);
        assert!(parts[0].udhi, "the client's own UDH is kept");
    }

    #[test]
    fn gsm_parts_are_153_septets_with_a_udh_and_in_order() {
        let msg = Bytes::from((0..400u32).map(|i| b'a' + (i % 26) as u8).collect::<Vec<_>>());
        let parts = split(0, &msg, false, LongMessages::Udh, 0x1234);
        assert_eq!(parts.len(), 3);
        for (i, p) in parts.iter().enumerate() {
            assert!(p.udhi);
            let (udh, _) = parse_udh(&p.short_message).unwrap();
            let info = udh.concat().unwrap();
            assert_eq!((info.reference, info.total, info.seqnum), (0x34, 3, i as u8 + 1));
        }
        assert_eq!(parts[0].short_message.len(), 6 + 153);
        assert_eq!(joined(&parts), msg.to_vec());
        assert_eq!(count(0, &msg, false, LongMessages::Udh), 3);
    }

    #[test]
    fn a_gsm_escape_is_never_split_from_its_character() {
        let mut raw = vec![b'a'; 152];
        raw.extend_from_slice(&[GSM_ESCAPE, 0x65]); // the euro sign straddles 153
        raw.extend(vec![b'b'; 50]);
        let msg = Bytes::from(raw);
        let parts = split(0, &msg, false, LongMessages::Udh, 1);
        let first = parse_udh(&parts[0].short_message).unwrap().1;
        assert_eq!(first.len(), 152);
        assert_eq!(first.last(), Some(&b'a'));
        assert_eq!(joined(&parts), msg.to_vec());
    }

    #[test]
    fn ucs2_parts_never_split_a_surrogate_pair() {
        let mut raw = Vec::new();
        for _ in 0..66 {
            raw.extend_from_slice(&[0x00, 0x41]);
        }
        raw.extend_from_slice(&[0xD8, 0x3D, 0xDE, 0x00]); // U+1F600 at units 67-68
        for _ in 0..20 {
            raw.extend_from_slice(&[0x00, 0x42]);
        }
        let msg = Bytes::from(raw);
        let parts = split(8, &msg, false, LongMessages::Udh, 1);
        let first = parse_udh(&parts[0].short_message).unwrap().1;
        assert_eq!(first.len(), 132, "the pair moves to the next part");
        assert_eq!(joined(&parts), msg.to_vec());
    }

    #[test]
    fn sar_parts_carry_the_tlv_values_and_no_udh() {
        let msg = Bytes::from(vec![0xAB; 300]);
        let parts = split(4, &msg, false, LongMessages::Sar, 0xBEEF);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| !p.udhi));
        assert_eq!(
            parts[2].sar,
            Some(Sar {
                msg_ref_num: 0xBEEF,
                total_segments: 3,
                segment_seqnum: 3
            })
        );
        assert_eq!(joined(&parts), msg.to_vec());
    }

    #[test]
    fn the_reference_is_stable() {
        assert_eq!(reference("abc"), reference("abc"));
        assert_ne!(reference("abc"), reference("abd"));
    }

    proptest::proptest! {
        #[test]
        fn parts_rejoin_to_the_message(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..2000), dc in proptest::sample::select(vec![0u8, 3, 4, 8])) {
            let msg = Bytes::from(raw);
            let parts = split(dc, &msg, false, LongMessages::Udh, 9);
            proptest::prop_assert_eq!(joined(&parts), msg.to_vec());
            // SMPP carries GSM unpacked, one septet per octet: a message
            // left whole holds up to 160, a part 6 + 153.
            let max = match (dc, parts.len()) {
                (0, 1) => 160,
                (0, _) => 159,
                _ => 140,
            };
            for p in &parts {
                proptest::prop_assert!(p.short_message.len() <= max);
            }
        }
    }
}
