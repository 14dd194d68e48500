//! One client connection: a reader loop (this task) and a writer task.
//!
//! States follow SMPP 3.4 section 2.2: OPEN until a bind succeeds, then
//! BOUND_TX / BOUND_RX / BOUND_TRX, then UNBOUND. Requests of a bound
//! session run concurrently up to the client's window and are answered as
//! each completes (out of order); the session only stops reading while it
//! drains for an unbind or a shutdown.
//!
//! A receiver or transceiver session also sends its client's outbox as
//! deliver_sm (handed to it by [`super::outbox`]), at most `[outbox] window`
//! unanswered, matched to deliver_sm_resp by sequence number; two more
//! outbound slots keep room for an enquire_link and an unbind. Each outcome
//! is reported back; when the session unbinds or ends, what it had queued
//! is reported unsent and what is unanswered as such, so it is retried.

use std::{collections::HashMap, future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Instant};

use bytes::BytesMut;
use futures::{stream::FuturesUnordered, StreamExt};
use smsmax_protocol::{
    pdu::{
        Bind, BindResp, DataSmResp, QuerySm, QuerySmResp, SubmitMultiResp, SubmitSmResp, UnsuccessSme,
        INTERFACE_VERSION_34,
    },
    types::{MessageId, SmppTime, SystemId},
    Body, CommandId, CommandStatus, Pdu, SmppCodec, Tlv,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{
        mpsc::{self, error::TrySendError},
        oneshot, watch,
    },
};
use tokio_util::codec::{Decoder, FramedRead};

use super::{
    auth::BindGuard,
    receivers::{Delivery, DeliveryOutcome, ReceiverGuard},
    validate::{self, MultiDestination},
    window::Window,
    writer::{write_pdus, Outgoing},
    Gateway,
};
use crate::{
    config::BindType,
    smpp_time,
    smpp_time::now_ms,
    store::{ChangeOutcome, MessageRecord, Replacement},
};

/// Hand-overs (a PDU, or a batch's answers of at most a window) waiting for
/// the writer; beyond, the session waits (bounded by the response timeout) —
/// the client is not reading.
const WRITER_QUEUE: usize = 1024;
/// A turn that took at least this many submits marks a busy client...
const BUSY_TURN: usize = 32;
/// ...whose reads then get this much room (the codec starts at 8 KiB): fewer,
/// larger reads and batches. Idle sessions keep the small buffer.
const BUSY_READ_BUFFER: usize = 32 * 1024;
/// Outbound window slots kept free of deliver_sm, so that an enquire_link
/// and an unbind can always go out.
const RESERVED_SLOTS: usize = 2;

/// The answer(s) to requests in flight: one request, or a batch of submits
/// stored with one enqueue.
type Answer = Pin<Box<dyn Future<Output = Outgoing> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Bound(BindType),
}

impl State {
    fn can_transmit(self) -> bool {
        matches!(self, State::Bound(BindType::Transmitter | BindType::Transceiver))
    }
}

/// Why a session ended (logged).
#[derive(Debug)]
enum End {
    PeerClosed,
    Unbound,
    BindTimeout,
    EnquireLinkTimeout,
    Framing,
    WriterGone,
    Shutdown,
}

