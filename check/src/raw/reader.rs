//! The read side of a [`RawClient`]: bytes received but not yet decoded, read so that memory
//! stays bounded whatever the server sends (data frames are skipped as they arrive, never kept).

use anyhow::bail;
use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

#[cfg(doc)]
use super::RawClient;
use super::{Frame, Header, OP_CLOSE};
use crate::how::{Ended, How};

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
    ) -> (Ended, u64) {
        let mut skipped = 0;
        loop {
            let read = self.read_control(stream, &mut skipped);
            let ended = match tokio::time::timeout_at(deadline, read).await {
                Err(_) => Ended::without_close(How::Open),
                Ok(Ok(Some(frame))) if frame.opcode == OP_CLOSE => Ended::with_close(frame),
                Ok(Ok(Some(_control))) => continue,
                Ok(Ok(None)) => Ended::without_close(How::Fin),
                Ok(Err(err)) => Ended::of_error(&err),
            };
            return (ended, skipped);
        }
    }
}
