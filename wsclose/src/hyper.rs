//! The WebSocket upgrade of a hyper server, finished by hand (feature `hyper`), for warp and
//! any server that gets hyper's `OnUpgrade`.
//!
//! warp's `Ws::on_upgrade` offers no way to set tungstenite's read buffer. Its default is
//! 128 KiB, and tungstenite zero-fills the whole buffer before every read, so each idle
//! connection keeps about 135 KiB resident (and pays a 128 KiB memset per read); with
//! [`READ_BUFFER_SIZE`](crate::config::READ_BUFFER_SIZE) (in
//! [`recommended_config`](crate::recommended_config)) it is a few KiB. This is warp's
//! `WsReply::into_response` written out: answer 101 with the headers tungstenite computes from
//! the request ([`switching_protocols`]), then wait for hyper's upgraded connection and wrap it
//! in a `WebSocketStream` with any configuration ([`socket`]): under a
//! [`LingeringClose`], with each message held to a deadline and
//! a budget ([`MessageGuard`]).
//!
//! With warp: take `OnUpgrade` before `warp::ws()` removes it from the request
//! (`warp::ext::optional::<OnUpgrade>()`), validate the upgrade with `warp::ws()`, answer with
//! [`switching_protocols`], and spawn the connection's task: await `OnUpgrade`, then [`socket`] and
//! [`linger::serve`](crate::linger::serve). The demo server (`server/src/upgrade.rs` and
//! `server/src/endpoints.rs` in the repository) does that, with `serve_websocket` and
//! [`linger::finish`](crate::linger::finish) written out, so that its per-connection future
//! holds its ticks and handler once.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::assembly::{MessageBudget, MessageGuard};
use crate::linger::LingeringClose;

/// The socket [`socket`] gives: hyper's upgraded connection under a lingering close holding
/// `G`, each message held to its deadline and the budget, under tungstenite.
pub type Socket<G> = WebSocketStream<MessageGuard<LingeringClose<TokioIo<Upgraded>, G>>>;

/// The `101 Switching Protocols` answer, built by tungstenite from the request's headers
/// (`Sec-WebSocket-Accept` from the key), plus `Sec-WebSocket-Protocol` when the client offered
/// a subprotocol in `supported`: the first one it offered. An error when the headers are not a
/// valid WebSocket upgrade.
pub fn switching_protocols(
    headers: &HeaderMap,
    supported: &[String],
) -> Result<http::Response<()>, tungstenite::Error> {
    let mut request = http::Request::new(());
    *request.headers_mut() = headers.clone();
    // Only HTTP/1.1 gets here: hyper offers no upgrade to HTTP/1.0.
    *request.version_mut() = http::Version::HTTP_11;
    let mut response = tungstenite::handshake::server::create_response(&request)?;
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

/// What [`socket`] wraps an upgraded connection in, besides tungstenite's own limits.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// How long its TCP close lingers (`close_timeout` is a good value).
    pub linger: Duration,
    /// The server's budget for messages still arriving.
    pub message_budget: MessageBudget,
    /// How long one message may take to arrive.
    pub message_timeout: Duration,
}

/// Makes hyper's upgraded connection a server `WebSocketStream` with `config`: under a
/// lingering close that holds `guard` until the connection is closed, with each message held
/// to `bounds`' deadline and budget (frames up to `config.max_frame_size`).
///
/// `upgraded` is what `OnUpgrade` (from `hyper::upgrade::on`, or warp's
/// `warp::ext::optional::<OnUpgrade>()`) resolves to once the 101 is sent.
pub async fn socket<G: Send + 'static>(
    upgraded: Upgraded,
    config: WebSocketConfig,
    bounds: &Bounds,
    guard: G,
) -> Socket<G> {
    let io = MessageGuard::new(
        LingeringClose::new(TokioIo::new(upgraded), bounds.linger, guard),
        &bounds.message_budget,
        bounds.message_timeout,
        config.max_frame_size.unwrap_or(usize::MAX),
    );
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

#[cfg(test)]
mod tests {
    use super::switching_protocols;
    use http::header::{HeaderMap, HeaderValue};

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
    fn a_request_that_is_no_upgrade_is_refused() {
        let mut headers = upgrade_headers(&[]);
        headers.remove("sec-websocket-key");
        assert!(switching_protocols(&headers, &[]).is_err());
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
}
