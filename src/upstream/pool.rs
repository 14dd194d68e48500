//! [`UpstreamPool`]: the binds towards one upstream SMSC.
//!
//! Each session of the pool (see [`UpstreamConfig::sessions`]) has its own
//! supervisor task that connects and binds, publishes the bound
//! [`ClientHandle`] for submits, forwards the session's deliver_sm / data_sm
//! to the pool's merged inbound channel, and, when the session ends or the
//! connect or bind fails, waits a backoff and tries again, until the pool is
//! stopped. The backoff doubles from `reconnect_min_ms` per failed attempt up
//! to `reconnect_max_ms`, less a random share (`reconnect_jitter`); it starts
//! over once a session has stayed bound for [`STABLE_AFTER`] (or
//! `reconnect_max_ms`, if shorter).
//!
//! [`UpstreamPool::submit`] waits for the throughput cap (GCRA, at most
//! `response_timeout_ms`), picks a bound, transmitter-capable session that is
//! not backing off (round robin), sends the submit_sm (windowed by the
//! session) and classifies the answer into [`SubmitError`]. A bind answered
//! with ESME_RTHROTTLED or ESME_RMSGQFUL stops taking submits for
//! `throttle_backoff_min_ms`, doubling while the upstream keeps throttling,
//! up to `throttle_backoff_max_ms`; the next accepted submit on it resets it.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::Context;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use smsmax_protocol::{pdu::SubmitSm, Body, CommandStatus, Pdu};
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};
use tokio_rustls::{rustls, TlsConnector};

use super::config::UpstreamConfig;
use crate::client::{self, BindType, ClientError, ClientHandle, ClientSettings, CloseReason, Inbound, Responder};

/// A session that stayed bound this long starts its reconnect backoff over.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

// One classification of SMPP statuses for the whole relay path: the pool
// reports with it, the retry policy decides with it.
pub use crate::relay::retry::{is_permanent, PERMANENT_STATUSES};

/// `true` for ESME_RTHROTTLED and ESME_RMSGQFUL: the upstream asks us to slow down.
pub fn is_throttling(status: CommandStatus) -> bool {
    crate::relay::retry::is_congestion(status)
}

/// Why a submit failed in a way worth retrying.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransientCause {
    /// The upstream answered with a status that is neither OK, throttling nor permanent.
    #[error("answered {0}")]
    Status(CommandStatus),
    /// No response in time. The upstream may have accepted the message.
    #[error("no response in time")]
    Timeout,
    /// The bind's window stayed full for the whole response timeout; nothing was sent.
    #[error("no window slot free in time")]
    WindowFull,
    /// The throughput cap did not let the submit through within the response timeout; nothing was sent.
    #[error("throughput cap: no slot in time")]
    RateCap,
    /// The session ended before the response. The upstream may have accepted the message.
    #[error("connection lost: {0}")]
    ConnectionLost(CloseReason),
    /// The upstream answered with something that is not a submit_sm_resp.
    #[error("unexpected response: {0}")]
    UnexpectedResponse(String),
}

/// How a submit failed. [`SubmitError::NoBind`], [`SubmitError::BackingOff`]
/// and [`TransientCause::WindowFull`] / [`TransientCause::RateCap`] mean the
/// message was not sent, so the router can fail over to another upstream at once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// No transmitter-capable session is bound (or the pool is stopped).
    #[error("no bound session")]
    NoBind,
    /// Sessions are bound but every one is backing off after throttling answers.
    #[error("every bound session is backing off after throttling")]
    BackingOff,
    /// ESME_RTHROTTLED or ESME_RMSGQFUL: retry later; that bind now backs off.
    #[error("throttled by the upstream: {0}")]
    Throttled(CommandStatus),
    /// A status from [`PERMANENT_STATUSES`]: do not retry.
    #[error("refused by the upstream: {0}")]
    Permanent(CommandStatus),
    /// Worth retrying (with backoff).
    #[error("transient failure: {0}")]
    Transient(TransientCause),
    /// ESME_ROK without a message_id: accepted, but receipts cannot be
    /// matched; resending would duplicate it.
    #[error("accepted without a message_id")]
    NoMessageId,
    /// The submit_sm could not be encoded (a field out of range); do not retry.
    #[error("cannot send: {0}")]
    Invalid(String),
}

