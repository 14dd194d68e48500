//! GSM 03.38 (3GPP TS 23.038) default alphabet and its basic-character-set
//! extension table.
//!
//! SMPP carries `data_coding` 0 text as *unpacked* septets: one septet per
//! octet, the high bit clear. Over the air (and inside some UDH-bearing
//! payloads) the same septets are *packed* eight-into-seven octets; both
//! forms are provided here.
//!
//! Decoding policy, per 23.038 §6.2.1.1:
//! * `ESC` followed by a code the extension table does not define decodes as
//!   the base character of that code (the escape is ignored).
//! * `ESC ESC` is reserved for a future extension table; the spec asks
//!   receivers to display a space, so it decodes to `' '`.
//! * A lone `ESC` as the very last septet (only possible in truncated data)
//!   also decodes to `' '`, by the same rule.
//! * Octets above 0x7F are not septets: the strict decoders return
//!   [`TextError::InvalidByte`], the lossy decoder substitutes `'?'`.

use super::{TextEncoding, TextError};

/// The escape septet that switches the next septet to the extension table.
pub const ESCAPE: u8 = 0x1B;

/// Septet the lossy encoder uses for unrepresentable characters (`'?'`).
const REPLACEMENT_SEPTET: u8 = 0x3F;

/// Septet padding the final seven spare bits of a packed message, so that they
/// are not read as `'@'` (23.038 §6.1.2.3.1 recommends CR).
const CR_SEPTET: u8 = 0x0D;

/// The basic character set, indexed by septet. Index 0x1B is the escape code
/// and never maps to a character; its entry is a placeholder.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The basic-character-set extension table: `(septet after ESC, char)`.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Marker in [`LATIN1_TO_BASIC`] for "not in the basic set".
const NOT_BASIC: u8 = 0xFF;

/// Reverse lookup for the (very common) chars below U+0100, built at compile
/// time from [`BASIC`]; the Greek capitals fall back to a table scan.
const LATIN1_TO_BASIC: [u8; 256] = {
    let mut table = [NOT_BASIC; 256];
    let mut septet = 0;
    while septet < BASIC.len() {
        let ch = BASIC[septet] as u32;
        if septet != ESCAPE as usize && ch < 256 {
            table[ch as usize] = septet as u8;
        }
        septet += 1;
    }
    table
};

/// How one character is written in GSM 7-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsmChar {
    /// A single septet from the basic character set.
    Basic(u8),
    /// `ESC` followed by this septet from the extension table (two septets).
    Extended(u8),
}

impl GsmChar {
    /// Number of septets this character occupies (1 or 2).
    pub fn septet_len(self) -> usize {
        match self {
            GsmChar::Basic(_) => 1,
            GsmChar::Extended(_) => 2,
        }
    }

    /// Writes the septet(s) into `buf` and returns the used prefix.
    pub(crate) fn write(self, buf: &mut [u8; 2]) -> &[u8] {
        match self {
            GsmChar::Basic(septet) => {
                buf[0] = septet;
                &buf[..1]
            }
            GsmChar::Extended(septet) => {
                *buf = [ESCAPE, septet];
                &buf[..]
            }
        }
    }
}

/// Looks `ch` up in the basic set, then the extension table.
pub fn encode_char(ch: char) -> Option<GsmChar> {
    let code = ch as u32;
    let basic = if code < 256 {
        LATIN1_TO_BASIC.get(code as usize).copied().filter(|&s| s != NOT_BASIC)
    } else {
        BASIC
            .iter()
            .position(|&c| c == ch)
            .and_then(|i| u8::try_from(i).ok())
            .filter(|&s| s != ESCAPE)
    };
    basic.map(GsmChar::Basic).or_else(|| {
        EXTENSION
            .iter()
            .find(|&&(_, c)| c == ch)
            .map(|&(septet, _)| GsmChar::Extended(septet))
    })
}

/// True when `ch` has a GSM 7-bit representation (basic or extension).
pub fn is_representable(ch: char) -> bool {
    encode_char(ch).is_some()
}

