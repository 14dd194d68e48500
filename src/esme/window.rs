//! Requests we sent to a client and are waiting on, matched by sequence number.
//!
//! Responses may come in any order; each request has its own deadline, and
//! the oldest deadline tells the session when to look again.

use std::{collections::HashMap, time::Instant};

use smsmax_protocol::CommandId;

/// Outstanding requests of one session, at most `capacity`.
#[derive(Debug)]
pub struct Window {
    capacity: usize,
    pending: HashMap<u32, Pending>,
    next_sequence: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub command_id: CommandId,
    pub deadline: Instant,
}

impl Window {
    pub fn new(capacity: usize) -> Self {
        Window {
            capacity: capacity.max(1),
            pending: HashMap::new(),
            next_sequence: 1,
        }
    }

    /// Takes a slot and a fresh sequence number, or `None` when full.
    pub fn open(&mut self, command_id: CommandId, deadline: Instant) -> Option<u32> {
        if self.pending.len() >= self.capacity {
            return None;
        }
        let sequence = self.next_sequence;
        // Sequence numbers run 1..=0x7FFFFFFF and wrap (section 3.2).
        self.next_sequence = if sequence >= 0x7FFF_FFFF { 1 } else { sequence + 1 };
        self.pending.insert(sequence, Pending { command_id, deadline });
        Some(sequence)
    }

    /// The request a response answers, removed from the window.
    pub fn close(&mut self, sequence: u32) -> Option<Pending> {
        self.pending.remove(&sequence)
    }

    /// The earliest deadline of any outstanding request.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Removes and returns requests whose deadline has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<(u32, Pending)> {
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        expired
            .into_iter()
            .filter_map(|s| self.pending.remove(&s).map(|p| (s, p)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// `true` if a request of this kind is outstanding.
    pub fn has(&self, command_id: CommandId) -> bool {
        self.pending.values().any(|p| p.command_id == command_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bounded_out_of_order_and_expiring() {
        let now = Instant::now();
        let mut w = Window::new(2);
        let a = w.open(CommandId::EnquireLink, now + Duration::from_secs(1)).unwrap();
        let b = w.open(CommandId::DeliverSm, now + Duration::from_secs(2)).unwrap();
        assert_eq!(w.open(CommandId::DeliverSm, now), None, "full");
        assert_eq!(w.close(b).map(|p| p.command_id), Some(CommandId::DeliverSm));
        assert_eq!(w.close(b), None, "a response is matched once");
        assert_eq!(w.next_deadline(), Some(now + Duration::from_secs(1)));
        assert!(w.has(CommandId::EnquireLink));
        let expired = w.expire(now + Duration::from_secs(1));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0, a);
        assert!(w.is_empty());
    }

    #[test]
    fn sequence_numbers_wrap_before_the_sign_bit() {
        let mut w = Window::new(4);
        w.next_sequence = 0x7FFF_FFFF;
        let deadline = Instant::now();
        assert_eq!(w.open(CommandId::EnquireLink, deadline), Some(0x7FFF_FFFF));
        assert_eq!(w.open(CommandId::EnquireLink, deadline), Some(1));
    }
}
