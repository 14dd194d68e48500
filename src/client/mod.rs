//! The ESME side of an SMPP session: binds to an SMSC (our gateway, a
//! carrier, `smsmax sim`), sends requests windowed and matched by sequence
//! number, and hands the SMSC's own requests (deliver_sm, data_sm) to the
//! caller, who decides their response status.
//!
//! Used by `smsmax bench` and by the upstream relay.
//!
//! ```text
//! ClientHandle::request ──encode──> [writer queue] ──one write per burst──> socket
//!        ^  (oneshot per sequence number, deadline queue)                     |
//!        +────────── session task (reader loop) <─────────────────────────────+
//!                          | deliver_sm / data_sm
//!                          v
//!                 mpsc::Receiver<Inbound> ── Responder::respond(status) ──> deliver_sm_resp
//! ```
//!
//! Everything is bounded: at most `window` requests are outstanding (callers
//! beyond it wait for a slot, at most `response_timeout`), every request
//! waits at most `response_timeout` for its response, the writer queue and
//! the inbound queue have fixed capacities, and an inbound request the
//! consumer does not answer within `inbound_timeout` is answered with
//! `inbound_fallback_status`.
//!
//! Both timeouts are kept by the session task from deadline queues (one
//! timer for the session, moved as the earliest deadline changes), not by a
//! timer per request: at tens of thousands of PDUs a second, registering and
//! removing a timer per request and per deliver_sm was a visible share of
//! the CPU of the bench and of the gateway's upstream binds.
//!
//! The session ends on a transport error, an unbind from the peer, a missed
//! enquire_link_resp, [`ClientHandle::unbind`] or when every handle is
//! dropped; pending and later requests then fail with
//! [`ClientError::Closed`] carrying the [`CloseReason`].

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use smsmax_protocol::{
    pdu::{Bind, INTERFACE_VERSION_34},
    types::{AddressRange, Password, SystemId, SystemType},
    Body, CommandId, CommandStatus, FieldError, Pdu,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::{mpsc, oneshot, watch, Semaphore},
    task::JoinHandle,
    time::Instant,
};

pub use crate::config::BindType;

mod session;
mod writer;

/// What to bind as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindRequest {
    pub bind_type: BindType,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    /// `0x34` for SMPP 3.4.
    pub interface_version: u8,
    pub addr_ton: u8,
    pub addr_npi: u8,
    pub address_range: String,
}

impl BindRequest {
    /// A bind of `bind_type` with SMPP 3.4 and every optional field empty.
    pub fn new(bind_type: BindType, system_id: impl Into<String>, password: impl Into<String>) -> Self {
        BindRequest {
            bind_type,
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            interface_version: INTERFACE_VERSION_34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: String::new(),
        }
    }

    fn body(&self) -> Result<Body, ClientError> {
        let field =
            |name: &'static str| move |source: FieldError| ClientError::InvalidBindField { field: name, source };
        let bind = Bind {
            system_id: SystemId::try_from(self.system_id.as_str()).map_err(field("system_id"))?,
            password: Password::try_from(self.password.as_str()).map_err(field("password"))?,
            system_type: SystemType::try_from(self.system_type.as_str()).map_err(field("system_type"))?,
            interface_version: self.interface_version,
            addr_ton: self.addr_ton,
            addr_npi: self.addr_npi,
            address_range: AddressRange::try_from(self.address_range.as_str()).map_err(field("address_range"))?,
        };
        Ok(match self.bind_type {
            BindType::Transmitter => Body::BindTransmitter(bind),
            BindType::Receiver => Body::BindReceiver(bind),
            BindType::Transceiver => Body::BindTransceiver(bind),
        })
    }
}

