//! A hand-written WebSocket client, for the frames a well-behaved library refuses to send.
//!
//! [`Frame`] is one RFC 6455 frame with every header bit under the test's control, and
//! [`Frame::encode`] writes it exactly as given: masked or not, RSV bits, reserved opcodes,
//! fragmented or oversized control frames. [`RawClient`] does the HTTP upgrade by hand (so a test
//! can send any `Origin` or `Host`), writes frames, and decodes the server's frames, which is how
//! the tests read the exact Close code the server chose.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Buf, BufMut, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a Ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a Pong frame.
pub const OP_PONG: u8 = 0xA;

/// RSV1, as a value for [`Frame::rsv`].
pub const RSV1: u8 = 0b100;
/// RSV2, as a value for [`Frame::rsv`].
pub const RSV2: u8 = 0b010;
/// RSV3, as a value for [`Frame::rsv`].
pub const RSV3: u8 = 0b001;

/// The longest wait for an upgrade response, and for [`RawClient::expect_close`].
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a refused upgrade's body that is read (and kept); the rest is never read.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The GUID of RFC 6455 §1.3 that `Sec-WebSocket-Accept` hashes with the key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64, as RFC 6455 §4.1 asks for every
/// upgrade.
pub fn new_key() -> String {
    BASE64.encode(rand::random::<[u8; 16]>())
}

/// The `Sec-WebSocket-Accept` a correct server answers `key` with: base64(SHA-1(key + GUID)),
/// computed here with `sha1` rather than with the code servers use (tungstenite's
/// `derive_accept_key`), so the check does not trust what it examines.
pub fn accept_key(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha1.finalize())
}

/// A different, never-zero masking key for each frame, so a server that ignores the mask (or a
/// harness that forgets to apply it) cannot pass by accident.
fn next_mask() -> [u8; 4] {
    static NEXT: AtomicU32 = AtomicU32::new(0x3779_b97f);
    (NEXT.fetch_add(0x9e37_79b9, Ordering::Relaxed) | 0x0101_0101).to_be_bytes()
}

/// One WebSocket frame, with every header field explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit: this is the last frame of its message.
    pub fin: bool,
    /// The three RSV bits as `0bRSV1_RSV2_RSV3` (see [`RSV1`], [`RSV2`], [`RSV3`]).
    pub rsv: u8,
    /// The 4-bit opcode, reserved values included.
    pub opcode: u8,
    /// The masking key; `None` sends the frame unmasked (which a client must never do).
    pub mask: Option<[u8; 4]>,
    /// The unmasked payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A final, masked frame with `opcode` and `payload`: what a correct client sends.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(next_mask()),
            payload: payload.into(),
        }
    }

    /// A final, masked text frame.
    pub fn text(text: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_TEXT, text)
    }

    /// A final, masked binary frame.
    pub fn binary(data: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_BINARY, data)
    }

    /// A final, masked continuation frame.
    pub fn continuation(data: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_CONTINUATION, data)
    }

    /// A masked Ping.
    pub fn ping(data: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_PING, data)
    }

    /// A masked Pong.
    pub fn pong(data: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_PONG, data)
    }

    /// A masked Close carrying `code` and the raw bytes of `reason` (which need not be UTF-8).
    pub fn close(code: u16, reason: &[u8]) -> Frame {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        Frame::new(OP_CLOSE, payload)
    }

    /// Sets the FIN bit.
    pub fn fin(mut self, fin: bool) -> Frame {
        self.fin = fin;
        self
    }

    /// Sets the RSV bits (`0b000` to `0b111`).
    pub fn rsv(mut self, rsv: u8) -> Frame {
        self.rsv = rsv;
        self
    }

    /// Sends the frame without a mask.
    pub fn unmasked(mut self) -> Frame {
        self.mask = None;
        self
    }

    /// The bytes on the wire: header, extended length, masking key, masked payload.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.payload.len();
        let mut out = Vec::with_capacity(len + 14);
        out.push(u8::from(self.fin) << 7 | (self.rsv & 0b111) << 4 | (self.opcode & 0x0f));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if let Ok(len) = u16::try_from(len) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&len.to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        match self.mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(
                    self.payload
                        .iter()
                        .enumerate()
                        .map(|(i, byte)| byte ^ key[i % 4]),
                );
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }

    /// Decodes one frame from the front of `buf`: `Ok(None)` if more bytes are needed, otherwise
    /// the frame (payload unmasked) and how many bytes it took. A frame over 64 MiB is an error:
    /// this buffers whole frames (see [`RawClient::read_control`] for a reader that does not).
    pub fn decode(buf: &[u8]) -> anyhow::Result<Option<(Frame, usize)>> {
        let Some(header) = Header::decode(buf) else {
            return Ok(None);
        };
        let Header {
            fin,
            rsv,
            opcode,
            mask,
            len,
            size: at,
        } = header;
        let len = usize::try_from(len).context("frame length overflows usize")?;
        if len > 64 * 1024 * 1024 {
            bail!("server sent a {len}-byte frame; refusing to buffer it");
        }
        let Some(payload) = buf.get(at..at + len) else {
            return Ok(None);
        };
        let payload = match mask {
            Some(key) => payload
                .iter()
                .enumerate()
                .map(|(i, byte)| byte ^ key[i % 4])
                .collect(),
            None => payload.to_vec(),
        };
        Ok(Some((
            Frame {
                fin,
                rsv,
                opcode,
                mask,
                payload,
            },
            at + len,
        )))
    }

    /// For a Close frame with a payload, its status code.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    /// For a Close frame, the raw bytes of its reason (empty when there is none).
    pub fn close_reason(&self) -> &[u8] {
        if self.opcode == OP_CLOSE && self.payload.len() > 2 {
            &self.payload[2..]
        } else {
            &[]
        }
    }
}

