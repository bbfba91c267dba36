//! The HTTP surface: which path does what, and who may upgrade.
//!
//! Admission happens before the handshake, in this order:
//! 1. **Origin.** A browser `Origin` must be in `--allowed-origin`, or, with none configured,
//!    match the `Host` header (gorilla's default `CheckOrigin`). Otherwise HTTP 403. Clients
//!    that send no `Origin` (native clients, curl) are not browsers and are let through.
//!    This blocks cross-site WebSocket hijacking.
//! 2. **Shutdown.** While shutting down, HTTP 503. (The connection cap is applied earlier, at
//!    accept: see [`crate::accept`]. The TCP connection's slot travels on with its socket.)
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
use warp::http::header::{
    HeaderMap, HeaderValue, ALLOW, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
};
use warp::http::StatusCode;
use warp::hyper::upgrade::OnUpgrade;
use warp::{Filter, Rejection, Reply};

use crate::accept::{self, ConnectionSlot};
use crate::config::Config;
use crate::connection::Lifecycle;
use crate::endpoints::{self, Endpoint, Session};
use crate::linger::LingeringClose;
use crate::metrics::Metrics;

/// State shared by every request: configuration, metrics, connection slots and the
/// shutdown machinery.
#[derive(Clone)]
pub struct App {
    /// The configuration the server was started with.
    pub config: Arc<Config>,
    /// This server's metrics.
    pub metrics: Metrics,
    /// One permit per TCP connection that may still open (see [`accept`]): `--max-connections`,
    /// lowered to fit the open-file limit.
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
            slots: Arc::new(Semaphore::new(accept::capacity(config.max_connections))),
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
    let static_files = inside_static_dir(app.config.static_dir.clone())
        .and(warp::fs::dir(app.config.static_dir.clone()));

    let websockets = websocket_route("drain", Endpoint::Drain, &app)
        .or(websocket_route("no-drain", Endpoint::NoDrain, &app))
        .unify()
        .or(websocket_route("echo", Endpoint::Echo, &app))
        .unify()
        .or(websocket_route(
            "break-on-close",
            Endpoint::BreakOnClose,
            &app,
        ))
        .unify()
        .or(websocket_route(
            "lingering-tcp",
            Endpoint::LingeringTcp,
            &app,
        ))
        .unify();

