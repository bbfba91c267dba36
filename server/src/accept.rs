//! From `accept` to a served HTTP/1.1 connection: the connection cap, and the timers that start
//! at accept.
//!
//! * **One cap, on TCP connections.** Every accepted connection takes a [`ConnectionSlot`]
//!   first, upgraded or not. The slot travels with the connection: into the WebSocket after an
//!   upgrade, into the lingering close after that, and into the trap that holds its socket 5 s
//!   longer. It is freed when the last of them lets go of the socket.
//! * **Past the cap, a refusal costs little.** The connection is answered `503 too many
//!   connections` without parsing the request (that is also what `/healthz` says then), and
//!   closed within twice [`REFUSAL_LINGER`]. At most [`REFUSING`] refusals run at once; past those, a
//!   connection is closed at accept. So the server holds at most `cap + REFUSING` sockets.
//! * **The cap fits the descriptor limit.** [`capacity`] lowers `--max-connections` to what the
//!   process may open, less [`FD_RESERVE`] and [`REFUSING`], so `accept` itself never runs out
//!   of descriptors.
//! * **HTTP/1.1 only, timed from accept.** hyper's header-read timer starts when the connection
//!   is first polled, right after accept, so a peer that sends nothing, half a head, or an
//!   HTTP/2 preface is dropped after `--header-timeout`. HTTP/2 (h2c) is not served: its
//!   preface is refused as a bad HTTP/1 request.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use warp::{Filter, Reply};

use crate::metrics::{Metrics, OpenTcpConnection};

/// Descriptors kept free beyond the connection cap: standard streams, the listener, tokio's
/// driver and signal pipes, and the file a static response reads from.
pub const FD_RESERVE: usize = 64;

/// At most this many refusals (see [`refuse_at_capacity`]) run at once; past that, a
/// connection over the cap is closed at accept with no answer. So the server holds at most
/// `cap + REFUSING` sockets, whatever its peers do.
pub const REFUSING: usize = 64;

/// How long a refusal waits for the request before its `503`, and for the peer to close after.
pub const REFUSAL_LINGER: Duration = Duration::from_millis(100);

/// Largest request head (request line and headers) a connection may send; a larger one is
/// refused by hyper with 431. A WebSocket upgrade from a browser is well under 2 KiB.
pub const MAX_HEAD_SIZE: usize = 16 * 1024;

/// What a connection past the cap is sent, before it is closed. Its request is not read.
const AT_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n\r\n\
too many connections\n";

/// One place under the connection cap. Clones share the place; it is freed when the last clone
/// is dropped, which is when the last holder of the TCP connection lets go. While it lives, the
/// connection counts in `wsclose_tcp_connections_open`.
#[derive(Clone)]
pub struct ConnectionSlot {
    _held: Arc<(OwnedSemaphorePermit, OpenTcpConnection)>,
}

/// The connection cap: `max_connections`, lowered to the open-file limit less [`FD_RESERVE`]
/// and [`REFUSING`].
pub fn capacity(max_connections: usize) -> usize {
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _hard)| soft);
    let fits = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_RESERVE + REFUSING)
        .max(1);
    if fits < max_connections {
        tracing::warn!(
            max_connections,
            open_file_limit = limit,
            cap = fits,
            "--max-connections lowered to fit the open-file limit"
        );
    }
    max_connections.min(fits)
}

/// A slot for a newly accepted connection, or `None` when the server is at its cap.
pub fn take_slot(slots: &Arc<Semaphore>, metrics: &Metrics) -> Option<ConnectionSlot> {
    let permit = slots.clone().try_acquire_owned().ok()?;
    Some(ConnectionSlot {
        _held: Arc::new((permit, metrics.tcp_connection_opened())),
    })
}

/// Answers a connection past the cap with `503 too many connections` and closes it, without
/// parsing anything:
///
/// 1. it waits at most [`REFUSAL_LINGER`] for the first bytes of the request and discards them
///    (an HTTP client may take an answer that comes before its request as a broken
///    connection: hyper's client does);
/// 2. it writes the answer, then FIN;
/// 3. it reads and discards whatever the peer still sends until the peer closes too, for at
///    most [`REFUSAL_LINGER`] again. (Closing with the request unread would send a reset, which
///    can destroy the answer before the peer reads it.)
pub async fn refuse_at_capacity(mut stream: TcpStream) {
    let mut discard = [0u8; 1024];
    let _ = tokio::time::timeout(REFUSAL_LINGER, stream.read(&mut discard)).await;
    let _ = stream.try_write(AT_CAPACITY);
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async { while matches!(stream.read(&mut discard).await, Ok(read) if read > 0) {} };
    let _ = tokio::time::timeout(REFUSAL_LINGER, drain).await;
}

/// Serves one accepted connection as HTTP/1.1 with `routes` until it ends, or until
/// `shutdown` (then it finishes the request in flight and closes). `slot` is handed to every
/// request, so an upgrade can keep it for the life of its socket.
pub async fn serve_connection<F>(
    stream: TcpStream,
    routes: F,
    slot: ConnectionSlot,
    header_timeout: Duration,
    shutdown: CancellationToken,
) where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let warp_service = TowerToHyperService::new(warp::service(routes));
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(slot.clone());
        hyper::service::Service::call(&warp_service, request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_SIZE)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // A header timeout, a reset, a malformed request: the peer's problem, not ours.
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
