//! Receipts: parse, normalise ids, correlate, fan out to the outbox.
//!
//! - [`inbound`]: what an upstream's deliver_sm / data_sm is (receipt or
//!   mobile-originated) and what a receipt says (TLVs first, then the text).
//! - [`correlator`]: the task consuming every upstream pool's inbound
//!   channel: matches receipts to our messages by the upstream's normalised
//!   id, records them with the message's new state and the client's receipt
//!   in one store call, holds early receipts, routes MO messages.
//! - [`client_receipt`]: the one builder of the receipts clients get (used by
//!   the correlator and by the relay when it ends a message itself).
//! - [`parts`]: receipts of messages sent in several parts (the aggregate
//!   outcome, one receipt of a message handled at a time).
//! - [`mo`]: the `[[mo_routes]]` table.
//! - [`counters`]: what the path counts.
//!
//! The upstream id is normalised twice with the upstream's configured
//! styles (`submit_id_style` by the relay when it records the link,
//! `receipt_id_style` here), which `UpstreamConfig::validate` checks produce
//! the same canonical form.

pub mod client_receipt;
pub mod correlator;
pub mod counters;
pub mod inbound;
pub mod mo;
pub mod parts;
pub mod sink;

pub use correlator::{Correlator, CorrelatorHandle, CorrelatorSettings};
pub use counters::{DlrCounters, DlrStats};
pub use sink::{OutboxSink, PushNotifier};