    warp::get()
        .and(websockets.or(healthz.map(Reply::into_response)).unify())
        .or(warp::get().and(metrics).map(Reply::into_response))
        .unify()
        .or(warp::get().and(static_files).map(Reply::into_response))
        .unify()
        .recover(|rejection: Rejection| async move { Ok::<_, Infallible>(refusal(&rejection)) })
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
        // The connection's place under the cap, which the socket keeps (see `accept`).
        .and(warp::ext::optional::<ConnectionSlot>())
        // Validates method and headers, and rejects exactly as warp always does.
        .and(warp::ws())
        .and(warp::header::headers_cloned())
        .and(warp::query::<WsParams>())
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .and(warp::header::optional::<String>("x-forwarded-proto"))
        .map(
            move |on_upgrade: Option<OnUpgrade>,
                  slot: Option<ConnectionSlot>,
                  _validated: warp::ws::Ws,
                  headers: HeaderMap,
                  params: WsParams,
                  origin: Option<String>,
                  host: Option<String>,
                  forwarded_proto: Option<String>| {
                let request = UpgradeRequest {
                    on_upgrade,
                    slot,
                    headers,
                    params,
                    origin,
                    host,
                    forwarded_proto,
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
    /// The TCP connection's place under the cap; `None` only when served outside `serve_app`.
    slot: Option<ConnectionSlot>,
    /// The request's headers, for tungstenite's handshake response and the subprotocol offer.
    headers: HeaderMap,
    params: WsParams,
    origin: Option<String>,
    host: Option<String>,
    /// `X-Forwarded-Proto` from a TLS-terminating proxy: the scheme the browser used.
    forwarded_proto: Option<String>,
}

/// Tungstenite's read buffer per connection, zero-filled before every read. Clients send this
/// server small frames (Close, Pong, short messages); a larger one is read in several steps.
/// Tungstenite's default is 128 KiB; 4 KiB measured 7.8 KiB of RSS per connection, 2 KiB 5.9.
pub const READ_BUFFER_SIZE: usize = 2 * 1024;

/// How far tungstenite's write buffer may grow beyond one message of `--max-message-size`: a
/// frame header and the Pong and Close frames it may queue beside it (at most 127 bytes each).
/// The buffer is bounded so that a peer that pings without reading cannot grow it: tungstenite
/// then keeps only the latest Pong pending, and the lifecycle drops the peer once a flush
/// takes longer than `write_timeout`.
pub const WRITE_BUFFER_SLACK: usize = 1024;

/// Admits or refuses one upgrade request, and starts the connection when admitted.
fn upgrade(app: &App, endpoint: Endpoint, request: UpgradeRequest) -> warp::reply::Response {
    let UpgradeRequest {
        on_upgrade,
        slot,
        headers,
        params,
        origin,
        host,
        forwarded_proto,
    } = request;
    let config = &app.config;
    let Some(on_upgrade) = on_upgrade else {
        // hyper upgrades HTTP/1.1 connections only; a 101 to HTTP/1.0 would lead nowhere.
        return refuse(StatusCode::BAD_REQUEST, "WebSocket upgrades need HTTP/1.1");
    };
    let response = match switching_protocols(&headers, &config.subprotocols) {
        Ok(response) => response,
        Err(error) => {
            return refuse_owned(
                StatusCode::BAD_REQUEST,
                format!("not a WebSocket upgrade: {error}"),
            )
        }
    };
    let scheme = match forwarded_proto.as_deref() {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    if !origin_allowed(
        origin.as_deref(),
        host.as_deref(),
        scheme,
        &config.allowed_origins,
    ) {
        tracing::info!(?origin, ?host, "refused upgrade: origin not allowed");
        app.metrics.upgrade_refused(endpoint.name(), 403);
        return refuse(StatusCode::FORBIDDEN, "origin not allowed");
    }
    if app.shutdown.is_cancelled() {
        tracing::info!("refused upgrade: shutting down");
        app.metrics.upgrade_refused(endpoint.name(), 503);
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let push_interval = match (params.push_ms, endpoint) {
        (Some(0), _) => None,
        (Some(ms), _) if Duration::from_millis(ms) < config.min_push_interval => {
            return refuse_owned(
                StatusCode::BAD_REQUEST,
                format!(
                    "push_ms must be 0 or at least {} (--min-push-interval)",
                    config.min_push_interval.as_millis()
                ),
            );
        }
        (Some(ms), _) => Some(Duration::from_millis(ms)),
        (None, Endpoint::Echo | Endpoint::BreakOnClose | Endpoint::LingeringTcp) => None,
        (None, Endpoint::Drain | Endpoint::NoDrain) => Some(config.push_interval),
    };
    let first_seq = match params.after {
        None => 0,
        Some(after) if after < endpoints::MAX_SEQ => after + 1,
        Some(_) => {
            return refuse_owned(
                StatusCode::BAD_REQUEST,
                format!(
                    "after must be below {} (2^53-1, the largest seq JavaScript holds exactly)",
                    endpoints::MAX_SEQ
                ),
            )
        }
    };
    let session = Session {
        endpoint,
        lifecycle: Lifecycle {
            timing: config.timing,
            shutdown: app.shutdown.clone(),
            shutdown_code: config.shutdown_code,
        },
        push_interval,
        first_seq,
        instance: app.instance.clone(),
        metrics: app.metrics.clone(),
    };
    // Counted from now, not from the end of the handshake, so shutdown cannot miss it.
    let running = app.tracker.token();
    let socket_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(0)
        .max_write_buffer_size(config.max_message_size + WRITE_BUFFER_SLACK)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    let linger = config.timing.close_timeout;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = WebSocketStream::from_raw_socket(
                    LingeringClose::new(TokioIo::new(upgraded), linger, slot),
                    Role::Server,
                    Some(socket_config),
                )
                .await;
                endpoints::serve(socket, session).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
        drop(running);
    });
    response
}

/// The `101 Switching Protocols` answer, built by tungstenite from the request's headers
/// (`Sec-WebSocket-Accept` from the key), plus `Sec-WebSocket-Protocol` when the client offered
/// a subprotocol this server supports: the first one it offered.
fn switching_protocols(
    headers: &HeaderMap,
    supported: &[String],
) -> Result<warp::reply::Response, tungstenite::Error> {
    let mut request = warp::http::Request::new(());
    *request.headers_mut() = headers.clone();
    // Only HTTP/1.1 gets here: hyper offers no upgrade to HTTP/1.0 (see `upgrade`).
    *request.version_mut() = warp::http::Version::HTTP_11;
    let (parts, ()) = tungstenite::handshake::server::create_response(&request)?.into_parts();
    let mut response = warp::reply::Response::default();
    *response.status_mut() = parts.status;
    *response.headers_mut() = parts.headers;
    if let Some(chosen) = choose_subprotocol(headers, supported) {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, chosen);
    }
    Ok(response)
}

/// The first subprotocol the client offers in `Sec-WebSocket-Protocol` that is `supported`.
fn choose_subprotocol(headers: &HeaderMap, supported: &[String]) -> Option<HeaderValue> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .find(|offered| supported.iter().any(|ours| ours == offered))
        .and_then(|chosen| HeaderValue::from_str(chosen).ok())
}

/// One readable line, with the right status, for every way a request can be refused.
fn refusal(rejection: &Rejection) -> warp::reply::Response {
    use warp::reject::{InvalidHeader, InvalidQuery, MethodNotAllowed, MissingHeader};
    if rejection.is_not_found() {
        return refuse(StatusCode::NOT_FOUND, "not found");
    }
    let header = rejection
        .find::<InvalidHeader>()
        .map(InvalidHeader::name)
        .or_else(|| rejection.find::<MissingHeader>().map(MissingHeader::name));
    if let Some(header) = header {
        if header.eq_ignore_ascii_case("sec-websocket-version") {
            // RFC 6455 §4.2.2: say which version the server speaks.
            let mut response = refuse(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported WebSocket version: this server speaks 13 (RFC 6455)",
            );
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return response;
        }
        return refuse_owned(
            StatusCode::BAD_REQUEST,
            format!("not a WebSocket upgrade: missing or invalid {header} header"),
        );
    }
    if rejection.find::<MethodNotAllowed>().is_some() {
        let mut response = refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    if rejection.find::<InvalidQuery>().is_some() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid query: push_ms and after take whole numbers",
        );
    }
    refuse(StatusCode::BAD_REQUEST, "bad request")
}

