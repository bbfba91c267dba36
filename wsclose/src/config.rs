//! The recommended socket configuration: [`recommended_config`], one call that bounds what a
//! peer can make a connection hold.
//!
//! Without it, a socket keeps tungstenite's defaults: a 128 KiB read buffer per connection,
//! messages up to 64 MiB in frames up to 16 MiB, and a write buffer with no bound. tungstenite
//! reserves and fills a frame before it checks the message limit, so `max_message_size` alone
//! does not bound a frame, and a message that never finishes is held until the connection
//! ends. Measured from outside against this crate's examples at 4bd75b7, with the defaults:
//! 8 sockets each sending an unfinished 56 MiB message held +513 MiB of RSS indefinitely;
//! 8 complete 60 MiB echoes that the peer never read held +545 MiB until `write_timeout`.
//! With this configuration both are refused at the first frame's header with Close 1009.
//!
//! ```
//! use wsclose::config::{recommended_config, DEFAULT_MAX_MESSAGE_SIZE};
//!
//! let config = recommended_config(DEFAULT_MAX_MESSAGE_SIZE);
//! assert_eq!(config.max_frame_size, Some(DEFAULT_MAX_MESSAGE_SIZE));
//! assert_eq!(config.write_buffer_size, 0);
//! ```

use tungstenite::protocol::WebSocketConfig;

/// The recommended largest incoming message, 64 KiB: larger than what chat, control and
/// notification messages need, and small enough that thousands of connections each holding one
/// stay within a few hundred MiB. A server that takes uploads raises it (and caps connections).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// tungstenite's read buffer per connection, 2 KiB. tungstenite allocates it for every
/// connection and zero-fills it before every read: at its default of 128 KiB each idle
/// connection keeps about 136 KiB resident (and pays a 128 KiB memset per read). Clients send
/// a server small frames (Close, Pong, short messages); a larger one is read in several steps.
pub const READ_BUFFER_SIZE: usize = 2 * 1024;

/// How far the write buffer may grow beyond one message of the largest size: a frame header
/// and the Pong and Close frames tungstenite may queue beside it (at most 127 bytes each).
/// Bounded so that a peer that pings without reading cannot grow it: tungstenite then keeps
/// only the latest Pong pending, and the lifecycle drops the peer once a flush takes longer
/// than `write_timeout`.
pub const WRITE_BUFFER_SLACK: usize = 1024;

/// The recommended tungstenite configuration for a server socket whose largest incoming
/// message is `max_message_size` bytes:
///
/// * `read_buffer_size` [`READ_BUFFER_SIZE`], instead of 128 KiB per connection;
/// * `write_buffer_size(0)`: each frame is written at once, since
///   [`serve_websocket`](crate::serve_websocket) flushes after every message anyway;
/// * `max_write_buffer_size` of `max_message_size` + [`WRITE_BUFFER_SLACK`]: a peer that does
///   not read makes the connection hold at most one message and its control frames;
/// * `max_message_size` and `max_frame_size` both `max_message_size`, so that a frame over the
///   limit is refused at its header (Close 1009) before tungstenite reserves its payload.
///
/// For axum's and warp's upgrades, `wsclose::axum::recommended` and `wsclose::warp::recommended`
/// apply it (features `axum` and `warp`).
pub fn recommended_config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(0)
        .max_write_buffer_size(max_message_size.saturating_add(WRITE_BUFFER_SLACK))
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_follows_the_largest_message() {
        let config = recommended_config(1000);
        assert_eq!(config.read_buffer_size, READ_BUFFER_SIZE);
        assert_eq!(config.write_buffer_size, 0);
        assert_eq!(config.max_write_buffer_size, 1000 + WRITE_BUFFER_SLACK);
        assert_eq!(config.max_message_size, Some(1000));
        assert_eq!(config.max_frame_size, Some(1000));
        // tungstenite panics unless the write buffer's bound exceeds its target size.
        assert!(config.max_write_buffer_size > config.write_buffer_size);
    }

    #[test]
    fn no_overflow_at_the_largest_size() {
        assert_eq!(
            recommended_config(usize::MAX).max_write_buffer_size,
            usize::MAX
        );
    }
}
