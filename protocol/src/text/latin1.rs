//! Single-octet alphabets: Latin-1 (ISO-8859-1, `data_coding` 0x03) and
//! IA5 / ASCII (`data_coding` 0x01).
//!
//! Both map octets to the Unicode code points of the same value, Latin-1
//! covering 0x00..=0xFF and IA5 0x00..=0x7F.

use super::{TextEncoding, TextError};

/// Encodes each char as the octet of its code point, if it is at most `max`.
fn encode_upto(text: &str, max: u32, encoding: TextEncoding) -> Result<Vec<u8>, TextError> {
    text.chars()
        .enumerate()
        .map(|(position, ch)| {
            u8::try_from(u32::from(ch))
                .ok()
                .filter(|&b| u32::from(b) <= max)
                .ok_or(TextError::Unrepresentable { ch, position, encoding })
        })
        .collect()
}

fn encode_upto_lossy(text: &str, max: u32) -> Vec<u8> {
    text.chars()
        .map(|ch| {
            u8::try_from(u32::from(ch))
                .ok()
                .filter(|&b| u32::from(b) <= max)
                .unwrap_or(b'?')
        })
        .collect()
}

/// Encodes `text` as Latin-1; chars above U+00FF are an error.
pub fn encode_latin1(text: &str) -> Result<Vec<u8>, TextError> {
    encode_upto(text, 0xFF, TextEncoding::Latin1)
}

/// Encodes `text` as Latin-1, writing `'?'` for chars above U+00FF.
pub fn encode_latin1_lossy(text: &str) -> Vec<u8> {
    encode_upto_lossy(text, 0xFF)
}

/// Decodes Latin-1. Every octet is a valid character.
pub fn decode_latin1(bytes: &[u8]) -> String {
    bytes.iter().copied().map(char::from).collect()
}

/// Encodes `text` as IA5 (ASCII); non-ASCII chars are an error.
pub fn encode_ia5(text: &str) -> Result<Vec<u8>, TextError> {
    encode_upto(text, 0x7F, TextEncoding::Ia5)
}

/// Encodes `text` as IA5, writing `'?'` for non-ASCII chars.
pub fn encode_ia5_lossy(text: &str) -> Vec<u8> {
    encode_upto_lossy(text, 0x7F)
}

/// Decodes IA5; octets above 0x7F are an error.
pub fn decode_ia5(bytes: &[u8]) -> Result<String, TextError> {
    match bytes.iter().position(|&b| b > 0x7F) {
        Some(offset) => Err(TextError::InvalidByte {
            encoding: TextEncoding::Ia5,
            offset,
            value: bytes.get(offset).copied().unwrap_or_default(),
        }),
        None => Ok(decode_latin1(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_round_trip_all_octets() {
        let all: Vec<u8> = (0..=255).collect();
        let text = decode_latin1(&all);
        assert_eq!(text.chars().count(), 256);
        assert_eq!(encode_latin1(&text).unwrap(), all);
    }

    #[test]
    fn latin1_rejects_above_ff() {
        assert_eq!(
            encode_latin1("é€"),
            Err(TextError::Unrepresentable {
                ch: '€',
                position: 1,
                encoding: TextEncoding::Latin1
            })
        );
        assert_eq!(encode_latin1_lossy("é€"), vec![0xE9, b'?']);
    }

    #[test]
    fn ia5_is_ascii_only() {
        assert_eq!(encode_ia5("Hi~").unwrap(), b"Hi~".to_vec());
        assert_eq!(
            encode_ia5("né"),
            Err(TextError::Unrepresentable {
                ch: 'é',
                position: 1,
                encoding: TextEncoding::Ia5
            })
        );
        assert_eq!(encode_ia5_lossy("né"), b"n?".to_vec());
        assert_eq!(decode_ia5(b"abc").unwrap(), "abc");
        assert_eq!(
            decode_ia5(&[0x41, 0xE9]),
            Err(TextError::InvalidByte {
                encoding: TextEncoding::Ia5,
                offset: 1,
                value: 0xE9
            })
        );
    }
}