/// A frame header: everything but the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The FIN bit.
    pub fin: bool,
    /// The three RSV bits.
    pub rsv: u8,
    /// The 4-bit opcode.
    pub opcode: u8,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length as sent (up to 2^64 - 1).
    pub len: u64,
    /// The header's own length in bytes (2 to 14).
    pub size: usize,
}

impl Header {
    /// Decodes the header at the front of `buf`; `None` until it is all there.
    pub fn decode(buf: &[u8]) -> Option<Header> {
        let (&first, &second) = (buf.first()?, buf.get(1)?);
        let (len, mut size) = match second & 0x7f {
            126 => {
                let bytes = buf.get(2..4)?;
                (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
            }
            127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
            len => (u64::from(len), 2),
        };
        let mask = if second & 0x80 != 0 {
            let key = buf.get(size..size + 4)?;
            size += 4;
            Some(<[u8; 4]>::try_from(key).ok()?)
        } else {
            None
        };
        Some(Header {
            fin: first & 0x80 != 0,
            rsv: (first >> 4) & 0b111,
            opcode: first & 0x0f,
            mask,
            len,
            size,
        })
    }

    /// True for Close, Ping, Pong and the reserved control opcodes (0x8 to 0xF).
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Status, headers and head length of an HTTP response head: `(status, headers, length)`.
pub type Head = (u16, Vec<(String, String)>, usize);

/// Parses an HTTP/1.x response head from the front of `buf` (with httparse); `Ok(None)` while
/// it is incomplete, an error when it is not HTTP or longer than 64 KiB.
pub fn parse_head(buf: &[u8]) -> anyhow::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf).context("not an HTTP response")? {
        httparse::Status::Partial if buf.len() > 64 * 1024 => {
            bail!("no end of HTTP head in 64 KiB")
        }
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(length) => {
            let status = response.code.context("HTTP response without a status")?;
            let headers = response
                .headers
                .iter()
                .map(|header| {
                    let value = String::from_utf8_lossy(header.value).trim().to_owned();
                    (header.name.to_owned(), value)
                })
                .collect();
            Ok(Some((status, headers, length)))
        }
    }
}

/// The HTTP answer to an upgrade request.
#[derive(Debug, Clone)]
pub struct UpgradeResponse {
    /// The status code: 101 when the upgrade was accepted.
    pub status: u16,
    /// The response headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The response body, if the server sent one with `Content-Length` (never for 101), cut at
    /// [`BODY_LIMIT`].
    pub body: Vec<u8>,
    /// The `Sec-WebSocket-Accept` the request's fresh key calls for.
    pub expected_accept: String,
}

impl UpgradeResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// True when the server proved it read this request's key: `Sec-WebSocket-Accept` is the
    /// one [`accept_key`] derives. A browser fails any 101 without it.
    pub fn accept_matches(&self) -> bool {
        self.header("sec-websocket-accept") == Some(self.expected_accept.as_str())
    }
}

/// How a wait for the server's Close frame ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCloseOutcome {
    /// The server sent this Close frame.
    Close(Frame),
    /// The TCP connection ended (FIN) with no Close frame.
    Eof,
    /// The TCP connection was reset with no Close frame.
    Reset,
    /// Nothing ended the wait before the timeout.
    TimedOut,
    /// The server sent bytes that are not a valid frame.
    Garbage(String),
}

