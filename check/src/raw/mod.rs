//! A hand-written WebSocket client, for the frames a well-behaved library refuses to send.
//!
//! [`Frame`] is one RFC 6455 frame with every header bit under the test's control, and
//! [`Frame::encode`] writes it exactly as given: masked or not, RSV bits, reserved opcodes,
//! fragmented or oversized control frames. [`RawClient`] does the HTTP upgrade by hand (so a test
//! can send any `Origin` or `Host`), writes frames, and decodes the server's frames, which is how
//! the tests read the exact Close code the server chose.
//!
//! # Layout
//! * `frame`: [`Frame`] and [`Header`], the codec, and the opcodes and RSV bits.
//! * `handshake`: [`RawClient::upgrade`] and its kin, [`parse_head`], [`accept_key`].
//! * `client`: [`RawClient`]'s writes and reads; a wait for the Close ends in an
//!   [`Ended`](crate::Ended).
//! * `reader`: the read side, which skips data frames instead of keeping them.

mod client;
mod frame;
mod handshake;
mod reader;

pub use client::{Io, RawClient, ReadHalf, StreamedOutcome, WriteHalf, READ_TIMEOUT};
pub use frame::{
    Frame, Header, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, RSV1, RSV2,
    RSV3,
};
pub use handshake::{accept_key, new_key, parse_head, Head, UpgradeResponse, BODY_LIMIT};