/// Encodes `text` as unpacked septets (one per octet), the form SMPP uses for
/// `data_coding` 0. Fails on the first character GSM 7-bit cannot represent.
pub fn encode_unpacked(text: &str) -> Result<Vec<u8>, TextError> {
    let mut out = Vec::with_capacity(text.len());
    let mut buf = [0u8; 2];
    for (position, ch) in text.chars().enumerate() {
        let gsm = encode_char(ch).ok_or(TextError::Unrepresentable {
            ch,
            position,
            encoding: TextEncoding::Gsm7,
        })?;
        out.extend_from_slice(gsm.write(&mut buf));
    }
    Ok(out)
}

/// Like [`encode_unpacked`], but writes `'?'` for unrepresentable characters.
pub fn encode_unpacked_lossy(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut buf = [0u8; 2];
    for ch in text.chars() {
        let gsm = encode_char(ch).unwrap_or(GsmChar::Basic(REPLACEMENT_SEPTET));
        out.extend_from_slice(gsm.write(&mut buf));
    }
    out
}

/// Encodes `text` as packed septets, starting after `fill_bits` zero bits
/// (see [`fill_bits_for_udh`]). Returns the octets and the septet count the
/// receiver needs to unpack them.
pub fn encode_packed(text: &str, fill_bits: u8) -> Result<(Vec<u8>, usize), TextError> {
    let septets = encode_unpacked(text)?;
    let packed = pack_septets(&septets, fill_bits)?;
    Ok((packed, septets.len()))
}

/// Decodes unpacked septets. Octets above 0x7F are an error.
pub fn decode_unpacked(septets: &[u8]) -> Result<String, TextError> {
    if let Some(offset) = septets.iter().position(|&b| b > 0x7F) {
        return Err(TextError::InvalidByte {
            encoding: TextEncoding::Gsm7,
            offset,
            value: septets.get(offset).copied().unwrap_or_default(),
        });
    }
    Ok(decode_unpacked_lossy(septets))
}

/// Decodes unpacked septets, substituting `'?'` for octets above 0x7F.
pub fn decode_unpacked_lossy(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().copied();
    while let Some(septet) = iter.next() {
        if septet == ESCAPE {
            match iter.next() {
                // Reserved "escape to another extension table", and a
                // truncated trailing escape: 23.038 says display a space.
                Some(ESCAPE) | None => out.push(' '),
                Some(next) => out.push(
                    EXTENSION
                        .iter()
                        .find(|&&(s, _)| s == next)
                        .map(|&(_, c)| c)
                        // Unknown extension: show the base character.
                        .unwrap_or_else(|| basic_char(next)),
                ),
            }
        } else {
            out.push(basic_char(septet));
        }
    }
    out
}

/// Decodes `septet_count` packed septets that start after `fill_bits` bits.
pub fn decode_packed(octets: &[u8], septet_count: usize, fill_bits: u8) -> Result<String, TextError> {
    let septets = unpack_septets(octets, septet_count, fill_bits)?;
    decode_unpacked(&septets)
}

/// Basic-set character for a septet; anything above 0x7F becomes `'?'`.
fn basic_char(septet: u8) -> char {
    BASIC.get(usize::from(septet)).copied().unwrap_or('?')
}

fn check_fill_bits(fill_bits: u8) -> Result<usize, TextError> {
    if fill_bits > 6 {
        Err(TextError::InvalidFillBits { fill_bits })
    } else {
        Ok(usize::from(fill_bits))
    }
}

/// Number of fill bits needed after a UDH of `udh_octets` octets (UDHL octet
/// included) so that the first septet starts on a septet boundary
/// (23.040 §9.2.3.24). A 6-octet concatenation UDH needs 1, a 7-octet one 0.
pub fn fill_bits_for_udh(udh_octets: usize) -> u8 {
    let rem = (udh_octets % 7) * 8 % 7;
    // `rem` < 7, so the cast cannot truncate.
    ((7 - rem) % 7) as u8
}

/// How many whole septets fit in `octet_len` octets after `fill_bits` bits.
/// Useful as an upper bound when the real septet count is unknown (the last
/// one may then be a padding `'@'` or CR).
pub fn septet_capacity(octet_len: usize, fill_bits: u8) -> usize {
    octet_len.saturating_mul(8).saturating_sub(usize::from(fill_bits)) / 7
}

