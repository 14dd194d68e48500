//! The writer half of a client session: drains a bounded channel of encoded
//! PDUs and writes every one that is ready with one `write_all`. Woken by
//! the first frame of a burst, it yields once before draining, so that the
//! other tasks woken at the same time (callers whose responses arrived in
//! one read) queue their frames for the same write.
//!
//! PDUs arrive encoded (callers encode their own requests, so an
//! unencodable body is the caller's error, not the session's).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

/// Largest batch written at once.
const MAX_BATCH_OCTETS: usize = 64 * 1024;

#[derive(Debug)]
pub(super) enum Outgoing {
    Frame(Bytes),
    /// Write what is queued before this, then shut the stream down.
    Close,
}

/// Writes frames until `Close`, a failed write, or one write taking longer
/// than `write_timeout` (a peer that stops reading).
pub(super) async fn write_frames<W: AsyncWrite + Unpin>(
    mut out: W,
    mut rx: mpsc::Receiver<Outgoing>,
    write_timeout: Duration,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut closing = false;
    while !closing {
        match rx.recv().await {
            Some(Outgoing::Frame(frame)) => buf.extend_from_slice(&frame),
            Some(Outgoing::Close) | None => closing = true,
        }
        if !closing {
            // The callers woken with the one that sent this frame are about
            // to send theirs: let them run first, so that a burst leaves in
            // one write rather than one syscall per frame.
            tokio::task::yield_now().await;
        }
        while !closing && buf.len() < MAX_BATCH_OCTETS {
            match rx.try_recv() {
                Ok(Outgoing::Frame(frame)) => buf.extend_from_slice(&frame),
                Ok(Outgoing::Close) => closing = true,
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            match tokio::time::timeout(write_timeout, out.write_all(&buf)).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the peer stopped reading",
                    ))
                }
            }
            buf.clear();
        }
    }
    let _ = tokio::time::timeout(write_timeout, out.shutdown()).await;
    Ok(())
}
