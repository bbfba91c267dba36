//! The demo's WebSocket endpoints, each a user of the lifecycle ([`wsclose::serve_websocket`])
//! or of one of the functions in [`crate::broken`].
//!
//! * `/ws/drain` is a stream of ticks handed to [`serve_websocket`]; what the peer sends is
//!   counted and discarded.
//! * `/ws/echo` is a handler that returns each message as its reply.
//! * `/ws/no-drain`, `/ws/break-on-close` and `/ws/lingering-tcp` call the functions that are
//!   broken on purpose, with the same ticks and handler.
//!
//! This module adds only what the demo needs around the lifecycle: the ticks, and the metrics.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{Sink, Stream, StreamExt};
use tokio::time::{sleep_until, Instant, Sleep};
use tungstenite::Message;

use wsclose::linger::Linger;
use wsclose::{serve_websocket, Ending, Lifecycle};

use crate::broken;
use crate::metrics::Metrics;

/// Which behaviour a WebSocket endpoint has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/ws/drain`: pushes ticks, reads and discards everything. The fix.
    Drain,
    /// `/ws/echo`: reads everything and sends each data message back.
    Echo,
    /// `/ws/no-drain`: pushes ticks and never reads. The bug, on purpose.
    NoDrain,
    /// `/ws/break-on-close`: reads, but drops the socket on the peer's Close. Broken on purpose.
    BreakOnClose,
    /// `/ws/lingering-tcp`: answers Close, but the TCP connection stays open. Broken on purpose.
    LingeringTcp,
}

impl Endpoint {
    /// The name used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Drain => "drain",
            Endpoint::Echo => "echo",
            Endpoint::NoDrain => "no-drain",
            Endpoint::BreakOnClose => "break-on-close",
            Endpoint::LingeringTcp => "lingering-tcp",
        }
    }
}

/// Everything one demo connection needs besides its socket.
#[derive(Clone)]
pub struct Session {
    /// Which behaviour to run.
    pub endpoint: Endpoint,
    /// Timing, shutdown token and shutdown code.
    pub lifecycle: Lifecycle,
    /// Tick period, or `None` when this connection does not push.
    pub push_interval: Option<Duration>,
    /// The `seq` of the first tick: 0, or N+1 for `?after=N` (a client resuming elsewhere).
    pub first_seq: u64,
    /// The name ticks carry in their `instance` field.
    pub instance: Arc<str>,
    /// The server-wide push rate this connection's ticks share.
    pub pushes: PushRate,
    /// Where the connection and its ending are counted.
    pub metrics: Metrics,
}

/// Runs one demo connection to its end and records it in the metrics.
// Not an `async fn`: an `async fn` stores each argument twice in its future, and this one runs
// once per connection.
#[allow(clippy::manual_async_fn)]
pub fn serve<S, E>(mut socket: S, session: &Session) -> impl Future<Output = Ending> + '_
where
    S: Stream<Item = Result<Message, E>>
        + Sink<Message, Error = E>
        + Linger
        + Unpin
        + Send
        + 'static,
    E: StdError + 'static,
{
    async move {
        let name = session.endpoint.name();
        let metrics = &session.metrics;
        let lifecycle = &session.lifecycle;
        let _active = metrics.connection_opened(name);
        // Counted as they are handed to the socket.
        let ticks = || {
            Ticks::new(
                session.push_interval,
                session.first_seq,
                session.instance.clone(),
                &session.pushes,
            )
            .inspect(move |_| metrics.message_sent(name))
        };
        let echo = session.endpoint == Endpoint::Echo;
        let handler = || {
            move |message: Message| {
                metrics.message_received(name);
                echo.then(|| {
                    metrics.message_sent(name);
                    message
                })
            }
        };
        // The fix runs on a borrowed socket, so the socket is stored once, here, and not again
        // inside the lifecycle's future. The broken endpoints are boxed: their futures do not
        // enlarge this one, which every connection pays for.
        let ending = match session.endpoint {
            Endpoint::Drain | Endpoint::Echo => {
                // `linger::serve`, written out: its future would hold the ticks and the handler
                // twice, in every connection's task.
                let ending = serve_websocket(&mut socket, lifecycle, ticks(), handler()).await;
                // The TCP connection closes now, as the lifecycle promises: at once when
                // nothing is left to drain, with a lingering drain otherwise.
                wsclose::linger::finish(&mut socket, &ending);
                drop(socket);
                ending
            }
            Endpoint::NoDrain => {
                Box::pin(broken::push_without_reading(socket, lifecycle, ticks())).await
            }
            Endpoint::BreakOnClose => {
                Box::pin(broken::break_on_close(socket, lifecycle, handler())).await
            }
            Endpoint::LingeringTcp => {
                Box::pin(broken::lingering_tcp(socket, lifecycle, ticks(), handler())).await
            }
        };
        metrics.connection_closed(name, ending.initiator, ending.code, ending.reason.as_str());
        if let Some(handshake) = ending.close_handshake {
            metrics.close_handshake(name, ending.initiator, handshake.as_secs_f64());
        }
        tracing::debug!(endpoint = name, ?ending, "connection ended");
        ending
    }
}

