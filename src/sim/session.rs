//! One ESME connection to the simulator: a reader loop (this task) and a
//! writer task that writes every PDU that is ready in one syscall.
//!
//! submit_sm and data_sm are answered at once (or, for a receipt that must
//! go first, as soon as that receipt is on the wire, bounded by the response
//! timeout). A receiver or transceiver bind takes receipts and MO messages
//! from its system_id's outbox whenever its deliver_sm window has room.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures::{stream::FuturesUnordered, StreamExt};
use smsmax_protocol::{
    pdu::{Bind, BindResp, DataSm, DataSmResp, SubmitSm, SubmitSmResp, INTERFACE_VERSION_34},
    types::{MessageId, SystemId},
    Body, CommandId, CommandStatus, Pdu, SmppCodec, Tlv,
};
use tokio::{
    io::AsyncWriteExt,
    net::{tcp::OwnedWriteHalf, TcpStream},
    sync::{mpsc, oneshot, watch},
};
use tokio_util::codec::FramedRead;

use super::{
    receipts::{address21, is_failure, mo_body, receipt_body, Kind, Outgoing, SubmitInfo, MAX_ATTEMPTS},
    stats::bump,
    streams, unit, Seen, Shared, Signals,
};
use crate::{config::BindType, esme::window::Window, smpp_time::now_ms};

/// PDUs waiting for the writer; beyond, the session waits (bounded by the
/// response timeout: the ESME is not reading).
const WRITER_QUEUE: usize = 1024;
/// Largest batch written at once.
const MAX_BATCH_OCTETS: usize = 64 * 1024;
/// Submit answers held back (waiting for their receipt to go first) per
/// session; beyond, answers go at once.
const MAX_HELD_ANSWERS: usize = 4096;
/// How long a shutdown waits for the ESME's unbind_resp.
const UNBIND_WAIT: Duration = Duration::from_secs(1);
/// How long a bound session with nothing outstanding sleeps at most.
const IDLE_TIMER: Duration = Duration::from_secs(3600);
/// Our system_id in bind responses.
const SC_SYSTEM_ID: &str = "smsmaxsim";

type Answer = Pin<Box<dyn Future<Output = Pdu> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Bound(BindType),
}

/// Why a session ended (logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    PeerClosed,
    Unbound,
    BindTimeout,
    Framing,
    WriterGone,
    Shutdown,
    /// Closed on purpose by `drop_every`.
    Dropped,
}

