//! The relay: takes queued messages, routes them, submits them upstream and schedules retries.
//!
//! [`routing`] and [`retry`] hold the pure decision logic (no I/O); [`worker`] is the loop that
//! uses them ([`worker::Relay::start`]).
//!
//! - [`routing`]: the `[[routes]]` table. [`routing::Router::route`] maps (client system_id,
//!   source address, destination) to an ordered list of upstream names: the weighted pick
//!   first, then failover candidates, leaving out upstreams without a bound session.
//! - [`parts`]: how a long message is cut for an upstream with `long_messages = "udh"` or
//!   `"sar"` (pure and deterministic: the correlator counts parts the same way).
//! - [`retry`]: the `[retry]` policy. [`retry::classify`] says whether a failed submit is
//!   permanent, transient or congestion; [`retry::RetryPolicy::next_for_status`] says when to try
//!   again, or that the message is EXPIRED (validity period over) or UNDELIVERABLE (out of
//!   attempts).
//!
//! # How a relay worker uses them
//!
//! 1. **Reserve** a batch of due messages from the `Queue` (new ones and retries whose time has
//!    come).
//! 2. **Route** each message: `router.route(system_id, source, dest, |u| pool.has_bound_session(u))`.
//!    - `NoRoute`: the message is REJECTED at once (and a receipt goes to the client if it asked
//!      for one).
//!    - `NoUpstreamAvailable`: nothing is bound right now; treat as a transient failure
//!      (`policy.next(...)`), so it is retried with backoff and expires in time.
//!    - `Candidates`: go on with the first upstream in the list.
//! 3. **Submit** through that upstream's pool. If the pool cannot take it (bind dropped, window
//!    closed meanwhile), try the next candidate of the same decision before counting a failure.
//! 4. **Record** the outcome in the `Store`, then acknowledge the queue entry:
//!    - `ESME_ROK`: record the upstream message id (normalised) for receipt correlation.
//!    - an error status: `policy.next_for_status(status, attempt, now, expiry, rng)` —
//!      `RetryAt(t)` re-queues the message due at `t` (a message sent in parts goes on from the
//!      part that failed, on the same upstream, so the parts stay in order and none is sent
//!      twice: see [`worker`]); `GiveUpPermanent` / `GiveUpAttempts` fail it
//!      (UNDELIVERABLE / REJECTED), `GiveUpExpired` expires it; each of those produces a receipt
//!      for the client if it asked.
//!    - a response timeout or a dropped bind: transient (`policy.next`), the message goes back to
//!      the queue and is sent again once.
//!    - `ESME_RTHROTTLED` / `ESME_RMSGQFUL` also slow that upstream bind down (the upstream pool's
//!      job); the message itself gets the longer congestion backoff.

pub mod parts;
pub mod retry;
pub mod routing;
mod settler;
pub mod worker;

pub use worker::{Relay, RelayCounters, RelayHandle, RelaySettings, RelayStats};
