//! [`How`]: how a connection the check held open ended, in the words of the JSON and the
//! tables.

use serde::Serialize;

/// How a connection the check held ended: `"close"`, `"fin"`, `"rst"`, `"open"`, `"error"` in
/// JSON. `--idle`'s connections and `--deploy`'s tabs both end in these terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// The other side sent a Close frame (the check answered it, as a browser does).
    Close,
    /// TCP ended (FIN) without a Close frame, between frames or inside one.
    Fin,
    /// TCP was reset (ECONNRESET) without a Close frame.
    Rst,
    /// Still open at the end (`--idle`'s MAX, or when the run stopped).
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
