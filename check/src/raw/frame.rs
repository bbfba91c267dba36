//! The frame codec: [`Frame`], one RFC 6455 frame with every header field explicit, encoded
//! exactly as given (masked or not, RSV bits, reserved opcodes, fragmented or oversized control
//! frames), and [`Header`], decoded on its own so a reader can skip a payload it will not keep.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context};

#[cfg(doc)]
use super::RawClient;

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a Ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a Pong frame.
pub const OP_PONG: u8 = 0xA;

/// RSV1, as a value for [`Frame::rsv`].
pub const RSV1: u8 = 0b100;
/// RSV2, as a value for [`Frame::rsv`].
pub const RSV2: u8 = 0b010;
/// RSV3, as a value for [`Frame::rsv`].
pub const RSV3: u8 = 0b001;

/// A different, never-zero masking key for each frame, so a server that ignores the mask (or a
/// harness that forgets to apply it) cannot pass by accident.
pub(super) fn next_mask() -> [u8; 4] {
    static NEXT: AtomicU32 = AtomicU32::new(0x3779_b97f);
    (NEXT.fetch_add(0x9e37_79b9, Ordering::Relaxed) | 0x0101_0101).to_be_bytes()
}

/// One WebSocket frame, with every header field explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit: this is the last frame of its message.
    pub fin: bool,
    /// The three RSV bits as `0bRSV1_RSV2_RSV3` (see [`RSV1`], [`RSV2`], [`RSV3`]).
    pub rsv: u8,
    /// The 4-bit opcode, reserved values included.
    pub opcode: u8,
    /// The masking key; `None` sends the frame unmasked (which a client must never do).
    pub mask: Option<[u8; 4]>,
    /// The unmasked payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A final, masked frame with `opcode` and `payload`: what a correct client sends.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(next_mask()),
            payload: payload.into(),
        }
    }

    /// A final, masked text frame.
    pub fn text(text: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_TEXT, text)
    }

    /// A final, masked binary frame.
    pub fn binary(data: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_BINARY, data)
    }

    /// A final, masked continuation frame.
    pub fn continuation(data: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_CONTINUATION, data)
    }

    /// A masked Ping.
    pub fn ping(data: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_PING, data)
    }

    /// A masked Pong.
    pub fn pong(data: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_PONG, data)
    }

    /// A masked Close carrying `code` and the raw bytes of `reason` (which need not be UTF-8).
    pub fn close(code: u16, reason: &[u8]) -> Frame {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        Frame::new(OP_CLOSE, payload)
    }

    /// Sets the FIN bit.
    pub fn fin(mut self, fin: bool) -> Frame {
        self.fin = fin;
        self
    }

    /// Sets the RSV bits (`0b000` to `0b111`).
    pub fn rsv(mut self, rsv: u8) -> Frame {
        self.rsv = rsv;
        self
    }

    /// Sends the frame without a mask.
    pub fn unmasked(mut self) -> Frame {
        self.mask = None;
        self
    }

    /// The bytes on the wire: header, extended length, masking key, masked payload.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.payload.len();
        let mut out = Vec::with_capacity(len + 14);
        out.push(u8::from(self.fin) << 7 | (self.rsv & 0b111) << 4 | (self.opcode & 0x0f));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if let Ok(len) = u16::try_from(len) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&len.to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        match self.mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(
                    self.payload
                        .iter()
                        .enumerate()
                        .map(|(i, byte)| byte ^ key[i % 4]),
                );
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }

    /// Decodes one frame from the front of `buf`: `Ok(None)` if more bytes are needed, otherwise
    /// the frame (payload unmasked) and how many bytes it took. A frame over 64 MiB is an error:
    /// this buffers whole frames (see [`RawClient::read_control`] for a reader that does not).
    pub fn decode(buf: &[u8]) -> anyhow::Result<Option<(Frame, usize)>> {
        let Some(header) = Header::decode(buf) else {
            return Ok(None);
        };
        let Header {
            fin,
            rsv,
            opcode,
            mask,
            len,
            size: at,
        } = header;
        let len = usize::try_from(len).context("frame length overflows usize")?;
        if len > 64 * 1024 * 1024 {
            bail!("server sent a {len}-byte frame; refusing to buffer it");
        }
        let Some(payload) = buf.get(at..at + len) else {
            return Ok(None);
        };
        let payload = match mask {
            Some(key) => payload
                .iter()
                .enumerate()
                .map(|(i, byte)| byte ^ key[i % 4])
                .collect(),
            None => payload.to_vec(),
        };
        Ok(Some((
            Frame {
                fin,
                rsv,
                opcode,
                mask,
                payload,
            },
            at + len,
        )))
    }

    /// For a Close frame with a payload, its status code.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    /// For a Close frame, the raw bytes of its reason (empty when there is none).
    pub fn close_reason(&self) -> &[u8] {
        if self.opcode == OP_CLOSE && self.payload.len() > 2 {
            &self.payload[2..]
        } else {
            &[]
        }
    }
}

/// A frame header: everything but the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The FIN bit.
    pub fin: bool,
    /// The three RSV bits.
    pub rsv: u8,
    /// The 4-bit opcode.
    pub opcode: u8,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length as sent (up to 2^64 - 1).
    pub len: u64,
    /// The header's own length in bytes (2 to 14).
    pub size: usize,
}

impl Header {
    /// Decodes the header at the front of `buf`; `None` until it is all there.
    pub fn decode(buf: &[u8]) -> Option<Header> {
        let (&first, &second) = (buf.first()?, buf.get(1)?);
        let (len, mut size) = match second & 0x7f {
            126 => {
                let bytes = buf.get(2..4)?;
                (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
            }
            127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
            len => (u64::from(len), 2),
        };
        let mask = if second & 0x80 != 0 {
            let key = buf.get(size..size + 4)?;
            size += 4;
            Some(<[u8; 4]>::try_from(key).ok()?)
        } else {
            None
        };
        Some(Header {
            fin: first & 0x80 != 0,
            rsv: (first >> 4) & 0b111,
            opcode: first & 0x0f,
            mask,
            len,
            size,
        })
    }

    /// True for Close, Ping, Pong and the reserved control opcodes (0x8 to 0xF).
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn encode_decode_round_trip_for_every_length_form() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for frame in [
                Frame::binary(payload.clone()),
                Frame::binary(payload.clone())
                    .unmasked()
                    .fin(false)
                    .rsv(RSV2),
            ] {
                let bytes = frame.encode();
                let (decoded, used) = Frame::decode(&bytes).unwrap().unwrap();
                assert_eq!(used, bytes.len());
                assert_eq!(decoded, frame);
                assert_eq!(Frame::decode(&bytes[..bytes.len() - 1]).unwrap(), None);
            }
        }
    }

    #[test]
    fn header_decodes_a_length_it_would_never_buffer() {
        let mut bytes = vec![0x82, 127];
        bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let header = Header::decode(&bytes).unwrap();
        assert_eq!((header.len, header.size, header.mask), (1 << 62, 10, None));
        assert!(!header.is_control());
        assert_eq!(Header::decode(&bytes[..9]), None);
        assert!(Frame::decode(&bytes).is_err());
    }

    #[test]
    fn masked_close_matches_rfc_layout() {
        let frame = Frame {
            fin: true,
            rsv: 0,
            opcode: OP_CLOSE,
            mask: Some([1, 2, 3, 4]),
            payload: vec![0x03, 0xe8],
        };
        assert_eq!(
            frame.encode(),
            vec![0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]
        );
        assert_eq!(frame.close_code(), Some(1000));
    }
}
