//! UCS-2 (`data_coding` 0x08), handled as UTF-16BE.
//!
//! Strictly UCS-2 has no surrogates, but handsets and SMSCs have long sent
//! characters outside the BMP (emoji) as UTF-16 surrogate pairs, so encoding
//! emits pairs and decoding accepts them. A surrogate without its partner is
//! an error in the strict decoder and U+FFFD in the lossy one.

use super::TextError;

/// Encodes `text` as UTF-16BE. Every `char` is representable.
pub fn encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Big-endian code units of `bytes`; a trailing odd octet is dropped.
fn code_units(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
}

/// Decodes UTF-16BE. Odd length and unpaired surrogates are errors.
pub fn decode(bytes: &[u8]) -> Result<String, TextError> {
    if bytes.len() % 2 == 1 {
        return Err(TextError::OddLength { len: bytes.len() });
    }
    let mut out = String::with_capacity(bytes.len() / 2);
    for unit in char::decode_utf16(code_units(bytes)) {
        match unit {
            Ok(ch) => out.push(ch),
            Err(e) => {
                return Err(TextError::UnpairedSurrogate {
                    // Everything before the bad unit decoded, so its byte
                    // offset is twice the code units decoded so far.
                    offset: out.encode_utf16().count() * 2,
                    unit: e.unpaired_surrogate(),
                });
            }
        }
    }
    Ok(out)
}

/// Decodes UTF-16BE, replacing unpaired surrogates and a trailing odd octet
/// with U+FFFD.
pub fn decode_lossy(bytes: &[u8]) -> String {
    let mut out: String = char::decode_utf16(code_units(bytes))
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if bytes.len() % 2 == 1 {
        out.push(char::REPLACEMENT_CHARACTER);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmp_and_surrogate_pairs_round_trip() {
        let text = "Hé中😀";
        let bytes = encode(text);
        assert_eq!(bytes, [0x00, 0x48, 0x00, 0xE9, 0x4E, 0x2D, 0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(decode(&bytes).unwrap(), text);
    }

    #[test]
    fn odd_length_is_an_error() {
        assert_eq!(decode(&[0x00, 0x41, 0x00]), Err(TextError::OddLength { len: 3 }));
        assert_eq!(decode_lossy(&[0x00, 0x41, 0x00]), "A\u{FFFD}");
    }

    #[test]
    fn unpaired_surrogates_are_errors() {
        // High surrogate followed by a normal char.
        assert_eq!(
            decode(&[0x00, 0x41, 0xD8, 0x3D, 0x00, 0x42]),
            Err(TextError::UnpairedSurrogate {
                offset: 2,
                unit: 0xD83D
            })
        );
        // Lone low surrogate.
        assert_eq!(
            decode(&[0xDE, 0x00]),
            Err(TextError::UnpairedSurrogate {
                offset: 0,
                unit: 0xDE00
            })
        );
        // High surrogate at the end.
        assert!(decode(&[0xD8, 0x3D]).is_err());
        assert_eq!(decode_lossy(&[0x00, 0x41, 0xD8, 0x3D, 0x00, 0x42]), "A\u{FFFD}B");
    }
}