/// Packs septets (each ≤ 0x7F) LSB-first into octets, after `fill_bits`
/// (0..=6) zero bits, as 23.038 §6.1.2.1.1 describes. When exactly seven bits
/// are left over in the last octet they are filled with CR rather than zero,
/// so that a receiver without the septet count does not see a spurious `'@'`.
pub fn pack_septets(septets: &[u8], fill_bits: u8) -> Result<Vec<u8>, TextError> {
    let fill = check_fill_bits(fill_bits)?;
    let total_bits = fill + septets.len() * 7;
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    for (i, &septet) in septets.iter().enumerate() {
        if septet > 0x7F {
            return Err(TextError::InvalidByte {
                encoding: TextEncoding::Gsm7,
                offset: i,
                value: septet,
            });
        }
        put_bits(&mut out, fill + i * 7, septet);
    }
    if out.len() * 8 - total_bits == 7 {
        put_bits(&mut out, total_bits, CR_SEPTET);
    }
    Ok(out)
}

/// ORs a septet into `out` at bit offset `bit` (LSB-first).
fn put_bits(out: &mut [u8], bit: usize, septet: u8) {
    let shifted = u16::from(septet) << (bit % 8);
    let [low, high] = shifted.to_le_bytes();
    if let Some(o) = out.get_mut(bit / 8) {
        *o |= low;
    }
    if let Some(o) = out.get_mut(bit / 8 + 1) {
        *o |= high;
    }
}

/// Unpacks `septet_count` septets that start after `fill_bits` (0..=6) bits.
///
/// The count is needed because the padding at the end of a packed message is
/// ambiguous: seven zero bits would otherwise read as a trailing `'@'`.
pub fn unpack_septets(octets: &[u8], septet_count: usize, fill_bits: u8) -> Result<Vec<u8>, TextError> {
    let fill = check_fill_bits(fill_bits)?;
    let needed = septet_count
        .checked_mul(7)
        .and_then(|bits| bits.checked_add(fill))
        .map(|bits| bits.div_ceil(8));
    match needed {
        Some(needed) if needed <= octets.len() => {}
        _ => {
            return Err(TextError::PackedTooShort {
                septet_count,
                fill_bits,
                octets: octets.len(),
            })
        }
    }
    let octet = |i: usize| u16::from(octets.get(i).copied().unwrap_or(0));
    Ok((0..septet_count)
        .map(|i| {
            let bit = fill + i * 7;
            let window = octet(bit / 8) | (octet(bit / 8 + 1) << 8);
            ((window >> (bit % 8)) & 0x7F) as u8
        })
        .collect())
}

