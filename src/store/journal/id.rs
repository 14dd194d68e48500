//! A message id as the journal state's indexes hold it.
//!
//! The messages are a B-tree by id (see `State::messages`), and an insert
//! or a lookup compares the id with some fifty keys on its way down. As
//! text, that is a `memcmp` of 23 octets each time, with the 15 octets of
//! prefix every id of one process shares: about half of storing an
//! enqueued message on the committer, a quarter of that thread's samples,
//! in the ingest profile (4 binds x window 256).
//! Our ids are lowercase hex (`crate::ids`), so they are held as the number
//! they spell and compared as integers; any other id (another node's
//! format, a test's) is held as text.

use std::fmt;

/// Most hex digits held as a number (a `u128`).
const MAX_HEX_DIGITS: usize = 32;

/// A message id. The same text always becomes the same `Id`, so equality
/// is the text's; the order is not the text's (it sorts hex ids by length,
/// then value) but a total order consistent with equality, which is all
/// the indexes need.
///
/// 24 octets: the value is two `u64` halves, not a `u128` (whose 16-octet
/// alignment made the enum 32), and other ids are boxed. Every message has
/// an `Id` as its key in the B-tree and one in the due index, so this is
/// part of what each queued message costs in memory; with the state's
/// 56-octet `Slot` a B-tree leaf of eleven entries is an 896-octet
/// allocation instead of 1280.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Id {
    /// 1 to 32 lowercase hex digits: their count (leading zeros are part of
    /// the id) and their value, high half first (so the derived order is
    /// the value's).
    Hex { digits: u8, value: [u64; 2] },
    /// Anything else.
    Text(Box<str>),
}

impl Id {
    pub(super) fn new(id: &str) -> Id {
        match hex_value(id) {
            Some(value) => Id::Hex {
                digits: id.len() as u8,
                value: [(value >> 64) as u64, value as u64],
            },
            None => Id::Text(id.into()),
        }
    }
}

/// The value of `id` if it is 1 to 32 lowercase hex digits.
fn hex_value(id: &str) -> Option<u128> {
    if id.is_empty() || id.len() > MAX_HEX_DIGITS {
        return None;
    }
    let mut value: u128 = 0;
    for &c in id.as_bytes() {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Hex { digits, value } => {
                let value = (u128::from(value[0]) << 64) | u128::from(value[1]);
                write!(f, "{value:0width$x}", width = usize::from(*digits))
            }
            Id::Text(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_reads_back_as_its_text() {
        let ours = crate::ids::MessageIdGenerator::new(7).next_id();
        for text in [
            ours.as_str(),
            "0",
            "00ff",
            "ff",
            "ffffffffffffffffffffffffffffffff",
            "0ffffffffffffffffffffffffffffffff",
            "ABC",
            "12ab-x",
            "",
            "an id of another format that is longer than twenty-four octets",
        ] {
            assert_eq!(Id::new(text).to_string(), text);
        }
        assert!(matches!(Id::new(&ours), Id::Hex { .. }), "ours are held as numbers");
    }

    #[test]
    fn equal_only_for_the_same_text() {
        // Leading zeros and case make different ids.
        assert_ne!(Id::new("00ff"), Id::new("ff"));
        assert_ne!(Id::new("ff"), Id::new("FF"));
        assert_eq!(Id::new("00ff"), Id::new("00ff"));
        assert_eq!(Id::new("FF"), Id::new("FF"));
        // 33 digits do not fit: text, and still not equal to the 32.
        let long = "1".repeat(33);
        assert!(matches!(Id::new(&long), Id::Text(_)));
        assert_ne!(Id::new(&long), Id::new(&long[1..]));
    }

    #[test]
    fn ids_of_equal_length_sort_by_value_across_both_halves() {
        let low_half_full = Id::new("0000000000000000ffffffffffffffff");
        let high_half_one = Id::new("00000000000000010000000000000000");
        assert!(low_half_full < high_half_one);
        // Fewer digits sort first whatever their value.
        let fewer_digits = Id::new("1000000000000000000000000000000");
        assert!(fewer_digits < low_half_full);
        assert_eq!(
            std::mem::size_of::<Id>(),
            24,
            "a B-tree key and a due-index entry per message"
        );
    }

    #[test]
    fn ids_of_one_process_sort_in_the_order_they_were_made() {
        // The B-tree's right edge takes each new id (see `State::messages`).
        let ids = crate::ids::MessageIdGenerator::new(3);
        let made: Vec<Id> = (0..1000).map(|_| Id::new(&ids.next_id())).collect();
        assert!(made.windows(2).all(|w| w[0] < w[1]));
    }
}