/// Runs one connection until it ends. Never panics on input.
pub(crate) async fn run(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, signals: Signals) {
    let Signals {
        mut shutdown,
        mut outage,
    } = signals;
    let timeout = shared.config.response_timeout;
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::new(read_half, SmppCodec::default());
    let (tx, rx) = mpsc::channel::<Pdu>(WRITER_QUEUE);
    let writer = tokio::spawn(write_pdus(write_half, rx, timeout));
    bump(&shared.counters.sessions_open);

    let mut session = Session {
        window: Window::new(shared.config.window),
        shared,
        peer,
        tx,
        state: State::Open,
        system_id: Arc::from(""),
        sent: HashMap::new(),
        bell: None,
        want_pull: false,
        answers: FuturesUnordered::new(),
        unbind_requested: None,
        draining: false,
        window_deadline: None,
        idle_until: Instant::now() + IDLE_TIMER,
    };
    let opened = Instant::now();
    // One sleep for the session, moved as its deadline changes: a new one
    // per PDU would register and remove a timer per PDU.
    let sleep = tokio::time::sleep_until(session.next_timer(opened).into());
    tokio::pin!(sleep);
    let end = loop {
        if session.want_pull {
            if let Err(end) = session.pull().await {
                break end;
            }
        }
        let timer = tokio::time::Instant::from_std(session.next_timer(opened));
        if sleep.deadline() != timer {
            sleep.as_mut().reset(timer);
        }
        let listening = session.bell.is_some() && session.room() > 0 && !session.draining;
        let reading = session.unbind_requested.is_none();
        tokio::select! {
            Some(answer) = session.answers.next(), if !session.answers.is_empty() => {
                if let Err(end) = session.send(answer).await {
                    break end;
                }
            }
            rang = rung(&mut session.bell), if listening => {
                if rang {
                    session.want_pull = true;
                } else {
                    session.bell = None;
                }
            }
            Ok(()) = outage.changed() => {
                bump(&session.shared.counters.connections_dropped);
                break End::Dropped;
            }
            _ = shutdown.changed(), if !session.draining => {
                session.draining = true;
                if let Err(end) = session.start_unbind().await {
                    break end;
                }
            }
            frame = frames.next(), if reading => {
                match frame {
                    None => break End::PeerClosed,
                    Some(Err(e)) => {
                        bump(&session.shared.counters.malformed);
                        tracing::warn!(peer = %session.peer, error = %e, "stream cannot be re-framed");
                        let _ = session.send(Pdu::generic_nack(0, CommandStatus::ESME_RINVCMDLEN)).await;
                        break End::Framing;
                    }
                    Some(Ok(Err(e))) => {
                        bump(&session.shared.counters.malformed);
                        tracing::debug!(peer = %session.peer, error = %e, "malformed PDU");
                        if let Some(answer) = e.response() {
                            if let Err(end) = session.send(answer).await {
                                break end;
                            }
                        }
                    }
                    Some(Ok(Ok(pdu))) => match session.on_pdu(pdu).await {
                        Ok(None) => {}
                        Ok(Some(end)) | Err(end) => break end,
                    },
                }
            }
            _ = &mut sleep => {
                if let Some(end) = session.on_timer(opened) {
                    break end;
                }
            }
        }
        if session.answers.is_empty() {
            if let Some(sequence) = session.unbind_requested {
                let _ = session.send(Pdu::new(sequence, Body::UnbindResp)).await;
                break End::Unbound;
            }
        }
    };
    tracing::debug!(peer = %session.peer, system_id = %session.system_id, reason = ?end, "sim session closed");
    let shared = session.shared.clone();
    session.give_back();
    drop(session);
    if end == End::Dropped {
        // Abrupt: no flush, and a reset rather than an orderly close.
        let _ = frames.get_ref().as_ref().set_zero_linger();
        writer.abort();
        drop(frames);
    } else {
        drop(frames);
        let _ = tokio::time::timeout(timeout, writer).await;
    }
    shared.counters.sessions_open.fetch_sub(1, Relaxed);
}

