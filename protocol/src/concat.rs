//! Concatenated (multi-part) SMS: splitting a long text into SMPP parts,
//! parsing User Data Headers, and reassembling received parts.
//!
//! SMPP offers three ways to send a text longer than one SMS, all modelled by
//! [`ConcatMethod`]:
//! * a UDH concatenation element at the start of each `short_message`
//!   (esm_class UDHI bit 0x40 set), with an 8-bit (IEI 0x00) or 16-bit
//!   (IEI 0x08) reference, as 3GPP TS 23.040 §9.2.3.24.1/.8 define;
//! * the SAR TLVs `sar_msg_ref_num`, `sar_total_segments` and
//!   `sar_segment_seqnum`, the SMSC building the UDH itself;
//! * one `message_payload` TLV holding the whole text, the SMSC splitting it.
//!
//! GSM 7-bit parts are sent as unpacked septets (SMPP's convention for
//! `data_coding` 0), so the payload directly follows the UDH without fill
//! bits; the SMSC packs and aligns it for the air interface. Part capacities
//! are those of the air interface (140 octets including the UDH), so they
//! hold whichever way the SMSC transmits.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use bytes::{Bytes, BytesMut};

use crate::text::{encode_segments, TextEncoding, TextError};

/// IEI of the concatenation element with an 8-bit reference.
pub const IEI_CONCAT_8BIT: u8 = 0x00;
/// IEI of the concatenation element with a 16-bit reference.
pub const IEI_CONCAT_16BIT: u8 = 0x08;
/// Most parts one concatenated message can have (the counts are one octet).
pub const MAX_PARTS: usize = 255;
/// Most octets a `message_payload` TLV value can hold (16-bit TLV length).
pub const MAX_MESSAGE_PAYLOAD: usize = 65_535;

/// How a long text is carried over SMPP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConcatMethod {
    /// UDH IEI 0x00: 8-bit reference, UDHL 5 (6 header octets).
    Udh8,
    /// UDH IEI 0x08: 16-bit reference, UDHL 6 (7 header octets).
    Udh16,
    /// SAR TLVs on each part, no UDH in `short_message`.
    Sar,
    /// One part with the whole encoded text, for the `message_payload` TLV.
    MessagePayload,
}

impl ConcatMethod {
    /// Octets of UDH this method puts in each `short_message` (UDHL included).
    pub fn udh_octets(self) -> usize {
        match self {
            ConcatMethod::Udh8 => 6,
            ConcatMethod::Udh16 => 7,
            ConcatMethod::Sar | ConcatMethod::MessagePayload => 0,
        }
    }

    /// Units of `encoding` per part when a text needs more than one SMS:
    /// 153/67/134 for `Udh8`, 152/66/133 for `Udh16`. `Sar` uses the `Udh8`
    /// figures because the SMSC adds an 8-bit-reference UDH on delivery.
    /// `MessagePayload` is never split; this returns the TLV's limit.
    pub fn units_per_part(self, encoding: TextEncoding) -> usize {
        match self {
            ConcatMethod::Udh8 | ConcatMethod::Sar => encoding.concatenated_part_units(),
            ConcatMethod::Udh16 => encoding.units_per_part_with_udh(self.udh_octets()),
            ConcatMethod::MessagePayload => MAX_MESSAGE_PAYLOAD / encoding.octets_per_unit(),
        }
    }
}

/// The SAR TLV values of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sar {
    /// `sar_msg_ref_num`: the same for every part of a message.
    pub msg_ref_num: u16,
    /// `sar_total_segments`.
    pub total_segments: u8,
    /// `sar_segment_seqnum`, 1-based.
    pub segment_seqnum: u8,
}

/// One `submit_sm` worth of a split text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The `short_message` (or, for [`ConcatMethod::MessagePayload`], the
    /// `message_payload` value): UDH, if any, followed by the encoded text.
    pub short_message: Bytes,
    /// True when `short_message` starts with a UDH: set esm_class bit 0x40.
    pub udhi: bool,
    /// The SAR TLV values to send, for [`ConcatMethod::Sar`] multi-part texts.
    pub sar: Option<Sar>,
}

impl Part {
    fn plain(encoded: Vec<u8>) -> Part {
        Part {
            short_message: Bytes::from(encoded),
            udhi: false,
            sar: None,
        }
    }
}

/// Errors from [`split`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConcatError {
    /// The text cannot be encoded in the requested alphabet.
    #[error(transparent)]
    Text(#[from] TextError),
    /// The text needs more parts than a one-octet count can express.
    #[error("text needs {parts} parts, more than the {max} a concatenated message allows", max = MAX_PARTS)]
    TooManyParts {
        /// Parts the text would need.
        parts: usize,
    },
    /// The encoded text does not fit a `message_payload` TLV.
    #[error("encoded text is {len} octets, more than message_payload's {max}", max = MAX_MESSAGE_PAYLOAD)]
    PayloadTooLong {
        /// Encoded length in octets.
        len: usize,
    },
}

