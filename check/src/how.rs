//! How a connection the check held ended: [`How`], in the words of the JSON and the tables, and
//! [`Ended`], the same with what it ended on (the server's Close frame, or what was wrong).

use serde::Serialize;

use crate::raw::Frame;

/// How a connection the check held ended: `"close"`, `"fin"`, `"rst"`, `"open"`, `"error"` in
/// JSON. A wait for the server's Close ([`crate::raw::RawClient::await_close`]), `--idle`'s
/// connections and `--deploy`'s tabs all end in these terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// The other side sent a Close frame (`--idle` and `--deploy` answer it, as a browser does).
    Close,
    /// TCP ended (FIN) without a Close frame, between frames or inside one.
    Fin,
    /// TCP was reset (ECONNRESET) without a Close frame.
    Rst,
    /// Still open at the end (the wait's deadline, `--idle`'s MAX, or when the run stopped).
    Open,
    /// The check ended it: the server sent bytes that are no frame, or did not take a write
    /// in time (`--idle`: `--timeout`). A browser fails such a connection with 1006.
    Error,
}

impl How {
    /// The name in JSON and in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            How::Close => "close",
            How::Fin => "fin",
            How::Rst => "rst",
            How::Open => "open",
            How::Error => "error",
        }
    }

    /// True when the connection ended without a close handshake: a browser shows 1006.
    pub fn abnormal(self) -> bool {
        matches!(self, How::Fin | How::Rst | How::Error)
    }
}

/// How a connection ended, with what it ended on: the server's Close frame with
/// [`How::Close`], what was wrong with [`How::Error`], nothing else otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// How.
    pub how: How,
    /// The server's Close frame: `Some` exactly with [`How::Close`].
    pub close: Option<Frame>,
    /// What was wrong: `Some` exactly with [`How::Error`].
    pub error: Option<String>,
}

impl Ended {
    /// The server sent this Close frame.
    pub fn with_close(frame: Frame) -> Ended {
        Ended {
            how: How::Close,
            close: Some(frame),
            error: None,
        }
    }

    /// Ended `how` ([`How::Fin`], [`How::Rst`] or [`How::Open`]), without a Close frame.
    pub fn without_close(how: How) -> Ended {
        debug_assert!(!matches!(how, How::Close | How::Error), "{how:?}");
        Ended {
            how,
            close: None,
            error: None,
        }
    }

    /// The check ended it because of `why` ([`How::Error`]).
    pub fn failed(why: String) -> Ended {
        Ended {
            how: How::Error,
            close: None,
            error: Some(why),
        }
    }

    /// How a read that failed with `err` ended the connection: [`How::Rst`] for a reset
    /// (ECONNRESET, an abort), [`How::Fin`] for a FIN in the middle of a frame (or a reset after
    /// a FIN), [`How::Error`] for bytes that are not a valid frame.
    pub fn of_error(err: &anyhow::Error) -> Ended {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        let kind = err
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind);
        match kind {
            Some(ConnectionReset | ConnectionAborted) => Ended::without_close(How::Rst),
            // Linux fails a read with EPIPE when a reset came after the peer's FIN (in
            // CLOSE_WAIT): the connection ended with the FIN.
            Some(UnexpectedEof | BrokenPipe) => Ended::without_close(How::Fin),
            _ => Ended::failed(format!("{err:#}")),
        }
    }

    /// The code of the server's Close frame; `None` without one, or for a Close without a code.
    pub fn close_code(&self) -> Option<u16> {
        self.close.as_ref().and_then(Frame::close_code)
    }

    /// The reason of the server's Close frame (lossy UTF-8; at most 123 bytes); `None` without
    /// a Close frame, or for a Close without a reason.
    pub fn close_reason(&self) -> Option<String> {
        let reason = self.close.as_ref().map(Frame::close_reason)?;
        (!reason.is_empty()).then(|| String::from_utf8_lossy(reason).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    #[test]
    fn a_failed_read_is_a_reset_a_fin_or_an_error() {
        let how = |kind| Ended::of_error(&Error::from(kind).into()).how;
        assert_eq!(how(ErrorKind::ConnectionReset), How::Rst);
        assert_eq!(how(ErrorKind::ConnectionAborted), How::Rst);
        // EOF inside a frame, and EPIPE (a reset after the peer's FIN): the FIN ended it.
        assert_eq!(how(ErrorKind::UnexpectedEof), How::Fin);
        assert_eq!(how(ErrorKind::BrokenPipe), How::Fin);
        let garbage = Ended::of_error(&anyhow::anyhow!("a 200-byte control frame"));
        assert_eq!(garbage.how, How::Error);
        assert!(garbage.error.is_some_and(|text| text.contains("200-byte")));
    }
}
