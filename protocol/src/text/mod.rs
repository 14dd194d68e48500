//! Text encodings of SMPP `short_message` / `message_payload` and SMS part
//! counting.
//!
//! * [`gsm7`]: GSM 03.38 default alphabet + extension table, unpacked
//!   (SMPP's usual form for `data_coding` 0) and packed.
//! * [`ucs2`]: UCS-2 as UTF-16BE, surrogate pairs included.
//! * [`latin1`]: Latin-1 and IA5/ASCII.
//!
//! [`TextEncoding`] ties these to `data_coding` values, [`choose_encoding`]
//! picks the cheapest one for a text, and [`count_parts`] tells how many SMS
//! a text costs.

pub mod gsm7;
pub mod latin1;
pub mod ucs2;

use std::fmt;

/// Errors from encoding or decoding text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A character has no representation in the target alphabet.
    #[error("character {ch:?} (U+{:04X}) at position {position} cannot be encoded in {encoding}", u32::from(*ch))]
    Unrepresentable {
        /// The offending character.
        ch: char,
        /// Its index in the text, counted in chars.
        position: usize,
        /// The alphabet that lacks it.
        encoding: TextEncoding,
    },
    /// An octet that is not valid in the alphabet (above 0x7F for GSM septets
    /// or IA5).
    #[error("octet 0x{value:02X} at offset {offset} is not valid {encoding}")]
    InvalidByte {
        /// The alphabet being decoded.
        encoding: TextEncoding,
        /// Offset of the octet.
        offset: usize,
        /// The octet.
        value: u8,
    },
    /// UCS-2 data must be a whole number of 16-bit code units.
    #[error("UCS-2 data has odd length {len}")]
    OddLength {
        /// Length in octets.
        len: usize,
    },
    /// A UTF-16 surrogate without its partner.
    #[error("unpaired UTF-16 surrogate 0x{unit:04X} at octet offset {offset}")]
    UnpairedSurrogate {
        /// Octet offset of the code unit.
        offset: usize,
        /// The surrogate code unit.
        unit: u16,
    },
    /// GSM packing allows 0..=6 fill bits.
    #[error("{fill_bits} fill bits is out of range 0..=6")]
    InvalidFillBits {
        /// The rejected value.
        fill_bits: u8,
    },
    /// Packed data is shorter than the septet count requires.
    #[error("{octets} octets cannot hold {septet_count} packed septets after {fill_bits} fill bits")]
    PackedTooShort {
        /// Septets requested.
        septet_count: usize,
        /// Fill bits before the first septet.
        fill_bits: u8,
        /// Octets available.
        octets: usize,
    },
    /// The `data_coding` is binary or an alphabet this crate does not decode.
    #[error("data_coding 0x{data_coding:02X} is binary or unsupported")]
    UnsupportedDataCoding {
        /// The rejected value.
        data_coding: u8,
    },
}

/// A text alphabet SMPP can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextEncoding {
    /// GSM 03.38 default alphabet, sent as unpacked septets.
    Gsm7,
    /// UCS-2 (UTF-16BE).
    Ucs2,
    /// ISO-8859-1.
    Latin1,
    /// IA5 (ASCII).
    Ia5,
}

impl TextEncoding {
    /// The SMPP `data_coding` value for this alphabet.
    pub fn data_coding(self) -> u8 {
        match self {
            TextEncoding::Gsm7 => 0x00,
            TextEncoding::Ia5 => 0x01,
            TextEncoding::Latin1 => 0x03,
            TextEncoding::Ucs2 => 0x08,
        }
    }

