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
//!
//! `warp::ws()` still validates the upgrade request (and rejects bad ones exactly as before),
//! but the upgrade is finished here rather than by `Ws::on_upgrade`, because warp offers no way
//! to set tungstenite's read buffer. Its default is 128 KiB, and tungstenite zero-fills the
//! whole buffer before every read, so each idle connection kept 136 KiB resident (and paid a
//! 128 KiB memset per read). With [`READ_BUFFER_SIZE`] it is about 6 KiB (`make bench`, 10,000
//! connections).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tungstenite::protocol::{Role, WebSocketConfig};
use warp::http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, UPGRADE};
use warp::http::StatusCode;
use warp::hyper::upgrade::OnUpgrade;
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
    /// The name ticks carry: `config.instance`, or `pid-<pid>` when that is empty.
    pub instance: Arc<str>,
}

impl App {
    /// Fresh state for a server with `config`.
    pub fn new(config: Config) -> Self {
        let instance = if config.instance.is_empty() {
            format!("pid-{}", std::process::id())
        } else {
            config.instance.clone()
        };
        App {
            instance: instance.into(),
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
    /// The last `seq` the client saw (on another instance, before a restart): ticks start at
    /// `after + 1`, so a resuming client sees one contiguous sequence.
    after: Option<u64>,
}

/// Every route of the server.
pub fn routes(app: App) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let healthz = {
        let shutdown = app.shutdown.clone();
        warp::path!("healthz").map(move || {
            if shutdown.is_cancelled() {
                // Shutting down: a load balancer's health check takes this instance out.
                warp::reply::with_status("draining", StatusCode::SERVICE_UNAVAILABLE)
            } else {
                warp::reply::with_status("ok", StatusCode::OK)
            }
        })
    };
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
        // Taken before `warp::ws()` removes it from the request: we finish the upgrade.
        .and(warp::ext::optional::<OnUpgrade>())
        // Validates method and headers, and rejects exactly as warp always does.
        .and(warp::ws())
        .and(warp::header::value("sec-websocket-key"))
        .and(warp::query::<WsParams>())
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .map(
            move |on_upgrade: Option<OnUpgrade>,
                  _validated: warp::ws::Ws,
                  key: HeaderValue,
                  params: WsParams,
                  origin: Option<String>,
                  host: Option<String>| {
                let request = UpgradeRequest {
                    on_upgrade,
                    key,
                    params,
                    origin,
                    host,
                };
                upgrade(&app, endpoint, request)
            },
        )
}

/// What an admitted upgrade request carries into [`upgrade`].
struct UpgradeRequest {
    /// Resolves to the raw connection once the 101 response is sent; `None` when hyper
    /// cannot upgrade this request (then the 101 is sent and nothing more happens, as in warp).
    on_upgrade: Option<OnUpgrade>,
    /// `Sec-WebSocket-Key`, answered with `Sec-WebSocket-Accept`.
    key: HeaderValue,
    params: WsParams,
    origin: Option<String>,
    host: Option<String>,
}

/// Tungstenite's read buffer per connection, zero-filled before every read. Clients send this
/// server small frames (Close, Pong, short messages); a larger one is read in several steps.
/// Tungstenite's default is 128 KiB; 4 KiB measured 7.8 KiB of RSS per connection, 2 KiB 5.9.
pub const READ_BUFFER_SIZE: usize = 2 * 1024;

/// Admits or refuses one upgrade request, and starts the connection when admitted.
fn upgrade(app: &App, endpoint: Endpoint, request: UpgradeRequest) -> warp::reply::Response {
    let UpgradeRequest {
        on_upgrade,
        key,
        params,
        origin,
        host,
    } = request;
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
    let Some(first_seq) = params.after.map_or(Some(0), |after| after.checked_add(1)) else {
        return refuse(StatusCode::BAD_REQUEST, "after must be below 2^64-1");
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
        shutdown_code: config.shutdown_code,
        first_seq,
        instance: app.instance.clone(),
    };
    // Counted from now, not from the end of the handshake, so shutdown cannot miss it.
    let running = app.tracker.token();
    let socket_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    match on_upgrade {
        Some(on_upgrade) => {
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let socket = WebSocketStream::from_raw_socket(
                            TokioIo::new(upgraded),
                            Role::Server,
                            Some(socket_config),
                        )
                        .await;
                        connection::serve(socket, session).await;
                    }
                    Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
                }
                drop((slot, running));
            });
        }
        None => tracing::debug!("websocket couldn't be upgraded: no upgrade state"),
    }
    switching_protocols(&key)
}

/// The `101 Switching Protocols` answer to a WebSocket upgrade request, as `warp::ws` sends it.
fn switching_protocols(key: &HeaderValue) -> warp::reply::Response {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = warp::reply::Response::default();
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    response
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
    use super::{origin_allowed, switching_protocols};
    use warp::http::header::HeaderValue;

    #[test]
    fn switching_protocols_answers_the_key() {
        // The example from RFC 6455, section 1.3.
        let response = switching_protocols(&HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(response.status(), 101);
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(
            header("sec-websocket-accept"),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(header("connection"), "upgrade");
        assert_eq!(header("upgrade"), "websocket");
    }

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
