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

/// Writes PDUs from `rx` until the channel closes, a write fails or one
/// takes longer than `write_timeout` (a client that stops reading).
pub(crate) async fn write_pdus<W: AsyncWrite + Unpin>(
    mut out: W,
    mut rx: mpsc::Receiver<Pdu>,
    write_timeout: Duration,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    while let Some(pdu) = rx.recv().await {
        encode(&pdu, &mut buf);
        while buf.len() < MAX_BATCH_OCTETS {
            match rx.try_recv() {
                Ok(pdu) => encode(&pdu, &mut buf),
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

fn encode(pdu: &Pdu, buf: &mut BytesMut) {
    if let Err(e) = pdu.encode(buf) {
        // Only PDUs we built reach here; a failure is our bug, not the peer's.
        tracing::error!(command = %pdu.command_id(), error = %e, "could not encode a PDU we built");
    }
}