    /// The alphabet a `data_coding` value selects, or `None` for binary and
    /// unsupported alphabets.
    ///
    /// SMPP 3.4 defines 0x00 (SMSC default, taken as GSM 7-bit), 0x01 IA5,
    /// 0x03 Latin-1 and 0x08 UCS-2. Values SMPP leaves open are read as a
    /// GSM 03.38 data coding scheme, by their alphabet bits:
    /// * 0x10..=0x1F and 0x40..=0x5F (general / auto-deletion groups,
    ///   uncompressed): bits 3..2 = 00 GSM 7-bit, 10 UCS-2 (01 is 8-bit data).
    /// * 0xC0..=0xDF (message waiting, discard/store): GSM 7-bit.
    /// * 0xE0..=0xEF (message waiting, store, UCS-2): UCS-2.
    /// * 0xF0..=0xFF (data coding/message class): bit 2 = 0 GSM 7-bit
    ///   (1 is 8-bit data).
    pub fn from_data_coding(data_coding: u8) -> Option<TextEncoding> {
        match data_coding {
            0x00 => Some(TextEncoding::Gsm7),
            0x01 => Some(TextEncoding::Ia5),
            0x03 => Some(TextEncoding::Latin1),
            0x08 => Some(TextEncoding::Ucs2),
            0x10..=0x1F | 0x40..=0x5F => match (data_coding >> 2) & 0b11 {
                0b00 => Some(TextEncoding::Gsm7),
                0b10 => Some(TextEncoding::Ucs2),
                _ => None,
            },
            0xC0..=0xDF => Some(TextEncoding::Gsm7),
            0xE0..=0xEF => Some(TextEncoding::Ucs2),
            0xF0..=0xFF if data_coding & 0b100 == 0 => Some(TextEncoding::Gsm7),
            _ => None,
        }
    }

    /// Size in octets of one counting unit: a septet (sent unpacked) or
    /// octet is 1, a UTF-16 code unit 2.
    pub fn octets_per_unit(self) -> usize {
        match self {
            TextEncoding::Ucs2 => 2,
            _ => 1,
        }
    }

    /// Units that fit in one SMS without a UDH (140 octets over the air):
    /// 160 septets, 70 UTF-16 code units or 140 octets.
    pub fn single_part_units(self) -> usize {
        match self {
            TextEncoding::Gsm7 => 160,
            TextEncoding::Ucs2 => 70,
            TextEncoding::Latin1 | TextEncoding::Ia5 => 140,
        }
    }

    /// Units per SMS when the 140 octets also carry a concatenation UDH of
    /// `udh_octets` octets (UDHL included): 6 for an 8-bit reference, 7 for
    /// a 16-bit one. GSM septets are counted as packed over the air, fill
    /// bits included.
    pub fn units_per_part_with_udh(self, udh_octets: usize) -> usize {
        let free_octets = 140usize.saturating_sub(udh_octets);
        match self {
            TextEncoding::Gsm7 => {
                let fill = usize::from(gsm7::fill_bits_for_udh(udh_octets));
                (free_octets * 8).saturating_sub(fill) / 7
            }
            TextEncoding::Ucs2 => free_octets / 2,
            TextEncoding::Latin1 | TextEncoding::Ia5 => free_octets,
        }
    }

    /// Units per part of a concatenated message with the common 8-bit
    /// reference UDH: 153 septets, 67 UTF-16 code units or 134 octets.
    pub fn concatenated_part_units(self) -> usize {
        self.units_per_part_with_udh(6)
    }

    /// Encodes `text` in this alphabet (GSM as unpacked septets).
    pub fn encode(self, text: &str) -> Result<Vec<u8>, TextError> {
        match self {
            TextEncoding::Gsm7 => gsm7::encode_unpacked(text),
            TextEncoding::Ucs2 => Ok(ucs2::encode(text)),
            TextEncoding::Latin1 => latin1::encode_latin1(text),
            TextEncoding::Ia5 => latin1::encode_ia5(text),
        }
    }

    /// Encodes `text`, substituting `'?'` for unrepresentable characters.
    pub fn encode_lossy(self, text: &str) -> Vec<u8> {
        match self {
            TextEncoding::Gsm7 => gsm7::encode_unpacked_lossy(text),
            TextEncoding::Ucs2 => ucs2::encode(text),
            TextEncoding::Latin1 => latin1::encode_latin1_lossy(text),
            TextEncoding::Ia5 => latin1::encode_ia5_lossy(text),
        }
    }

    /// Decodes `bytes` in this alphabet (GSM as unpacked septets).
    pub fn decode(self, bytes: &[u8]) -> Result<String, TextError> {
        match self {
            TextEncoding::Gsm7 => gsm7::decode_unpacked(bytes),
            TextEncoding::Ucs2 => ucs2::decode(bytes),
            TextEncoding::Latin1 => Ok(latin1::decode_latin1(bytes)),
            TextEncoding::Ia5 => latin1::decode_ia5(bytes),
        }
    }

