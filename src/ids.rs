//! Our message ids.
//!
//! An id is `TTTTTTTTTTTNNNNCCCCCCCC…` in lowercase hex: the process start
//! time in milliseconds (11 digits until the year 2527), the node id (4 digits)
//! and a counter that starts at a random offset. Two nodes never share a node
//! id, and one node never restarts within the same millisecond, so ids are
//! unique across nodes and restarts; they sort by process start, which keeps
//! the storage engine's keys mostly appended. Making one costs an atomic
//! increment and a 32-byte format: no clock read, no randomness per id.
//! The longest id is 11 + 4 + 16 = 31 characters (SMPP allows 64).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// Makes message ids for one node.
#[derive(Debug)]
pub struct MessageIdGenerator {
    prefix: String,
    counter: AtomicU64,
}

impl MessageIdGenerator {
    pub fn new(node_id: u16) -> Self {
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // The random start makes a collision need the same node id, the same
        // millisecond and the same 32-bit draw.
        let offset = u64::from(rand::random::<u32>());
        MessageIdGenerator {
            prefix: format!("{start_ms:011x}{node_id:04x}"),
            counter: AtomicU64::new(offset),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(self.prefix.len() + 16);
        id.push_str(&self.prefix);
        push_counter(&mut id, n);
        id
    }
}

/// Appends `n` in lowercase hex, at least 8 digits (what `{n:08x}` gives),
/// without the formatting machinery: this runs once per message.
fn push_counter(id: &mut String, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let significant = (64 - n.leading_zeros() as usize).div_ceil(4);
    let digits = significant.max(8);
    for i in (0..digits).rev() {
        id.push(char::from(HEX[((n >> (4 * i)) & 0xF) as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_counter_is_hex_of_at_least_eight_digits() {
        for n in [0, 1, 0xabc, 0xffff_ffff, 0x1_0000_0000, 0x0123_4567_89ab_cdef, u64::MAX] {
            let mut id = String::new();
            push_counter(&mut id, n);
            assert_eq!(id, format!("{n:08x}"));
        }
    }

    #[test]
    fn ids_are_unique_short_and_distinct_per_node() {
        let a = MessageIdGenerator::new(1);
        let b = MessageIdGenerator::new(2);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = a.next_id();
            assert!(id.len() <= 64 && id.bytes().all(|c| c.is_ascii_hexdigit()));
            assert!(seen.insert(id));
            assert!(seen.insert(b.next_id()));
        }
    }
}