/// Limits and timers of one session.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Requests outstanding at once (at least 1).
    pub window: usize,
    /// Longest wait for a response, for a window slot, and for a connect.
    pub response_timeout: Duration,
    /// An enquire_link is sent after this long without hearing from the
    /// peer; zero disables it. A missing enquire_link_resp ends the session.
    pub enquire_link_interval: Duration,
    /// Capacity of the channel of inbound deliver_sm / data_sm.
    pub inbound_queue: usize,
    /// Inbound requests handed out but not yet answered, at most; beyond,
    /// new ones are answered with `inbound_fallback_status` at once.
    pub inbound_window: usize,
    /// Longest wait for the consumer to take an inbound request and to
    /// answer it.
    pub inbound_timeout: Duration,
    /// The status sent when the consumer does not answer in time, drops the
    /// [`Responder`] or the receiver: by default ESME_RX_T_APPN (temporary
    /// error, the SMSC retries later).
    pub inbound_fallback_status: CommandStatus,
    /// Encoded PDUs waiting for the writer.
    pub writer_queue: usize,
    /// Largest PDU accepted from the peer.
    pub max_command_length: u32,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            window: 64,
            response_timeout: Duration::from_secs(10),
            enquire_link_interval: Duration::from_secs(30),
            inbound_queue: 1024,
            inbound_window: 4096,
            inbound_timeout: Duration::from_secs(10),
            inbound_fallback_status: CommandStatus::ESME_RX_T_APPN,
            writer_queue: 4096,
            max_command_length: smsmax_protocol::codec::DEFAULT_MAX_COMMAND_LENGTH,
        }
    }
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    #[error("the peer closed the connection")]
    PeerClosed,
    #[error("the peer unbound")]
    UnboundByPeer,
    #[error("unbound by us")]
    Unbound,
    #[error("no enquire_link_resp in time")]
    EnquireLinkTimeout,
    #[error("transport error: {0}")]
    Io(String),
    #[error("the stream cannot be re-framed: {0}")]
    Framing(String),
    #[error("the bind was not accepted")]
    BindFailed,
    #[error("every handle was dropped")]
    HandleDropped,
}

/// Errors of [`connect`] and [`ClientHandle::request`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no connection to {addr} within {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("bind field {field}: {source}")]
    InvalidBindField {
        field: &'static str,
        #[source]
        source: FieldError,
    },
    #[error("bind refused: {0}")]
    BindRejected(CommandStatus),
    #[error("{0} is not a request a client may send with request()")]
    NotARequest(CommandId),
    #[error("cannot encode {command}: {source}")]
    Encode {
        command: CommandId,
        #[source]
        source: smsmax_protocol::EncodeError,
    },
    #[error("no window slot free within {0:?}")]
    WindowTimeout(Duration),
    #[error("no response to {command} (sequence {sequence}) within {after:?}")]
    ResponseTimeout {
        command: CommandId,
        sequence: u32,
        after: Duration,
    },
    #[error("{command} answered by {got}")]
    UnexpectedResponse { command: CommandId, got: CommandId },
    #[error("session closed: {0}")]
    Closed(CloseReason),
}

/// A deliver_sm or data_sm from the SMSC, with the means to answer it.
#[derive(Debug)]
pub struct Inbound {
    pub pdu: Pdu,
    pub responder: Responder,
}

/// Answers one inbound request. Dropping it unanswered, or answering after
/// `inbound_timeout`, makes the session send `inbound_fallback_status`.
#[derive(Debug)]
pub struct Responder {
    to: Option<AnswerTo>,
}

#[derive(Debug)]
enum AnswerTo {
    /// The session's table of open inbound requests (see [`session::Answers`]).
    Session {
        answers: Arc<session::Answers>,
        token: u64,
        fallback: CommandStatus,
    },
    /// A bare channel, for consumers tested without a session.
    Channel(oneshot::Sender<CommandStatus>),
}

impl Responder {
    /// A responder whose answer arrives on the returned receiver: for
    /// consumers tested without a session.
    pub fn channel() -> (Responder, oneshot::Receiver<CommandStatus>) {
        let (tx, rx) = oneshot::channel();
        (
            Responder {
                to: Some(AnswerTo::Channel(tx)),
            },
            rx,
        )
    }

    /// Sends the response with `status`; `false` if it is too late (the
    /// fallback was sent or the session has ended).
    pub fn respond(mut self, status: CommandStatus) -> bool {
        match self.to.take() {
            Some(AnswerTo::Session { answers, token, .. }) => answers.answer(token, status),
            Some(AnswerTo::Channel(tx)) => tx.send(status).is_ok(),
            None => false,
        }
    }

    /// Sends the response with ESME_ROK.
    pub fn ok(self) -> bool {
        self.respond(CommandStatus::ESME_ROK)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        // Unanswered: the fallback goes at once (a bare channel's receiver
        // sees the sender dropped).
        if let Some(AnswerTo::Session {
            answers,
            token,
            fallback,
        }) = self.to.take()
        {
            answers.answer(token, fallback);
        }
    }
}

/// What a waiting caller is told.
// Unboxed on purpose: the PDU was sent through the oneshot as is before,
// and boxing it would add an allocation per response.
#[allow(clippy::large_enum_variant)]
enum Reply {
    Response(Pdu),
    /// No response by the request's deadline.
    TimedOut,
}