fn refuse(status: StatusCode, why: &'static str) -> warp::reply::Response {
    refuse_owned(status, why.to_owned())
}

/// A plain-text refusal: one line, ending in a newline.
fn refuse_owned(status: StatusCode, why: String) -> warp::reply::Response {
    warp::reply::with_status(format!("{why}\n"), status).into_response()
}

/// Whether a request with this `Origin` (if any) and `Host` may open a WebSocket. `scheme` is
/// how the browser reached the server: `http`, or `https` behind a TLS-terminating proxy that
/// says so in `X-Forwarded-Proto`.
///
/// Without `--allowed-origin` the page must come from this very server: the Origin must be
/// `scheme://Host`, scheme included. That stops other sites' pages (cross-site WebSocket
/// hijacking). It does not stop DNS rebinding: a hostile name that resolves to this server
/// makes Origin and Host agree. In production, list the page's origins with `--allowed-origin`.
pub fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    scheme: &str,
    allowed: &[String],
) -> bool {
    let Some(origin) = origin else {
        return true; // not a browser
    };
    if !allowed.is_empty() {
        return allowed
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin));
    }
    let Some((origin_scheme, authority)) = origin.trim_end_matches('/').split_once("://") else {
        return false; // "null", or nothing like an origin
    };
    origin_scheme.eq_ignore_ascii_case(scheme)
        && host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

