//! The side clients bind to: listeners (TCP and TLS), sessions, auth,
//! throttling and request validation.

use std::{sync::Arc, time::Duration};

use crate::{ids::MessageIdGenerator, queue::Queue, store::Store};

pub mod auth;
pub mod deliver_sm;
pub mod listener;
pub mod outbox;
pub mod receivers;
pub mod session;
pub mod validate;
pub mod window;
mod writer;

/// Settings every session uses, from `[smpp]`.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    /// Our system_id in bind responses.
    pub system_id: String,
    pub bind_timeout: Duration,
    pub enquire_link_interval: Duration,
    pub response_timeout: Duration,
    pub max_command_length: u32,
    /// Longest wait for storage before answering ESME_RSYSERR.
    pub storage_timeout: Duration,
}

/// What every session shares.
pub struct Gateway {
    pub settings: SessionSettings,
    pub auth: auth::Authenticator,
    pub queue: Arc<dyn Queue>,
    pub store: Arc<dyn Store>,
    pub ids: MessageIdGenerator,
    /// Hands each client's outbox to its receiving sessions; `None`: sessions get no deliver_sm.
    pub deliveries: Option<Arc<outbox::OutboxDelivery>>,
}