/// Every character GSM 7-bit can represent (basic set, then extension table);
/// used by tests and by callers that want to build pickers or validators.
pub fn alphabet() -> impl Iterator<Item = char> {
    BASIC
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != usize::from(ESCAPE))
        .map(|(_, &c)| c)
        .chain(EXTENSION.iter().map(|&(_, c)| c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_extension_round_trip() {
        let text: String = alphabet().collect();
        let septets = encode_unpacked(&text).expect("all representable");
        assert_eq!(septets.len(), 127 + 2 * 10);
        assert_eq!(decode_unpacked(&septets).expect("valid"), text);
    }

    #[test]
    fn extension_chars_use_escape() {
        assert_eq!(encode_unpacked("€").unwrap(), vec![0x1B, 0x65]);
        assert_eq!(
            encode_unpacked("a{b}").unwrap(),
            vec![0x61, 0x1B, 0x28, 0x62, 0x1B, 0x29]
        );
        assert_eq!(encode_unpacked("\u{0C}").unwrap(), vec![0x1B, 0x0A]);
        assert_eq!(encode_unpacked("@£$").unwrap(), vec![0x00, 0x01, 0x02]);
        assert_eq!(encode_unpacked("ΩΣ").unwrap(), vec![0x15, 0x18]);
    }

    #[test]
    fn unrepresentable_char_is_named() {
        let err = encode_unpacked("ab中c").unwrap_err();
        assert_eq!(
            err,
            TextError::Unrepresentable {
                ch: '中',
                position: 2,
                encoding: TextEncoding::Gsm7
            }
        );
        assert!(err.to_string().contains('中'));
        // The escape control char itself is not a character of the alphabet.
        assert!(encode_unpacked("\u{1B}").is_err());
        assert!(!is_representable('`'));
    }

    #[test]
    fn lossy_encode_substitutes_question_mark() {
        assert_eq!(encode_unpacked_lossy("a中€"), vec![0x61, 0x3F, 0x1B, 0x65]);
    }

    #[test]
    fn unknown_escape_decodes_as_base_char() {
        // ESC 'A' is not in the extension table: show 'A'.
        assert_eq!(decode_unpacked(&[0x1B, 0x41, 0x62]).unwrap(), "Ab");
        // ESC ESC is reserved: a space.
        assert_eq!(decode_unpacked(&[0x1B, 0x1B, 0x41]).unwrap(), " A");
        // Trailing lone ESC: a space.
        assert_eq!(decode_unpacked(&[0x41, 0x1B]).unwrap(), "A ");
    }

    #[test]
    fn high_octets_error_or_replace() {
        assert_eq!(
            decode_unpacked(&[0x41, 0x80]),
            Err(TextError::InvalidByte {
                encoding: TextEncoding::Gsm7,
                offset: 1,
                value: 0x80
            })
        );
        assert_eq!(decode_unpacked_lossy(&[0x41, 0xFF, 0x1B, 0x90]), "A??");
    }

    #[test]
    fn packs_reference_vector() {
        // "hellohello" is the classic 23.038 packing example.
        let (packed, count) = encode_packed("hellohello", 0).unwrap();
        assert_eq!(packed, [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]);
        assert_eq!(count, 10);
        assert_eq!(decode_packed(&packed, count, 0).unwrap(), "hellohello");
    }

    #[test]
    fn seven_septets_pad_with_cr_not_at() {
        let (packed, count) = encode_packed("1234567", 0).unwrap();
        assert_eq!(packed.len(), 7);
        assert_eq!(packed[6] >> 1, 0x0D);
        // With the count the padding is ignored...
        assert_eq!(decode_packed(&packed, count, 0).unwrap(), "1234567");
        // ...and even reading the whole capacity yields CR, not '@'.
        assert_eq!(septet_capacity(packed.len(), 0), 8);
        assert_eq!(decode_packed(&packed, 8, 0).unwrap(), "1234567\r");
    }

    #[test]
    fn eight_septets_fill_seven_octets() {
        let (packed, count) = encode_packed("12345678", 0).unwrap();
        assert_eq!(packed.len(), 7);
        assert_eq!(decode_packed(&packed, count, 0).unwrap(), "12345678");
    }

    #[test]
    fn fill_bits_align_after_udh() {
        assert_eq!(fill_bits_for_udh(6), 1);
        assert_eq!(fill_bits_for_udh(7), 0);
        assert_eq!(fill_bits_for_udh(0), 0);
        assert_eq!(fill_bits_for_udh(1), 6);
        for fill in 0..=6 {
            let septets = encode_unpacked("Hello {world} €!").unwrap();
            let packed = pack_septets(&septets, fill).unwrap();
            assert_eq!(packed[0] & ((1u8 << fill) - 1), 0, "fill bits must be zero");
            assert_eq!(unpack_septets(&packed, septets.len(), fill).unwrap(), septets);
        }
    }

    #[test]
    fn packing_rejects_bad_input() {
        assert_eq!(
            pack_septets(&[0x41], 7),
            Err(TextError::InvalidFillBits { fill_bits: 7 })
        );
        assert_eq!(
            unpack_septets(&[0x41], 1, 9),
            Err(TextError::InvalidFillBits { fill_bits: 9 })
        );
        assert!(matches!(
            pack_septets(&[0x41, 0x80], 0),
            Err(TextError::InvalidByte { offset: 1, .. })
        ));
        assert!(matches!(
            unpack_septets(&[0x41], 2, 0),
            Err(TextError::PackedTooShort { .. })
        ));
        assert!(matches!(
            unpack_septets(&[], usize::MAX, 6),
            Err(TextError::PackedTooShort { .. })
        ));
        assert_eq!(unpack_septets(&[], 0, 0).unwrap(), Vec::<u8>::new());
    }
}