/// A byte stream a [`RawClient`] can speak over: TCP, or TLS over TCP for `wss://`.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A WebSocket client that speaks raw bytes over a `TcpStream` (or any other [`Io`]).
pub struct RawClient<S = TcpStream> {
    stream: S,
    reader: FrameReader,
}

/// The read side's state: bytes received but not yet decoded, and how much of a skipped data
/// frame's payload is still to come.
struct FrameReader {
    buf: BytesMut,
    /// Payload bytes of a data frame [`FrameReader::read_control`] is discarding.
    skipping: u64,
}

/// How much a read may add to [`FrameReader::buf`] at once.
const READ_CHUNK: usize = 16 * 1024;

impl FrameReader {
    /// The next control frame (Close, Ping, Pong, or a reserved control opcode); every data
    /// frame on the way is counted in `skipped` and discarded as it arrives, payload unread, so
    /// memory stays bounded (a few KiB) whatever the server sends. `Ok(None)` on a clean EOF
    /// between frames; an error on a reset, an EOF inside a frame, or a control frame over 125
    /// bytes.
    async fn read_control<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
        skipped: &mut u64,
    ) -> anyhow::Result<Option<Frame>> {
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
                bail!("EOF inside a frame");
            }
        }
    }

    /// Like [`RawClient::next_close`], but keeps nothing it skips: returns how the wait ended
    /// and how many data frames were skipped.
    async fn await_close<R: AsyncRead + Unpin>(
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
                Ok(Err(err)) if is_reset(&err) => RawCloseOutcome::Reset,
                Ok(Err(err)) => RawCloseOutcome::Garbage(format!("{err:#}")),
            };
            return (outcome, skipped);
        }
    }
}

/// How [`RawClient::send_message_streamed`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamedOutcome {
    /// How the wait for the server's Close ended.
    pub outcome: RawCloseOutcome,
    /// Bytes of the message written (header excluded).
    pub written: u64,
    /// True when the whole message was written.
    pub complete: bool,
}

impl RawClient<TcpStream> {
    /// Connects to `addr` and sends an upgrade request for `path` with `headers` added (a
    /// `Host` among them replaces the default one). Returns the response, and the client when
    /// the status is 101.
    pub async fn upgrade(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(UpgradeResponse, Option<RawClient>)> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Self::upgrade_stream(stream, &addr.to_string(), path, headers).await
    }

    /// Upgrades `path` with no extra headers; panics unless the server answers 101.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawClient {
        match Self::upgrade(addr, path, &[]).await {
            Ok((_, Some(client))) => client,
            Ok((response, None)) => panic!("upgrade of {path} refused: {response:?}"),
            Err(err) => panic!("upgrade of {path} failed: {err:#}"),
        }
    }
}

impl<S: Io> RawClient<S> {
    /// Like [`RawClient::upgrade`], over a stream the test connected itself (to shrink its
    /// receive buffer, for example). `host` is the default `Host` header. Waits up to
    /// [`READ_TIMEOUT`] for the response.
    pub async fn upgrade_stream(
        stream: S,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(UpgradeResponse, Option<RawClient<S>>)> {
        let deadline = Instant::now() + READ_TIMEOUT;
        Self::upgrade_stream_until(stream, host, path, headers, deadline).await
    }

    /// [`RawClient::upgrade_stream`] with every write and read done by `deadline`. Each upgrade
    /// sends a fresh random `Sec-WebSocket-Key`. The client comes back only for a 101 whose
    /// `Sec-WebSocket-Accept` matches the key (see [`UpgradeResponse::accept_matches`]). A
    /// refused upgrade's body is read up to [`BODY_LIMIT`] bytes, and only with
    /// `Content-Length`; the head may be 64 KiB at most.
    pub async fn upgrade_stream_until(
        mut stream: S,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        deadline: Instant,
    ) -> anyhow::Result<(UpgradeResponse, Option<RawClient<S>>)> {
        let key = new_key();
        let mut request = format!("GET {path} HTTP/1.1\r\n");
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request.push_str(&format!("Host: {host}\r\n"));
        }
        request.push_str(&format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n"
        ));
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        tokio::time::timeout_at(deadline, stream.write_all(request.as_bytes()))
            .await
            .context("timed out sending the upgrade request")??;

