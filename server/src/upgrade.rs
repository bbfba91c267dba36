//! The WebSocket upgrade, finished by hand after admission, with the crate's
//! [`wsclose::hyper`]: warp offers no way to set tungstenite's read buffer, and the crate's
//! [`wsclose::config::READ_BUFFER_SIZE`] (in [`recommended_config`]) is a few KiB where
//! tungstenite's default is 128 KiB (`docs/performance.md` has the measurement).

use std::future::Future;

use tungstenite::protocol::WebSocketConfig;
use warp::hyper::upgrade::OnUpgrade;

use wsclose::config::recommended_config;
use wsclose::hyper::Bounds;

use crate::accept::ConnectionSlot;
use crate::endpoints::{self, Session};
use crate::routes::App;

/// The `101 Switching Protocols` answer to an upgrade request with `headers`, as warp's reply
/// ([`wsclose::hyper::switching_protocols`]).
pub fn switching_protocols(
    headers: &warp::http::HeaderMap,
    supported: &[String],
) -> Result<warp::reply::Response, tungstenite::Error> {
    let (parts, ()) = wsclose::hyper::switching_protocols(headers, supported)?.into_parts();
    let mut response = warp::reply::Response::default();
    *response.status_mut() = parts.status;
    *response.headers_mut() = parts.headers;
    Ok(response)
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
) -> impl Future<Output = ()> + Send {
    async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                // The slot is held until the connection is closed, after any lingering drain.
                let socket = wsclose::hyper::socket(upgraded, socket_config, &bounds, slot).await;
                endpoints::serve(socket, &session).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::connection;

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

    /// About an eighth above the size today (1,752 bytes), which is the same in debug and
    /// release builds.
    const CONNECTION_TASK_MAX_BYTES: usize = 2_000;
}
