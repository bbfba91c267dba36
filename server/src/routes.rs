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
//! but the upgrade is finished by [`crate::upgrade`], with a smaller read buffer than warp's.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Semaphore;
use warp::http::header::{HeaderMap, HeaderValue, ALLOW, SEC_WEBSOCKET_VERSION};
use warp::http::StatusCode;
use warp::hyper::upgrade::OnUpgrade;
use warp::{Filter, Rejection, Reply};
use wsclose::assembly::MessageBudget;
use wsclose::Lifecycle;

use crate::accept::{self, ConnectionSlot};
use crate::config::Config;
use crate::endpoints::{self, Endpoint, PushRate, Session};
use crate::logs;
use crate::metrics::Metrics;
use crate::upgrade;

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
    /// Every socket's timing, shutdown signal and code, and the count of running sockets
    /// that shutdown waits for.
    pub lifecycle: Lifecycle,
    /// The bytes all connections together may hold for messages still arriving.
    pub message_budget: MessageBudget,
    /// The server-wide push rate the pushing connections share.
    pub pushes: PushRate,
    /// Refused upgrades, logged at most once a second.
    pub refusals: logs::Refusals,
    /// The name ticks carry: `config.instance` ([`crate::run`] fills in the listen address
    /// when it is empty).
    pub instance: Arc<str>,
}

impl App {
    /// Fresh state for a server with `config`.
    pub fn new(config: Config) -> Self {
        let lifecycle = Lifecycle::new()
            .with_timing(config.timing)
            .with_shutdown_code(config.shutdown_code);
        App {
            instance: config.instance.as_str().into(),
            message_budget: MessageBudget::new(config.message_budget),
            pushes: PushRate::new(config.max_push_rate),
            refusals: logs::Refusals::new(),
            slots: Arc::new(Semaphore::new(accept::capacity(config.max_connections))),
            config: Arc::new(config),
            metrics: Metrics::new(),
            lifecycle,
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
        let lifecycle = app.lifecycle.clone();
        warp::path!("healthz").map(move || {
            if lifecycle.is_shutting_down() {
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
        // Taken before `warp::ws()` removes it from the request: `upgrade` finishes it.
        .and(warp::ext::optional::<OnUpgrade>())
        // The connection's place under the cap, which the socket keeps (see `accept`).
        .and(warp::ext::optional::<ConnectionSlot>())
        // Validates method and headers, and rejects exactly as warp always does.
        .and(warp::ws())
        .and(warp::header::headers_cloned())
        .and(warp::query::<WsParams>())
        .map(
            move |on_upgrade: Option<OnUpgrade>,
                  slot: Option<ConnectionSlot>,
                  _validated: warp::ws::Ws,
                  headers: HeaderMap,
                  params: WsParams| {
                let Some(on_upgrade) = on_upgrade else {
                    // hyper upgrades HTTP/1.1 connections only; a 101 to HTTP/1.0 would lead nowhere.
                    return refuse(StatusCode::BAD_REQUEST, "WebSocket upgrades need HTTP/1.1");
                };
                let response =
                    match upgrade::switching_protocols(&headers, &app.config.subprotocols) {
                        Ok(response) => response,
                        Err(error) => {
                            let why = format!("not a WebSocket upgrade: {error}");
                            return refuse_owned(StatusCode::BAD_REQUEST, why);
                        }
                    };
                match admit(&app, endpoint, &headers, params) {
                    Ok(session) => {
                        upgrade::start(on_upgrade, slot, &app, session);
                        response
                    }
                    Err((status, why)) => refuse_owned(status, why),
                }
            },
        )
}

/// Admits or refuses one upgrade request: Origin, shutdown, then the query's values. An
/// admitted request gets the [`Session`] its connection will run; a refused one the status
/// and line to answer with.
fn admit(
    app: &App,
    endpoint: Endpoint,
    headers: &HeaderMap,
    params: WsParams,
) -> Result<Session, (StatusCode, String)> {
    let config = &app.config;
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    // `X-Forwarded-Proto` from a TLS-terminating proxy: the scheme the browser used.
    let scheme = match header("x-forwarded-proto") {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let (origin, host) = (header("origin"), header("host"));
    if !origin_allowed(origin, host, scheme, &config.allowed_origins) {
        if let Some(refused) = app.refusals.note() {
            tracing::info!(
                origin = %logs::truncated(origin.unwrap_or_default()),
                host = %logs::truncated(host.unwrap_or_default()),
                refused,
                "refused upgrade: origin not allowed (`refused`: refusals since the last such line)"
            );
        }
        app.metrics.upgrade_refused(endpoint.name(), 403);
        return Err((StatusCode::FORBIDDEN, "origin not allowed".into()));
    }
    if app.lifecycle.is_shutting_down() {
        if let Some(refused) = app.refusals.note() {
            tracing::info!(refused, "refused upgrade: shutting down");
        }
        app.metrics.upgrade_refused(endpoint.name(), 503);
        return Err((StatusCode::SERVICE_UNAVAILABLE, "shutting down".into()));
    }
    let push_interval = match (params.push_ms, endpoint) {
        (Some(0), _) => None,
        (Some(ms), _) if Duration::from_millis(ms) < config.min_push_interval => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "push_ms must be 0 or at least {} (--min-push-interval)",
                    config.min_push_interval.as_millis()
                ),
            ));
        }
        (Some(ms), _) => Some(Duration::from_millis(ms)),
        (None, Endpoint::Echo | Endpoint::BreakOnClose | Endpoint::LingeringTcp) => None,
        (None, Endpoint::Drain | Endpoint::NoDrain) => Some(config.push_interval),
    };
    let first_seq = match params.after {
        None => 0,
        Some(after) if after < endpoints::MAX_SEQ => after + 1,
        Some(_) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "after must be below {} (2^53-1, the largest seq JavaScript holds exactly)",
                    endpoints::MAX_SEQ
                ),
            ))
        }
    };
    Ok(Session {
        endpoint,
        lifecycle: app.lifecycle.clone(),
        push_interval,
        first_seq,
        instance: app.instance.clone(),
        pushes: app.pushes.clone(),
        metrics: app.metrics.clone(),
    })
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

/// A plain-text refusal of a fixed line.
pub(crate) fn refuse(status: StatusCode, why: &'static str) -> warp::reply::Response {
    refuse_owned(status, why.to_owned())
}

/// A plain-text refusal: one line, ending in a newline.
pub(crate) fn refuse_owned(status: StatusCode, why: String) -> warp::reply::Response {
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
    use super::origin_allowed;

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