    /// Encodes one char into `buf`, returning the used prefix.
    fn encode_char(self, ch: char, position: usize, buf: &mut [u8; 4]) -> Result<&[u8], TextError> {
        let unrepresentable = TextError::Unrepresentable {
            ch,
            position,
            encoding: self,
        };
        match self {
            TextEncoding::Gsm7 => {
                let gsm = gsm7::encode_char(ch).ok_or(unrepresentable)?;
                let mut septets = [0u8; 2];
                let written = gsm.write(&mut septets).len();
                buf[..2].copy_from_slice(&septets);
                Ok(&buf[..written])
            }
            TextEncoding::Ucs2 => {
                let mut units = [0u16; 2];
                let units = ch.encode_utf16(&mut units);
                for (i, unit) in units.iter().enumerate() {
                    buf[2 * i..2 * i + 2].copy_from_slice(&unit.to_be_bytes());
                }
                Ok(&buf[..units.len() * 2])
            }
            TextEncoding::Latin1 | TextEncoding::Ia5 => {
                let max = if self == TextEncoding::Latin1 { 0xFF } else { 0x7F };
                let octet = u8::try_from(u32::from(ch))
                    .ok()
                    .filter(|&b| b <= max)
                    .ok_or(unrepresentable)?;
                buf[0] = octet;
                Ok(&buf[..1])
            }
        }
    }
}

impl fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TextEncoding::Gsm7 => "GSM 7-bit",
            TextEncoding::Ucs2 => "UCS-2",
            TextEncoding::Latin1 => "Latin-1",
            TextEncoding::Ia5 => "IA5",
        })
    }
}

/// Decodes a `short_message` (or `message_payload`) according to its
/// `data_coding`; see [`TextEncoding::from_data_coding`] for the mapping.
/// GSM 7-bit is expected unpacked, one septet per octet, as SMPP sends it.
pub fn decode_short_message(data_coding: u8, bytes: &[u8]) -> Result<String, TextError> {
    TextEncoding::from_data_coding(data_coding)
        .ok_or(TextError::UnsupportedDataCoding { data_coding })?
        .decode(bytes)
}

/// GSM 7-bit when every char is representable in it (extension table
/// included), UCS-2 otherwise: GSM fits more than twice the text per SMS.
pub fn choose_encoding(text: &str) -> TextEncoding {
    if text.chars().all(gsm7::is_representable) {
        TextEncoding::Gsm7
    } else {
        TextEncoding::Ucs2
    }
}

/// Encodes `text` and cuts it into segments of at most `units_per_part`
/// units, never splitting a char: a GSM escape pair or a UTF-16 surrogate
/// pair always stays in one segment. An empty text gives no segments.
pub(crate) fn encode_segments(
    text: &str,
    encoding: TextEncoding,
    units_per_part: usize,
) -> Result<Vec<Vec<u8>>, TextError> {
    let unit = encoding.octets_per_unit();
    let mut segments = Vec::new();
    let mut current = Vec::new();
    let mut buf = [0u8; 4];
    for (position, ch) in text.chars().enumerate() {
        let encoded = encoding.encode_char(ch, position, &mut buf)?;
        if !current.is_empty() && (current.len() + encoded.len()) / unit > units_per_part {
            segments.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(encoded);
    }
    if !current.is_empty() {
        segments.push(current);
    }
    Ok(segments)
}

/// How many SMS a text costs, from [`count_parts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartCount {
    /// Number of SMS (at least 1, an empty text still being one message).
    pub parts: usize,
    /// Capacity of each part in units: the single-SMS capacity when
    /// `parts == 1`, the concatenated-part capacity otherwise.
    pub units_per_part: usize,
    /// Units the whole text needs: septets (an extension char counts 2),
    /// UTF-16 code units, or octets.
    pub total_units: usize,
}

