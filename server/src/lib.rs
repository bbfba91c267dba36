//! # wsclose-server
//!
//! A warp WebSocket server that closes connections correctly, next to one endpoint that does
//! not, on purpose. Browsers fire `close` about 1 ms after `ws.close()` on `/ws/drain`, and
//! only after their closing-handshake timeout (60 s in Chromium) on `/ws/no-drain`.
//!
//! # Layout
//!
//! * [`connection`]: the connection lifecycle, top to bottom. Start reading here.
//! * [`routes`]: the HTTP surface, and admission (Origin, capacity) before the handshake.
//! * [`config`]: every timing value and limit, with defaults and how they relate.
//! * [`metrics`]: the Prometheus metrics behind `GET /metrics`.
//! * [`run`]: serve on a listener until a shutdown future resolves, then close every
//!   socket with 1001 and wait for them (mini-redis style).
//!
//! The binary (`src/main.rs`) only parses flags and passes in the shutdown signal.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

pub mod config;
pub mod connection;
pub mod metrics;
pub mod routes;

pub use config::{Config, ConfigError};
pub use routes::App;

/// Extra time shutdown grants beyond `close_timeout`, for the last writes and the exit itself.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(250);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Serves `config` on `listener` until `shutdown` resolves, then shuts down gracefully:
/// stop accepting, send Close 1001 to every open socket, wait at most `close_timeout`
/// (plus [`SHUTDOWN_GRACE`]) for the sockets to finish, and return.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    serve_app(listener, App::new(config), shutdown).await;
    Ok(())
}

/// Like [`run`], with state the caller can also hold (to read metrics, for example).
pub async fn serve_app(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let static_index = app.config.static_dir.join("index.html");
    if !static_index.is_file() {
        tracing::warn!(
            path = %static_index.display(),
            "no demo page there; run `make build` (the WebSocket endpoints work regardless)"
        );
    }
    let stop_accepting = app.shutdown.clone();
    let server = warp::serve(routes::routes(app.clone()))
        .incoming(listener)
        .graceful(async move { stop_accepting.cancelled().await })
        .run();
    let server = tokio::spawn(server);

    shutdown.await;
    tracing::info!("shutting down: closing every socket with 1001");
    app.shutdown.cancel();
    app.tracker.close();
    let budget = app.config.close_timeout + SHUTDOWN_GRACE;
    if tokio::time::timeout(budget, app.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            still_open = app.tracker.len(),
            "close timeout over; dropping the rest"
        );
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
        tracing::warn!("HTTP connections still open; dropping them");
    }
}
