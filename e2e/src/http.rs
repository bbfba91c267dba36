//! Plain HTTP/1.1 over a `TcpStream`, and the Prometheus text format of `/metrics`.
//!
//! The tests need only `GET` with `Connection: close`; the response head is parsed by
//! httparse (through `wsclose_check::raw::parse_head`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use wsclose_check::raw::{parse_head, Head};

/// Reads one response from `stream` (an open connection, keep-alive or not): the head, then
/// a `Content-Length` body, or everything up to EOF without one. Within [`crate::IO_TIMEOUT`].
pub async fn read_response(stream: &mut TcpStream) -> anyhow::Result<HttpResponse> {
    let read = async {
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            buf.extend_from_slice(&chunk[..n]);
            if let Some((status, headers, head_len)) = parse_head(&buf)? {
                let length = headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, value)| value.parse::<usize>().ok());
                let complete = length.map_or(n == 0, |length| buf.len() >= head_len + length);
                if complete {
                    let end = length.map_or(buf.len(), |length| head_len + length);
                    return Ok(HttpResponse {
                        status,
                        headers,
                        body: String::from_utf8_lossy(&buf[head_len..end]).into_owned(),
                    });
                }
            }
            if n == 0 {
                bail!("connection closed before a complete response: {buf:?}");
            }
        }
    };
    tokio::time::timeout(crate::IO_TIMEOUT, read)
        .await
        .context("no response in time")?
}

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked, as text (lossy).
    pub body: String,
}

/// `GET path` on `addr` with `Connection: close`, read to EOF within [`crate::IO_TIMEOUT`].
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<HttpResponse> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(crate::IO_TIMEOUT, exchange)
        .await
        .with_context(|| format!("GET {path} timed out"))??;
    let (status, headers, head_len) =
        parse_head(&raw)?.with_context(|| format!("incomplete response to GET {path}"))?;
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(&raw[head_len..])?
    } else {
        raw[head_len..].to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Decodes an HTTP/1.1 `Transfer-Encoding: chunked` body.
pub fn dechunk(mut raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|window| window == b"\r\n")
            .context("chunk size line")?;
        let size_text = std::str::from_utf8(&raw[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("chunk size {size_text:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(raw.get(..size).context("truncated chunk")?);
        raw = raw.get(size + 2..).context("truncated chunk end")?;
    }
}

/// One sample line of the exposition: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, with `_bucket`, `_count` or `_sum` for histogram series.
    pub name: String,
    /// The labels.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    /// Every sample on the page.
    pub samples: Vec<Sample>,
    /// The page as served, for failure messages.
    pub text: String,
}

impl MetricsSnapshot {
    /// Scrapes `GET /metrics` on `addr` and parses it; panics if that fails.
    pub async fn scrape(addr: SocketAddr) -> MetricsSnapshot {
        let response = http_get(addr, "/metrics").await.expect("GET /metrics");
        assert_eq!(response.status, 200, "GET /metrics: {response:?}");
        MetricsSnapshot::parse(&response.body).expect("parse /metrics")
    }

    /// Scrapes every 50 ms until `done` holds for the page, up to `timeout`. Returns the first
    /// page that satisfied it, or, as the error, the last page scraped.
    pub async fn wait_until(
        addr: SocketAddr,
        timeout: std::time::Duration,
        done: impl Fn(&MetricsSnapshot) -> bool,
    ) -> Result<MetricsSnapshot, MetricsSnapshot> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let page = MetricsSnapshot::scrape(addr).await;
            if done(&page) {
                return Ok(page);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(page);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Parses the Prometheus text exposition format (the subset `prometheus` emits).
    pub fn parse(text: &str) -> anyhow::Result<MetricsSnapshot> {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .with_context(|| format!("metrics line {line:?}"))?;
            let value: f64 = value
                .parse()
                .with_context(|| format!("metrics value in {line:?}"))?;
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => (
                    name.to_owned(),
                    parse_labels(rest.strip_suffix('}').context("closing brace")?)?,
                ),
            };
            samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        // The server always exposes wsclose_build_info, so no sample at all means the scrape
        // failed (an empty or cut-off body), not that nothing happened.
        if samples.is_empty() {
            bail!("no metric samples in {text:?}");
        }
        Ok(MetricsSnapshot {
            samples,
            text: text.to_owned(),
        })
    }

    /// The sum of every `name` sample whose labels include all of `labels` (0 when none match,
    /// as Prometheus treats a labelled series that was never touched).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|sample| sample.value)
            .sum()
    }

    /// Whether the page has any sample called `name`, or a `# TYPE` line for it.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|sample| sample.name == name)
            || self
                .text
                .lines()
                .any(|line| line.starts_with(&format!("# TYPE {name} ")))
    }
}

fn parse_labels(mut text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if text.is_empty() {
            return Ok(labels);
        }
        let (key, rest) = text.split_once("=\"").context("label without =\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().context("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().context("dangling escape")?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        text = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_is_an_error() {
        assert!(MetricsSnapshot::parse("").is_err());
        assert!(MetricsSnapshot::parse("# HELP x y\n# TYPE x counter\n").is_err());
    }

    #[test]
    fn parses_labels_counters_and_histograms() {
        let text = "# HELP wsclose_closes_total x\n# TYPE wsclose_closes_total counter\n\
            wsclose_closes_total{code=\"1000\",endpoint=\"drain\",initiator=\"client\",reason=\"peer_close\"} 3\n\
            wsclose_closes_total{code=\"1002\",endpoint=\"echo\",initiator=\"server\",reason=\"protocol_error\"} 1\n\
            wsclose_close_handshake_seconds_bucket{endpoint=\"drain\",le=\"+Inf\"} 3\n\
            wsclose_close_handshake_seconds_count{endpoint=\"drain\"} 3\n\
            weird{a=\"q\\\"uote, x\"} 1.5\n";
        let metrics = MetricsSnapshot::parse(text).unwrap();
        assert_eq!(metrics.sum("wsclose_closes_total", &[]), 4.0);
        assert_eq!(
            metrics.sum("wsclose_closes_total", &[("reason", "peer_close")]),
            3.0
        );
        assert_eq!(
            metrics.sum("wsclose_closes_total", &[("code", "1001")]),
            0.0
        );
        assert_eq!(
            metrics.sum("wsclose_close_handshake_seconds_count", &[]),
            3.0
        );
        assert_eq!(metrics.sum("weird", &[("a", "q\"uote, x")]), 1.5);
        assert!(metrics.has("wsclose_closes_total"));
    }

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
    }
}