/// Runs a session on an accepted (and, for TLS, handshaken) connection
/// until it ends. Never panics on anything the client sends.
pub async fn run<S>(stream: S, peer: SocketAddr, gateway: Arc<Gateway>, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let settings = gateway.settings.clone();
    let (read_half, write_half) = tokio::io::split(stream);
    let mut frames = FramedRead::new(read_half, SmppCodec::new(settings.max_command_length));
    let (tx, rx) = mpsc::channel::<Outgoing>(WRITER_QUEUE);
    let writer = tokio::spawn(write_pdus(write_half, rx, settings.response_timeout));
    let delivery_window = gateway.deliveries.as_ref().map_or(0, |d| d.window());

    let mut session = Session {
        gateway,
        peer,
        tx,
        state: State::Open,
        guard: None,
        system_id: Arc::from(""),
        outbound: Window::new(delivery_window + RESERVED_SLOTS),
        in_flight: FuturesUnordered::new(),
        outstanding: 0,
        batch: Batch::default(),
        turn_ms: None,
        receiver: None,
        deliveries: None,
        delivering: HashMap::new(),
        delivery_window,
        unbind_requested: None,
        draining: false,
        unbind_sent: false,
    };
    let opened = Instant::now();
    let mut last_heard = opened;
    // One timer for the session's life. It is moved earlier when something
    // needs an earlier wake-up, but not later on every frame (that would be
    // a timer-wheel update per read): a wake-up that finds nothing due just
    // sets it again.
    let timer = tokio::time::sleep_until(session.next_timer(opened, last_heard, &settings).into());
    tokio::pin!(timer);
    let end = loop {
        let next = session.next_timer(opened, last_heard, &settings);
        if next < timer.deadline().into_std() {
            timer.as_mut().reset(next.into());
        }
        // Stop reading requests while draining for unbind; keep reading
        // during a server shutdown to see the client's unbind_resp.
        let reading = session.unbind_requested.is_none();
        let taking = session.takes_deliveries();
        tokio::select! {
            Some(answer) = session.in_flight.next(), if !session.in_flight.is_empty() => {
                session.outstanding = session.outstanding.saturating_sub(answer.len());
                if session.send_out(answer).await.is_err() {
                    break End::WriterGone;
                }
            }
            _ = shutdown.changed(), if !session.draining => {
                session.draining = true;
                session.stop_deliveries();
            }
            Some(delivery) = next_delivery(&mut session.deliveries), if taking => {
                if session.on_delivery(delivery).await.is_err() {
                    break End::WriterGone;
                }
            }
            frame = frames.next(), if reading => {
                last_heard = Instant::now();
                let Some(frame) = frame else {
                    break End::PeerClosed;
                };
                let mut outcome = session.on_frame(frame).await;
                // Whole frames already in the read buffer are taken in the
                // same turn, so that their submits share one enqueue and one
                // hand-over to the writer; the rest waits for the next read.
                while matches!(outcome, Ok(None)) && session.unbind_requested.is_none() {
                    let mut codec = *frames.decoder();
                    match codec.decode(frames.read_buffer_mut()).transpose() {
                        None => break,
                        Some(frame) => outcome = session.on_frame(frame).await,
                    }
                }
                if session.batch.records.len() >= BUSY_TURN {
                    let buffer = frames.read_buffer_mut();
                    if buffer.capacity() < BUSY_READ_BUFFER {
                        buffer.reserve(BUSY_READ_BUFFER);
                    }
                }
                session.end_turn();
                match outcome {
                    Ok(Some(end)) => break end,
                    Ok(None) => {}
                    Err(()) => break End::WriterGone,
                }
            }
            () = &mut timer => {
                let outcome = session.on_timer(Instant::now(), opened, last_heard, &settings).await;
                timer.as_mut().reset(session.next_timer(opened, last_heard, &settings).into());
                match outcome {
                    Ok(Some(end)) => break end,
                    Ok(None) => {}
                    Err(()) => break End::WriterGone,
                }
            }
        }
        // An unbind (theirs or ours) waits for in-flight answers first.
        if session.in_flight.is_empty() {
            if let Some(sequence) = session.unbind_requested {
                let _ = session.send(Pdu::new(sequence, Body::UnbindResp)).await;
                break End::Unbound;
            }
            // Deliveries out are answered (or time out) before our unbind.
            if session.draining && !session.unbind_sent && session.delivering.is_empty() {
                if session.state == State::Open {
                    break End::Shutdown;
                }
                let deadline = Instant::now() + settings.response_timeout;
                if let Some(sequence) = session.outbound.open(CommandId::Unbind, deadline) {
                    session.unbind_sent = true;
                    if session.send(Pdu::new(sequence, Body::Unbind)).await.is_err() {
                        break End::WriterGone;
                    }
                }
            }
        }
    };
    tracing::info!(peer = %session.peer, system_id = %session.system_id, reason = ?end, "session closed");
    session.stop_deliveries();
    session.fail_delivering();
    drop(session);
    // The writer ends when its channel closes; give it the response timeout to flush.
    let _ = tokio::time::timeout(settings.response_timeout, writer).await;
}