/// A deliver_sm or data_sm from one bind of an upstream. Answer it with
/// `responder` (a receipt that cannot be stored yet: ESME_RX_T_APPN, the
/// SMSC resends later); unanswered, the session answers ESME_RX_T_APPN after
/// its inbound timeout.
#[derive(Debug)]
pub struct UpstreamInbound {
    /// The upstream's configured name.
    pub upstream: Arc<str>,
    /// Index of the session in the pool.
    pub bind: usize,
    pub pdu: Pdu,
    pub responder: Responder,
}

/// Slow-down state of one bind after throttling answers.
struct Throttle {
    until: Option<Instant>,
    next: Duration,
}

/// One session of the pool.
struct Slot {
    index: usize,
    bind_type: BindType,
    handle: Mutex<Option<ClientHandle>>,
    throttle: Mutex<Throttle>,
}

impl Slot {
    fn can_submit(&self) -> bool {
        self.bind_type != BindType::Receiver
    }

    fn handle(&self) -> Option<ClientHandle> {
        let guard = self.handle.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().filter(|h| h.close_reason().is_none()).cloned()
    }

    fn set_handle(&self, handle: Option<ClientHandle>) -> Option<ClientHandle> {
        let mut guard = self.handle.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *guard, handle)
    }

    fn backing_off(&self, now: Instant) -> bool {
        let t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        t.until.is_some_and(|until| until > now)
    }

    /// Starts (or keeps) backing off; a throttling answer that arrives while
    /// the bind already backs off (sent before it started) does not escalate.
    fn throttled(&self, name: &str, min: Duration, max: Duration, status: CommandStatus) {
        let now = Instant::now();
        let mut t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if t.until.is_some_and(|until| until > now) {
            return;
        }
        let pause = t.next.clamp(min, max);
        t.until = Some(now + pause);
        t.next = pause.saturating_mul(2).min(max);
        tracing::warn!(upstream = name, bind = self.index, %status, ?pause, "upstream throttles: bind backs off");
    }

    fn accepted(&self, min: Duration) {
        let mut t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if t.until.is_some() || t.next != min {
            t.until = None;
            t.next = min;
        }
    }
}

/// What the pool and its supervisors share.
struct Shared {
    name: Arc<str>,
    config: UpstreamConfig,
    settings: ClientSettings,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    slots: Vec<Slot>,
    next: AtomicUsize,
    limiter: Option<DefaultDirectRateLimiter>,
    inbound_tx: mpsc::Sender<UpstreamInbound>,
    stop: watch::Sender<bool>,
}

/// The binds towards one upstream SMSC. Dropping the pool stops its
/// supervisors (they unbind without being awaited); [`UpstreamPool::stop`]
/// does it and waits.
pub struct UpstreamPool {
    shared: Arc<Shared>,
    inbound_rx: Mutex<Option<mpsc::Receiver<UpstreamInbound>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("name", &self.shared.name)
            .field("bound", &self.bound())
            .finish()
    }
}

impl Drop for UpstreamPool {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
    }
}