/// The largest `seq` a tick carries: 2^53-1, the largest integer a JavaScript number holds
/// exactly. `?after=` must be below it, and the ticks end (Close 1000) after it.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// The server-wide push rate: the most ticks a second across all connections
/// (`--max-push-rate`), shared equally by the connections that push. Clones share the count.
#[derive(Clone)]
pub struct PushRate {
    pushing: Arc<AtomicUsize>,
    per_second: u32,
}

impl PushRate {
    /// At most `per_second` ticks a second in total.
    pub fn new(per_second: u32) -> Self {
        PushRate {
            pushing: Arc::default(),
            per_second: per_second.max(1),
        }
    }

    /// The shortest period one pushing connection gets now: the pushing connections over the
    /// rate (a lone connection is not held back below its own `push_ms`).
    fn fair_period(&self) -> Duration {
        let pushing = u32::try_from(self.pushing.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
        Duration::from_secs(1) * pushing / self.per_second
    }

    /// Counts one pushing connection until the returned guard drops.
    fn join(&self) -> Pusher {
        self.pushing.fetch_add(1, Ordering::Relaxed);
        Pusher(self.clone())
    }
}

/// One connection counted in a [`PushRate`]; dropping it uncounts it.
struct Pusher(PushRate);

impl Drop for Pusher {
    fn drop(&mut self) {
        self.0.pushing.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The ticks `/ws/drain` and `/ws/no-drain` push: `{"seq":N,"sent_at_ms":UNIX_MS,"instance":NAME}`
/// every period, numbered from `first_seq` up to [`MAX_SEQ`]. Without a period it never yields.
///
/// A late tick delays the next one; missed ticks are not sent in a burst. Each poll checks the
/// clock before the timer: while a peer floods frames, tokio's timer wheel lags (a timer alone
/// fired about 50 ms late, and ticks at 100 ms fell from 30 to 20 in 3 s). The period is never
/// shorter than the connection's share of the server's [`PushRate`].
pub struct Ticks {
    period: Option<(Duration, Pusher)>,
    due: Instant,
    timer: Pin<Box<Sleep>>,
    seq: u64,
    instance: Arc<str>,
}

impl Ticks {
    /// Ticks every `period` (none for `None`), the first one `period` from now, counted in
    /// `rate` while it lives.
    pub fn new(
        period: Option<Duration>,
        first_seq: u64,
        instance: Arc<str>,
        rate: &PushRate,
    ) -> Self {
        let due = Instant::now() + period.unwrap_or_default();
        Ticks {
            period: period.map(|period| (period, rate.join())),
            due,
            timer: Box::pin(sleep_until(due)),
            seq: first_seq,
            instance,
        }
    }
}

impl Stream for Ticks {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let Some((period, pusher)) = &self.period else {
            return Poll::Pending;
        };
        let period = (*period).max(pusher.0.fair_period());
        if self.seq > MAX_SEQ {
            return Poll::Ready(None);
        }
        let now = Instant::now();
        if now < self.due && self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let due = self.due;
        let next = if due + period > now {
            due + period
        } else {
            now + period
        };
        self.due = next;
        self.timer.as_mut().reset(next);
        let message = tick(self.seq, &self.instance);
        self.seq += 1;
        Poll::Ready(Some(message))
    }
}

/// One tick as JSON text.
fn tick(seq: u64, instance: &str) -> Message {
    let sent_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    Message::text(
        serde_json::json!({ "seq": seq, "sent_at_ms": sent_at_ms, "instance": instance })
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    //! The endpoints through real tungstenite over an in-memory pipe, under paused time.

    use super::*;
    use futures::SinkExt;
    use wsclose::test_util::{self, Socket};

    fn session(endpoint: Endpoint, push: Option<Duration>) -> Session {
        Session {
            endpoint,
            lifecycle: Lifecycle::new().with_timing(test_util::TIMING),
            push_interval: push,
            first_seq: 0,
            instance: "test".into(),
            pushes: PushRate::new(crate::config::DEFAULT_MAX_PUSH_RATE),
            metrics: Metrics::new(),
        }
    }

    /// Twenty connections asking for a tick every 10 ms under a rate of 10 a second: each gets
    /// its share, a tick every 2 s, and the total stays at the rate.
    #[tokio::test(start_paused = true)]
    async fn pushing_connections_share_the_push_rate() {
        let rate = PushRate::new(10);
        let mut all: Vec<Ticks> = (0..20)
            .map(|_| Ticks::new(Some(Duration::from_millis(10)), 0, "t".into(), &rate))
            .collect();
        let start = Instant::now();
        let one = &mut all[0];
        one.next().await.expect("first tick");
        one.next().await.expect("second tick");
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        // Alone again, a connection gets the whole rate: after the tick already due (at most
        // its old 2 s away), one every 100 ms.
        all.truncate(1);
        let alone = Instant::now();
        all[0].next().await.expect("a tick");
        let due = Instant::now();
        all[0].next().await.expect("a tick");
        assert!(due - alone <= Duration::from_secs(2));
        assert_eq!(due.elapsed(), Duration::from_millis(100));
    }

    /// `session` served on one end of a pipe; the other end, as a client.
    async fn served(session: Session) -> Socket {
        let (server, client) = test_util::lingering_pair(None).await;
        tokio::spawn(async move { serve(server, &session).await });
        client
    }

    async fn next(client: &mut Socket) -> Message {
        client.next().await.expect("open").expect("a message")
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_are_numbered_from_the_first_seq_without_gaps() {
        let session = Session {
            first_seq: 7,
            ..session(Endpoint::Drain, Some(Duration::from_millis(100)))
        };
        let mut client = served(session).await;
        let mut seqs = Vec::new();
        for _ in 0..5 {
            let json: serde_json::Value =
                serde_json::from_str(next(&mut client).await.to_text().unwrap()).unwrap();
            assert_eq!(json["instance"], "test");
            seqs.push(json["seq"].as_u64().unwrap());
        }
        assert_eq!(seqs, vec![7, 8, 9, 10, 11]);
    }

    #[tokio::test(start_paused = true)]
    async fn echo_sends_each_data_message_back_and_drain_does_not() {
        for (endpoint, echoed) in [(Endpoint::Echo, true), (Endpoint::Drain, false)] {
            let mut client = served(session(endpoint, None)).await;
            client.send(Message::text("hi")).await.unwrap();
            client.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
            // The Pong marks the end: whatever came back before it is all there is.
            client.send(Message::Ping(vec![9u8].into())).await.unwrap();
            let mut received = Vec::new();
            loop {
                match next(&mut client).await {
                    Message::Pong(_) => break,
                    message => received.push(message),
                }
            }
            let expected = if echoed {
                vec![Message::text("hi"), Message::binary(vec![0u8, 1, 2])]
            } else {
                vec![]
            };
            assert_eq!(received, expected, "{endpoint:?}");
        }
    }
}
