//! HTTP/1.1 for the tests, and the Prometheus text format of `/metrics`.
//!
//! [`http_get`] is a hyper client request with `Connection: close`; [`http_get_from`] sends it
//! from a given local address. [`read_response`] reads a
//! response off a connection a test drives by hand (keep-alive, raw upgrades); its head is
//! parsed by httparse (through `wsclose_check::raw::parse_head`). [`MetricsSnapshot`] parses
//! `/metrics` with `prometheus-parse`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

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

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// `GET path` on `addr` with `Connection: close`, through a hyper HTTP/1.1 client (which
/// also decodes a chunked body), within [`crate::IO_TIMEOUT`].
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<HttpResponse> {
    get(addr, path, TcpStream::connect(addr)).await
}

/// [`http_get`] from the local address `source` (port 0): for example from 127.0.0.2, which
/// Linux routes over the loopback like all of 127.0.0.0/8, to be another client address.
pub async fn http_get_from(
    source: IpAddr,
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<HttpResponse> {
    let connect = async {
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(addr).await
    };
    get(addr, path, connect).await
}

/// `GET path` over the connection `connect` makes to `addr`, within [`crate::IO_TIMEOUT`].
async fn get(
    addr: SocketAddr,
    path: &str,
    connect: impl std::future::Future<Output = std::io::Result<TcpStream>>,
) -> anyhow::Result<HttpResponse> {
    let exchange = async {
        let stream = connect.await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, addr.to_string())
            .header(hyper::header::CONNECTION, "close")
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await?
            .to_bytes();
        driver.abort();
        anyhow::Ok(HttpResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(crate::IO_TIMEOUT, exchange)
        .await
        .with_context(|| format!("GET {path} timed out"))?
        .with_context(|| format!("GET {path}"))
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
        MetricsSnapshot::try_scrape(addr)
            .await
            .unwrap_or_else(|| panic!("GET /metrics: 503 too many connections"))
    }

    /// Scrapes like [`scrape`](MetricsSnapshot::scrape), but `None` when the server, at its
    /// connection cap, answered `503`; panics on any other failure.
    async fn try_scrape(addr: SocketAddr) -> Option<MetricsSnapshot> {
        let response = http_get(addr, "/metrics").await.expect("GET /metrics");
        match response.status {
            200 => Some(MetricsSnapshot::parse(&response.body).expect("parse /metrics")),
            503 => None,
            _ => panic!("GET /metrics: {response:?}"),
        }
    }

    /// Scrapes every 50 ms until `done` holds for the page, up to `timeout`. Returns the first
    /// page that satisfied it, or, as the error, the last page scraped.
    ///
    /// A server at its connection cap answers `503 too many connections`, also to `/metrics`:
    /// while waiting, that is one more sign the condition does not hold yet, so the scrape is
    /// tried again. Panics if every scrape until `timeout` was refused.
    pub async fn wait_until(
        addr: SocketAddr,
        timeout: std::time::Duration,
        done: impl Fn(&MetricsSnapshot) -> bool,
    ) -> Result<MetricsSnapshot, MetricsSnapshot> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(page) = MetricsSnapshot::try_scrape(addr).await {
                if done(&page) {
                    return Ok(page);
                }
                last = Some(page);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(last.unwrap_or_else(|| {
                    panic!("GET /metrics: 503 too many connections until the deadline")
                }));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Parses the Prometheus text exposition format with `prometheus-parse`. A histogram
    /// comes back as its series, as on the page: `NAME_bucket{…,le="…"}`, `NAME_count` and
    /// `NAME_sum`.
    ///
    /// `prometheus-parse` splits labels at every `,` and `=`, so a label value holding either
    /// would be cut; the server's label values (endpoints, codes, reasons) hold neither.
    pub fn parse(text: &str) -> anyhow::Result<MetricsSnapshot> {
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).context("parse /metrics")?;
        let mut samples = Vec::new();
        for sample in scrape.samples {
            let labels: BTreeMap<String, String> = sample
                .labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            let series = |suffix: &str, bound: (&str, f64), value: f64| {
                let mut labels = labels.clone();
                let (key, bound) = bound;
                let bound = if bound == f64::INFINITY {
                    "+Inf".to_owned()
                } else {
                    bound.to_string()
                };
                labels.insert(key.to_owned(), bound);
                Sample {
                    name: format!("{}{suffix}", sample.metric),
                    labels,
                    value,
                }
            };
            match sample.value {
                prometheus_parse::Value::Counter(value)
                | prometheus_parse::Value::Gauge(value)
                | prometheus_parse::Value::Untyped(value) => samples.push(Sample {
                    name: sample.metric.clone(),
                    labels,
                    value,
                }),
                prometheus_parse::Value::Histogram(buckets) => samples.extend(
                    buckets
                        .iter()
                        .map(|bucket| series("_bucket", ("le", bucket.less_than), bucket.count)),
                ),
                prometheus_parse::Value::Summary(quantiles) => samples.extend(
                    quantiles
                        .iter()
                        .map(|q| series("", ("quantile", q.quantile), q.count)),
                ),
            }
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

    /// Asserts that [`sum`](Self::sum)`(name, labels)` is `expected`; a failure shows the page.
    #[track_caller]
    pub fn assert_sum(&self, name: &str, labels: &[(&str, &str)], expected: f64) {
        let sum = self.sum(name, labels);
        assert_eq!(sum, expected, "{name} {labels:?}:\n{}", self.text);
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
            # TYPE wsclose_close_handshake_seconds histogram\n\
            wsclose_close_handshake_seconds_bucket{endpoint=\"drain\",le=\"0.005\"} 2\n\
            wsclose_close_handshake_seconds_bucket{endpoint=\"drain\",le=\"+Inf\"} 3\n\
            wsclose_close_handshake_seconds_sum{endpoint=\"drain\"} 0.004\n\
            wsclose_close_handshake_seconds_count{endpoint=\"drain\"} 3\n\
            untyped_gauge 1.5\n";
        let metrics = MetricsSnapshot::parse(text).unwrap();
        for (name, labels, expected) in [
            ("wsclose_closes_total", &[][..], 4.0),
            ("wsclose_closes_total", &[("reason", "peer_close")], 3.0),
            ("wsclose_closes_total", &[("code", "1001")], 0.0),
            ("wsclose_close_handshake_seconds_count", &[], 3.0),
            (
                "wsclose_close_handshake_seconds_bucket",
                &[("le", "0.005")],
                2.0,
            ),
            (
                "wsclose_close_handshake_seconds_bucket",
                &[("le", "+Inf")],
                3.0,
            ),
            ("untyped_gauge", &[], 1.5),
        ] {
            metrics.assert_sum(name, labels, expected);
        }
        assert!(metrics.has("wsclose_closes_total"));
    }
}
