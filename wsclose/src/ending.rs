//! How a connection ended: who started it, with which close code, and why.

use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;

/// Which side started the end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// The peer sent Close, or vanished.
    Client,
    /// The server sent Close, or dropped the peer.
    Server,
}

impl Initiator {
    /// `client` or `server`, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Initiator::Client => "client",
            Initiator::Server => "server",
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// The peer sent Close and the server answered it.
    PeerClose,
    /// The server shut down: it sent Close with the lifecycle's shutdown code.
    Shutdown,
    /// The application's outgoing stream ended: the server sent Close 1000.
    Done,
    /// The peer broke the protocol: the server sent Close 1002.
    ProtocolError,
    /// The peer sent text (or a close reason) that is not UTF-8: the server sent Close 1007.
    InvalidUtf8,
    /// The peer sent a message above the socket's maximum size: the server sent Close 1009.
    MessageTooBig,
    /// A message did not arrive within its deadline ([`assembly`](crate::assembly)): the
    /// server sent Close 1008.
    MessageTimeout,
    /// The process-wide budget for arriving messages could not cover the peer's next frame
    /// ([`assembly`](crate::assembly)): the server sent Close 1008.
    MessageBudget,
    /// The peer sent no frame for `pong_timeout`: dropped without a Close.
    PongTimeout,
    /// The peer did not take a write within `write_timeout`: dropped without a Close.
    WriteTimeout,
    /// A Close went unanswered for `close_timeout` (or the stream did not end after the
    /// peer's Close was answered): dropped.
    CloseTimeout,
    /// The connection went away without a close handshake (reset, EOF, I/O error).
    PeerGone,
    /// The application ended the connection itself, outside
    /// [`serve_websocket`](crate::serve_websocket), for the reason it names here (a metric
    /// label, say). `serve_websocket` never returns it.
    Application(&'static str),
}

impl EndReason {
    /// The reason in snake case (`peer_close`, `pong_timeout`, ...), for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::PeerClose => "peer_close",
            EndReason::Shutdown => "shutdown",
            EndReason::Done => "done",
            EndReason::ProtocolError => "protocol_error",
            EndReason::InvalidUtf8 => "invalid_utf8",
            EndReason::MessageTooBig => "message_too_big",
            EndReason::MessageTimeout => "message_timeout",
            EndReason::MessageBudget => "message_budget",
            EndReason::PongTimeout => "pong_timeout",
            EndReason::WriteTimeout => "write_timeout",
            EndReason::CloseTimeout => "close_timeout",
            EndReason::PeerGone => "peer_gone",
            EndReason::Application(reason) => reason,
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a connection ended. Returned by [`serve_websocket`](crate::serve_websocket).
///
/// The builders ([`Ending::dropped`], [`with_code`](Ending::with_code), ...) are for a server
/// that also ends some connections itself, outside `serve_websocket`, and reports every
/// ending in this one type (the demo server's broken endpoints do, with
/// [`EndReason::Application`]). [`io`](crate::io)'s bounded writes return them too.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ending {
    /// Who started the end.
    pub initiator: Initiator,
    /// The close code of the handshake, or `None` when no Close frame was exchanged.
    pub code: Option<CloseCode>,
    /// Why it ended.
    pub reason: EndReason,
    /// How long the close handshake took, from the first Close frame to its answer (or to the
    /// end of the stream after the server's reply); `None` when no handshake completed.
    pub close_handshake: Option<Duration>,
}

impl Ending {
    /// An ending without a close handshake: `initiator` dropped the connection for `reason`.
    pub fn dropped(initiator: Initiator, reason: EndReason) -> Ending {
        Ending {
            initiator,
            code: None,
            reason,
            close_handshake: None,
        }
    }

    /// The connection went away without a close handshake.
    pub fn peer_gone() -> Ending {
        Ending::dropped(Initiator::Client, EndReason::PeerGone)
    }

    /// The same ending with `code` as its close code.
    pub fn with_code(self, code: CloseCode) -> Ending {
        Ending {
            code: Some(code),
            ..self
        }
    }

    /// The same ending with a close handshake that took `took`.
    pub fn with_handshake(self, took: Duration) -> Ending {
        Ending {
            close_handshake: Some(took),
            ..self
        }
    }
}
