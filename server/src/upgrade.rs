//! The WebSocket upgrade, finished by hand after admission.
//!
//! This is warp's `WsReply::into_response` (warp `src/filters/ws.rs`) written out: answer 101
//! with the headers tungstenite computes from the request, and spawn a task that waits for
//! hyper's upgraded connection and wraps it in a `WebSocketStream`. It is done here rather than
//! by `Ws::on_upgrade` because warp offers no way to set tungstenite's read buffer. Its default
//! is 128 KiB, and tungstenite zero-fills the whole buffer before every read, so each idle
//! connection kept 136 KiB resident (and paid a 128 KiB memset per read); with the crate's
//! [`wsclose::config::READ_BUFFER_SIZE`] (in [`recommended_config`]) it is a few KiB
//! (`docs/performance.md` has the measurement).

use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};
use warp::http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use warp::hyper::upgrade::OnUpgrade;

use wsclose::assembly::{MessageBudget, MessageGuard};
use wsclose::config::recommended_config;

use crate::accept::ConnectionSlot;
use crate::endpoints::{self, Session};
use crate::linger::LingeringClose;
use crate::routes::App;

/// The `101 Switching Protocols` answer, built by tungstenite from the request's headers
/// (`Sec-WebSocket-Accept` from the key), plus `Sec-WebSocket-Protocol` when the client offered
/// a subprotocol this server supports: the first one it offered.
pub fn switching_protocols(
    headers: &HeaderMap,
    supported: &[String],
) -> Result<warp::reply::Response, tungstenite::Error> {
    let mut request = warp::http::Request::new(());
    *request.headers_mut() = headers.clone();
    // Only HTTP/1.1 gets here: hyper offers no upgrade to HTTP/1.0.
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

/// Spawns the admitted connection's task, counted in the app's lifecycle from now (so a
/// shutdown that begins mid-upgrade still waits for it): once hyper hands over the upgraded
/// connection, it becomes a `WebSocketStream` with bounded buffers under a lingering close,
/// holding its connection slot, and runs `session`'s endpoint to its end.
pub fn start(on_upgrade: OnUpgrade, slot: Option<ConnectionSlot>, app: &App, session: Session) {
    let config = &app.config;
    // The crate's recommended buffers and limits: a 2 KiB read buffer, a write buffer bound to
    // one message and its control frames, and frames no larger than a message.
    let socket_config = recommended_config(config.max_message_size);
    let bounds = Bounds {
        linger: config.timing.close_timeout,
        message_budget: app.message_budget.clone(),
        message_timeout: config.message_timeout,
    };
    app.lifecycle
        .spawn(connection(on_upgrade, slot, socket_config, bounds, session));
}

/// What one connection's socket is wrapped in besides tungstenite's own limits.
struct Bounds {
    /// How long its TCP close lingers (`close_timeout`).
    linger: std::time::Duration,
    /// The server's budget for messages still arriving.
    message_budget: MessageBudget,
    /// How long one message may take to arrive.
    message_timeout: std::time::Duration,
}

/// The task of one upgraded connection: every connection holds one of these futures for its
/// whole life, so its size is memory per connection (`connection_task_stays_small` guards it).
// Not an `async fn`: an `async fn` stores each argument twice in its future.
#[allow(clippy::manual_async_fn)]
fn connection(
    on_upgrade: OnUpgrade,
    slot: Option<ConnectionSlot>,
    socket_config: WebSocketConfig,
    bounds: Bounds,
    session: Session,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                // Under tungstenite, each message is held to its deadline and the budget;
                // under that, the TCP close lingers.
                let io = MessageGuard::new(
                    LingeringClose::new(TokioIo::new(upgraded), bounds.linger, slot),
                    &bounds.message_budget,
                    bounds.message_timeout,
                    socket_config.max_frame_size.unwrap_or(usize::MAX),
                );
                let socket =
                    WebSocketStream::from_raw_socket(io, Role::Server, Some(socket_config)).await;
                endpoints::serve(socket, &session).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{connection, switching_protocols};
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

    /// The size of the future `F` returns, without calling it.
    fn returned_size<F, A, B, C, D, E, R>(_: F) -> usize
    where
        F: Fn(A, B, C, D, E) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// The connection's task is memory every connection pays for its whole life; this bound
    /// catches a change that makes its future grow (docs/performance.md, "Where the memory goes").
    #[test]
    fn connection_task_stays_small() {
        let size = returned_size(connection);
        println!("connection task future: {size} bytes");
        assert!(size <= CONNECTION_TASK_MAX_BYTES, "{size} bytes");
    }

    /// About a sixth above the size today, which is the same in debug and release builds.
    const CONNECTION_TASK_MAX_BYTES: usize = 1_800;
}
