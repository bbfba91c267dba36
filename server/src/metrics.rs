//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Every way a connection can end is a `(initiator, code, reason)` triple on
//! `wsclose_closes_total`, so each fault in the README's failure table is visible here.
//!
//! The peer chooses its close code, so the `code` label is bucketed ([`code_label`]): a peer
//! cannot create more than a fixed number of series. The active-connections gauge is held by a
//! guard ([`ActiveConnection`]), so it is right however a connection's task ends.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use wsclose::{CloseCode, Initiator};

/// The metrics of one server instance. Each instance has its own registry, so tests that run
/// several servers in one process do not share counters.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    connections_active: IntGaugeVec,
    connections_total: IntCounterVec,
    closes_total: IntCounterVec,
    close_handshake_seconds: HistogramVec,
    messages_received_total: IntCounterVec,
    messages_sent_total: IntCounterVec,
    upgrades_refused_total: IntCounterVec,
    tcp_refused_total: prometheus::IntCounter,
    tcp_connections_open: prometheus::IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let connections_active = IntGaugeVec::new(
            Opts::new(
                "wsclose_connections_active",
                "WebSocket connections open now",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let connections_total = IntCounterVec::new(
            Opts::new(
                "wsclose_connections_total",
                "WebSocket connections accepted",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let closes_total = IntCounterVec::new(
            Opts::new(
                "wsclose_closes_total",
                "Connections ended, by who started it, the close code (\"none\" when no Close frame was exchanged) and why",
            ),
            &["endpoint", "initiator", "code", "reason"],
        )
        .expect("valid metric");
        let close_handshake_seconds = HistogramVec::new(
            HistogramOpts::new(
                "wsclose_close_handshake_seconds",
                "From the first Close frame (either side) until the socket was dropped",
            )
            .buckets(vec![
                0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
                30.0, 60.0,
            ]),
            &["endpoint", "initiator"],
        )
        .expect("valid metric");
        let messages_received_total = IntCounterVec::new(
            Opts::new(
                "wsclose_messages_received_total",
                "Data messages read from peers",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let messages_sent_total = IntCounterVec::new(
            Opts::new(
                "wsclose_messages_sent_total",
                "Data messages written to peers (ticks and echoes)",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let upgrades_refused_total = IntCounterVec::new(
            Opts::new(
                "wsclose_upgrades_refused_total",
                "WebSocket upgrades refused before the handshake, by HTTP status",
            ),
            &["endpoint", "status"],
        )
        .expect("valid metric");
        let tcp_refused_total = prometheus::IntCounter::new(
            "wsclose_tcp_refused_total",
            "TCP connections answered 503 and closed at accept: the connection cap was reached",
        )
        .expect("valid metric");
        let tcp_connections_open = prometheus::IntGauge::new(
            "wsclose_tcp_connections_open",
            "TCP connections holding a place under the connection cap now: plain HTTP, upgraded, \
             lingering and trapped ones alike (the scrape that reads this counts itself)",
        )
        .expect("valid metric");
        // Always one sample, so a scrape of a fresh server is never an empty page (and a client
        // can tell an empty body, which is an error, from "nothing happened yet").
        let build_info = prometheus::IntGaugeVec::new(
            Opts::new(
                "wsclose_build_info",
                "Always 1; the server's version as a label",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry
            .register(Box::new(build_info))
            .expect("unique metric names");
        for collector in [
            Box::new(connections_active.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connections_total.clone()),
            Box::new(closes_total.clone()),
            Box::new(close_handshake_seconds.clone()),
            Box::new(messages_received_total.clone()),
            Box::new(messages_sent_total.clone()),
            Box::new(upgrades_refused_total.clone()),
            Box::new(tcp_refused_total.clone()),
            Box::new(tcp_connections_open.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Metrics {
            registry,
            connections_active,
            connections_total,
            closes_total,
            close_handshake_seconds,
            messages_received_total,
            messages_sent_total,
            upgrades_refused_total,
            tcp_refused_total,
            tcp_connections_open,
        }
    }

    /// A TCP connection took a place under the connection cap. It counts in
    /// `wsclose_tcp_connections_open` until the returned guard is dropped.
    pub fn tcp_connection_opened(&self) -> OpenTcpConnection {
        self.tcp_connections_open.inc();
        OpenTcpConnection {
            gauge: self.tcp_connections_open.clone(),
        }
    }

    /// A connection on `endpoint` finished its handshake. It counts as active until the
    /// returned guard is dropped, whether the connection ends normally, panics or is aborted.
    pub fn connection_opened(&self, endpoint: &str) -> ActiveConnection {
        self.connections_total.with_label_values(&[endpoint]).inc();
        let gauge = self.connections_active.with_label_values(&[endpoint]);
        gauge.inc();
        ActiveConnection { gauge }
    }

    /// A connection on `endpoint` ended; `code` is `None` when no Close frame was exchanged.
    pub fn connection_closed(
        &self,
        endpoint: &str,
        initiator: Initiator,
        code: Option<CloseCode>,
        reason: &str,
    ) {
        self.closes_total
            .with_label_values(&[
                endpoint,
                initiator.as_str(),
                &code_label(code.map(u16::from)),
                reason,
            ])
            .inc();
    }

    /// A close handshake took `seconds`, from the first Close frame until the socket was dropped.
    pub fn close_handshake(&self, endpoint: &str, initiator: Initiator, seconds: f64) {
        self.close_handshake_seconds
            .with_label_values(&[endpoint, initiator.as_str()])
            .observe(seconds);
    }

    /// A data message was read from a peer.
    pub fn message_received(&self, endpoint: &str) {
        self.messages_received_total
            .with_label_values(&[endpoint])
            .inc();
    }

    /// A data message was written to a peer.
    pub fn message_sent(&self, endpoint: &str) {
        self.messages_sent_total
            .with_label_values(&[endpoint])
            .inc();
    }

    /// A TCP connection was refused at accept: the connection cap was reached.
    pub fn connection_refused(&self) {
        self.tcp_refused_total.inc();
    }

    /// An upgrade was refused with HTTP `status` (403 for Origin, 503 while shutting down).
    pub fn upgrade_refused(&self, endpoint: &str, status: u16) {
        self.upgrades_refused_total
            .with_label_values(&[endpoint, &status.to_string()])
            .inc();
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("prometheus text is UTF-8")
    }
}

/// One connection counted in `wsclose_connections_active`; dropping it uncounts it.
#[must_use = "the connection counts as active only while the guard lives"]
pub struct ActiveConnection {
    gauge: prometheus::IntGauge,
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// One TCP connection counted in `wsclose_tcp_connections_open`; dropping it uncounts it.
#[must_use = "the connection counts as open only while the guard lives"]
pub struct OpenTcpConnection {
    gauge: prometheus::IntGauge,
}

impl Drop for OpenTcpConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The `code` label of `wsclose_closes_total`: `none` without a Close frame; the code itself
/// for the codes RFC 6455 and the IANA registry define (1000–1015); `3xxx` (registered
/// libraries and frameworks) and `4xxx` (private use) as a whole; `other` for anything else.
/// So at most 20 values, whatever peers send.
pub fn code_label(code: Option<u16>) -> std::borrow::Cow<'static, str> {
    match code {
        None => "none".into(),
        Some(code @ 1000..=1015) => code.to_string().into(),
        Some(3000..=3999) => "3xxx".into(),
        Some(4000..=4999) => "4xxx".into(),
        Some(_) => "other".into(),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_are_bucketed() {
        let labels: std::collections::BTreeSet<_> = (0..=u16::MAX)
            .map(|code| code_label(Some(code)).into_owned())
            .chain([code_label(None).into_owned()])
            .collect();
        assert_eq!(labels.len(), 16 + 3 + 1, "{labels:?}");
        assert_eq!(code_label(Some(1001)), "1001");
        assert_eq!(code_label(Some(1012)), "1012");
        assert_eq!(code_label(Some(4321)), "4xxx");
        assert_eq!(code_label(Some(3003)), "3xxx");
        assert_eq!(code_label(Some(2999)), "other");
    }

    #[test]
    fn the_active_gauge_follows_the_guard() {
        let metrics = Metrics::new();
        let active = || metrics.connections_active.with_label_values(&["e"]).get();
        let first = metrics.connection_opened("e");
        let second = metrics.connection_opened("e");
        assert_eq!(active(), 2);
        drop(first);
        assert_eq!(active(), 1);
        // A task that is aborted drops its guard too.
        let abandoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = second;
            panic!("connection task died");
        }));
        assert!(abandoned.is_err());
        assert_eq!(active(), 0);
    }
}