/// The requests waiting for their response.
///
/// Their response timeout is enforced by the session task, which sleeps
/// until the earliest deadline and fails what is overdue: a caller waits
/// on its oneshot alone, so a request costs no timer of its own (a timer
/// registration and removal per request was a visible share of the CPU of a
/// busy bind).
#[derive(Default)]
struct Pending {
    /// Waiting callers by sequence number, with their deadline.
    waiting: HashMap<u32, (Instant, oneshot::Sender<Reply>)>,
    /// (deadline, sequence number) in the order the requests were made.
    /// Every request gets the same timeout, so this is deadline order too.
    /// Entries of answered requests are dropped when they reach the front.
    deadlines: VecDeque<(Instant, u32)>,
}

impl Pending {
    /// Drops the front entries whose request was answered (or replaced).
    fn skip_answered(&mut self) {
        while let Some(&(deadline, sequence)) = self.deadlines.front() {
            if self.waiting.get(&sequence).is_some_and(|(d, _)| *d == deadline) {
                break;
            }
            self.deadlines.pop_front();
        }
    }
}

/// What the handles and the session task share.
struct Shared {
    settings: ClientSettings,
    writer: mpsc::Sender<writer::Outgoing>,
    /// Waiting callers.
    pending: Mutex<Pending>,
    /// Rings when a request is made while none was waiting: the session
    /// task's timer must come forward to its deadline.
    rearm: tokio::sync::Notify,
    slots: Semaphore,
    next_sequence: AtomicU32,
    closed: OnceLock<CloseReason>,
    closed_tx: watch::Sender<bool>,
}

impl Shared {
    /// Sequence numbers run 1..=0x7FFFFFFF and wrap (section 3.2).
    fn next_sequence(&self) -> u32 {
        let n = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        n % 0x7FFF_FFFF + 1
    }

    fn close_reason(&self) -> CloseReason {
        self.closed.get().cloned().unwrap_or(CloseReason::HandleDropped)
    }

    fn closed_error(&self) -> ClientError {
        ClientError::Closed(self.close_reason())
    }

    /// Ends the session for everyone: records why, fails pending and
    /// waiting callers.
    fn close(&self, reason: CloseReason) {
        let _ = self.closed.set(reason);
        self.slots.close();
        let waiting: Vec<_> = {
            let mut pending = self.pending();
            pending.deadlines.clear();
            pending.waiting.drain().collect()
        };
        drop(waiting);
        self.closed_tx.send_replace(true);
    }

    /// The waiting callers; a poisoned lock is still usable (the map stays consistent).
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_pending(&self, sequence: u32) -> Option<oneshot::Sender<Reply>> {
        let mut pending = self.pending();
        let (_, tx) = pending.waiting.remove(&sequence)?;
        pending.skip_answered();
        Some(tx)
    }

    fn insert_pending(&self, sequence: u32, deadline: Instant) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending();
        // The front is always a waiting request (answered ones are skipped
        // as they are removed): empty means the session's timer does not
        // know about any deadline.
        let first = pending.deadlines.is_empty();
        pending.waiting.insert(sequence, (deadline, tx));
        pending.deadlines.push_back((deadline, sequence));
        drop(pending);
        if first {
            self.rearm.notify_one();
        }
        rx
    }

    /// The earliest deadline of a waiting request.
    fn next_deadline(&self) -> Option<Instant> {
        let mut pending = self.pending();
        pending.skip_answered();
        pending.deadlines.front().map(|&(deadline, _)| deadline)
    }

    /// Fails the requests whose deadline is `now` or earlier.
    fn expire(&self, now: Instant) {
        let mut overdue = Vec::new();
        {
            let mut pending = self.pending();
            pending.skip_answered();
            while let Some(&(deadline, sequence)) = pending.deadlines.front() {
                if deadline > now {
                    break;
                }
                pending.deadlines.pop_front();
                if let Some((_, tx)) = pending.waiting.remove(&sequence) {
                    overdue.push(tx);
                }
                pending.skip_answered();
            }
        }
        for tx in overdue {
            let _ = tx.send(Reply::TimedOut);
        }
    }

    /// Sends `body` with a fresh sequence number and waits for its
    /// response. Takes no window slot: the caller has one, or it is a
    /// session-level request (bind).
    async fn call(&self, body: Body) -> Result<Pdu, ClientError> {
        if self.closed.get().is_some() {
            return Err(self.closed_error());
        }
        let command = body.command_id();
        let timeout = self.settings.response_timeout;
        let sequence = self.next_sequence();
        // Room for a typical submit_sm at once, rather than growing in steps.
        let mut buf = BytesMut::with_capacity(256);
        Pdu::new(sequence, body)
            .encode(&mut buf)
            .map_err(|source| ClientError::Encode { command, source })?;
        let deadline = Instant::now() + timeout;
        let rx = self.insert_pending(sequence, deadline);
        // close() may have drained the map just before the insert.
        if self.closed.get().is_some() {
            self.take_pending(sequence);
            return Err(self.closed_error());
        }
        let sent = tokio::time::timeout_at(deadline, self.writer.send(writer::Outgoing::Frame(buf.freeze()))).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.take_pending(sequence);
                return Err(self.closed_error());
            }
            Err(_) => {
                self.take_pending(sequence);
                return Err(ClientError::ResponseTimeout {
                    command,
                    sequence,
                    after: timeout,
                });
            }
        }
        // Bounded without a timer of its own: the session task answers
        // TimedOut at the deadline, or drops the sender when it ends.
        match rx.await {
            Ok(Reply::Response(pdu)) => {
                let got = pdu.command_id();
                if Some(got) == command.response() || got == CommandId::GenericNack {
                    Ok(pdu)
                } else {
                    Err(ClientError::UnexpectedResponse { command, got })
                }
            }
            Ok(Reply::TimedOut) => Err(ClientError::ResponseTimeout {
                command,
                sequence,
                after: timeout,
            }),
            Err(_) => Err(self.closed_error()),
        }
    }
}

