//! The client side towards carrier SMSCs: per upstream, a pool of binds
//! kept connected by supervisor tasks (reconnect with exponential backoff
//! and jitter), windowed submits spread round robin over the bound
//! sessions under a throughput cap, classification of the outcome
//! (accepted / throttled / transient / permanent) for the relay's retry
//! logic, per-bind slow-down after throttling answers, and one merged
//! channel of the upstream's deliver_sm / data_sm (receipts and MO).
//!
//! ```text
//!               UpstreamPool::submit ──GCRA──> round robin over bound, not backing-off binds
//!                                                   |
//!  supervisor[i]: connect+bind ─> ClientHandle ─────+──> carrier SMSC
//!      ^   | closed / failed                              |
//!      +---+ backoff (min·2^n, max, jitter)               | deliver_sm / data_sm
//!                                                         v
//!          per-session Receiver<Inbound> ──forward──> one bounded Receiver<UpstreamInbound>
//! ```

pub mod config;
pub mod pool;

pub use config::{BindMode, CanonicalForm, IdStyleName, UpstreamConfig};
pub use pool::{is_permanent, is_throttling, SubmitError, TransientCause, UpstreamInbound, UpstreamPool};