/// Waits for the outbox bell; `false` once it can never ring again.
async fn rung(bell: &mut Option<watch::Receiver<u64>>) -> bool {
    match bell {
        Some(bell) => bell.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    tx: mpsc::Sender<Pdu>,
    state: State,
    system_id: Arc<str>,
    /// deliver_sm (and our unbind) awaiting a response.
    window: Window,
    /// The deliver_sm behind each outstanding sequence number.
    sent: HashMap<u32, Outgoing>,
    /// Rings when this system_id's outbox gains an item (receiver binds only).
    bell: Option<watch::Receiver<u64>>,
    /// Look in the outbox before waiting again.
    want_pull: bool,
    /// Submit answers waiting for their receipt to be answered first.
    answers: FuturesUnordered<Answer>,
    /// Sequence number of the ESME's unbind, answered once held answers are sent.
    unbind_requested: Option<u32>,
    /// The simulator is stopping.
    draining: bool,
    /// No later than the earliest deadline in `window` (it may be earlier:
    /// an answered request's; the timer then finds nothing due and looks
    /// again). Asking the window each time the loop turns walks every
    /// outstanding request.
    window_deadline: Option<Instant>,
    /// When a bound session with nothing outstanding wakes anyway; moved on
    /// when it does (reading the clock each time the loop turns was a share
    /// of the sim's CPU).
    idle_until: Instant,
}

impl Session {
    async fn send(&mut self, pdu: Pdu) -> Result<(), End> {
        match tokio::time::timeout(self.shared.config.response_timeout, self.tx.send(pdu)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::WriterGone),
        }
    }

    fn can_transmit(&self) -> bool {
        matches!(self.state, State::Bound(BindType::Transmitter | BindType::Transceiver))
    }

    /// Free deliver_sm slots.
    fn room(&self) -> usize {
        self.shared.config.window.saturating_sub(self.window.len())
    }

    fn next_timer(&self, opened: Instant) -> Instant {
        let base = match self.state {
            State::Open => opened + self.shared.config.bind_timeout,
            // Nothing to time out on a bound session but its requests.
            State::Bound(_) => self.idle_until,
        };
        self.window_deadline.map_or(base, |d| d.min(base))
    }

    /// Notes the deadline of a request just opened in the window.
    fn opened(&mut self, deadline: Instant) {
        self.window_deadline = Some(self.window_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    fn on_timer(&mut self, opened: Instant) -> Option<End> {
        let now = Instant::now();
        self.idle_until = now + IDLE_TIMER;
        for (sequence, pending) in self.window.expire(now) {
            match pending.command_id {
                CommandId::Unbind => return Some(End::Shutdown),
                _ => {
                    if let Some(item) = self.sent.remove(&sequence) {
                        tracing::debug!(peer = %self.peer, sequence, "deliver_sm unanswered in time");
                        self.retry_or_give_up(item);
                    }
                }
            }
        }
        self.window_deadline = self.window.next_deadline();
        if self.state == State::Open && now >= opened + self.shared.config.bind_timeout {
            return Some(End::BindTimeout);
        }
        None
    }

    /// Sends our unbind (on shutdown); an unbound connection just closes.
    async fn start_unbind(&mut self) -> Result<(), End> {
        if self.state == State::Open {
            return Err(End::Shutdown);
        }
        let wait = UNBIND_WAIT.min(self.shared.config.response_timeout);
        let deadline = Instant::now() + wait;
        match self.window.open(CommandId::Unbind, deadline) {
            Some(sequence) => {
                self.opened(deadline);
                self.send(Pdu::new(sequence, Body::Unbind)).await
            }
            // Window full of deliver_sm: close without the courtesy.
            None => Err(End::Shutdown),
        }
    }

    /// Sends what the outbox holds, up to the window's room.
    async fn pull(&mut self) -> Result<(), End> {
        self.want_pull = false;
        let Some(bell) = self.bell.as_mut() else {
            return Ok(());
        };
        if self.draining {
            return Ok(());
        }
        bell.borrow_and_update();
        let items = self.shared.router.take(&self.system_id, self.room());
        let deadline = Instant::now() + self.shared.config.response_timeout;
        for mut item in items {
            let Some(sequence) = self.window.open(CommandId::DeliverSm, deadline) else {
                self.shared.router.requeue(item);
                continue;
            };
            self.opened(deadline);
            item.attempts = item.attempts.saturating_add(1);
            if !item.counted {
                item.counted = true;
                match &item.kind {
                    Kind::Receipt(state) => self.shared.counters.receipt_sent(state),
                    Kind::Mo => bump(&self.shared.counters.mo_sent),
                }
            }
            let pdu = Pdu::new(sequence, Body::DeliverSm(item.body.clone()));
            self.sent.insert(sequence, item);
            self.send(pdu).await?;
        }
        Ok(())
    }

    /// A deliver_sm that failed: once more (any bind), or given up.
    fn retry_or_give_up(&mut self, item: Outgoing) {
        self.want_pull = true;
        let counters = &self.shared.counters;
        if item.attempts >= MAX_ATTEMPTS {
            match item.kind {
                Kind::Receipt(_) => bump(&counters.receipts_failed),
                Kind::Mo => bump(&counters.mo_failed),
            }
            self.shared.router.release(&item);
        } else {
            if let Kind::Receipt(_) = item.kind {
                bump(&counters.receipts_retried);
            }
            self.shared.router.requeue(item);
        }
    }

    /// Returns unanswered deliver_sm to the outbox; the lost send does not count.
    fn give_back(&mut self) {
        for (_, mut item) in self.sent.drain() {
            item.attempts = item.attempts.saturating_sub(1);
            self.shared.router.requeue(item);
        }
    }

    /// Answers one PDU. `Ok(Some(end))` or `Err(end)` ends the session.
    async fn on_pdu(&mut self, pdu: Pdu) -> Result<Option<End>, End> {
        let sequence = pdu.sequence_number;
        let id = pdu.command_id();
        if id.is_response() {
            return Ok(self.on_response(pdu));
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
                }
            }
            Body::SubmitSm(sm) if self.can_transmit() => return self.on_submit(sequence, Submit::Sm(sm)).await,
            Body::DataSm(dm) if self.can_transmit() => return self.on_submit(sequence, Submit::Data(dm)).await,
            Body::SubmitSm(_) | Body::DataSm(_) => {
                self.refuse(id, sequence, CommandStatus::ESME_RINVBNDSTS).await?;
            }
            // Operations only an SMSC sends.
            Body::DeliverSm(_) | Body::Outbind(_) | Body::AlertNotification(_) => {
                bump(&self.shared.counters.refused);
                self.send(Pdu::generic_nack(sequence, CommandStatus::ESME_RINVCMDID))
                    .await?;
            }
            // query_sm, cancel_sm, replace_sm, submit_multi: not simulated.
            _ => self.refuse(id, sequence, CommandStatus::ESME_RINVCMDID).await?,
        }
        Ok(None)
    }

    fn on_response(&mut self, pdu: Pdu) -> Option<End> {
        let sequence = pdu.sequence_number;
        let pending = self.window.close(sequence)?;
        if pending.command_id == CommandId::Unbind {
            return Some(End::Shutdown);
        }
        let mut item = self.sent.remove(&sequence)?;
        self.want_pull = true;
        if pdu.command_status.is_ok() && pdu.command_id() == CommandId::DeliverSmResp {
            if let Some(answered) = item.answered.take() {
                let _ = answered.send(());
            }
            match item.kind {
                Kind::Receipt(_) => bump(&self.shared.counters.receipts_acked),
                Kind::Mo => bump(&self.shared.counters.mo_acked),
            }
            self.shared.router.release(&item);
        } else {
            tracing::debug!(peer = %self.peer, sequence, status = %pdu.command_status, "deliver_sm refused");
            self.retry_or_give_up(item);
        }
        None
    }

    async fn refuse(&mut self, id: CommandId, sequence: u32, status: CommandStatus) -> Result<(), End> {
        bump(&self.shared.counters.refused);
        self.answer_error(id, sequence, status).await
    }

    async fn on_bind(&mut self, sequence: u32, bind_type: BindType, bind: Bind) -> Result<(), End> {
        let response_id = match bind_type {
            BindType::Transmitter => CommandId::BindTransmitterResp,
            BindType::Receiver => CommandId::BindReceiverResp,
            BindType::Transceiver => CommandId::BindTransceiverResp,
        };
        let config = &self.shared.config;
        let refusal = if self.state != State::Open {
            Some(CommandStatus::ESME_RALYBND)
        } else if config
            .system_id
            .as_ref()
            .is_some_and(|id| id.as_bytes() != bind.system_id.as_bytes())
        {
            Some(CommandStatus::ESME_RINVSYSID)
        } else if config
            .password
            .as_ref()
            .is_some_and(|p| p.as_bytes() != bind.password.as_bytes())
        {
            Some(CommandStatus::ESME_RINVPASWD)
        } else {
            None
        };
        if let Some(status) = refusal {
            bump(&self.shared.counters.bind_failures);
            tracing::debug!(peer = %self.peer, system_id = %bind.system_id.to_string_lossy(), %status, "bind refused");
            return self.send(Pdu::error_response(response_id, sequence, status)).await;
        }
        self.system_id = Arc::from(bind.system_id.to_string_lossy().as_ref());
        self.state = State::Bound(bind_type);
        let counters = &self.shared.counters;
        match bind_type {
            BindType::Transmitter => bump(&counters.binds_transmitter),
            BindType::Receiver => bump(&counters.binds_receiver),
            BindType::Transceiver => bump(&counters.binds_transceiver),
        }
        if bind_type != BindType::Transmitter {
            self.bell = Some(self.shared.router.subscribe(&self.system_id));
            self.want_pull = true;
        }
        tracing::debug!(peer = %self.peer, system_id = %self.system_id, ?bind_type, "sim bound");
        let body = BindResp {
            system_id: SystemId::try_from(SC_SYSTEM_ID).unwrap_or_default(),
            tlvs: vec![Tlv::ScInterfaceVersion(INTERFACE_VERSION_34)],
        };
        let body = match bind_type {
            BindType::Transmitter => Body::BindTransmitterResp(body),
            BindType::Receiver => Body::BindReceiverResp(body),
            BindType::Transceiver => Body::BindTransceiverResp(body),
        };
        self.send(Pdu::new(sequence, body)).await
    }

    /// Answers a submit_sm or data_sm, with the faults and receipts configured.
    async fn on_submit(&mut self, sequence: u32, submit: Submit) -> Result<Option<End>, End> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let counters = &shared.counters;
        let n = shared.received.fetch_add(1, Relaxed) + 1;
        bump(&counters.submits_received);
        let request = submit.command_id();
        if config.drop_every > 0 && n.is_multiple_of(config.drop_every) {
            bump(&counters.connections_dropped);
            tracing::info!(peer = %self.peer, submit = n, "dropping the connection on purpose");
            return Err(End::Dropped);
        }
        let fault = unit(config.seed, streams::FAULT, n);
        if fault < config.throttle_share {
            bump(&counters.throttled);
            self.answer_error(request, sequence, CommandStatus::ESME_RTHROTTLED)
                .await?;
            return Ok(None);
        }
        if fault < config.throttle_share + config.error_share {
            bump(&counters.errored);
            self.answer_error(request, sequence, config.error_status).await?;
            return Ok(None);
        }

        let k = shared.accepted.fetch_add(1, Relaxed);
        bump(&counters.submits_accepted);
        let info = submit.info(now_ms());
        match shared.dedup.check(info.dest.addr.as_bytes(), &info.message) {
            Seen::New => bump(&counters.distinct_messages),
            Seen::Duplicate => bump(&counters.duplicates),
            Seen::Untracked => bump(&counters.dedup_untracked),
        }
        let id = shared.submit_id(k);
        if config.keep_submits > 0 {
            if let Ok(mut kept) = shared.kept.lock() {
                if kept.len() < config.keep_submits {
                    kept.push(submit.kept(&id, &info));
                }
            }
        }
        let message_id = MessageId::try_from(id.as_str()).unwrap_or_default();
        let answer = match submit {
            Submit::Sm(_) => Pdu::new(sequence, SubmitSmResp { message_id }),
            Submit::Data(_) => Pdu::new(
                sequence,
                DataSmResp {
                    message_id,
                    tlvs: Vec::new(),
                },
            ),
        };

        let outcome = config.mix.pick(unit(config.seed, streams::OUTCOME, k)).clone();
        let asked = submit.registered_delivery() & 0x03;
        let wants_receipt = asked == 1 || asked == 3 || (asked == 2 && is_failure(&outcome));
        let mut first: Option<oneshot::Receiver<()>> = None;
        if wants_receipt {
            bump(&counters.receipts_requested);
            let kind = Kind::Receipt(outcome.clone());
            if shared.router.admit(&kind) {
                // Only while a receiver can take it: holding the resp for a
                // receipt nobody can receive would only delay the resp.
                let before = unit(config.seed, streams::BEFORE_RESP, k) < config.receipts_before_resp_share
                    && shared.router.has_receiver(&self.system_id);
                let delay = if before {
                    Duration::ZERO
                } else {
                    config.receipt_delay + config.receipt_jitter.mul_f64(unit(config.seed, streams::JITTER, k))
                };
                let receipt_id = shared.receipt_id(k, &id);
                let body = receipt_body(&receipt_id, &outcome, &info, info.at_ms + delay.as_millis() as u64);
                let answered = if before {
                    let (tx, rx) = oneshot::channel();
                    first = Some(rx);
                    Some(tx)
                } else {
                    None
                };
                let item = Outgoing {
                    system_id: self.system_id.clone(),
                    kind,
                    body,
                    attempts: 0,
                    counted: false,
                    answered,
                };
                shared.router.schedule(item, delay);
            }
        }
        if config.mo_every > 0 && (k + 1).is_multiple_of(config.mo_every) && shared.router.admit(&Kind::Mo) {
            let item = Outgoing {
                system_id: self.system_id.clone(),
                kind: Kind::Mo,
                body: mo_body((k + 1) / config.mo_every, &info),
                attempts: 0,
                counted: false,
                answered: None,
            };
            shared.router.schedule(item, Duration::ZERO);
        }

        match first {
            Some(rx) if self.answers.len() < MAX_HELD_ANSWERS => {
                let wait = config.response_timeout;
                let shared = shared.clone();
                self.answers.push(Box::pin(async move {
                    if let Ok(Ok(())) = tokio::time::timeout(wait, rx).await {
                        bump(&shared.counters.receipts_before_resp);
                    }
                    answer
                }));
            }
            _ => self.send(answer).await?,
        }
        Ok(None)
    }

    async fn answer_error(&mut self, request: CommandId, sequence: u32, status: CommandStatus) -> Result<(), End> {
        let answer = match request.response() {
            Some(resp) => Pdu::error_response(resp, sequence, status),
            None => Pdu::generic_nack(sequence, status),
        };
        self.send(answer).await
    }
}

