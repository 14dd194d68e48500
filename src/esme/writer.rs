//! The writer half of a session: drains a bounded channel of PDUs and
//! writes every PDU that is ready with one `write_all` (one syscall for a
//! burst of responses instead of one each).

use std::time::Duration;

use bytes::BytesMut;
use smsmax_protocol::Pdu;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

/// Largest batch written at once.
const MAX_BATCH_OCTETS: usize = 64 * 1024;

/// What a session hands its writer: one PDU, or the answers to a batch of
/// requests that were stored together (one channel send for all of them).
/// `One` is as large as a PDU, as the channel's slots were before; boxing
/// it would cost an allocation per enquire_link, deliver_sm or refusal.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outgoing {
    One(Pdu),
    Batch(Vec<Pdu>),
}

impl Outgoing {
    /// How many PDUs this is.
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::One(_) => 1,
            Outgoing::Batch(pdus) => pdus.len(),
        }
    }
}

/// Writes PDUs from `rx` until the channel closes, a write fails or one
/// takes longer than `write_timeout` (a client that stops reading).
pub(crate) async fn write_pdus<W: AsyncWrite + Unpin>(
    mut out: W,
    mut rx: mpsc::Receiver<Outgoing>,
    write_timeout: Duration,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    while let Some(outgoing) = rx.recv().await {
        encode(&outgoing, &mut buf);
        while buf.len() < MAX_BATCH_OCTETS {
            match rx.try_recv() {
                Ok(outgoing) => encode(&outgoing, &mut buf),
                Err(_) => break,
            }
        }
        match tokio::time::timeout(write_timeout, out.write_all(&buf)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "client stopped reading",
                ))
            }
        }
        buf.clear();
    }
    let _ = tokio::time::timeout(write_timeout, out.shutdown()).await;
    Ok(())
}

fn encode(outgoing: &Outgoing, buf: &mut BytesMut) {
    match outgoing {
        Outgoing::One(pdu) => encode_one(pdu, buf),
        Outgoing::Batch(pdus) => pdus.iter().for_each(|pdu| encode_one(pdu, buf)),
    }
}

fn encode_one(pdu: &Pdu, buf: &mut BytesMut) {
    if let Err(e) = pdu.encode(buf) {
        // Only PDUs we built reach here; a failure is our bug, not the peer's.
        tracing::error!(command = %pdu.command_id(), error = %e, "could not encode a PDU we built");
    }
}
