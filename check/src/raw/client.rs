//! [`RawClient`]: writes frames as given and reads the server's, with bounded memory for a
//! server it does not trust. Its upgrade is in `handshake`, its read side in `reader`.

use std::cell::Cell;
use std::time::Duration;

use anyhow::bail;
use bytes::Buf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::frame::next_mask;
use super::reader::FrameReader;
use super::{Frame, OP_CLOSE};
use crate::how::{Ended, How};

/// The longest wait for an upgrade response, and for [`RawClient::expect_close`].
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream a [`RawClient`] can speak over: TCP, or TLS over TCP for `wss://`.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A WebSocket client that speaks raw bytes over a `TcpStream` (or any other [`Io`]).
pub struct RawClient<S = TcpStream> {
    /// The connection, TCP or TLS.
    pub(super) stream: S,
    /// The read side's state.
    pub(super) reader: FrameReader,
}

/// How [`RawClient::send_message_streamed`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamedOutcome {
    /// How the wait for the server's Close ended ([`How::Open`]: not by the deadline).
    pub ended: Ended,
    /// Bytes of the message written (header excluded).
    pub written: u64,
    /// True when the whole message was written.
    pub complete: bool,
}

impl<S: Io> RawClient<S> {
    /// Writes one frame.
    pub async fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.stream.write_all(&frame.encode()).await
    }

    /// Writes bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads the next frame: `Ok(None)` on a clean EOF between frames, an error on a reset or a
    /// malformed frame. No timeout: wrap it or use [`RawClient::next_close`]. Buffers whole
    /// frames (up to 64 MiB): for a server you do not trust, use [`RawClient::read_control`].
    pub async fn read_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        let buf = &mut self.reader.buf;
        loop {
            if let Some((frame, used)) = Frame::decode(buf)? {
                buf.advance(used);
                return Ok(Some(frame));
            }
            if self.stream.read_buf(buf).await? == 0 {
                if buf.is_empty() {
                    return Ok(None);
                }
                bail!("EOF inside a frame ({} bytes buffered)", buf.len());
            }
        }
    }

    /// The next control frame; data frames on the way are counted in `skipped` and discarded
    /// unread, so memory stays bounded whatever the server sends. No timeout: wrap it.
    pub async fn read_control(&mut self, skipped: &mut u64) -> anyhow::Result<Option<Frame>> {
        self.reader.read_control(&mut self.stream, skipped).await
    }

    /// Reads frames until the server's Close frame, EOF, a reset, or `timeout` ([`How::Open`]).
    /// Returns how it ended and every other frame read on the way (ticks, pings, echoes): for
    /// tests; a check against an unknown server uses [`RawClient::await_close`].
    pub async fn next_close(&mut self, timeout: Duration) -> (Ended, Vec<Frame>) {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let ended = match tokio::time::timeout_at(deadline, self.read_frame()).await {
                Err(_) => Ended::without_close(How::Open),
                Ok(Ok(Some(frame))) if frame.opcode == OP_CLOSE => Ended::with_close(frame),
                Ok(Ok(Some(frame))) => {
                    skipped.push(frame);
                    continue;
                }
                Ok(Ok(None)) => Ended::without_close(How::Fin),
                Ok(Err(err)) => Ended::of_error(&err),
            };
            return (ended, skipped);
        }
    }

    /// Waits until `deadline` for the server's Close frame, keeping nothing else it reads: how
    /// the wait ended ([`How::Open`]: not by `deadline`), and how many data frames were skipped
    /// on the way.
    pub async fn await_close(&mut self, deadline: Instant) -> (Ended, u64) {
        self.reader.await_close(&mut self.stream, deadline).await
    }

    /// Sends one binary message of `len` bytes without ever holding it in memory (64 KiB
    /// chunks, masked on the fly), while reading for the server's Close: a server may answer
    /// 1009 long before the message ends, and stop reading. Writing stops at the Close, at a
    /// write error, or at `deadline`; after the last byte, the Close has until `close_wait`
    /// later (and never past `deadline`).
    pub async fn send_message_streamed(
        &mut self,
        len: u64,
        close_wait: Duration,
        deadline: Instant,
    ) -> StreamedOutcome {
        const CHUNK: usize = 64 * 1024; // a multiple of 4: every chunk starts at mask byte 0
        let key = next_mask();
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&len.to_be_bytes());
        header.extend_from_slice(&key);
        let masked: Vec<u8> = (0..CHUNK).map(|i| b'x' ^ key[i % 4]).collect();
        let written = Cell::new(0u64);
        let (mut reader, mut writer) = tokio::io::split(&mut self.stream);
        let write = async {
            writer.write_all(&header).await?;
            while written.get() < len {
                let n = (len - written.get()).min(CHUNK as u64) as usize;
                writer.write_all(&masked[..n]).await?;
                written.set(written.get() + n as u64);
            }
            writer.flush().await
        };
        let read = self.reader.await_close(&mut reader, deadline);
        let close_by = tokio::time::sleep_until(deadline);
        tokio::pin!(write, read, close_by);
        let mut writing = true;
        loop {
            tokio::select! {
                result = &mut write, if writing => {
                    writing = false;
                    if result.is_ok() {
                        close_by.as_mut().reset((Instant::now() + close_wait).min(deadline));
                    }
                }
                (ended, _) = &mut read => {
                    return StreamedOutcome { ended, written: written.get(), complete: written.get() == len };
                }
                _ = &mut close_by => {
                    return StreamedOutcome {
                        ended: Ended::without_close(How::Open),
                        written: written.get(),
                        complete: written.get() == len,
                    };
                }
            }
        }
    }

    /// Waits up to [`READ_TIMEOUT`] for the server's Close frame and returns its code
    /// (`None` for an empty Close). Panics, saying what happened instead, if none comes.
    pub async fn expect_close(&mut self) -> (Option<u16>, Vec<u8>) {
        match self.next_close(READ_TIMEOUT).await {
            (
                Ended {
                    close: Some(frame), ..
                },
                _,
            ) => (frame.close_code(), frame.close_reason().to_vec()),
            (other, skipped) => panic!(
                "expected a Close frame from the server, got {other:?} after {} other frames",
                skipped.len()
            ),
        }
    }

    /// Reads and discards everything until the TCP connection ends (EOF or reset) and returns
    /// how long that took, or `None` if it is still open after `timeout`.
    pub async fn wait_tcp_end(&mut self, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut scratch = vec![0u8; 64 * 1024];
        self.reader.buf.clear();
        self.reader.skipping = 0;
        loop {
            match tokio::time::timeout_at(start + timeout, self.stream.read(&mut scratch)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// The underlying stream.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The client in two halves, to read the server's frames while writing (a Pong, a Ping, a
    /// message) without one waiting for the other.
    pub fn split(&mut self) -> (ReadHalf<'_, S>, WriteHalf<'_, S>) {
        let (stream, writer) = tokio::io::split(&mut self.stream);
        (
            ReadHalf {
                stream,
                reader: &mut self.reader,
            },
            WriteHalf { stream: writer },
        )
    }
}

/// The read side of a [`RawClient::split`]: reads as [`RawClient::read_control`] does.
pub struct ReadHalf<'a, S> {
    stream: tokio::io::ReadHalf<&'a mut S>,
    reader: &'a mut FrameReader,
}

impl<S: Io> ReadHalf<'_, S> {
    /// The next control frame, data frames counted in `skipped` and discarded (see
    /// [`RawClient::read_control`]). Cancel-safe: a read dropped at its `.await` loses nothing.
    pub async fn read_control(&mut self, skipped: &mut u64) -> anyhow::Result<Option<Frame>> {
        self.reader.read_control(&mut self.stream, skipped).await
    }
}

/// The write side of a [`RawClient::split`].
pub struct WriteHalf<'a, S> {
    stream: tokio::io::WriteHalf<&'a mut S>,
}

impl<S: Io> WriteHalf<'_, S> {
    /// Writes one frame, and flushes it (TLS buffers).
    pub async fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.stream.write_all(&frame.encode()).await?;
        self.stream.flush().await
    }
}
