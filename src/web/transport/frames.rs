//! Just enough of HTTP/2's framing (RFC 9113 §4.1) to tell requests from control frames,
//! in either direction of a connection, without buffering: each frame is a 9-byte header
//! (payload length, type, flags, stream id) and a payload that is skipped.

/// The client's connection preface, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
pub const PREFACE_LEN: usize = 24;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
/// The flag that closes a stream's side on a DATA or HEADERS frame.
pub const END_STREAM: u8 = 0x1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Frame {
    /// A frame that carries a request or a response (not a control frame such as PING,
    /// SETTINGS or WINDOW_UPDATE).
    pub fn carries_a_message(self) -> bool {
        matches!(self.kind, DATA | HEADERS)
    }

    pub fn ends_stream(self) -> bool {
        self.carries_a_message() && self.flags & END_STREAM != 0
    }
}

/// Follows the frames of one direction as its bytes go by.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Bytes still to pass before the next frame header (a payload, or the preface).
    skip: usize,
    header: [u8; 9],
    have: usize,
}

impl Scanner {
    /// For the client's side, which opens with the connection preface.
    pub fn after_preface() -> Self {
        Self {
            skip: PREFACE_LEN,
            ..Self::default()
        }
    }

    /// Reads `bytes`, calling `on_frame` for each frame header completed.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(Frame)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (self.header.len() - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == self.header.len() {
                self.have = 0;
                let h = self.header;
                self.skip = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                on_frame(Frame {
                    kind: h[3],
                    flags: h[4],
                    stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_are_found_however_the_bytes_are_cut() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend(frame(0x4, 0, 0, &[0; 12]));
        wire.extend(frame(0x6, 0, 0, &[1; 8]));
        wire.extend(frame(HEADERS, END_STREAM | 0x4, 1, &[9; 300]));
        wire.extend(frame(DATA, END_STREAM, 3, &[]));
        let expected = vec![
            Frame {
                kind: 0x4,
                flags: 0,
                stream: 0,
            },
            Frame {
                kind: 0x6,
                flags: 0,
                stream: 0,
            },
            Frame {
                kind: HEADERS,
                flags: END_STREAM | 0x4,
                stream: 1,
            },
            Frame {
                kind: DATA,
                flags: END_STREAM,
                stream: 3,
            },
        ];
        for cut in [1, 2, 7, 9, 100, wire.len()] {
            let mut scanner = Scanner::after_preface();
            let mut seen = Vec::new();
            for piece in wire.chunks(cut) {
                scanner.feed(piece, |f| seen.push(f));
            }
            assert_eq!(seen, expected, "pieces of {cut}");
        }
        assert!(!expected[1].carries_a_message());
        assert!(expected[2].ends_stream() && expected[3].ends_stream());
    }
}