struct Session {
    gateway: Arc<Gateway>,
    peer: SocketAddr,
    tx: mpsc::Sender<Outgoing>,
    state: State,
    guard: Option<BindGuard>,
    /// Shared with each request's answer future: a clone is a reference count.
    system_id: Arc<str>,
    outbound: Window,
    in_flight: FuturesUnordered<Answer>,
    /// Requests taken and not answered yet (in `in_flight` or `batch`): the
    /// client's window bounds this.
    outstanding: usize,
    /// Submits validated in this turn, stored together when it ends.
    batch: Batch,
    /// The wall clock of this turn, once read (see [`Session::turn_ms`]).
    turn_ms: Option<u64>,
    /// Sequence number of the client's unbind, answered once in-flight work is done.
    unbind_requested: Option<u32>,
    /// The server is shutting down.
    draining: bool,
    unbind_sent: bool,
    /// This session's place among its client's receiving sessions.
    receiver: Option<ReceiverGuard>,
    /// Outbox entries for this session to send as deliver_sm.
    deliveries: Option<mpsc::Receiver<Delivery>>,
    /// Where to report the client's answer to each deliver_sm sent, by sequence number.
    delivering: HashMap<u32, oneshot::Sender<DeliveryOutcome>>,
    /// Most deliver_sm awaiting a response at once.
    delivery_window: usize,
}

/// Submits (submit_sm, data_sm) read in one turn of the session loop:
/// stored with one [`Queue::enqueue`](crate::queue::Queue::enqueue) call and
/// answered with one hand-over to the writer, instead of a call, a future and
/// a timer each.
#[derive(Default)]
struct Batch {
    /// Each behind the `Arc` the store keeps it in (see `queue::shared`).
    records: Vec<Arc<MessageRecord>>,
    answers: Vec<BatchAnswer>,
    /// The answers' message ids, back to back: one allocation for many ids.
    ids: BytesMut,
}

impl Batch {
    /// Octets reserved at a time for message ids (about a hundred of them).
    const ID_CHUNK: usize = 4096;

    /// `id` as the message_id of a response, sliced from `ids`.
    fn message_id(&mut self, id: &str) -> MessageId {
        if self.ids.capacity() < id.len() {
            self.ids.reserve(Self::ID_CHUNK.max(id.len()));
        }
        self.ids.extend_from_slice(id.as_bytes());
        MessageId::new(self.ids.split().freeze()).unwrap_or_default()
    }
}

/// What answering one submit of a batch takes.
struct BatchAnswer {
    sequence: u32,
    /// `SubmitSmResp` or `DataSmResp`.
    response_id: CommandId,
    message_id: MessageId,
}

impl BatchAnswer {
    fn accepted(self) -> Pdu {
        let body: Body = match self.response_id {
            CommandId::DataSmResp => DataSmResp {
                message_id: self.message_id,
                tlvs: Vec::new(),
            }
            .into(),
            _ => SubmitSmResp {
                message_id: self.message_id,
            }
            .into(),
        };
        Pdu::new(self.sequence, body)
    }

    fn failed(self, status: CommandStatus) -> Pdu {
        Pdu::error_response(self.response_id, self.sequence, status)
    }
}

