//! # wsclose-server
//!
//! The demo server: a warp server with endpoints that close correctly, built on the `wsclose`
//! crate's [`wsclose::serve_websocket`], and endpoints that do not, on purpose. The lifecycle
//! itself is the `wsclose` crate; this crate is what a server adds around it.
//!
//! * `endpoints` (`src/endpoints.rs`): the demo's endpoints as users of the lifecycle (ticks, echo, metrics).
//! * `broken` (`src/broken.rs`): the bug and the two Rust traps, broken on purpose, each next to a pointer to
//!   the fix.
//! * `routes` (`src/routes.rs`): the HTTP surface, and admission (Origin, shutdown) before the handshake.
//! * `upgrade` (`src/upgrade.rs`): the hand-finished WebSocket upgrade (`wsclose::hyper`), with a small read
//!   buffer, a bounded write buffer, each message held to a deadline and the server's message budget
//!   (`wsclose::assembly`), and a lingering close (`wsclose::linger`: FIN, then drain), so a reset never
//!   destroys the server's last Close frame.
//! * `accept` (`src/accept.rs`): the connection cap on TCP connections, and HTTP/1.1 with a timer from accept.
//! * [`config`]: every timing value and limit, with defaults and how they relate.
//! * `metrics` (`src/metrics.rs`): the Prometheus metrics behind `GET /metrics`.
//! * `logs` (`src/logs.rs`): logging a peer cannot amplify (values cut short, refusals once a second).
//! * [`run`]: serve on a listener until a shutdown future resolves, then close every
//!   socket with 1001 and wait for them (mini-redis style).
//!
//! The binary (`src/main.rs`) only parses flags and passes in the shutdown signal.

#![deny(missing_docs)]

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

mod accept;
mod broken;
pub mod config;
mod endpoints;
mod logs;
mod metrics;
mod routes;
mod upgrade;

pub use config::{Config, ConfigError};
use routes::App;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsclose::SHUTDOWN_GRACE;

/// How long the accept loop pauses after a failed `accept` (typically: out of file
/// descriptors), so it does not spin while connections close and free some.
pub(crate) const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listener has no local address.
    #[error("the listener has no address: {0}")]
    Listener(#[source] std::io::Error),
}

/// What the server's one stdout line starts with; the address follows.
pub const LISTENING_ON: &str = "wsclose-server listening on http://";

/// Serves `config` on `listener` until `shutdown` resolves, then shuts down gracefully.
///
/// It checks `config` first ([`Config::validate`]), fills in an empty `config.instance` with
/// the listen address, and prints [`LISTENING_ON`] and the address, the one line on stdout,
/// once it serves.
///
/// Each accepted TCP connection takes a slot under the connection cap (past it, `503` and
/// closed at once) and is served as HTTP/1.1 by hyper, with a timer from accept: a connection
/// whose request head has not arrived within `header_timeout` is dropped, whatever it sent
/// (see `accept` (`src/accept.rs`)). Shutdown happens in this order:
///
/// 1. **The listener is closed** before anything else: new connects are refused, so a proxy
///    moves each new upgrade to another instance at once.
/// 2. `/healthz` answers `503 draining`, new upgrades on open HTTP connections get 503, and
///    every socket is sent Close with `shutdown_code` (1001 by default, or 1012).
/// 3. It waits at most `close_timeout` + [`SHUTDOWN_GRACE`] for the sockets
///    ([`wsclose::Lifecycle::shutdown`]), then at most [`SHUTDOWN_GRACE`] for plain HTTP
///    connections.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let addr = listener.local_addr().map_err(ServerError::Listener)?;
    let config = if config.instance.is_empty() {
        Config {
            instance: addr.to_string(),
            ..config
        }
    } else {
        config
    };
    println!("{LISTENING_ON}{addr}");
    serve_app(listener, App::new(config), shutdown).await
}

/// Serves `app`, built from a checked config, on `listener`: the accept loop and the shutdown
/// of [`run`].
async fn serve_app(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let static_index = app.config.static_dir.join("index.html");
    if !static_index.is_file() {
        tracing::warn!(
            path = %static_index.display(),
            "no demo page there; run `make build` (the WebSocket endpoints work regardless)"
        );
    }
    let routes = routes::routes(app.clone());
    // Plain HTTP connections, so shutdown can give them a moment to finish. They are told to
    // finish only once the sockets are done: until then `/healthz` answers `503 draining`.
    let connections = TaskTracker::new();
    let http_shutdown = CancellationToken::new();
    let refusing = std::sync::Arc::new(tokio::sync::Semaphore::new(accept::REFUSING));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors, most likely: wait for some to be freed.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = accept::take_slot(&app.slots, &app.metrics) else {
            app.metrics.connection_refused();
            if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    accept::refuse_at_capacity(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        connections.spawn(accept::serve_connection(
            stream,
            routes.clone(),
            slot,
            app.config.header_timeout,
            http_shutdown.clone(),
        ));
    }

    drop(listener);
    tracing::info!(
        code = %app.config.shutdown_code,
        "shutting down: listener closed, closing every socket"
    );
    let still_open = app.lifecycle.shutdown().await;
    if still_open > 0 {
        tracing::warn!(still_open, "close timeout over; dropping the rest");
    }
    http_shutdown.cancel();
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open; dropping them");
    }
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now, and returns a future that resolves on the
/// first of them. Install them before printing a "listening" line: a signal that arrives
/// before the handlers exist kills the process outright (status 143), with no Close sent.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