/// Lets a static request through only when it names a file really inside `static_dir`: no
/// segment may start with a dot (`.git`, `.env`), and the path, with every symlink resolved,
/// must stay inside the directory. Anything else is 404, as if it did not exist.
fn inside_static_dir(
    static_dir: std::path::PathBuf,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    // `peek`, not `tail`: the path is left for `warp::fs::dir` to serve.
    warp::path::peek()
        .and_then(move |tail: warp::path::Peek| {
            let static_dir = static_dir.clone();
            async move {
                let hidden = tail
                    .as_str()
                    .split('/')
                    .any(|segment| segment.starts_with('.'));
                let inside = !hidden && resolves_inside(&static_dir, tail.as_str()).await;
                if inside {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
        .untuple_one()
}

/// Whether `static_dir/tail` (or the directory's own index for an empty tail) exists and,
/// symlinks resolved, lies inside `static_dir`.
async fn resolves_inside(static_dir: &std::path::Path, tail: &str) -> bool {
    let (Ok(root), Ok(path)) = (
        tokio::fs::canonicalize(static_dir).await,
        tokio::fs::canonicalize(static_dir.join(tail)).await,
    ) else {
        return false;
    };
    path.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::{origin_allowed, switching_protocols};
    use warp::http::header::{HeaderMap, HeaderValue};

    fn upgrade_headers(extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            // The example from RFC 6455, section 1.3.
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]
        .iter()
        .chain(extra)
        {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn switching_protocols_answers_the_key() {
        let response = switching_protocols(&upgrade_headers(&[]), &[]).unwrap();
        assert_eq!(response.status(), 101);
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(
            header("sec-websocket-accept"),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(header("connection").eq_ignore_ascii_case("upgrade"));
        assert_eq!(header("upgrade"), "websocket");
        assert!(!response.headers().contains_key("sec-websocket-protocol"));
    }

    #[test]
    fn the_first_offered_subprotocol_we_speak_is_chosen() {
        let ours = vec!["chat.v2".to_owned(), "chat.v1".to_owned()];
        let chosen = |offer: &'static str| {
            let headers = upgrade_headers(&[("sec-websocket-protocol", offer)]);
            switching_protocols(&headers, &ours)
                .unwrap()
                .headers()
                .get("sec-websocket-protocol")
                .map(|value| value.to_str().unwrap().to_owned())
        };
        assert_eq!(chosen("chat.v1, chat.v2").as_deref(), Some("chat.v1"));
        assert_eq!(chosen("mqtt,chat.v2").as_deref(), Some("chat.v2"));
        assert_eq!(chosen("mqtt"), None);
    }

    #[test]
    fn origin_rules() {
        let none: Vec<String> = Vec::new();
        let listed = vec!["https://app.example".to_owned()];
        let allowed = |origin: Option<&str>, scheme: &str, list: &[String]| {
            origin_allowed(origin, Some("127.0.0.1:3030"), scheme, list)
        };
        assert!(allowed(None, "http", &none), "no Origin: not a browser");
        assert!(allowed(Some("http://127.0.0.1:3030"), "http", &none));
        assert!(!allowed(Some("http://evil.example"), "http", &none));
        assert!(!allowed(Some("http://127.0.0.1:3031"), "http", &none));
        assert!(
            !allowed(Some("https://127.0.0.1:3030"), "http", &none),
            "another scheme is another origin"
        );
        assert!(
            allowed(Some("https://127.0.0.1:3030"), "https", &none),
            "behind a TLS proxy that says X-Forwarded-Proto: https"
        );
        assert!(!allowed(Some("null"), "http", &none));
        assert!(allowed(Some("https://app.example"), "http", &listed));
        assert!(!allowed(Some("http://127.0.0.1:3030"), "http", &listed));
    }
}