        let mut buf = BytesMut::with_capacity(4096);
        let (status, headers, head_len) = loop {
            if let Some(head) = parse_head(&buf)? {
                break head;
            }
            let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf))
                .await
                .context("timed out waiting for the upgrade response")??;
            if read == 0 {
                bail!(
                    "connection closed during the upgrade response: {:?}",
                    String::from_utf8_lossy(&buf[..buf.len().min(200)])
                );
            }
        };
        buf.advance(head_len);
        let mut response = UpgradeResponse {
            status,
            headers,
            body: Vec::new(),
            expected_accept: accept_key(&key),
        };
        if status == 101 {
            if !response.accept_matches() {
                return Ok((response, None));
            }
            let reader = FrameReader { buf, skipping: 0 };
            return Ok((response, Some(RawClient { stream, reader })));
        }
        if let Some(len) = response
            .header("content-length")
            .and_then(|len| len.trim().parse::<u64>().ok())
        {
            let len = usize::try_from(len).unwrap_or(usize::MAX).min(BODY_LIMIT);
            while buf.len() < len {
                let missing = len - buf.len();
                let mut limited = (&mut buf).limit(missing);
                match tokio::time::timeout_at(deadline, stream.read_buf(&mut limited)).await {
                    Ok(Ok(read)) if read > 0 => {}
                    _ => break, // EOF, an error or the deadline: keep what came
                }
            }
            response.body = buf[..len.min(buf.len())].to_vec();
        }
        Ok((response, None))
    }

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

    /// Reads frames until the server's Close frame, EOF, a reset, or `timeout`. Returns how it
    /// ended and every other frame read on the way (ticks, pings, echoes): for tests; a check
    /// against an unknown server uses [`RawClient::await_close`].
    pub async fn next_close(&mut self, timeout: Duration) -> (RawCloseOutcome, Vec<Frame>) {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let outcome = match tokio::time::timeout_at(deadline, self.read_frame()).await {
                Err(_) => RawCloseOutcome::TimedOut,
                Ok(Ok(Some(frame))) if frame.opcode == OP_CLOSE => RawCloseOutcome::Close(frame),
                Ok(Ok(Some(frame))) => {
                    skipped.push(frame);
                    continue;
                }
                Ok(Ok(None)) => RawCloseOutcome::Eof,
                Ok(Err(err)) if is_reset(&err) => RawCloseOutcome::Reset,
                Ok(Err(err)) => RawCloseOutcome::Garbage(format!("{err:#}")),
            };
            return (outcome, skipped);
        }
    }

    /// Waits until `deadline` for the server's Close frame, keeping nothing else it reads: how
    /// the wait ended, and how many data frames were skipped on the way.
    pub async fn await_close(&mut self, deadline: Instant) -> (RawCloseOutcome, u64) {
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
                (outcome, _) = &mut read => {
                    return StreamedOutcome { outcome, written: written.get(), complete: written.get() == len };
                }
                _ = &mut close_by => {
                    return StreamedOutcome {
                        outcome: RawCloseOutcome::TimedOut,
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
            (RawCloseOutcome::Close(frame), _) => {
                (frame.close_code(), frame.close_reason().to_vec())
            }
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
}

fn is_reset(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>().is_some_and(|err| {
        matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_for_every_length_form() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for frame in [
                Frame::binary(payload.clone()),
                Frame::binary(payload.clone())
                    .unmasked()
                    .fin(false)
                    .rsv(RSV2),
            ] {
                let bytes = frame.encode();
                let (decoded, used) = Frame::decode(&bytes).unwrap().unwrap();
                assert_eq!(used, bytes.len());
                assert_eq!(decoded, frame);
                assert_eq!(Frame::decode(&bytes[..bytes.len() - 1]).unwrap(), None);
            }
        }
    }

    #[test]
    fn accept_key_is_the_rfc_example_and_keys_are_fresh() {
        // RFC 6455 §1.3, worked example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(BASE64.decode(&a).unwrap().len(), 16);
    }

    #[test]
    fn header_decodes_a_length_it_would_never_buffer() {
        let mut bytes = vec![0x82, 127];
        bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let header = Header::decode(&bytes).unwrap();
        assert_eq!((header.len, header.size, header.mask), (1 << 62, 10, None));
        assert!(!header.is_control());
        assert_eq!(Header::decode(&bytes[..9]), None);
        assert!(Frame::decode(&bytes).is_err());
    }

    #[test]
    fn masked_close_matches_rfc_layout() {
        let frame = Frame {
            fin: true,
            rsv: 0,
            opcode: OP_CLOSE,
            mask: Some([1, 2, 3, 4]),
            payload: vec![0x03, 0xe8],
        };
        assert_eq!(
            frame.encode(),
            vec![0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]
        );
        assert_eq!(frame.close_code(), Some(1000));
    }
}
