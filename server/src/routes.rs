//! The HTTP surface: which path does what, and who may upgrade.
//!
//! Admission happens before the handshake, in this order:
//! 1. **Origin.** A browser `Origin` must be in `--allowed-origin`, or, with none configured,
//!    match the `Host` header (gorilla's default `CheckOrigin`). Otherwise HTTP 403. Clients
//!    that send no `Origin` (native clients, curl) are not browsers and are let through.
//!    This blocks cross-site WebSocket hijacking.
//! 2. **Capacity.** Each upgrade takes a slot from a semaphore of `--max-connections`
//!    permits; with none free, or while shutting down, HTTP 503. The slot travels with the
//!    connection and is freed when its socket is dropped.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::config::Config;
use crate::connection::{self, Endpoint, Session, Timing};
use crate::metrics::Metrics;

/// State shared by every request: configuration, metrics, connection slots and the
/// shutdown machinery.
#[derive(Clone)]
pub struct App {
    /// The configuration the server was started with.
    pub config: Arc<Config>,
    /// This server's metrics.
    pub metrics: Metrics,
    /// One permit per connection that may still open.
    pub slots: Arc<Semaphore>,
    /// Cancelled when shutdown begins; every connection watches it.
    pub shutdown: CancellationToken,
    /// Counts the upgraded connections still running, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

impl App {
    /// Fresh state for a server with `config`.
    pub fn new(config: Config) -> Self {
        App {
            slots: Arc::new(Semaphore::new(config.max_connections)),
            config: Arc::new(config),
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }
}

/// Query parameters the `/ws/*` endpoints accept.
#[derive(Debug, Deserialize)]
struct WsParams {
    /// Overrides the push interval for this connection, in milliseconds; 0 turns pushing off.
    push_ms: Option<u64>,
}

/// Every route of the server.
pub fn routes(app: App) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let healthz = warp::path!("healthz").map(|| "ok");
    let metrics = {
        let metrics = app.metrics.clone();
        warp::path!("metrics").map(move || {
            warp::reply::with_header(
                metrics.render(),
                "content-type",
                "text/plain; version=0.0.4",
            )
        })
    };
    let static_files = warp::fs::dir(app.config.static_dir.clone());

    let websockets = websocket_route("drain", Endpoint::Drain, &app)
        .or(websocket_route("no-drain", Endpoint::NoDrain, &app))
        .unify()
        .or(websocket_route("echo", Endpoint::Echo, &app))
        .unify();

    warp::get()
        .and(websockets.or(healthz.map(Reply::into_response)).unify())
        .or(warp::get().and(metrics).map(Reply::into_response))
        .unify()
        .or(warp::get().and(static_files).map(Reply::into_response))
        .unify()
        .recover(|rejection: Rejection| async move {
            let status = if rejection.is_not_found() {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            Ok::<_, Infallible>(warp::reply::with_status(format!("{rejection:?}\n"), status))
        })
        .with(warp::trace::request())
}

/// `GET /ws/<name>` upgraded to the given endpoint behaviour, after admission.
fn websocket_route(
    name: &'static str,
    endpoint: Endpoint,
    app: &App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let app = app.clone();
    warp::path("ws")
        .and(warp::path(name))
        .and(warp::path::end())
        .and(warp::ws())
        .and(warp::query::<WsParams>())
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .map(
            move |ws: warp::ws::Ws,
                  params: WsParams,
                  origin: Option<String>,
                  host: Option<String>| {
                upgrade(&app, endpoint, ws, params, origin, host)
            },
        )
}

/// Admits or refuses one upgrade request, and starts the connection when admitted.
fn upgrade(
    app: &App,
    endpoint: Endpoint,
    ws: warp::ws::Ws,
    params: WsParams,
    origin: Option<String>,
    host: Option<String>,
) -> warp::reply::Response {
    let config = &app.config;
    if !origin_allowed(origin.as_deref(), host.as_deref(), &config.allowed_origins) {
        tracing::info!(?origin, ?host, "refused upgrade: origin not allowed");
        app.metrics.upgrade_refused(endpoint.name(), 403);
        return refuse(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let slot = match app.slots.clone().try_acquire_owned() {
        Ok(slot) if !app.shutdown.is_cancelled() => slot,
        _ => {
            tracing::info!(max = config.max_connections, "refused upgrade: at capacity");
            app.metrics.upgrade_refused(endpoint.name(), 503);
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
        }
    };
    let push_interval = match (params.push_ms, endpoint) {
        (Some(0), _) => None,
        (Some(ms), _) => Some(Duration::from_millis(ms)),
        (None, Endpoint::Echo) => None,
        (None, Endpoint::Drain | Endpoint::NoDrain) => Some(config.push_interval),
    };
    let session = Session {
        endpoint,
        timing: Timing {
            push_interval,
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            write_timeout: config.write_timeout,
            close_timeout: config.close_timeout,
        },
        metrics: app.metrics.clone(),
        shutdown: app.shutdown.clone(),
    };
    // Counted from now, not from the end of the handshake, so shutdown cannot miss it.
    let running = app.tracker.token();
    ws.max_message_size(config.max_message_size)
        .max_frame_size(config.max_message_size)
        .on_upgrade(move |socket| async move {
            connection::serve(socket, session).await;
            drop((slot, running));
        })
        .into_response()
}

fn refuse(status: StatusCode, why: &'static str) -> warp::reply::Response {
    warp::reply::with_status(format!("{why}\n"), status).into_response()
}

/// Whether a request with this `Origin` (if any) and `Host` may open a WebSocket.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true; // not a browser
    };
    if !allowed.is_empty() {
        return allowed
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin));
    }
    let origin_authority = origin
        .split_once("://")
        .map_or(origin, |(_, authority)| authority)
        .trim_end_matches('/');
    host.is_some_and(|host| host.eq_ignore_ascii_case(origin_authority))
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn origin_rules() {
        let none: Vec<String> = Vec::new();
        let listed = vec!["https://app.example".to_owned()];
        assert!(
            origin_allowed(None, Some("h:1"), &none),
            "no Origin: not a browser"
        );
        assert!(origin_allowed(
            Some("http://127.0.0.1:3030"),
            Some("127.0.0.1:3030"),
            &none
        ));
        assert!(!origin_allowed(
            Some("http://evil.example"),
            Some("127.0.0.1:3030"),
            &none
        ));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:3031"),
            Some("127.0.0.1:3030"),
            &none
        ));
        assert!(origin_allowed(
            Some("https://app.example"),
            Some("127.0.0.1:3030"),
            &listed
        ));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:3030"),
            Some("127.0.0.1:3030"),
            &listed
        ));
    }
}
