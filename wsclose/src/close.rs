//! Close frames: building them, reading their code, and the code a read error deserves.

use std::error::Error as StdError;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes};

use crate::assembly::MessageRefused;
use crate::EndReason;

/// A Close frame with `code` and `reason`.
///
/// ```
/// use wsclose::{close, CloseCode, Message};
///
/// let bye = close::message(CloseCode::Away, "server shutting down");
/// assert_eq!(close::code(&bye), Some(CloseCode::Away));
/// assert_eq!(close::code(&Message::text("hi")), None);
/// ```
pub fn message(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// The code of a Close message; `None` for other messages and for a Close without a code.
pub fn code(message: &Message) -> Option<CloseCode> {
    match message {
        Message::Close(Some(frame)) => Some(frame.code),
        _ => None,
    }
}

/// The Close a server sends when it shuts down with `code`: `server restarting` for 1012
/// (service restart), `server shutting down` otherwise.
pub fn shutdown(code: CloseCode) -> Message {
    let reason = if code == CloseCode::Restart {
        "server restarting"
    } else {
        "server shutting down"
    };
    message(code, reason)
}

/// Maps a read error to the close code the server answers with and the [`EndReason`], or
/// `None` when the connection is simply gone (reset, EOF, I/O error) and nobody is left to
/// answer. A message that a [`MessageGuard`](crate::assembly::MessageGuard) refused gets
/// 1008.
///
/// The error's `source()` chain is searched for a [`tungstenite::Error`], so wrappers such as
/// warp's and axum's errors are looked through (when their tungstenite is this version).
///
/// ```
/// use wsclose::{close, CloseCode, EndReason};
///
/// let error = tungstenite::Error::Utf8("bad".into());
/// assert_eq!(close::for_error(&error), Some((CloseCode::Invalid, EndReason::InvalidUtf8)));
/// ```
pub fn for_error(error: &(dyn StdError + 'static)) -> Option<(CloseCode, EndReason)> {
    use tungstenite::error::{CapacityError, ProtocolError};
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(tungstenite_error) = current.downcast_ref::<tungstenite::Error>() {
            let protocol_error = Some((CloseCode::Protocol, EndReason::ProtocolError));
            return match tungstenite_error {
                tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
                tungstenite::Error::Protocol(_) | tungstenite::Error::AttackAttempt => {
                    protocol_error
                }
                tungstenite::Error::Utf8(_) => Some((CloseCode::Invalid, EndReason::InvalidUtf8)),
                // RFC 6455 §5.2: "the most significant bit MUST be 0" in a 64-bit length.
                // tungstenite reports such a length as too big; it is a protocol error.
                tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, .. })
                    if (*size as u64) >> 63 == 1 =>
                {
                    protocol_error
                }
                tungstenite::Error::Capacity(_) => {
                    Some((CloseCode::Size, EndReason::MessageTooBig))
                }
                tungstenite::Error::Io(io) => match io
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<MessageRefused>())
                {
                    Some(MessageRefused::Timeout) => {
                        Some((CloseCode::Policy, EndReason::MessageTimeout))
                    }
                    Some(MessageRefused::Budget) => {
                        Some((CloseCode::Policy, EndReason::MessageBudget))
                    }
                    None => None,
                },
                _ => None,
            };
        }
        cause = current.source();
    }
    None
}
