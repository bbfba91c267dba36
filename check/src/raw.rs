//! A hand-written WebSocket client, for the frames a well-behaved library refuses to send.
//!
//! [`Frame`] is one RFC 6455 frame with every header bit under the test's control, and
//! [`Frame::encode`] writes it exactly as given: masked or not, RSV bits, reserved opcodes,
//! fragmented or oversized control frames. [`RawClient`] does the HTTP upgrade by hand (so a test
//! can send any `Origin` or `Host`), writes frames, and decodes the server's frames, which is how
//! the tests read the exact Close code the server chose.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
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

/// The `Sec-WebSocket-Key` every raw upgrade sends (the sample nonce from RFC 6455).
pub const WEBSOCKET_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The `Sec-WebSocket-Accept` a correct server answers [`WEBSOCKET_KEY`] with: the worked
/// example of RFC 6455 §1.3, written out rather than computed, so the check does not trust the
/// same code the server uses (tungstenite's `derive_accept_key`).
pub const EXPECTED_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

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
    /// the frame (payload unmasked) and how many bytes it took.
    pub fn decode(buf: &[u8]) -> anyhow::Result<Option<(Frame, usize)>> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let fin = buf[0] & 0x80 != 0;
        let rsv = (buf[0] >> 4) & 0b111;
        let opcode = buf[0] & 0x0f;
        let masked = buf[1] & 0x80 != 0;
        let (len, mut at) = match buf[1] & 0x7f {
            126 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(None);
                };
                (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                (u64::from_be_bytes(bytes.try_into().expect("8 bytes")), 10)
            }
            len => (u64::from(len), 2),
        };
        let len = usize::try_from(len).context("frame length overflows usize")?;
        if len > 64 * 1024 * 1024 {
            bail!("server sent a {len}-byte frame; refusing to buffer it");
        }
        let mask = if masked {
            let Some(key) = buf.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            Some(<[u8; 4]>::try_from(key).expect("4 bytes"))
        } else {
            None
        };
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
    /// The response body, if the server sent one with `Content-Length` (never for 101).
    pub body: Vec<u8>,
}

impl UpgradeResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
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
    buf: BytesMut,
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
    /// receive buffer, for example). `host` is the default `Host` header.
    pub async fn upgrade_stream(
        mut stream: S,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(UpgradeResponse, Option<RawClient<S>>)> {
        let mut request = format!("GET {path} HTTP/1.1\r\n");
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request.push_str(&format!("Host: {host}\r\n"));
        }
        request.push_str(&format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WEBSOCKET_KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n"
        ));
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;

        let mut buf = BytesMut::with_capacity(4096);
        let deadline = Instant::now() + READ_TIMEOUT;
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
                    String::from_utf8_lossy(&buf)
                );
            }
        };
        buf.advance(head_len);
        let mut response = UpgradeResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 101 {
            if response.header("sec-websocket-accept") != Some(EXPECTED_ACCEPT) {
                bail!("101 with a wrong Sec-WebSocket-Accept: {response:?}");
            }
            return Ok((response, Some(RawClient { stream, buf })));
        }
        if let Some(len) = response
            .header("content-length")
            .and_then(|len| len.trim().parse::<usize>().ok())
        {
            while buf.len() < len {
                let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf))
                    .await
                    .context("timed out reading the response body")??;
                if read == 0 {
                    break;
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
    /// malformed frame. No timeout: wrap it or use [`RawClient::next_close`].
    pub async fn read_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            if let Some((frame, used)) = Frame::decode(&self.buf)? {
                self.buf.advance(used);
                return Ok(Some(frame));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!("EOF inside a frame ({} bytes buffered)", self.buf.len());
            }
        }
    }

    /// Reads frames until the server's Close frame, EOF, a reset, or `timeout`. Returns how it
    /// ended and every other frame read on the way (ticks, pings, echoes).
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
        self.buf.clear();
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