/// A submit_sm or a data_sm.
enum Submit {
    Sm(SubmitSm),
    Data(DataSm),
}

impl Submit {
    fn command_id(&self) -> CommandId {
        match self {
            Submit::Sm(_) => CommandId::SubmitSm,
            Submit::Data(_) => CommandId::DataSm,
        }
    }

    fn registered_delivery(&self) -> u8 {
        match self {
            Submit::Sm(sm) => sm.registered_delivery,
            Submit::Data(dm) => dm.registered_delivery,
        }
    }

    /// What [`super::SimConfig::keep_submits`] keeps of it.
    fn kept(&self, id: &str, info: &SubmitInfo) -> super::KeptSubmit {
        let tlvs = match self {
            Submit::Sm(sm) => &sm.tlvs,
            Submit::Data(dm) => &dm.tlvs,
        };
        let (mut reference, mut total, mut seqnum) = (None, None, None);
        for tlv in tlvs {
            match tlv {
                Tlv::SarMsgRefNum(v) => reference = Some(*v),
                Tlv::SarTotalSegments(v) => total = Some(*v),
                Tlv::SarSegmentSeqnum(v) => seqnum = Some(*v),
                _ => {}
            }
        }
        super::KeptSubmit {
            id: id.to_string(),
            dest: info.dest.addr.to_string_lossy().into_owned(),
            esm_class: info.esm_class,
            data_coding: info.data_coding,
            message: info.message.clone(),
            sar: reference.zip(total).zip(seqnum).map(|((r, t), s)| (r, t, s)),
        }
    }