impl UpstreamPool {
    /// Validates `config`, loads the TLS trust anchors if any, and starts
    /// one supervisor per session (must be called within a tokio runtime).
    /// Returns at once; sessions bind in the background (see [`UpstreamPool::wait_bound`]).
    pub fn start(config: UpstreamConfig) -> anyhow::Result<Arc<UpstreamPool>> {
        config.validate()?;
        let tls = if config.tls {
            Some(tls_connector(&config)?)
        } else {
            None
        };
        let limiter =
            std::num::NonZeroU32::new(config.throughput).map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        let slots = config
            .sessions()
            .into_iter()
            .enumerate()
            .map(|(index, bind_type)| Slot {
                index,
                bind_type,
                handle: Mutex::new(None),
                throttle: Mutex::new(Throttle {
                    until: None,
                    next: config.throttle_backoff_min(),
                }),
            })
            .collect::<Vec<_>>();
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue);
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            name: Arc::from(config.name.as_str()),
            settings: config.client_settings(),
            config,
            tls,
            slots,
            next: AtomicUsize::new(0),
            limiter,
            inbound_tx,
            stop,
        });
        let tasks = (0..shared.slots.len())
            .map(|index| tokio::spawn(supervise(shared.clone(), index)))
            .collect();
        tracing::info!(
            upstream = %shared.name,
            addr = %shared.config.addr(),
            sessions = shared.slots.len(),
            tls = shared.config.tls,
            "upstream pool started"
        );
        Ok(Arc::new(UpstreamPool {
            shared,
            inbound_rx: Mutex::new(Some(inbound_rx)),
            tasks: Mutex::new(tasks),
        }))
    }

    /// The upstream's configured name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.shared.config
    }

    /// The merged deliver_sm / data_sm of every bind; `Some` on the first call only.
    pub fn inbound(&self) -> Option<mpsc::Receiver<UpstreamInbound>> {
        self.inbound_rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Sessions bound now (any bind type).
    pub fn bound(&self) -> usize {
        self.shared.slots.iter().filter(|s| s.handle().is_some()).count()
    }

    /// `true` when at least one transmitter-capable session is bound and not backing off.
    pub fn is_available(&self) -> bool {
        let now = Instant::now();
        self.shared
            .slots
            .iter()
            .any(|s| s.can_submit() && s.handle().is_some() && !s.backing_off(now))
    }

    /// Waits until at least `n` sessions are bound; `false` after `timeout`.
    pub async fn wait_bound(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.bound() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A bound, transmitter-capable session that is not backing off, round robin.
    fn pick(&self) -> Result<(&Slot, ClientHandle), SubmitError> {
        self.pick_from(self.shared.next.fetch_add(1, Ordering::Relaxed))
    }

    /// What [`pick`](Self::pick) would answer, without taking a turn of the
    /// round robin: a check that advanced it too would make every submit move
    /// two places, so with an even number of binds half of them never got one.
    fn check(&self) -> Result<(), SubmitError> {
        self.pick_from(self.shared.next.load(Ordering::Relaxed)).map(|_| ())
    }

    fn pick_from(&self, start: usize) -> Result<(&Slot, ClientHandle), SubmitError> {
        if *self.shared.stop.borrow() {
            return Err(SubmitError::NoBind);
        }
        let slots = &self.shared.slots;
        let now = Instant::now();
        let mut bound = false;
        for i in 0..slots.len() {
            let slot = &slots[(start + i) % slots.len()];
            if !slot.can_submit() {
                continue;
            }
            let Some(handle) = slot.handle() else { continue };
            bound = true;
            if slot.backing_off(now) {
                continue;
            }
            return Ok((slot, handle));
        }
        Err(if bound {
            SubmitError::BackingOff
        } else {
            SubmitError::NoBind
        })
    }

    /// Sends `sm` upstream and returns the upstream's message_id.
    pub async fn submit(&self, sm: SubmitSm) -> Result<String, SubmitError> {
        if let Some(limiter) = &self.shared.limiter {
            // Fail fast, before waiting for the throughput cap.
            self.check()?;
            if tokio::time::timeout(self.shared.config.response_timeout(), limiter.until_ready())
                .await
                .is_err()
            {
                return Err(SubmitError::Transient(TransientCause::RateCap));
            }
        }
        let (slot, handle) = self.pick()?;
        let name = &*self.shared.name;
        let pdu = match handle.request(Body::SubmitSm(sm)).await {
            Ok(pdu) => pdu,
            Err(e) => {
                let error = match e {
                    ClientError::ResponseTimeout { .. } => SubmitError::Transient(TransientCause::Timeout),
                    ClientError::WindowTimeout(_) => SubmitError::Transient(TransientCause::WindowFull),
                    ClientError::Closed(reason) => SubmitError::Transient(TransientCause::ConnectionLost(reason)),
                    ClientError::Encode { .. } | ClientError::NotARequest(_) => SubmitError::Invalid(e.to_string()),
                    ClientError::UnexpectedResponse { .. } => {
                        SubmitError::Transient(TransientCause::UnexpectedResponse(e.to_string()))
                    }
                    other => SubmitError::Transient(TransientCause::UnexpectedResponse(other.to_string())),
                };
                tracing::debug!(upstream = name, bind = slot.index, %error, "submit failed");
                return Err(error);
            }
        };
        let status = pdu.command_status;
        let config = &self.shared.config;
        match pdu.body {
            Body::SubmitSmResp(resp) if status.is_ok() => {
                let id = resp.message_id.to_string_lossy().into_owned();
                if id.is_empty() {
                    tracing::warn!(
                        upstream = name,
                        bind = slot.index,
                        "submit accepted without a message_id"
                    );
                    return Err(SubmitError::NoMessageId);
                }
                slot.accepted(config.throttle_backoff_min());
                Ok(id)
            }
            _ if status.is_ok() => Err(SubmitError::Transient(TransientCause::UnexpectedResponse(format!(
                "{} with {status}",
                pdu.command_id()
            )))),
            _ if is_throttling(status) => {
                slot.throttled(
                    name,
                    config.throttle_backoff_min(),
                    config.throttle_backoff_max(),
                    status,
                );
                Err(SubmitError::Throttled(status))
            }
            _ if is_permanent(status) => Err(SubmitError::Permanent(status)),
            _ => Err(SubmitError::Transient(TransientCause::Status(status))),
        }
    }

    /// Stops reconnecting, unbinds every session (each waits at most the
    /// response timeout for in-flight submits and again for unbind_resp)
    /// and waits for the supervisors. Submits fail with `NoBind` from now on.
    pub async fn stop(&self) {
        self.shared.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        tracing::info!(upstream = %self.shared.name, "upstream pool stopped");
    }
}

/// A reconnect delay: `min · 2^attempt`, at most `max`, less up to `jitter` of it.
fn reconnect_delay(min: Duration, max: Duration, jitter: f64, attempt: u32) -> Duration {
    let base = min.saturating_mul(2u32.saturating_pow(attempt.min(31))).min(max);
    let cut = base.mul_f64((jitter * rand::random::<f64>()).clamp(0.0, 1.0));
    base.saturating_sub(cut)
}

impl Shared {
    async fn connect(&self, bind_type: BindType) -> anyhow::Result<(ClientHandle, mpsc::Receiver<Inbound>)> {
        let bind = self.config.bind_request(bind_type);
        let addr = self.config.addr();
        let Some((connector, server_name)) = &self.tls else {
            return Ok(client::connect(addr, bind, self.settings.clone()).await?);
        };
        let timeout = self.config.response_timeout();
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(&addr))
            .await
            .with_context(|| format!("no connection to {addr} within {timeout:?}"))?
            .with_context(|| format!("cannot connect to {addr}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio::time::timeout(timeout, connector.connect(server_name.clone(), tcp))
            .await
            .with_context(|| format!("no TLS handshake with {addr} within {timeout:?}"))?
            .with_context(|| format!("TLS handshake with {addr}"))?;
        Ok(client::connect_stream(tls, bind, self.settings.clone()).await?)
    }
}

/// Keeps session `index` bound until the pool stops.
async fn supervise(shared: Arc<Shared>, index: usize) {
    let slot = &shared.slots[index];
    let name = &*shared.name;
    let mut stop = shared.stop.subscribe();
    let stable_after = STABLE_AFTER.min(shared.config.reconnect_max());
    let mut attempt: u32 = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        let connected = tokio::select! {
            connected = shared.connect(slot.bind_type) => connected,
            _ = stop.wait_for(|s| *s) => break,
        };
        match connected {
            Ok((handle, rx)) => {
                let since = Instant::now();
                tracing::info!(upstream = name, bind = index, bind_type = ?slot.bind_type, "bound");
                slot.accepted(shared.config.throttle_backoff_min());
                slot.set_handle(Some(handle.clone()));
                let forwarder = tokio::spawn(forward(shared.clone(), index, rx));
                let reason = tokio::select! {
                    reason = handle.closed() => Some(reason),
                    _ = stop.wait_for(|s| *s) => None,
                };
                slot.set_handle(None);
                let Some(reason) = reason else {
                    // Stopping: unbind (bounded by the session's own timeouts, and again here).
                    let limit = shared.config.response_timeout() * 2 + Duration::from_secs(1);
                    match tokio::time::timeout(limit, handle.unbind()).await {
                        Ok(Ok(())) => tracing::info!(upstream = name, bind = index, "unbound"),
                        Ok(Err(e)) => tracing::info!(upstream = name, bind = index, error = %e, "unbind"),
                        Err(_) => tracing::warn!(upstream = name, bind = index, "no unbind_resp in time"),
                    }
                    let _ = forwarder.await;
                    return;
                };
                drop(handle);
                tracing::warn!(upstream = name, bind = index, %reason, "bind lost; reconnecting");
                if since.elapsed() >= stable_after {
                    attempt = 0;
                }
            }
            Err(e) => {
                tracing::warn!(
                    upstream = name,
                    bind = index,
                    attempt,
                    error = format!("{e:#}"),
                    "connect or bind failed"
                );
            }
        }
        let delay = reconnect_delay(
            shared.config.reconnect_min(),
            shared.config.reconnect_max(),
            shared.config.reconnect_jitter,
            attempt,
        );
        attempt = attempt.saturating_add(1);
        tracing::debug!(upstream = name, bind = index, ?delay, "reconnect after");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// Moves one session's inbound requests to the pool's merged channel until
/// the session ends, the pool's receiver is dropped, or the pool stops.
async fn forward(shared: Arc<Shared>, index: usize, mut rx: mpsc::Receiver<Inbound>) {
    let mut stop = shared.stop.subscribe();
    loop {
        let inbound = tokio::select! {
            inbound = rx.recv() => inbound,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(Inbound { pdu, responder }) = inbound else {
            return;
        };
        let item = UpstreamInbound {
            upstream: shared.name.clone(),
            bind: index,
            pdu,
            responder,
        };
        let sent = tokio::select! {
            sent = shared.inbound_tx.send(item) => sent.is_ok(),
            _ = stop.wait_for(|s| *s) => false,
        };
        if !sent {
            // The responder is dropped: the session answers with its fallback status.
            return;
        }
    }
}

/// A rustls connector trusting the PEM certificates of `tls_ca_file`.
fn tls_connector(config: &UpstreamConfig) -> anyhow::Result<(TlsConnector, rustls::pki_types::ServerName<'static>)> {
    let name = &config.name;
    let path = config
        .tls_ca_file
        .as_ref()
        .with_context(|| format!("upstream {name}: tls needs tls_ca_file"))?;
    let file = std::fs::File::open(path).with_context(|| format!("upstream {name}: opening {}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(file)) {
        let cert = cert.with_context(|| format!("upstream {name}: reading {}", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("upstream {name}: a certificate in {}", path.display()))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "upstream {name}: no certificate in {}",
        path.display()
    );
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server = config.tls_server_name.clone().unwrap_or_else(|| config.host.clone());
    let server_name = rustls::pki_types::ServerName::try_from(server.clone())
        .with_context(|| format!("upstream {name}: {server:?} is not a TLS server name"))?;
    Ok((TlsConnector::from(Arc::new(tls)), server_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_doubles_and_is_bounded() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(reconnect_delay(min, max, 0.0, 0), min);
        assert_eq!(reconnect_delay(min, max, 0.0, 3), Duration::from_millis(800));
        assert_eq!(reconnect_delay(min, max, 0.0, 40), max);
        for attempt in 0..50 {
            let d = reconnect_delay(min, max, 0.5, attempt);
            assert!(d <= max);
            assert!(d >= min / 2);
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert!(is_throttling(CommandStatus::ESME_RTHROTTLED));
        assert!(is_throttling(CommandStatus::ESME_RMSGQFUL));
        assert!(is_permanent(CommandStatus::ESME_RINVDSTADR));
        assert!(is_permanent(CommandStatus::ESME_RINVESMCLASS));
        assert!(!is_permanent(CommandStatus::ESME_RSYSERR));
        assert!(!is_permanent(CommandStatus::ESME_RTHROTTLED));
    }

    #[test]
    fn throttle_backoff_doubles_without_escalating_while_active() {
        let slot = Slot {
            index: 0,
            bind_type: BindType::Transceiver,
            handle: Mutex::new(None),
            throttle: Mutex::new(Throttle {
                until: None,
                next: Duration::from_secs(1),
            }),
        };
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(4));
        slot.throttled("t", min, max, CommandStatus::ESME_RTHROTTLED);
        assert!(slot.backing_off(Instant::now()));
        slot.throttled("t", min, max, CommandStatus::ESME_RTHROTTLED);
        assert_eq!(slot.throttle.lock().unwrap().next, Duration::from_secs(2));
        slot.accepted(min);
        assert!(!slot.backing_off(Instant::now()));
        assert_eq!(slot.throttle.lock().unwrap().next, min);
    }
}