/// Splits `text` into SMPP parts.
///
/// A text that fits one SMS (160 septets / 70 UCS-2 units / 140 octets)
/// yields a single part with no UDH and no SAR, whatever `method` says. Longer
/// texts are cut at [`ConcatMethod::units_per_part`] units, never inside a
/// GSM escape pair or a UTF-16 surrogate pair, so every part decodes alone.
/// [`ConcatMethod::Udh8`] sends only the low 8 bits of `reference`.
pub fn split(
    text: &str,
    encoding: TextEncoding,
    method: ConcatMethod,
    reference: u16,
) -> Result<Vec<Part>, ConcatError> {
    let encoded = encoding.encode(text)?;
    if method == ConcatMethod::MessagePayload {
        if encoded.len() > MAX_MESSAGE_PAYLOAD {
            return Err(ConcatError::PayloadTooLong { len: encoded.len() });
        }
        return Ok(vec![Part::plain(encoded)]);
    }
    if encoded.len() / encoding.octets_per_unit() <= encoding.single_part_units() {
        return Ok(vec![Part::plain(encoded)]);
    }
    let segments = encode_segments(text, encoding, method.units_per_part(encoding))?;
    let total = u8::try_from(segments.len()).map_err(|_| ConcatError::TooManyParts { parts: segments.len() })?;
    let mut parts = Vec::with_capacity(segments.len());
    for (seqnum, segment) in (1..=total).zip(segments) {
        let info = ConcatInfo {
            reference,
            total,
            seqnum,
        };
        let part = match method {
            ConcatMethod::Udh8 | ConcatMethod::Udh16 => {
                let mut sm = BytesMut::with_capacity(method.udh_octets() + segment.len());
                sm.extend_from_slice(&info.udh(method == ConcatMethod::Udh16));
                sm.extend_from_slice(&segment);
                Part {
                    short_message: sm.freeze(),
                    udhi: true,
                    sar: None,
                }
            }
            ConcatMethod::Sar | ConcatMethod::MessagePayload => Part {
                short_message: Bytes::from(segment),
                udhi: false,
                sar: Some(Sar {
                    msg_ref_num: reference,
                    total_segments: total,
                    segment_seqnum: seqnum,
                }),
            },
        };
        parts.push(part);
    }
    Ok(parts)
}

/// The contents of a concatenation information element (or of SAR TLVs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcatInfo {
    /// Concatenated message reference (8-bit references are zero-extended).
    pub reference: u16,
    /// Total number of parts.
    pub total: u8,
    /// This part's 1-based sequence number.
    pub seqnum: u8,
}

impl ConcatInfo {
    /// The whole UDH (UDHL included) holding just this concatenation element.
    pub fn udh(self, sixteen_bit: bool) -> Vec<u8> {
        let [ref_high, ref_low] = self.reference.to_be_bytes();
        if sixteen_bit {
            vec![0x06, IEI_CONCAT_16BIT, 0x04, ref_high, ref_low, self.total, self.seqnum]
        } else {
            vec![0x05, IEI_CONCAT_8BIT, 0x03, ref_low, self.total, self.seqnum]
        }
    }
}

impl From<Sar> for ConcatInfo {
    fn from(sar: Sar) -> ConcatInfo {
        ConcatInfo {
            reference: sar.msg_ref_num,
            total: sar.total_segments,
            seqnum: sar.segment_seqnum,
        }
    }
}

/// One information element of a UDH, borrowed from the `short_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InformationElement<'a> {
    /// Information element identifier.
    pub iei: u8,
    /// The element's data (its length octet excluded).
    pub data: &'a [u8],
}

/// A parsed User Data Header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udh<'a> {
    elements: Vec<InformationElement<'a>>,
    header_octets: usize,
}

impl<'a> Udh<'a> {
    /// The information elements, in order.
    pub fn elements(&self) -> &[InformationElement<'a>] {
        &self.elements
    }

    /// Octets the UDH occupies, UDHL octet included (UDHL + 1). For packed
    /// GSM payloads, `text::gsm7::fill_bits_for_udh` of this gives the fill.
    pub fn header_octets(&self) -> usize {
        self.header_octets
    }

    /// The first usable concatenation element (IEI 0x00 or 0x08).
    ///
    /// Per 23.040 §9.2.3.24.1, an element with a wrong length, a zero total,
    /// or a sequence number of zero or above the total is ignored, and the
    /// search goes on with the next element.
    pub fn concat(&self) -> Option<ConcatInfo> {
        self.elements.iter().find_map(|ie| {
            let (reference, total, seqnum) = match (ie.iei, ie.data) {
                (IEI_CONCAT_8BIT, &[reference, total, seqnum]) => (u16::from(reference), total, seqnum),
                (IEI_CONCAT_16BIT, &[high, low, total, seqnum]) => (u16::from_be_bytes([high, low]), total, seqnum),
                _ => return None,
            };
            (total != 0 && seqnum != 0 && seqnum <= total).then_some(ConcatInfo {
                reference,
                total,
                seqnum,
            })
        })
    }
}