    fn info(&self, at_ms: u64) -> SubmitInfo {
        match self {
            Submit::Sm(sm) => SubmitInfo {
                source: sm.source.clone(),
                dest: sm.dest.clone(),
                data_coding: sm.data_coding,
                esm_class: sm.esm_class,
                message: sm.message().clone(),
                at_ms,
            },
            Submit::Data(dm) => SubmitInfo {
                source: address21(&dm.source),
                dest: address21(&dm.dest),
                data_coding: dm.data_coding,
                esm_class: dm.esm_class,
                message: dm
                    .tlvs
                    .iter()
                    .find_map(|t| match t {
                        Tlv::MessagePayload(p) => Some(p.clone()),
                        _ => None,
                    })
                    .unwrap_or_else(Bytes::new),
                at_ms,
            },
        }
    }
}

/// Writes PDUs until the channel closes, a write fails or one takes longer
/// than `write_timeout`.
async fn write_pdus(
    mut out: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Pdu>,
    write_timeout: Duration,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    while let Some(first) = rx.recv().await {
        // Let the other PDUs of this burst be queued first: one write for them all.
        tokio::task::yield_now().await;
        let mut next = Some(first);
        while let Some(pdu) = next.take() {
            if let Err(e) = pdu.encode(&mut buf) {
                // Only PDUs we built reach here: a failure is our bug.
                tracing::error!(command = %pdu.command_id(), error = %e, "could not encode a PDU we built");
            }
            if buf.len() < MAX_BATCH_OCTETS {
                next = rx.try_recv().ok();
            }
        }
        match tokio::time::timeout(write_timeout, out.write_all(&buf)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "ESME stopped reading",
                ))
            }
        }
        buf.clear();
    }
    let _ = tokio::time::timeout(write_timeout, out.shutdown()).await;
    Ok(())
}