/// Counts the SMS needed for `text` in `encoding`, assuming concatenation
/// with an 8-bit reference UDH (153 septets / 67 UCS-2 units / 134 octets per
/// part) once the text no longer fits one SMS (160 / 70 / 140). Because an
/// escape or surrogate pair is never split, a part may hold one unit less
/// than its capacity.
pub fn count_parts(text: &str, encoding: TextEncoding) -> Result<PartCount, TextError> {
    let per_part = encoding.concatenated_part_units();
    let segments = encode_segments(text, encoding, per_part)?;
    let total_units = segments.iter().map(Vec::len).sum::<usize>() / encoding.octets_per_unit();
    let single = encoding.single_part_units();
    Ok(if total_units <= single {
        PartCount {
            parts: 1,
            units_per_part: single,
            total_units,
        }
    } else {
        PartCount {
            parts: segments.len(),
            units_per_part: per_part,
            total_units,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_coding_values() {
        for enc in [
            TextEncoding::Gsm7,
            TextEncoding::Ucs2,
            TextEncoding::Latin1,
            TextEncoding::Ia5,
        ] {
            assert_eq!(TextEncoding::from_data_coding(enc.data_coding()), Some(enc));
        }
        assert_eq!(TextEncoding::Gsm7.data_coding(), 0x00);
        assert_eq!(TextEncoding::Ia5.data_coding(), 0x01);
        assert_eq!(TextEncoding::Latin1.data_coding(), 0x03);
        assert_eq!(TextEncoding::Ucs2.data_coding(), 0x08);
    }

    #[test]
    fn data_coding_class_variants() {
        for dc in 0xF0..=0xF3 {
            assert_eq!(TextEncoding::from_data_coding(dc), Some(TextEncoding::Gsm7));
        }
        for dc in 0xF4..=0xF7 {
            assert_eq!(TextEncoding::from_data_coding(dc), None, "8-bit data {dc:#x}");
        }
        for dc in 0x10..=0x13 {
            assert_eq!(TextEncoding::from_data_coding(dc), Some(TextEncoding::Gsm7));
        }
        for dc in 0x18..=0x1B {
            assert_eq!(TextEncoding::from_data_coding(dc), Some(TextEncoding::Ucs2));
        }
        for dc in [
            0x02, 0x04, 0x05, 0x06, 0x07, 0x09, 0x0A, 0x0D, 0x0E, 0x14, 0x1C, 0x20, 0x3F,
        ] {
            assert_eq!(TextEncoding::from_data_coding(dc), None, "{dc:#x}");
        }
    }

    #[test]
    fn decode_short_message_dispatches() {
        assert_eq!(decode_short_message(0x00, &[0x48, 0x1B, 0x65]).unwrap(), "H€");
        assert_eq!(decode_short_message(0xF1, &[0x48, 0x69]).unwrap(), "Hi");
        assert_eq!(decode_short_message(0x01, b"Hi").unwrap(), "Hi");
        assert_eq!(decode_short_message(0x03, &[0xE9]).unwrap(), "é");
        assert_eq!(decode_short_message(0x08, &[0x4E, 0x2D]).unwrap(), "中");
        let err = decode_short_message(0x04, &[1, 2, 3]).unwrap_err();
        assert_eq!(err, TextError::UnsupportedDataCoding { data_coding: 0x04 });
        assert_eq!(err.to_string(), "data_coding 0x04 is binary or unsupported");
        // Every data_coding and some hostile bytes: never panics.
        for dc in 0..=255u8 {
            let _ = decode_short_message(dc, &[0xFF, 0x1B, 0xD8, 0x00, 0x80]);
        }
    }

    #[test]
    fn choose_encoding_prefers_gsm() {
        assert_eq!(choose_encoding("Hello {world} €"), TextEncoding::Gsm7);
        assert_eq!(choose_encoding(""), TextEncoding::Gsm7);
        assert_eq!(choose_encoding("Grüße"), TextEncoding::Gsm7);
        assert_eq!(choose_encoding("façade"), TextEncoding::Ucs2); // only Ç is GSM
        assert_eq!(choose_encoding("Ελλάδα"), TextEncoding::Ucs2);
        assert_eq!(choose_encoding("ΔΩ"), TextEncoding::Gsm7);
        assert_eq!(choose_encoding("hi 😀"), TextEncoding::Ucs2);
    }

    #[test]
    fn capacities() {
        assert_eq!(TextEncoding::Gsm7.concatenated_part_units(), 153);
        assert_eq!(TextEncoding::Ucs2.concatenated_part_units(), 67);
        assert_eq!(TextEncoding::Latin1.concatenated_part_units(), 134);
        assert_eq!(TextEncoding::Gsm7.units_per_part_with_udh(7), 152);
        assert_eq!(TextEncoding::Ucs2.units_per_part_with_udh(7), 66);
        assert_eq!(TextEncoding::Ia5.units_per_part_with_udh(7), 133);
    }

    fn count(text: &str, enc: TextEncoding) -> PartCount {
        count_parts(text, enc).expect("representable")
    }

    #[test]
    fn gsm_boundaries() {
        let c = count(&"a".repeat(160), TextEncoding::Gsm7);
        assert_eq!(
            c,
            PartCount {
                parts: 1,
                units_per_part: 160,
                total_units: 160
            }
        );
        let c = count(&"a".repeat(161), TextEncoding::Gsm7);
        assert_eq!(
            c,
            PartCount {
                parts: 2,
                units_per_part: 153,
                total_units: 161
            }
        );
        assert_eq!(count(&"a".repeat(306), TextEncoding::Gsm7).parts, 2);
        assert_eq!(count(&"a".repeat(307), TextEncoding::Gsm7).parts, 3);
        // 80 euro signs = 160 septets: still one SMS; 81 = 162 septets: two.
        assert_eq!(count(&"€".repeat(80), TextEncoding::Gsm7).parts, 1);
        assert_eq!(count(&"€".repeat(81), TextEncoding::Gsm7).total_units, 162);
        assert_eq!(
            count("", TextEncoding::Gsm7),
            PartCount {
                parts: 1,
                units_per_part: 160,
                total_units: 0
            }
        );
    }

    #[test]
    fn gsm_escape_pair_straddling_153_is_not_split() {
        // 152 plain septets, then '€' (2 septets) would occupy septets 153-154.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(152));
        let c = count(&text, TextEncoding::Gsm7);
        assert_eq!(c.total_units, 306);
        // Without the rule it would fit exactly 2 parts; the pair moves to part 2.
        assert_eq!(c.parts, 3);
        let segments = encode_segments(&text, TextEncoding::Gsm7, 153).unwrap();
        assert_eq!(segments[0].len(), 152);
        assert_eq!(&segments[1][..2], &[0x1B, 0x65]);
        // One fewer plain char before it: the pair ends exactly at 153.
        let text = format!("{}€{}", "a".repeat(151), "b".repeat(153));
        let segments = encode_segments(&text, TextEncoding::Gsm7, 153).unwrap();
        assert_eq!(segments[0].len(), 153);
        assert_eq!(segments.len(), 2);
    }

    #[test]
    fn ucs2_boundaries() {
        assert_eq!(count(&"中".repeat(70), TextEncoding::Ucs2).parts, 1);
        let c = count(&"中".repeat(71), TextEncoding::Ucs2);
        assert_eq!(
            c,
            PartCount {
                parts: 2,
                units_per_part: 67,
                total_units: 71
            }
        );
        assert_eq!(count(&"中".repeat(134), TextEncoding::Ucs2).parts, 2);
        assert_eq!(count(&"中".repeat(135), TextEncoding::Ucs2).parts, 3);
        // 35 emoji = 70 code units: one SMS.
        assert_eq!(count(&"😀".repeat(35), TextEncoding::Ucs2).parts, 1);
    }

    #[test]
    fn ucs2_surrogate_pair_straddling_67_is_not_split() {
        let text = format!("{}😀{}", "中".repeat(66), "中".repeat(66));
        let c = count(&text, TextEncoding::Ucs2);
        assert_eq!(c.total_units, 134);
        assert_eq!(c.parts, 3);
        let segments = encode_segments(&text, TextEncoding::Ucs2, 67).unwrap();
        assert_eq!(segments[0].len(), 66 * 2);
        assert_eq!(&segments[1][..4], &[0xD8, 0x3D, 0xDE, 0x00]);
        for segment in &segments {
            assert!(ucs2::decode(segment).is_ok(), "every segment decodes alone");
        }
    }

    #[test]
    fn octet_boundaries() {
        for enc in [TextEncoding::Latin1, TextEncoding::Ia5] {
            assert_eq!(count(&"x".repeat(140), enc).parts, 1);
            assert_eq!(count(&"x".repeat(141), enc).parts, 2);
            assert_eq!(count(&"x".repeat(268), enc).parts, 2);
            assert_eq!(count(&"x".repeat(269), enc).parts, 3);
        }
    }

    #[test]
    fn count_parts_reports_unrepresentable() {
        assert!(matches!(
            count_parts("a中", TextEncoding::Gsm7),
            Err(TextError::Unrepresentable {
                ch: '中',
                position: 1,
                ..
            })
        ));
        assert!(count_parts("é", TextEncoding::Ia5).is_err());
    }
}
