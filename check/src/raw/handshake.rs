//! The HTTP upgrade, written by hand so a test can send any `Origin` or `Host`: the request
//! with a fresh `Sec-WebSocket-Key`, the response head parsed with httparse, and the
//! `Sec-WebSocket-Accept` it must carry, computed here.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Buf, BufMut, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::reader::FrameReader;
use super::{Io, RawClient, READ_TIMEOUT};

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
