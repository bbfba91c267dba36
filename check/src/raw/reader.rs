//! The read side of a [`RawClient`]: bytes received but not yet decoded, read so that memory
//! stays bounded whatever the server sends (data frames are skipped as they arrive, never kept).

use anyhow::bail;
use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

#[cfg(doc)]
use super::RawClient;
use super::{Frame, Header, RawCloseOutcome, OP_CLOSE};

/// The read side's state: bytes received but not yet decoded, and how much of a skipped data
/// frame's payload is still to come.
pub(super) struct FrameReader {
    /// Bytes received and not yet decoded.
    pub(super) buf: BytesMut,
    /// Payload bytes of a data frame [`FrameReader::read_control`] is discarding.
    pub(super) skipping: u64,
}

/// How much a read may add to [`FrameReader::buf`] at once.
const READ_CHUNK: usize = 16 * 1024;

impl FrameReader {
    /// The next control frame (Close, Ping, Pong, or a reserved control opcode); every data
    /// frame on the way is counted in `skipped` and discarded as it arrives, payload unread, so
    /// memory stays bounded (a few KiB) whatever the server sends. `Ok(None)` on a clean EOF
    /// between frames; an error on a reset, an EOF inside a frame, or a control frame over 125
    /// bytes. Cancel-safe: a call dropped at an `.await` loses nothing.
    pub(super) async fn read_control<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
        skipped: &mut u64,
    ) -> anyhow::Result<Option<Frame>> {
        // Each frame costs the task a unit of its budget, as a read does: a server that sends
        // frames faster than they are handled (thousands in one read) cannot keep the task
        // from yielding, so the deadlines around it (`timeout_at`) are seen on time.
        tokio::task::coop::consume_budget().await;
        loop {
            if self.skipping > 0 {
                let drop = self.skipping.min(self.buf.len() as u64);
                self.buf.advance(drop as usize);
                self.skipping -= drop;
            }
            if self.skipping == 0 {
                if let Some(header) = Header::decode(&self.buf) {
                    if !header.is_control() {
                        *skipped += 1;
                        self.buf.advance(header.size);
                        self.skipping = header.len;
                        continue;
                    }
                    if header.len > 125 {
                        bail!("a {}-byte control frame (at most 125 allowed)", header.len);
                    }
                    if let Some((frame, used)) = Frame::decode(&self.buf)? {
                        self.buf.advance(used);
                        return Ok(Some(frame));
                    }
                }
            }
            self.buf.reserve(READ_CHUNK);
            let mut limited = (&mut self.buf).limit(READ_CHUNK);
            if stream.read_buf(&mut limited).await? == 0 {
                if self.buf.is_empty() && self.skipping == 0 {
                    return Ok(None);
                }
                // A FIN in the middle of a frame is still the end of TCP, not garbage.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "EOF inside a frame",
                )
                .into());
            }
        }
    }

    /// Like [`RawClient::next_close`], but keeps nothing it skips: returns how the wait ended
    /// and how many data frames were skipped.
    pub(super) async fn await_close<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
        deadline: Instant,
    ) -> (RawCloseOutcome, u64) {
        let mut skipped = 0;
        loop {
            let read = self.read_control(stream, &mut skipped);
            let outcome = match tokio::time::timeout_at(deadline, read).await {
                Err(_) => RawCloseOutcome::TimedOut,
                Ok(Ok(Some(frame))) if frame.opcode == OP_CLOSE => RawCloseOutcome::Close(frame),
                Ok(Ok(Some(_control))) => continue,
                Ok(Ok(None)) => RawCloseOutcome::Eof,
                Ok(Err(err)) => RawCloseOutcome::of_error(&err),
            };
            return (outcome, skipped);
        }
    }
}

impl RawCloseOutcome {
    /// How a read that failed with `err` ended the connection: [`RawCloseOutcome::Reset`] for
    /// a reset (ECONNRESET, an abort), [`RawCloseOutcome::Eof`] for a FIN in the middle of a
    /// frame (or a reset after a FIN), [`RawCloseOutcome::Garbage`] for bytes that are not a
    /// valid frame.
    pub fn of_error(err: &anyhow::Error) -> RawCloseOutcome {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        match io_kind(err) {
            Some(ConnectionReset | ConnectionAborted) => RawCloseOutcome::Reset,
            // Linux fails a read with EPIPE when a reset came after the peer's FIN (in
            // CLOSE_WAIT): the connection ended with the FIN.
            Some(UnexpectedEof | BrokenPipe) => RawCloseOutcome::Eof,
            _ => RawCloseOutcome::Garbage(format!("{err:#}")),
        }
    }
}

/// The kind of the I/O error under `err`, if it is one.
fn io_kind(err: &anyhow::Error) -> Option<std::io::ErrorKind> {
    err.downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind)
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    #[test]
    fn a_failed_read_is_a_reset_a_fin_or_garbage() {
        let outcome = |kind| RawCloseOutcome::of_error(&Error::from(kind).into());
        assert_eq!(outcome(ErrorKind::ConnectionReset), RawCloseOutcome::Reset);
        assert_eq!(
            outcome(ErrorKind::ConnectionAborted),
            RawCloseOutcome::Reset
        );
        // EOF inside a frame, and EPIPE (a reset after the peer's FIN): the FIN ended it.
        assert_eq!(outcome(ErrorKind::UnexpectedEof), RawCloseOutcome::Eof);
        assert_eq!(outcome(ErrorKind::BrokenPipe), RawCloseOutcome::Eof);
        let garbage = RawCloseOutcome::of_error(&anyhow::anyhow!("a 200-byte control frame"));
        assert!(matches!(garbage, RawCloseOutcome::Garbage(text) if text.contains("200-byte")));
    }
}