/// Malformed UDH errors from [`parse_udh`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdhError {
    /// The `short_message` is empty, so there is no UDHL octet.
    #[error("short_message is empty: no UDH length octet")]
    Empty,
    /// UDHL claims more octets than the `short_message` has.
    #[error("UDHL {udhl} runs past the end of the {available} octets after it")]
    UdhlPastEnd {
        /// The UDHL value.
        udhl: u8,
        /// Octets available after the UDHL octet.
        available: usize,
    },
    /// An element's header (IEI and length octets) is cut off by UDHL.
    #[error("information element at offset {offset} has no length octet inside the UDH")]
    TruncatedElement {
        /// Offset of the IEI within the `short_message`.
        offset: usize,
    },
    /// An element's length runs past the end of the UDH.
    #[error("information element 0x{iei:02X} at offset {offset} has length {length}, past the end of the UDH")]
    ElementPastEnd {
        /// Offset of the IEI within the `short_message`.
        offset: usize,
        /// The IEI.
        iei: u8,
        /// The element's declared length.
        length: u8,
    },
}

/// Splits a UDHI-flagged `short_message` into its UDH and the payload after
/// it. Malformed headers are errors, never panics.
pub fn parse_udh(short_message: &[u8]) -> Result<(Udh<'_>, &[u8]), UdhError> {
    let (&udhl, rest) = short_message.split_first().ok_or(UdhError::Empty)?;
    if usize::from(udhl) > rest.len() {
        return Err(UdhError::UdhlPastEnd {
            udhl,
            available: rest.len(),
        });
    }
    let (mut header, payload) = rest.split_at(usize::from(udhl));
    let mut elements = Vec::new();
    let mut offset = 1;
    while let Some((&iei, after_iei)) = header.split_first() {
        let (&length, after_len) = after_iei.split_first().ok_or(UdhError::TruncatedElement { offset })?;
        if usize::from(length) > after_len.len() {
            return Err(UdhError::ElementPastEnd { offset, iei, length });
        }
        let (data, next) = after_len.split_at(usize::from(length));
        elements.push(InformationElement { iei, data });
        header = next;
        offset += 2 + usize::from(length);
    }
    Ok((
        Udh {
            elements,
            header_octets: 1 + usize::from(udhl),
        },
        payload,
    ))
}

/// A fully received message from [`Reassembly::accept`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteMessage<K> {
    /// The caller's key the parts arrived under.
    pub key: K,
    /// The concatenation reference.
    pub reference: u16,
    /// Payloads in sequence order.
    pub parts: Vec<Bytes>,
}

impl<K> CompleteMessage<K> {
    /// All payloads joined, ready for `text::decode_short_message`. Decoding
    /// after joining also copes with senders that split escape or surrogate
    /// pairs across parts.
    pub fn concatenated(&self) -> Bytes {
        match self.parts.as_slice() {
            [only] => only.clone(),
            parts => {
                let mut joined = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                for part in parts {
                    joined.extend_from_slice(part);
                }
                joined.freeze()
            }
        }
    }
}

/// An incomplete message dropped to make room for a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted<K> {
    /// The caller's key.
    pub key: K,
    /// The concatenation reference.
    pub reference: u16,
    /// Parts the message should have had.
    pub total: u8,
    /// Parts received before it was dropped.
    pub received: u8,
}

/// What [`Reassembly::accept`] did with a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted<K> {
    /// Stored; the message still misses parts. Starting a new message when
    /// the bound is reached evicts the oldest incomplete one, reported here.
    Incomplete {
        /// Distinct parts held so far.
        received: u8,
        /// Parts expected.
        total: u8,
        /// The message dropped to make room, if any.
        evicted: Option<Evicted<K>>,
    },
    /// This seqnum was already held: the part was ignored.
    Duplicate {
        /// The repeated seqnum.
        seqnum: u8,
    },
    /// That part completed the message, which is no longer held.
    Complete(CompleteMessage<K>),
}