/// What a handle tells the session task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Run,
    /// Send unbind, wait for unbind_resp (bounded), close.
    Unbind,
    /// Close without unbinding (the bind failed).
    Abort,
}

/// Owned by the handles; the last one dropped stops the session.
struct HandleInner {
    shared: Arc<Shared>,
    stop: watch::Sender<Stop>,
    task: Mutex<Option<JoinHandle<()>>>,
    system_id: String,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        // Unbind politely if nobody did; the session task is not awaited.
        self.stop.send_if_modified(|stop| {
            if *stop == Stop::Run {
                *stop = Stop::Unbind;
                true
            } else {
                false
            }
        });
    }
}

/// A bound session. Cheap to clone; every clone sends on the same bind and
/// shares its window.
#[derive(Clone)]
pub struct ClientHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandle")
            .field("system_id", &self.inner.system_id)
            .field("closed", &self.inner.shared.closed.get())
            .finish()
    }
}

impl ClientHandle {
    /// Sends a request (submit_sm, data_sm, query_sm, enquire_link, ...)
    /// and returns its response, whatever its status (a refused submit is
    /// `Ok` with the status in `command_status`; a `generic_nack` is
    /// returned as is). Waits at most `response_timeout` for a window slot
    /// and at most `response_timeout` for the response.
    pub async fn request(&self, body: Body) -> Result<Pdu, ClientError> {
        let command = body.command_id();
        if command.is_response()
            || matches!(
                command,
                CommandId::BindReceiver
                    | CommandId::BindTransmitter
                    | CommandId::BindTransceiver
                    | CommandId::Unbind
                    | CommandId::Outbind
                    | CommandId::AlertNotification
            )
        {
            return Err(ClientError::NotARequest(command));
        }
        let shared = &self.inner.shared;
        if shared.closed.get().is_some() {
            return Err(shared.closed_error());
        }
        let timeout = shared.settings.response_timeout;
        // A free slot needs no timer; only a full window is waited for.
        let _slot = match shared.slots.try_acquire() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(shared.closed_error()),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                match tokio::time::timeout(timeout, shared.slots.acquire()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(shared.closed_error()),
                    Err(_) => return Err(ClientError::WindowTimeout(timeout)),
                }
            }
        };
        shared.call(body).await
    }

    /// Requests outstanding now.
    pub fn in_flight(&self) -> usize {
        let shared = &self.inner.shared;
        shared.settings.window.saturating_sub(shared.slots.available_permits())
    }

    /// The session's window.
    pub fn window(&self) -> usize {
        self.inner.shared.settings.window
    }

    /// `Some(reason)` once the session has ended.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner.shared.closed.get().cloned()
    }

    /// Waits until the session ends and says why.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.inner.shared.closed_tx.subscribe();
        let _ = rx.wait_for(|closed| *closed).await;
        self.inner.shared.close_reason()
    }

    /// Waits (at most `response_timeout`) for outstanding requests, sends
    /// unbind, waits (at most `response_timeout`) for unbind_resp and
    /// closes the connection. Other clones' requests fail from then on.
    pub async fn unbind(self) -> Result<(), ClientError> {
        let shared = self.inner.shared.clone();
        if let Some(reason) = shared.closed.get() {
            return Err(ClientError::Closed(reason.clone()));
        }
        let window = u32::try_from(shared.settings.window).unwrap_or(u32::MAX);
        // Draining: every slot free means nothing is in flight.
        let drained = tokio::time::timeout(shared.settings.response_timeout, shared.slots.acquire_many(window)).await;
        drop(drained);
        self.inner.stop.send_replace(Stop::Unbind);
        let task = match self.inner.task.lock() {
            Ok(mut task) => task.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(task) = task {
            // The session bounds its own wait for unbind_resp and the final flush.
            let _ = task.await;
        }
        match shared.close_reason() {
            CloseReason::Unbound => Ok(()),
            other => Err(ClientError::Closed(other)),
        }
    }
}