/// The next delivery for a receiving session; never, for any other.
async fn next_delivery(deliveries: &mut Option<mpsc::Receiver<Delivery>>) -> Option<Delivery> {
    match deliveries {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// `true` while this session takes outbox deliveries: bound to receive,
    /// not unbinding, with room in its delivery window.
    fn takes_deliveries(&self) -> bool {
        self.deliveries.is_some()
            && !self.draining
            && self.unbind_requested.is_none()
            && !self.unbind_sent
            && self.delivering.len() < self.delivery_window
    }

    /// Leaves the client's receiving sessions: nothing new is handed to this
    /// one, and what was queued for it goes back unsent.
    fn stop_deliveries(&mut self) {
        self.receiver = None;
        if let Some(mut rx) = self.deliveries.take() {
            rx.close();
            while let Ok(delivery) = rx.try_recv() {
                delivery.report(DeliveryOutcome::NotSent);
            }
        }
    }

    /// The session ends: deliver_sm still unanswered are retried later.
    fn fail_delivering(&mut self) {
        for (_, outcome) in self.delivering.drain() {
            let _ = outcome.send(DeliveryOutcome::NoResponse);
        }
    }

    /// Sends one outbox entry as deliver_sm, in the outbound window.
    async fn on_delivery(&mut self, delivery: Delivery) -> Result<(), ()> {
        let deadline = Instant::now() + self.gateway.settings.response_timeout;
        let Some(sequence) = self.outbound.open(CommandId::DeliverSm, deadline) else {
            delivery.report(DeliveryOutcome::NotSent);
            return Ok(());
        };
        let Delivery { deliver_sm, outcome } = delivery;
        if self
            .send(Pdu::new(sequence, Body::DeliverSm(deliver_sm)))
            .await
            .is_err()
        {
            self.outbound.close(sequence);
            let _ = outcome.send(DeliveryOutcome::NotSent);
            return Err(());
        }
        self.delivering.insert(sequence, outcome);
        Ok(())
    }

    async fn send(&mut self, pdu: Pdu) -> Result<(), ()> {
        self.send_out(Outgoing::One(pdu)).await
    }

    /// Hands PDUs to the writer; waits (up to the response timeout) only
    /// when its queue is full, so the common case needs no timer.
    async fn send_out(&mut self, outgoing: Outgoing) -> Result<(), ()> {
        let outgoing = match self.tx.try_send(outgoing) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => return Err(()),
            Err(TrySendError::Full(outgoing)) => outgoing,
        };
        match tokio::time::timeout(self.gateway.settings.response_timeout, self.tx.send(outgoing)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Ends a turn of the loop: starts storing the submits taken in it, if
    /// any, and forgets the turn's clock.
    fn end_turn(&mut self) {
        self.turn_ms = None;
        if self.batch.records.is_empty() {
            return;
        }
        // The next turn likely brings as many: room for them up front
        // instead of growing step by step.
        let size = self.batch.records.len();
        let records = std::mem::replace(&mut self.batch.records, Vec::with_capacity(size));
        let answers = std::mem::replace(&mut self.batch.answers, Vec::with_capacity(size));
        let gateway = self.gateway.clone();
        self.in_flight.push(Box::pin(async move {
            let pdus = match enqueue(&gateway, records).await {
                Ok(()) => answers.into_iter().map(BatchAnswer::accepted).collect(),
                Err(status) => answers.into_iter().map(|a| a.failed(status)).collect(),
            };
            Outgoing::Batch(pdus)
        }));
    }

    /// Handles one framing outcome: a PDU, one that does not decode, or a
    /// stream that cannot be re-framed. `Ok(Some(end))` ends the session.
    async fn on_frame(
        &mut self,
        frame: Result<Result<Pdu, smsmax_protocol::PduError>, smsmax_protocol::FrameError>,
    ) -> Result<Option<End>, ()> {
        match frame {
            Err(e) => {
                // The stream cannot be re-framed: say why, then close.
                tracing::warn!(peer = %self.peer, system_id = %self.system_id, error = %e, "stream cannot be re-framed");
                let _ = self.send(Pdu::generic_nack(0, CommandStatus::ESME_RINVCMDLEN)).await;
                Ok(Some(End::Framing))
            }
            Ok(Err(e)) => {
                tracing::warn!(peer = %self.peer, system_id = %self.system_id, error = %e, "malformed PDU");
                if let Some(answer) = e.response() {
                    self.send(answer).await?;
                }
                Ok(None)
            }
            Ok(Ok(pdu)) => match self.take_submit(pdu.sequence_number, &pdu.body) {
                // The common case, decided here before the PDU moves into `on_pdu`'s future.
                Some(taken) => self.answer_taken(pdu.command_id(), pdu.sequence_number, taken).await,
                None => self.on_pdu(pdu).await,
            },
        }
    }

    /// When the loop must wake up if nothing arrives.
    fn next_timer(&self, opened: Instant, last_heard: Instant, settings: &super::SessionSettings) -> Instant {
        let base = match self.state {
            State::Open => Some(opened + settings.bind_timeout),
            // The enquire_link out has its own deadline below; the interval,
            // passed by now, would only wake the loop again and again.
            State::Bound(_) if self.outbound.has(CommandId::EnquireLink) => None,
            State::Bound(_) => Some(last_heard + settings.enquire_link_interval),
        };
        match (base, self.outbound.next_deadline()) {
            (Some(base), Some(deadline)) => base.min(deadline),
            (Some(at), None) | (None, Some(at)) => at,
            // Not reached: an enquire_link out has a deadline.
            (None, None) => last_heard + settings.enquire_link_interval,
        }
    }

    async fn on_timer(
        &mut self,
        now: Instant,
        opened: Instant,
        last_heard: Instant,
        settings: &super::SessionSettings,
    ) -> Result<Option<End>, ()> {
        let now = now.max(Instant::now());
        for (sequence, pending) in self.outbound.expire(now) {
            tracing::warn!(peer = %self.peer, system_id = %self.system_id, sequence, command = %pending.command_id, "no response in time");
            match pending.command_id {
                CommandId::EnquireLink => return Ok(Some(End::EnquireLinkTimeout)),
                CommandId::Unbind => return Ok(Some(End::Shutdown)),
                _ => {
                    if let Some(outcome) = self.delivering.remove(&sequence) {
                        let _ = outcome.send(DeliveryOutcome::NoResponse);
                    }
                }
            }
        }
        match self.state {
            State::Open if now >= opened + settings.bind_timeout => Ok(Some(End::BindTimeout)),
            State::Bound(_)
                if now >= last_heard + settings.enquire_link_interval && !self.outbound.has(CommandId::EnquireLink) =>
            {
                if let Some(sequence) = self
                    .outbound
                    .open(CommandId::EnquireLink, now + settings.response_timeout)
                {
                    self.send(Pdu::new(sequence, Body::EnquireLink)).await?;
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Answers (or starts answering) one PDU. `Ok(Some(end))` ends the session.
    async fn on_pdu(&mut self, pdu: Pdu) -> Result<Option<End>, ()> {
        let sequence = pdu.sequence_number;
        let id = pdu.command_id();
        if id.is_response() {
            return Ok(self.on_response(pdu));
        }
        if let Some(taken) = self.take_submit(sequence, &pdu.body) {
            return self.answer_taken(id, sequence, taken).await;
        }
        match pdu.body {
            Body::BindTransmitter(bind) => self.on_bind(sequence, BindType::Transmitter, bind).await?,
            Body::BindReceiver(bind) => self.on_bind(sequence, BindType::Receiver, bind).await?,
            Body::BindTransceiver(bind) => self.on_bind(sequence, BindType::Transceiver, bind).await?,
            Body::EnquireLink => self.send(Pdu::new(sequence, Body::EnquireLinkResp)).await?,
            Body::Unbind => {
                if self.state == State::Open {
                    self.refuse(id, sequence, CommandStatus::ESME_RINVBNDSTS).await?;
                } else {
                    self.unbind_requested = Some(sequence);
                    self.stop_deliveries();
                }
            }
            // Operations only an SMSC sends.
            Body::DeliverSm(_) | Body::Outbind(_) | Body::AlertNotification(_) => {
                tracing::warn!(peer = %self.peer, command = %id, "operation not accepted from an ESME");
                self.send(Pdu::generic_nack(sequence, CommandStatus::ESME_RINVCMDID))
                    .await?;
            }
            body => match self.may_take_request() {
                Ok(()) => self.on_request(sequence, body).await?,
                Err(status) => self.refuse(id, sequence, status).await?,
            },
        }
        Ok(None)
    }

    /// Answers a submit that [`Session::take_submit`] refused; one it took is
    /// answered with its batch.
    async fn answer_taken(
        &mut self,
        id: CommandId,
        sequence: u32,
        taken: Result<(), CommandStatus>,
    ) -> Result<Option<End>, ()> {
        match taken {
            Ok(()) => Ok(None),
            Err(status) => self.refuse(id, sequence, status).await.map(|_| None),
        }
    }

    fn on_response(&mut self, pdu: Pdu) -> Option<End> {
        let Some(pending) = self.outbound.close(pdu.sequence_number) else {
            tracing::debug!(peer = %self.peer, command = %pdu.command_id(), sequence = pdu.sequence_number, "response to nothing we sent");
            return None;
        };
        match pending.command_id {
            CommandId::Unbind => return Some(End::Shutdown),
            CommandId::DeliverSm => {
                if let Some(outcome) = self.delivering.remove(&pdu.sequence_number) {
                    let _ = outcome.send(DeliveryOutcome::Response(pdu.command_status));
                }
            }
            _ => {}
        }
        None
    }

    async fn refuse(&mut self, id: CommandId, sequence: u32, status: CommandStatus) -> Result<(), ()> {
        let answer = match id.response() {
            Some(resp) => Pdu::error_response(resp, sequence, status),
            None => Pdu::generic_nack(sequence, status),
        };
        self.send(answer).await
    }

    async fn on_bind(&mut self, sequence: u32, bind_type: BindType, bind: Bind) -> Result<(), ()> {
        let response_id = match bind_type {
            BindType::Transmitter => CommandId::BindTransmitterResp,
            BindType::Receiver => CommandId::BindReceiverResp,
            BindType::Transceiver => CommandId::BindTransceiverResp,
        };
        if self.state != State::Open {
            return self
                .send(Pdu::error_response(response_id, sequence, CommandStatus::ESME_RALYBND))
                .await;
        }
        let result = self
            .gateway
            .auth
            .bind(
                self.peer.ip(),
                bind_type,
                bind.system_id.as_bytes(),
                bind.password.as_bytes(),
            )
            .await;
        match result {
            Ok(guard) => {
                self.system_id = Arc::from(guard.client.config.system_id.as_str());
                self.guard = Some(guard);
                self.state = State::Bound(bind_type);
                tracing::info!(peer = %self.peer, system_id = %self.system_id, ?bind_type, "bound");
                let body = BindResp {
                    system_id: SystemId::try_from(self.gateway.settings.system_id.as_str()).unwrap_or_default(),
                    tlvs: vec![Tlv::ScInterfaceVersion(INTERFACE_VERSION_34)],
                };
                let body = match bind_type {
                    BindType::Transmitter => Body::BindTransmitterResp(body),
                    BindType::Receiver => Body::BindReceiverResp(body),
                    BindType::Transceiver => Body::BindTransceiverResp(body),
                };
                self.send(Pdu::new(sequence, body)).await?;
                // After the bind_resp, so that it goes out before any deliver_sm.
                if bind_type != BindType::Transmitter && !self.draining {
                    if let Some(delivery) = &self.gateway.deliveries {
                        if let Some((guard, deliveries)) = delivery.register(&self.system_id) {
                            self.receiver = Some(guard);
                            self.deliveries = Some(deliveries);
                        }
                    }
                }
                Ok(())
            }
            Err(status) => self.send(Pdu::error_response(response_id, sequence, status)).await,
        }
    }

    /// Starts a transmitter request; its answer is sent when it completes.
    async fn on_request(&mut self, sequence: u32, body: Body) -> Result<(), ()> {
        let gateway = self.gateway.clone();
        let system_id = self.system_id.clone();
        let Some(client) = self.guard.as_ref().map(|g| g.client.clone()) else {
            return Err(());
        };
        let now = self.turn_ms();
        // submit_sm and data_sm never get here: `take_submit` took them.
        let answer: Pin<Box<dyn Future<Output = Pdu> + Send>> = match body {
            Body::SubmitMulti(sm) => {
                let destinations = match validate::submit_multi(&sm, &system_id, || gateway.ids.next_id(), now) {
                    Ok(d) => d,
                    Err(status) => return self.refuse(CommandId::SubmitMulti, sequence, status).await,
                };
                let mut records = Vec::new();
                let mut unsuccess_smes = Vec::new();
                for destination in destinations {
                    match destination {
                        MultiDestination::Accepted(record) => records.push(Arc::new(*record)),
                        MultiDestination::Refused { address, status } => unsuccess_smes.push(UnsuccessSme {
                            address,
                            error_status_code: status,
                        }),
                    }
                }
                let parts: u32 = records.iter().map(|r| u32::from(r.parts)).sum();
                if !client.take_throughput(u16::try_from(parts).unwrap_or(u16::MAX)) {
                    return self
                        .refuse(CommandId::SubmitMulti, sequence, CommandStatus::ESME_RTHROTTLED)
                        .await;
                }
                Box::pin(async move { submit_multi_answer(&gateway, sequence, records, unsuccess_smes).await })
            }
            Body::QuerySm(query) => Box::pin(async move { query_sm(&gateway, sequence, &system_id, query).await }),
            Body::CancelSm(cancel) => Box::pin(async move {
                let id = cancel.message_id.to_string_lossy().into_owned();
                let outcome = with_timeout(&gateway, gateway.store.cancel(&id, &system_id, now_ms())).await;
                change_answer(
                    outcome,
                    CommandId::CancelSmResp,
                    Body::CancelSmResp,
                    CommandStatus::ESME_RCANCELFAIL,
                    sequence,
                )
            }),
            Body::ReplaceSm(replace) => {
                let replacement = match replacement(&replace, now) {
                    Ok(r) => r,
                    Err(status) => return self.refuse(CommandId::ReplaceSm, sequence, status).await,
                };
                Box::pin(async move {
                    let id = replace.message_id.to_string_lossy().into_owned();
                    let outcome = with_timeout(&gateway, gateway.store.replace(&id, &system_id, replacement)).await;
                    change_answer(
                        outcome,
                        CommandId::ReplaceSmResp,
                        Body::ReplaceSmResp,
                        CommandStatus::ESME_RREPLACEFAIL,
                        sequence,
                    )
                })
            }
            other => {
                // Every request kind is handled above or in on_pdu.
                let id = other.command_id();
                return self.refuse(id, sequence, CommandStatus::ESME_RINVCMDID).await;
            }
        };
        self.outstanding += 1;
        self.in_flight
            .push(Box::pin(async move { Outgoing::One(answer.await) }));
        Ok(())
    }

    /// Whether a request may start now: the bind may transmit, the server
    /// is not shutting down and the client's window has room.
    fn may_take_request(&self) -> Result<(), CommandStatus> {
        if !self.state.can_transmit() {
            return Err(CommandStatus::ESME_RINVBNDSTS);
        }
        if self.draining {
            return Err(CommandStatus::ESME_RSYSERR);
        }
        let window = self.guard.as_ref().map_or(1, |g| g.client.config.window);
        if self.outstanding >= window {
            return Err(CommandStatus::ESME_RTHROTTLED);
        }
        Ok(())
    }

    /// Decides a submit_sm or data_sm without waiting for anything: taken
    /// into this turn's batch (`Ok`), or the status to refuse it with.
    /// `None`: not a submit. Taking the PDU by reference and not being
    /// `async` keeps the hot path from moving PDUs and records through
    /// nested futures.
    fn take_submit(&mut self, sequence: u32, body: &Body) -> Option<Result<(), CommandStatus>> {
        if !matches!(body, Body::SubmitSm(_) | Body::DataSm(_)) {
            return None;
        }
        Some(self.take_submit_checked(sequence, body))
    }

    fn take_submit_checked(&mut self, sequence: u32, body: &Body) -> Result<(), CommandStatus> {
        self.may_take_request()?;
        let Some(client) = self.guard.as_ref().map(|g| g.client.clone()) else {
            return Err(CommandStatus::ESME_RINVBNDSTS);
        };
        let now = self.turn_ms();
        let id = self.gateway.ids.next_id();
        let (record, response_id) = match body {
            Body::SubmitSm(sm) => (
                validate::submit_sm(sm, &self.system_id, id, now)?,
                CommandId::SubmitSmResp,
            ),
            Body::DataSm(sm) => (validate::data_sm(sm, &self.system_id, id, now)?, CommandId::DataSmResp),
            // `take_submit` only passes submits.
            _ => return Err(CommandStatus::ESME_RINVCMDID),
        };
        if !client.take_throughput(record.parts) {
            return Err(CommandStatus::ESME_RTHROTTLED);
        }
        self.outstanding += 1;
        let message_id = self.batch.message_id(&record.id);
        self.batch.answers.push(BatchAnswer {
            sequence,
            response_id,
            message_id,
        });
        self.batch.records.push(Arc::new(record));
        Ok(())
    }

    /// The wall clock (Unix milliseconds), read once per turn of the
    /// session loop for all the requests of that turn.
    fn turn_ms(&mut self) -> u64 {
        *self.turn_ms.get_or_insert_with(now_ms)
    }
}

fn message_id(id: &str) -> MessageId {
    MessageId::try_from(id).unwrap_or_default()
}

async fn with_timeout<T>(
    gateway: &Gateway,
    call: impl Future<Output = Result<T, crate::store::StorageError>>,
) -> Result<T, CommandStatus> {
    match tokio::time::timeout(gateway.settings.storage_timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(crate::store::StorageError::Full(limit))) => {
            tracing::warn!(limit, "storage full: submit refused with ESME_RMSGQFUL");
            Err(CommandStatus::ESME_RMSGQFUL)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "storage error");
            Err(CommandStatus::ESME_RSYSERR)
        }
        Err(_) => {
            tracing::error!(timeout = ?gateway.settings.storage_timeout, "storage did not answer in time");
            Err(CommandStatus::ESME_RSYSERR)
        }
    }
}

/// Durable enqueue: the caller answers only after this returns `Ok`.
async fn enqueue(gateway: &Gateway, records: Vec<Arc<MessageRecord>>) -> Result<(), CommandStatus> {
    with_timeout(gateway, gateway.queue.enqueue(records)).await
}

async fn submit_multi_answer(
    gateway: &Gateway,
    sequence: u32,
    records: Vec<Arc<MessageRecord>>,
    unsuccess_smes: Vec<UnsuccessSme>,
) -> Pdu {
    let Some(first_id) = records.first().map(|r| r.id.clone()) else {
        return Pdu::with_status(
            sequence,
            CommandStatus::ESME_RSUBMITFAIL,
            SubmitMultiResp {
                message_id: MessageId::empty(),
                unsuccess_smes,
            },
        );
    };
    match enqueue(gateway, records).await {
        Ok(()) => Pdu::new(
            sequence,
            SubmitMultiResp {
                message_id: message_id(&first_id),
                unsuccess_smes,
            },
        ),
        Err(status) => Pdu::error_response(CommandId::SubmitMultiResp, sequence, status),
    }
}

async fn query_sm(gateway: &Gateway, sequence: u32, system_id: &str, query: QuerySm) -> Pdu {
    let id = query.message_id.to_string_lossy().into_owned();
    match with_timeout(gateway, gateway.store.get(&id)).await {
        Ok(Some(record)) if *record.system_id == *system_id => {
            let final_date = if record.state.is_final() {
                SmppTime::try_from(smpp_time::format_absolute(record.updated_at_ms).as_str()).unwrap_or_default()
            } else {
                SmppTime::empty()
            };
            Pdu::new(
                sequence,
                QuerySmResp {
                    message_id: query.message_id,
                    final_date,
                    message_state: record.state.smpp_value(),
                    error_code: record.error_code.map_or(0, |c| (c & 0xFF) as u8),
                },
            )
        }
        // Another client's message is answered as unknown.
        Ok(_) => Pdu::error_response(CommandId::QuerySmResp, sequence, CommandStatus::ESME_RQUERYFAIL),
        Err(status) => Pdu::error_response(CommandId::QuerySmResp, sequence, status),
    }
}

fn change_answer(
    outcome: Result<ChangeOutcome, CommandStatus>,
    response_id: CommandId,
    ok_body: Body,
    too_late: CommandStatus,
    sequence: u32,
) -> Pdu {
    match outcome {
        Ok(ChangeOutcome::Changed) => Pdu::new(sequence, ok_body),
        Ok(ChangeOutcome::NotFound | ChangeOutcome::NotOwner) => {
            Pdu::error_response(response_id, sequence, CommandStatus::ESME_RINVMSGID)
        }
        Ok(ChangeOutcome::TooLate(_) | ChangeOutcome::InFlight) => Pdu::error_response(response_id, sequence, too_late),
        Err(status) => Pdu::error_response(response_id, sequence, status),
    }
}

fn replacement(replace: &smsmax_protocol::pdu::ReplaceSm, now: u64) -> Result<Replacement, CommandStatus> {
    if replace.registered_delivery & 0x03 == 0x03 || replace.registered_delivery & 0xE0 != 0 {
        return Err(CommandStatus::ESME_RINVREGDLVFLG);
    }
    if replace.sm_default_msg_id != 0 {
        return Err(CommandStatus::ESME_RINVDFTMSGID);
    }
    let schedule_at_ms =
        smpp_time::parse(replace.schedule_delivery_time.as_bytes(), now).map_err(|_| CommandStatus::ESME_RINVSCHED)?;
    let expires_at_ms =
        smpp_time::parse(replace.validity_period.as_bytes(), now).map_err(|_| CommandStatus::ESME_RINVEXPIRY)?;
    if expires_at_ms.is_some_and(|e| e <= now) {
        return Err(CommandStatus::ESME_RINVEXPIRY);
    }
    Ok(Replacement {
        short_message: replace.short_message.clone(),
        registered_delivery: replace.registered_delivery,
        schedule_at_ms,
        expires_at_ms,
        at_ms: now,
    })
}