/// Parts rejected by [`Reassembly::accept`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// A total of zero parts.
    #[error("concatenated message total is 0")]
    ZeroTotal,
    /// Sequence numbers run from 1 to the total.
    #[error("seqnum {seqnum} is outside 1..={total}")]
    SeqnumOutOfRange {
        /// The rejected seqnum.
        seqnum: u8,
        /// The part's total.
        total: u8,
    },
    /// The part's total differs from that of earlier parts of the message.
    #[error("reference {reference}: total {actual} contradicts earlier total {expected}")]
    InconsistentTotal {
        /// The concatenation reference.
        reference: u16,
        /// Total of the parts already held.
        expected: u8,
        /// Total of this part.
        actual: u8,
    },
    /// A payload larger than the configured per-part bound.
    #[error("part payload of {len} octets exceeds the {max}-octet bound")]
    PartTooLarge {
        /// Payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

#[derive(Debug)]
struct Pending {
    total: u8,
    parts: Vec<Option<Bytes>>,
    received: u8,
    /// Insertion stamp, the key of this message in `Reassembly::by_age`.
    stamp: u64,
}

/// Collects the parts of concatenated messages, in any order, until each
/// message is complete.
///
/// Messages are told apart by the caller's key `K` (for instance source and
/// destination addresses) together with the concatenation reference. Memory
/// is bounded: at most `max_messages` incomplete messages are held (the
/// oldest is evicted, and reported, to make room) and each payload is at
/// most `max_part_octets`, so no more than
/// `max_messages × 255 × max_part_octets` payload octets are ever buffered.
/// A part arriving after its message completed or was evicted starts a new
/// message; callers wanting time-based expiry can [`discard`](Self::discard).
#[derive(Debug)]
pub struct Reassembly<K> {
    max_messages: usize,
    max_part_octets: usize,
    pending: HashMap<(K, u16), Pending>,
    by_age: BTreeMap<u64, (K, u16)>,
    next_stamp: u64,
}

impl<K: Hash + Eq + Clone> Reassembly<K> {
    /// Default per-part payload bound: the largest `short_message` (254
    /// octets); raise it with [`with_max_part_octets`](Self::with_max_part_octets)
    /// for parts taken from `message_payload`.
    pub const DEFAULT_MAX_PART_OCTETS: usize = 254;

    /// Holds at most `max_messages` incomplete messages (at least 1).
    pub fn new(max_messages: usize) -> Self {
        Reassembly {
            max_messages: max_messages.max(1),
            max_part_octets: Self::DEFAULT_MAX_PART_OCTETS,
            pending: HashMap::new(),
            by_age: BTreeMap::new(),
            next_stamp: 0,
        }
    }

    /// Sets the largest payload accepted per part.
    pub fn with_max_part_octets(mut self, max_part_octets: usize) -> Self {
        self.max_part_octets = max_part_octets;
        self
    }

    /// Number of incomplete messages held.
    pub fn pending_messages(&self) -> usize {
        self.pending.len()
    }

    /// Drops an incomplete message; returns whether it was held.
    pub fn discard(&mut self, key: &K, reference: u16) -> bool {
        match self.pending.remove(&(key.clone(), reference)) {
            Some(pending) => {
                self.by_age.remove(&pending.stamp);
                true
            }
            None => false,
        }
    }

    /// Offers one part. `payload` is the text after any UDH.
    pub fn accept(&mut self, key: K, info: ConcatInfo, payload: Bytes) -> Result<Accepted<K>, ReassemblyError> {
        let ConcatInfo {
            reference,
            total,
            seqnum,
        } = info;
        if total == 0 {
            return Err(ReassemblyError::ZeroTotal);
        }
        if seqnum == 0 || seqnum > total {
            return Err(ReassemblyError::SeqnumOutOfRange { seqnum, total });
        }
        if payload.len() > self.max_part_octets {
            return Err(ReassemblyError::PartTooLarge {
                len: payload.len(),
                max: self.max_part_octets,
            });
        }
        if total == 1 {
            return Ok(Accepted::Complete(CompleteMessage {
                key,
                reference,
                parts: vec![payload],
            }));
        }
        let slot = usize::from(seqnum - 1);
        let map_key = (key, reference);
        if let Some(pending) = self.pending.get_mut(&map_key) {
            if pending.total != total {
                return Err(ReassemblyError::InconsistentTotal {
                    reference,
                    expected: pending.total,
                    actual: total,
                });
            }
            match pending.parts.get_mut(slot) {
                Some(Some(_)) | None => return Ok(Accepted::Duplicate { seqnum }),
                Some(empty) => *empty = Some(payload),
            }
            pending.received += 1;
            if pending.received < total {
                return Ok(Accepted::Incomplete {
                    received: pending.received,
                    total,
                    evicted: None,
                });
            }
            let Some(done) = self.pending.remove(&map_key) else {
                // Unreachable: the entry was just borrowed. Report it as still
                // incomplete rather than panic.
                return Ok(Accepted::Incomplete {
                    received: total,
                    total,
                    evicted: None,
                });
            };
            self.by_age.remove(&done.stamp);
            let (key, reference) = map_key;
            let parts = done.parts.into_iter().flatten().collect();
            return Ok(Accepted::Complete(CompleteMessage { key, reference, parts }));
        }

        let evicted = if self.pending.len() >= self.max_messages {
            self.evict_oldest()
        } else {
            None
        };
        let mut parts = vec![None; usize::from(total)];
        if let Some(s) = parts.get_mut(slot) {
            *s = Some(payload);
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.by_age.insert(stamp, map_key.clone());
        self.pending.insert(
            map_key,
            Pending {
                total,
                parts,
                received: 1,
                stamp,
            },
        );
        Ok(Accepted::Incomplete {
            received: 1,
            total,
            evicted,
        })
    }

    fn evict_oldest(&mut self) -> Option<Evicted<K>> {
        let (_, (key, reference)) = self.by_age.pop_first()?;
        let pending = self.pending.remove(&(key.clone(), reference))?;
        Some(Evicted {
            key,
            reference,
            total: pending.total,
            received: pending.received,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{choose_encoding, decode_short_message, gsm7};
    use proptest::prelude::*;

    const ALL_METHODS: [ConcatMethod; 4] = [
        ConcatMethod::Udh8,
        ConcatMethod::Udh16,
        ConcatMethod::Sar,
        ConcatMethod::MessagePayload,
    ];

    /// What a receiving SMSC/ESME would extract from a part.
    fn info_and_payload(part: &Part, reference: u16) -> (ConcatInfo, Bytes) {
        if part.udhi {
            let (udh, _) = parse_udh(&part.short_message).expect("well-formed UDH");
            let info = udh.concat().expect("concat IE");
            (info, part.short_message.slice(udh.header_octets()..))
        } else if let Some(sar) = part.sar {
            (sar.into(), part.short_message.clone())
        } else {
            (
                ConcatInfo {
                    reference,
                    total: 1,
                    seqnum: 1,
                },
                part.short_message.clone(),
            )
        }
    }

    /// Splits, checks part sizes, reassembles in reverse order with a
    /// duplicate, and decodes.
    fn round_trip(text: &str, encoding: TextEncoding, method: ConcatMethod, reference: u16) -> String {
        let parts = split(text, encoding, method, reference).expect("split");
        for part in &parts {
            let limit = if method == ConcatMethod::MessagePayload {
                MAX_MESSAGE_PAYLOAD
            } else {
                254
            };
            assert!(part.short_message.len() <= limit, "{} octets", part.short_message.len());
            assert!(part.udhi == matches!(method, ConcatMethod::Udh8 | ConcatMethod::Udh16) || parts.len() == 1);
        }
        let mut reassembly = Reassembly::new(2).with_max_part_octets(MAX_MESSAGE_PAYLOAD);
        let mut complete = None;
        let mut feed: Vec<&Part> = parts.iter().rev().collect();
        if parts.len() > 1 {
            feed.insert(1, &parts[parts.len() - 1]);
        }
        for part in feed {
            let (info, payload) = info_and_payload(part, reference);
            match reassembly.accept("peer", info, payload).expect("accepted") {
                Accepted::Complete(message) => complete = Some(message.concatenated()),
                Accepted::Duplicate { .. } | Accepted::Incomplete { evicted: None, .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(reassembly.pending_messages(), 0);
        let bytes = complete.expect("message completed");
        decode_short_message(encoding.data_coding(), &bytes).expect("decodes")
    }

    #[test]
    fn short_text_is_one_plain_part() {
        for method in ALL_METHODS {
            let parts = split("Hello €", TextEncoding::Gsm7, method, 7).unwrap();
            assert_eq!(parts.len(), 1);
            assert_eq!(
                parts[0],
                Part::plain(vec![0x48, 0x65, 0x6C, 0x6C, 0x6F, 0x20, 0x1B, 0x65])
            );
        }
        let parts = split(&"a".repeat(160), TextEncoding::Gsm7, ConcatMethod::Udh8, 1).unwrap();
        assert_eq!(parts.len(), 1);
        assert!(!parts[0].udhi);
    }

    #[test]
    fn udh8_parts() {
        let text = "a".repeat(161);
        let parts = split(&text, TextEncoding::Gsm7, ConcatMethod::Udh8, 0x1234).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[0].short_message[..6], &[0x05, 0x00, 0x03, 0x34, 0x02, 0x01]);
        assert_eq!(parts[0].short_message.len(), 6 + 153);
        assert_eq!(&parts[1].short_message[..6], &[0x05, 0x00, 0x03, 0x34, 0x02, 0x02]);
        assert_eq!(parts[1].short_message.len(), 6 + 8);
        assert!(parts.iter().all(|p| p.udhi && p.sar.is_none()));
    }

    #[test]
    fn udh16_parts() {
        let text = "中".repeat(71);
        let parts = split(&text, TextEncoding::Ucs2, ConcatMethod::Udh16, 0x1234).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            &parts[0].short_message[..7],
            &[0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01]
        );
        assert_eq!(parts[0].short_message.len(), 7 + 66 * 2);
        assert_eq!(parts[1].short_message.len(), 7 + 5 * 2);
        let gsm = split(&"x".repeat(305), TextEncoding::Gsm7, ConcatMethod::Udh16, 1).unwrap();
        assert_eq!(gsm.len(), 3, "152 septets per part");
        assert_eq!(gsm[0].short_message.len(), 7 + 152);
        let octets = split(&"x".repeat(141), TextEncoding::Latin1, ConcatMethod::Udh16, 1).unwrap();
        assert_eq!(octets[0].short_message.len(), 7 + 133);
    }

    #[test]
    fn sar_parts() {
        let parts = split(&"b".repeat(400), TextEncoding::Gsm7, ConcatMethod::Sar, 0xBEEF).unwrap();
        assert_eq!(parts.len(), 3);
        for (i, part) in parts.iter().enumerate() {
            assert!(!part.udhi);
            assert_eq!(
                part.sar,
                Some(Sar {
                    msg_ref_num: 0xBEEF,
                    total_segments: 3,
                    segment_seqnum: i as u8 + 1
                })
            );
        }
        assert_eq!(parts[0].short_message.len(), 153);
    }

    #[test]
    fn message_payload_is_one_part() {
        let parts = split(&"c".repeat(1000), TextEncoding::Gsm7, ConcatMethod::MessagePayload, 1).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].short_message.len(), 1000);
        assert!(!parts[0].udhi && parts[0].sar.is_none());
        let err = split(&"c".repeat(70_000), TextEncoding::Gsm7, ConcatMethod::MessagePayload, 1).unwrap_err();
        assert_eq!(err, ConcatError::PayloadTooLong { len: 70_000 });
    }

    #[test]
    fn split_never_breaks_pairs() {
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let parts = split(&text, TextEncoding::Gsm7, ConcatMethod::Udh8, 9).unwrap();
        assert_eq!(parts[0].short_message.len(), 6 + 152);
        assert_eq!(&parts[1].short_message[6..8], &[0x1B, 0x65]);

        let text = format!("{}😀{}", "中".repeat(66), "中".repeat(10));
        let parts = split(&text, TextEncoding::Ucs2, ConcatMethod::Udh8, 9).unwrap();
        assert_eq!(parts[0].short_message.len(), 6 + 132);
        assert_eq!(&parts[1].short_message[6..10], &[0xD8, 0x3D, 0xDE, 0x00]);
    }

    #[test]
    fn too_many_parts() {
        assert_eq!(
            split(&"a".repeat(255 * 153), TextEncoding::Gsm7, ConcatMethod::Udh8, 1)
                .unwrap()
                .len(),
            255
        );
        let err = split(&"a".repeat(255 * 153 + 1), TextEncoding::Gsm7, ConcatMethod::Udh8, 1).unwrap_err();
        assert_eq!(err, ConcatError::TooManyParts { parts: 256 });
        assert!(err.to_string().contains("256"));
    }

    #[test]
    fn split_reports_unrepresentable() {
        let err = split("a中", TextEncoding::Gsm7, ConcatMethod::Udh8, 1).unwrap_err();
        assert!(matches!(
            err,
            ConcatError::Text(TextError::Unrepresentable { ch: '中', .. })
        ));
    }

    #[test]
    fn parse_udh_elements_and_concat() {
        // A port-addressing IE (0x05) before a 16-bit concat IE.
        let sm = [
            0x0C, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x08, 0x04, 0xAB, 0xCD, 0x03, 0x02, b'h', b'i',
        ];
        let (udh, payload) = parse_udh(&sm).unwrap();
        assert_eq!(payload, b"hi");
        assert_eq!(udh.header_octets(), 13);
        assert_eq!(udh.elements().len(), 2);
        assert_eq!(
            udh.elements()[0],
            InformationElement {
                iei: 0x05,
                data: &[0x0B, 0x84, 0x23, 0xF0]
            }
        );
        assert_eq!(
            udh.concat(),
            Some(ConcatInfo {
                reference: 0xABCD,
                total: 3,
                seqnum: 2
            })
        );

        let (udh, payload) = parse_udh(&[0x05, 0x00, 0x03, 0x7F, 0x02, 0x01]).unwrap();
        assert!(payload.is_empty());
        assert_eq!(
            udh.concat(),
            Some(ConcatInfo {
                reference: 0x7F,
                total: 2,
                seqnum: 1
            })
        );

        let (udh, payload) = parse_udh(&[0x00, 0x41]).unwrap();
        assert!(udh.elements().is_empty() && udh.concat().is_none());
        assert_eq!(payload, b"A");
    }

    #[test]
    fn invalid_concat_elements_are_ignored() {
        // seqnum 0, seqnum > total, total 0, wrong length: all ignored.
        for sm in [
            &[0x05, 0x00, 0x03, 0x01, 0x02, 0x00][..],
            &[0x05, 0x00, 0x03, 0x01, 0x02, 0x03],
            &[0x05, 0x00, 0x03, 0x01, 0x00, 0x00],
            &[0x04, 0x00, 0x02, 0x01, 0x02],
        ] {
            assert_eq!(parse_udh(sm).unwrap().0.concat(), None, "{sm:02X?}");
        }
        // A bad one followed by a good one: the good one is used.
        let sm = [0x0A, 0x00, 0x03, 0x01, 0x02, 0x09, 0x00, 0x03, 0x02, 0x02, 0x01];
        assert_eq!(
            parse_udh(&sm).unwrap().0.concat(),
            Some(ConcatInfo {
                reference: 2,
                total: 2,
                seqnum: 1
            })
        );
    }

    #[test]
    fn malformed_udh_errors() {
        assert_eq!(parse_udh(&[]), Err(UdhError::Empty));
        assert_eq!(
            parse_udh(&[0x05, 0x00, 0x03]),
            Err(UdhError::UdhlPastEnd { udhl: 5, available: 2 })
        );
        assert_eq!(
            parse_udh(&[0x01, 0x00, 0x41]),
            Err(UdhError::TruncatedElement { offset: 1 })
        );
        assert_eq!(
            parse_udh(&[0x03, 0x00, 0x03, 0x01, 0x41, 0x42]),
            Err(UdhError::ElementPastEnd {
                offset: 1,
                iei: 0x00,
                length: 3
            })
        );
        assert_eq!(
            parse_udh(&[0x04, 0x24, 0x00, 0x00, 0x05, 0x41]),
            Err(UdhError::ElementPastEnd {
                offset: 3,
                iei: 0x00,
                length: 5
            })
        );
    }

    fn info(reference: u16, total: u8, seqnum: u8) -> ConcatInfo {
        ConcatInfo {
            reference,
            total,
            seqnum,
        }
    }

    #[test]
    fn reassembly_out_of_order_with_duplicates() {
        let mut r = Reassembly::new(8);
        let key = ("src", "dst");
        assert_eq!(
            r.accept(key, info(5, 3, 3), Bytes::from_static(b"C")),
            Ok(Accepted::Incomplete {
                received: 1,
                total: 3,
                evicted: None
            })
        );
        assert_eq!(
            r.accept(key, info(5, 3, 1), Bytes::from_static(b"A")),
            Ok(Accepted::Incomplete {
                received: 2,
                total: 3,
                evicted: None
            })
        );
        assert_eq!(
            r.accept(key, info(5, 3, 1), Bytes::from_static(b"X")),
            Ok(Accepted::Duplicate { seqnum: 1 })
        );
        // Same key, other reference: a separate message.
        assert!(matches!(
            r.accept(key, info(6, 2, 1), Bytes::from_static(b"Z")),
            Ok(Accepted::Incomplete { .. })
        ));
        let Ok(Accepted::Complete(message)) = r.accept(key, info(5, 3, 2), Bytes::from_static(b"B")) else {
            panic!("should complete");
        };
        assert_eq!(message.key, key);
        assert_eq!(message.reference, 5);
        assert_eq!(
            message.parts,
            vec![
                Bytes::from_static(b"A"),
                Bytes::from_static(b"B"),
                Bytes::from_static(b"C")
            ]
        );
        assert_eq!(message.concatenated(), Bytes::from_static(b"ABC"));
        assert_eq!(r.pending_messages(), 1);
    }

    #[test]
    fn reassembly_single_part_completes_at_once() {
        let mut r: Reassembly<u32> = Reassembly::new(1);
        let Ok(Accepted::Complete(m)) = r.accept(1, info(0, 1, 1), Bytes::from_static(b"x")) else {
            panic!("single part completes");
        };
        assert_eq!(m.concatenated(), Bytes::from_static(b"x"));
        assert_eq!(r.pending_messages(), 0);
    }

    #[test]
    fn reassembly_rejects_bad_parts() {
        let mut r = Reassembly::new(4).with_max_part_octets(4);
        assert_eq!(
            r.accept(1, info(1, 0, 0), Bytes::new()),
            Err(ReassemblyError::ZeroTotal)
        );
        assert_eq!(
            r.accept(1, info(1, 2, 0), Bytes::new()),
            Err(ReassemblyError::SeqnumOutOfRange { seqnum: 0, total: 2 })
        );
        assert_eq!(
            r.accept(1, info(1, 2, 3), Bytes::new()),
            Err(ReassemblyError::SeqnumOutOfRange { seqnum: 3, total: 2 })
        );
        assert_eq!(
            r.accept(1, info(1, 2, 1), Bytes::from_static(b"12345")),
            Err(ReassemblyError::PartTooLarge { len: 5, max: 4 })
        );
        assert!(r.accept(1, info(1, 2, 1), Bytes::from_static(b"a")).is_ok());
        assert_eq!(
            r.accept(1, info(1, 3, 2), Bytes::from_static(b"b")),
            Err(ReassemblyError::InconsistentTotal {
                reference: 1,
                expected: 2,
                actual: 3
            })
        );
        // The held message is unaffected and still completes.
        assert!(matches!(
            r.accept(1, info(1, 2, 2), Bytes::from_static(b"b")),
            Ok(Accepted::Complete(_))
        ));
    }

    #[test]
    fn reassembly_evicts_oldest() {
        let mut r = Reassembly::new(2);
        r.accept("a", info(1, 2, 1), Bytes::from_static(b"a")).unwrap();
        r.accept("b", info(1, 3, 1), Bytes::from_static(b"b")).unwrap();
        r.accept("b", info(1, 3, 2), Bytes::from_static(b"b")).unwrap();
        assert_eq!(
            r.accept("c", info(1, 2, 1), Bytes::from_static(b"c")),
            Ok(Accepted::Incomplete {
                received: 1,
                total: 2,
                evicted: Some(Evicted {
                    key: "a",
                    reference: 1,
                    total: 2,
                    received: 1
                })
            })
        );
        assert_eq!(r.pending_messages(), 2);
        let Ok(Accepted::Incomplete { evicted: Some(e), .. }) = r.accept("d", info(1, 2, 1), Bytes::new()) else {
            panic!("evicts");
        };
        assert_eq!(e.key, "b");
        assert!(r.discard(&"c", 1));
        assert!(!r.discard(&"c", 1));
        assert_eq!(r.pending_messages(), 1);
    }

    #[test]
    fn round_trip_every_method_and_encoding() {
        let long_gsm = "The quick brown fox {jumps} over [the] lazy dog €~|^\\ ".repeat(12);
        let long_uni = "Привет, мир! 😀 你好 ".repeat(20);
        for method in ALL_METHODS {
            assert_eq!(round_trip(&long_gsm, TextEncoding::Gsm7, method, 300), long_gsm);
            assert_eq!(round_trip(&long_uni, TextEncoding::Ucs2, method, 300), long_uni);
            assert_eq!(
                round_trip(&"é".repeat(500), TextEncoding::Latin1, method, 1),
                "é".repeat(500)
            );
            assert_eq!(
                round_trip(&"~".repeat(500), TextEncoding::Ia5, method, 1),
                "~".repeat(500)
            );
            assert_eq!(round_trip("", TextEncoding::Gsm7, method, 1), "");
        }
    }

    fn gsm_text() -> impl Strategy<Value = String> {
        let alphabet: Vec<char> = gsm7::alphabet().collect();
        prop::collection::vec(prop::sample::select(alphabet), 0..700).prop_map(|chars| chars.into_iter().collect())
    }

    fn method() -> impl Strategy<Value = ConcatMethod> {
        prop::sample::select(ALL_METHODS.to_vec())
    }

    proptest! {
        #[test]
        fn gsm_round_trip(text in gsm_text(), method in method(), reference in any::<u16>()) {
            prop_assert_eq!(choose_encoding(&text), TextEncoding::Gsm7);
            prop_assert_eq!(round_trip(&text, TextEncoding::Gsm7, method, reference), text);
        }

        #[test]
        fn unicode_round_trip(chars in prop::collection::vec(any::<char>(), 0..400), method in method(), reference in any::<u16>()) {
            let text: String = chars.into_iter().collect();
            let encoding = choose_encoding(&text);
            prop_assert_eq!(round_trip(&text, encoding, method, reference), text.clone());
            prop_assert_eq!(round_trip(&text, TextEncoding::Ucs2, method, reference), text);
        }

        #[test]
        fn latin1_round_trip(chars in prop::collection::vec(any::<u8>(), 0..600), method in method()) {
            let text: String = chars.into_iter().map(char::from).collect();
            prop_assert_eq!(round_trip(&text, TextEncoding::Latin1, method, 1), text);
        }

        #[test]
        fn ia5_round_trip(chars in prop::collection::vec(0u8..0x80, 0..600), method in method()) {
            let text: String = chars.into_iter().map(char::from).collect();
            prop_assert_eq!(round_trip(&text, TextEncoding::Ia5, method, 1), text);
        }

        #[test]
        fn count_parts_matches_split(text in gsm_text()) {
            let count = crate::text::count_parts(&text, TextEncoding::Gsm7).unwrap();
            let parts = split(&text, TextEncoding::Gsm7, ConcatMethod::Udh8, 0).unwrap();
            prop_assert_eq!(count.parts, parts.len());
        }

        #[test]
        fn parse_udh_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((udh, payload)) = parse_udh(&bytes) {
                prop_assert_eq!(udh.header_octets() + payload.len(), bytes.len());
                let _ = udh.concat();
            }
        }

        #[test]
        fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), dc in any::<u8>(), count in 0usize..400, fill in 0u8..10) {
            let _ = decode_short_message(dc, &bytes);
            let _ = gsm7::decode_unpacked_lossy(&bytes);
            let _ = crate::text::ucs2::decode_lossy(&bytes);
            let _ = gsm7::unpack_septets(&bytes, count, fill);
        }

        #[test]
        fn packing_round_trips(text in gsm_text(), fill in 0u8..=6) {
            let (packed, count) = gsm7::encode_packed(&text, fill).unwrap();
            prop_assert_eq!(gsm7::decode_packed(&packed, count, fill).unwrap(), text);
        }
    }
}