/// Connects over TCP and binds. The inbound receiver yields the SMSC's
/// deliver_sm and data_sm until the session ends.
pub async fn connect(
    addr: impl tokio::net::ToSocketAddrs + std::fmt::Display,
    bind: BindRequest,
    settings: ClientSettings,
) -> Result<(ClientHandle, mpsc::Receiver<Inbound>), ClientError> {
    let name = addr.to_string();
    let stream = match tokio::time::timeout(settings.response_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(ClientError::Connect { addr: name, source }),
        Err(_) => {
            return Err(ClientError::ConnectTimeout {
                addr: name,
                after: settings.response_timeout,
            })
        }
    };
    let _ = stream.set_nodelay(true);
    connect_stream(stream, bind, settings).await
}

/// Binds over an established stream (TCP, TLS, an in-memory pipe).
pub async fn connect_stream<S>(
    stream: S,
    bind: BindRequest,
    mut settings: ClientSettings,
) -> Result<(ClientHandle, mpsc::Receiver<Inbound>), ClientError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    settings.window = settings.window.max(1);
    settings.inbound_queue = settings.inbound_queue.max(1);
    settings.inbound_window = settings.inbound_window.max(1);
    settings.writer_queue = settings.writer_queue.max(1);
    let bind_body = bind.body()?;
    let (read_half, write_half) = tokio::io::split(stream);
    let (writer_tx, writer_rx) = mpsc::channel(settings.writer_queue);
    let (inbound_tx, inbound_rx) = mpsc::channel(settings.inbound_queue);
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    let (closed_tx, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        slots: Semaphore::new(settings.window),
        settings,
        writer: writer_tx,
        pending: Mutex::new(Pending::default()),
        rearm: tokio::sync::Notify::new(),
        next_sequence: AtomicU32::new(0),
        closed: OnceLock::new(),
        closed_tx,
    });
    let writer = tokio::spawn(writer::write_frames(
        write_half,
        writer_rx,
        shared.settings.response_timeout,
    ));
    let task = tokio::spawn(session::run(read_half, writer, shared.clone(), inbound_tx, stop_rx));
    let inner = HandleInner {
        shared: shared.clone(),
        stop: stop_tx,
        task: Mutex::new(Some(task)),
        system_id: bind.system_id.clone(),
    };
    let handle = ClientHandle { inner: Arc::new(inner) };
    let refused = match shared.call(bind_body).await {
        Ok(pdu) if pdu.command_status.is_ok() && pdu.command_id() != CommandId::GenericNack => None,
        Ok(pdu) => Some(ClientError::BindRejected(pdu.command_status)),
        Err(e) => Some(e),
    };
    if let Some(error) = refused {
        handle.inner.stop.send_replace(Stop::Abort);
        let task = match handle.inner.task.lock() {
            Ok(mut task) => task.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(task) = task {
            let _ = task.await;
        }
        return Err(error);
    }
    Ok((handle, inbound_rx))
}

/// Encodes a response with our own fields for an inbound request.
fn inbound_response(command: CommandId, sequence: u32, status: CommandStatus) -> Bytes {
    let pdu = match command {
        CommandId::DataSm if status.is_ok() => Pdu::new(sequence, Body::DataSmResp(Default::default())),
        CommandId::DeliverSm if status.is_ok() => Pdu::new(sequence, Body::DeliverSmResp(Default::default())),
        other => match other.response() {
            Some(resp) => Pdu::error_response(resp, sequence, status),
            None => Pdu::generic_nack(sequence, status),
        },
    };
    encode(&pdu)
}

/// Encodes a PDU we built; such a PDU always encodes.
fn encode(pdu: &Pdu) -> Bytes {
    let mut buf = BytesMut::with_capacity(32);
    if let Err(e) = pdu.encode(&mut buf) {
        tracing::error!(command = %pdu.command_id(), error = %e, "could not encode a PDU we built");
    }
    buf.freeze()
}
