//! The session task of a client: the reader loop. It matches responses to
//! waiting callers, answers enquire_link and unbind, hands deliver_sm and
//! data_sm to the consumer and sends their responses when the consumer
//! decides (or the fallback when it does not), keeps the link alive with
//! enquire_link, and ends the session.

use std::{
    collections::{HashMap, VecDeque},
    io,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use smsmax_protocol::{Body, CommandId, CommandStatus, Pdu, SmppCodec};
use tokio::{
    io::AsyncRead,
    sync::{mpsc, watch, Notify},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::codec::FramedRead;

use super::{
    encode, inbound_response, writer::Outgoing, AnswerTo, CloseReason, Inbound, Reply, Responder, Shared, Stop,
};

/// The inbound requests (deliver_sm, data_sm) handed to the consumer and
/// not answered yet, shared by the session and the [`Responder`]s.
///
/// A responder answers by moving its request from `open` to `answered` and
/// waking the session, which writes every answered response in one go; the
/// session fails what is still open at its deadline with the fallback
/// status. No oneshot, boxed future or timer per request (each of those was
/// paid per receipt on every busy bind).
#[derive(Debug, Default)]
pub(super) struct Answers {
    state: Mutex<AnswerState>,
    /// Rings when `answered` gains its first entry.
    ready: Notify,
}

#[derive(Debug, Default)]
struct AnswerState {
    /// Open requests by token: (sequence number, command, deadline).
    open: HashMap<u64, (u32, CommandId, Instant)>,
    /// (deadline, token) in the order the requests arrived (deadline order:
    /// one timeout for all). Answered ones are dropped when they reach the front.
    deadlines: VecDeque<(Instant, u64)>,
    /// Answered, not written yet: (sequence number, command, status).
    answered: Vec<(u32, CommandId, CommandStatus)>,
    next_token: u64,
    /// The session ended: every answer is too late.
    closed: bool,
}

impl AnswerState {
    fn skip_answered(&mut self) {
        while let Some(&(_, token)) = self.deadlines.front() {
            if self.open.contains_key(&token) {
                break;
            }
            self.deadlines.pop_front();
        }
    }
}

impl Answers {
    fn lock(&self) -> MutexGuard<'_, AnswerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an open request; its token for the responder.
    fn open(&self, sequence: u32, command: CommandId, deadline: Instant) -> u64 {
        let mut state = self.lock();
        let token = state.next_token;
        state.next_token = state.next_token.wrapping_add(1);
        state.open.insert(token, (sequence, command, deadline));
        state.deadlines.push_back((deadline, token));
        token
    }

    /// Moves the deadline of open request `token` to `deadline`.
    fn extend(&self, token: u64, deadline: Instant) {
        if let Some(entry) = self.lock().open.get_mut(&token) {
            entry.2 = deadline;
        }
    }

    /// Answers request `token`; `false` when it is not open any more.
    pub(super) fn answer(&self, token: u64, status: CommandStatus) -> bool {
        let mut state = self.lock();
        let Some((sequence, command, _)) = state.open.remove(&token) else {
            return false;
        };
        state.skip_answered();
        let first = state.answered.is_empty();
        state.answered.push((sequence, command, status));
        drop(state);
        if first {
            self.ready.notify_one();
        }
        true
    }

    /// Open and answered-but-unwritten requests.
    fn outstanding(&self) -> usize {
        let state = self.lock();
        state.open.len() + state.answered.len()
    }

    /// The earliest deadline of an open request.
    fn next_deadline(&self) -> Option<Instant> {
        let mut state = self.lock();
        state.skip_answered();
        state.deadlines.front().map(|&(deadline, _)| deadline)
    }

    /// Answers the requests open past their deadline with `fallback`.
    fn expire(&self, now: Instant, fallback: CommandStatus) {
        let mut state = self.lock();
        state.skip_answered();
        while let Some(&(deadline, token)) = state.deadlines.front() {
            if deadline > now {
                break;
            }
            state.deadlines.pop_front();
            match state.open.get(&token).map(|&(_, _, real)| real) {
                // Extended (handed late to the consumer): wait in line again.
                Some(real) if real > now => state.deadlines.push_back((real, token)),
                Some(_) => {
                    if let Some((sequence, command, _)) = state.open.remove(&token) {
                        tracing::debug!(%command, sequence, "inbound request unanswered in time; fallback status");
                        state.answered.push((sequence, command, fallback));
                    }
                }
                None => {}
            }
            state.skip_answered();
        }
    }

    /// Takes the answered requests' responses, encoded.
    fn take_answered(&self) -> Vec<Bytes> {
        let answered = std::mem::take(&mut self.lock().answered);
        answered
            .into_iter()
            .map(|(sequence, command, status)| inbound_response(command, sequence, status))
            .collect()
    }

    /// The session ended: later answers are too late.
    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.open.clear();
        state.deadlines.clear();
        state.answered.clear();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Runs until the session ends, then fails every waiting caller, flushes
/// and closes the writer.
pub(super) async fn run<R>(
    read_half: R,
    writer: JoinHandle<io::Result<()>>,
    shared: Arc<Shared>,
    inbound: mpsc::Sender<Inbound>,
    stop: watch::Receiver<Stop>,
) where
    R: AsyncRead + Send + Unpin + 'static,
{
    let settings = shared.settings.clone();
    let mut session = Session {
        frames: FramedRead::new(read_half, SmppCodec::new(settings.max_command_length)),
        shared: shared.clone(),
        inbound,
        answers: Arc::new(Answers::default()),
        enquire: None,
        unbind: None,
        last_heard: Instant::now(),
    };
    let mut writer = writer;
    let (end, writer_done) = session.run(&mut writer, stop).await;
    session.answers.close();
    match &end {
        CloseReason::Unbound | CloseReason::BindFailed | CloseReason::HandleDropped => {
            tracing::debug!(reason = %end, "client session closed")
        }
        _ => tracing::info!(reason = %end, "client session closed"),
    }
    shared.close(end);
    drop(session);
    if !writer_done {
        let flush = async {
            let _ = shared.writer.send(Outgoing::Close).await;
            let _ = (&mut writer).await;
        };
        if tokio::time::timeout(settings.response_timeout, flush).await.is_err() {
            writer.abort();
        }
    }
}

struct Session<R> {
    frames: FramedRead<R, SmppCodec>,
    shared: Arc<Shared>,
    inbound: mpsc::Sender<Inbound>,
    answers: Arc<Answers>,
    /// Our outstanding enquire_link: sequence number and deadline.
    enquire: Option<(u32, Instant)>,
    /// Our outstanding unbind: sequence number and deadline.
    unbind: Option<(u32, Instant)>,
    last_heard: Instant,
}

/// The writer is gone: the session cannot continue.
struct WriterGone;

impl From<WriterGone> for CloseReason {
    fn from(_: WriterGone) -> Self {
        CloseReason::Io("the writer stopped".to_string())
    }
}

impl<R: AsyncRead + Send + Unpin + 'static> Session<R> {
    /// The loop. Returns why it ended and whether the writer task already finished.
    async fn run(
        &mut self,
        writer: &mut JoinHandle<io::Result<()>>,
        mut stop: watch::Receiver<Stop>,
    ) -> (CloseReason, bool) {
        let mut stopping = false;
        // One sleep for the session, moved as its deadline changes: a new
        // one per PDU would register and remove a timer per PDU.
        let sleep = tokio::time::sleep_until(self.next_timer());
        tokio::pin!(sleep);
        loop {
            let timer = self.next_timer();
            if sleep.deadline() != timer {
                sleep.as_mut().reset(timer);
            }
            tokio::select! {
                result = &mut *writer => {
                    let reason = match result {
                        Ok(Ok(())) => CloseReason::Io("the writer stopped".to_string()),
                        Ok(Err(e)) => CloseReason::Io(e.to_string()),
                        Err(e) => CloseReason::Io(format!("writer task: {e}")),
                    };
                    return (reason, true);
                }
                changed = stop.changed(), if !stopping => {
                    let what = match changed {
                        Ok(()) => *stop.borrow_and_update(),
                        // Every handle is gone.
                        Err(_) => Stop::Unbind,
                    };
                    match what {
                        Stop::Run => {}
                        Stop::Abort => return (CloseReason::BindFailed, false),
                        Stop::Unbind => {
                            stopping = true;
                            if self.start_unbind().await.is_err() {
                                return (WriterGone.into(), false);
                            }
                        }
                    }
                }
                // A request was made with nothing waiting: its deadline is the new timer.
                _ = self.shared.rearm.notified() => {}
                _ = self.answers.ready.notified() => {
                    if self.send_answered().await.is_err() {
                        return (WriterGone.into(), false);
                    }
                }
                frame = self.frames.next() => {
                    match frame {
                        None => return (CloseReason::PeerClosed, false),
                        Some(Err(e)) => return (CloseReason::Framing(e.to_string()), false),
                        Some(Ok(Err(e))) => {
                            self.last_heard = Instant::now();
                            tracing::warn!(error = %e, "malformed PDU from the SMSC");
                            if let Some(answer) = e.response() {
                                if self.send(encode(&answer)).await.is_err() {
                                    return (WriterGone.into(), false);
                                }
                            }
                        }
                        Some(Ok(Ok(pdu))) => {
                            self.last_heard = Instant::now();
                            match self.on_pdu(pdu).await {
                                Ok(Some(end)) => return (end, false),
                                Ok(None) => {}
                                Err(WriterGone) => return (WriterGone.into(), false),
                            }
                        }
                    }
                }
                _ = &mut sleep => {
                    match self.on_timer().await {
                        Ok(Some(end)) => return (end, false),
                        Ok(None) => {}
                        Err(WriterGone) => return (WriterGone.into(), false),
                    }
                }
            }
        }
    }

    fn settings(&self) -> &super::ClientSettings {
        &self.shared.settings
    }

    /// Writes the responses the consumer (or the fallback) decided.
    async fn send_answered(&mut self) -> Result<(), WriterGone> {
        for frame in self.answers.take_answered() {
            self.send(frame).await?;
        }
        Ok(())
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), WriterGone> {
        let timeout = self.settings().response_timeout;
        match tokio::time::timeout(timeout, self.shared.writer.send(Outgoing::Frame(frame))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(WriterGone),
        }
    }

    fn next_timer(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let interval = self.settings().enquire_link_interval;
        let mut timer = far;
        if let Some((_, deadline)) = self.enquire {
            timer = timer.min(deadline);
        } else if !interval.is_zero() && self.unbind.is_none() {
            timer = timer.min(self.last_heard + interval);
        }
        if let Some((_, deadline)) = self.unbind {
            timer = timer.min(deadline);
        }
        if let Some(deadline) = self.shared.next_deadline() {
            timer = timer.min(deadline);
        }
        if let Some(deadline) = self.answers.next_deadline() {
            timer = timer.min(deadline);
        }
        timer
    }

    async fn on_timer(&mut self) -> Result<Option<CloseReason>, WriterGone> {
        let now = Instant::now();
        self.shared.expire(now);
        self.answers.expire(now, self.settings().inbound_fallback_status);
        self.send_answered().await?;
        if let Some((sequence, deadline)) = self.unbind {
            if now >= deadline {
                tracing::warn!(sequence, "no unbind_resp in time; closing anyway");
                return Ok(Some(CloseReason::Unbound));
            }
        }
        if let Some((sequence, deadline)) = self.enquire {
            if now >= deadline {
                tracing::warn!(sequence, "no enquire_link_resp in time");
                return Ok(Some(CloseReason::EnquireLinkTimeout));
            }
            return Ok(None);
        }
        let interval = self.settings().enquire_link_interval;
        if !interval.is_zero() && self.unbind.is_none() && now >= self.last_heard + interval {
            let sequence = self.shared.next_sequence();
            self.enquire = Some((sequence, now + self.settings().response_timeout));
            self.send(encode(&Pdu::new(sequence, Body::EnquireLink))).await?;
        }
        Ok(None)
    }

    async fn start_unbind(&mut self) -> Result<(), WriterGone> {
        let sequence = self.shared.next_sequence();
        self.unbind = Some((sequence, Instant::now() + self.settings().response_timeout));
        self.send(encode(&Pdu::new(sequence, Body::Unbind))).await
    }

    async fn on_pdu(&mut self, pdu: Pdu) -> Result<Option<CloseReason>, WriterGone> {
        let sequence = pdu.sequence_number;
        let command = pdu.command_id();
        if command.is_response() {
            if self.enquire.is_some_and(|(s, _)| s == sequence) {
                self.enquire = None;
                return Ok(None);
            }
            if self.unbind.is_some_and(|(s, _)| s == sequence) {
                return Ok(Some(CloseReason::Unbound));
            }
            match self.shared.take_pending(sequence) {
                // The caller may have timed out just now; nothing to do then.
                Some(waiting) => drop(waiting.send(Reply::Response(pdu))),
                None => tracing::debug!(%command, sequence, "response to nothing outstanding"),
            }
            return Ok(None);
        }
        match command {
            CommandId::EnquireLink => {
                self.send(encode(&Pdu::new(sequence, Body::EnquireLinkResp))).await?;
                Ok(None)
            }
            CommandId::Unbind => {
                self.send(encode(&Pdu::new(sequence, Body::UnbindResp))).await?;
                Ok(Some(CloseReason::UnboundByPeer))
            }
            CommandId::DeliverSm | CommandId::DataSm => {
                self.on_inbound(pdu).await?;
                Ok(None)
            }
            // No response exists for these.
            CommandId::AlertNotification | CommandId::Outbind => Ok(None),
            other => {
                tracing::warn!(command = %other, "operation not accepted from an SMSC");
                self.send(inbound_response(other, sequence, CommandStatus::ESME_RINVCMDID))
                    .await?;
                Ok(None)
            }
        }
    }

    /// Hands a deliver_sm / data_sm to the consumer, bounded in count and time.
    async fn on_inbound(&mut self, pdu: Pdu) -> Result<(), WriterGone> {
        let sequence = pdu.sequence_number;
        let command = pdu.command_id();
        let settings = self.settings().clone();
        let fallback = settings.inbound_fallback_status;
        if self.answers.outstanding() >= settings.inbound_window {
            tracing::warn!(%command, sequence, "too many inbound requests unanswered");
            return self.send(inbound_response(command, sequence, fallback)).await;
        }
        debug_assert!(!self.answers.is_closed());
        let token = self
            .answers
            .open(sequence, command, Instant::now() + settings.inbound_timeout);
        let item = Inbound {
            pdu,
            responder: Responder {
                to: Some(AnswerTo::Session {
                    answers: self.answers.clone(),
                    token,
                    fallback,
                }),
            },
        };
        let handed = match self.inbound.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(item)) => {
                // The consumer is behind: wait for it (not reading meanwhile), bounded.
                let handed = matches!(
                    tokio::time::timeout(settings.inbound_timeout, self.inbound.send(item)).await,
                    Ok(Ok(()))
                );
                // The consumer's time to answer starts once it has the request.
                self.answers.extend(token, Instant::now() + settings.inbound_timeout);
                handed
            }
        };
        if !handed {
            // The responder was dropped with the item: its fallback is queued.
            tracing::warn!(%command, sequence, "inbound request not taken by the consumer");
        }
        Ok(())
    }
}
