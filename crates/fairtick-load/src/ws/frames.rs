//! The few WebSocket frames a watching client needs to read and write by itself (RFC 6455
//! §5.2): the readers take frames straight from the socket's bytes, so that ten thousand
//! clients in one process cost the kernel's reads and little else.

/// Frame opcodes the readers act on.
pub const TEXT: u8 = 0x1;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

/// One whole frame found at the start of a byte buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// Why the bytes are not a frame a server may send.
#[derive(Debug, PartialEq, Eq)]
pub enum BadFrame {
    /// A server never masks its frames (RFC 6455 §5.1).
    Masked,
    /// A length beyond what a client keeps for one frame.
    TooLong(u64),
}

/// The most one frame may carry: far above any message of the feed.
pub const MAX_PAYLOAD: u64 = 1 << 20;

/// The frame at the start of `bytes` and how many bytes it takes, or `Ok(None)` if the bytes end
/// before it does.
pub fn next(bytes: &[u8]) -> Result<Option<(Frame<'_>, usize)>, BadFrame> {
    let [first, second, rest @ ..] = bytes else { return Ok(None) };
    if second & 0x80 != 0 {
        return Err(BadFrame::Masked);
    }
    let (length, header) = match second & 0x7f {
        126 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 4),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(eight) => (u64::from_be_bytes(eight.try_into().expect("eight bytes")), 10),
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if length > MAX_PAYLOAD {
        return Err(BadFrame::TooLong(length));
    }
    let end = header + length as usize;
    Ok(bytes.get(header..end).map(|payload| (Frame { opcode: first & 0x0f, payload }, end)))
}

/// A client's pong to a ping carrying `payload`: a client masks what it sends, here with a zero
/// key, which leaves the payload as it is.
pub fn pong(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(6 + payload.len());
    // Control frames carry at most 125 bytes, so the length fits the second byte.
    frame.extend_from_slice(&[0x80 | 0xA, 0x80 | payload.len().min(125) as u8, 0, 0, 0, 0]);
    frame.extend_from_slice(&payload[..payload.len().min(125)]);
    frame
}

/// A frame as tungstenite puts it on the wire, for tests to send as a server would.
#[cfg(test)]
pub fn encoded(frame: tokio_tungstenite::tungstenite::protocol::frame::Frame) -> Vec<u8> {
    let mut bytes = Vec::new();
    frame.format(&mut bytes).expect("writing to a Vec cannot fail");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame as Encoded;

    #[test]
    fn reads_frames_of_every_length_encoding_as_tungstenite_writes_them() {
        for length in [0, 5, 125, 126, 300, 65_535, 65_536, 100_000] {
            let text = "x".repeat(length);
            let bytes = encoded(Encoded::message(text.clone().into_bytes(), tungstenite_text(), true));
            let (frame, used) = next(&bytes).unwrap().unwrap();
            assert_eq!((frame.opcode, frame.payload, used), (TEXT, text.as_bytes(), bytes.len()));
            for cut in [0, 1, 2, 3, bytes.len() - 1] {
                assert_eq!(
                    next(&bytes[..cut.min(bytes.len() - 1)]),
                    Ok(None),
                    "length {length}, cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn finds_each_frame_of_a_run_and_the_start_of_the_next() {
        let mut bytes = encoded(Encoded::ping(b"beat".to_vec()));
        bytes.extend(encoded(Encoded::message(b"{}".to_vec(), tungstenite_text(), true)));
        bytes.extend_from_slice(&[0x81, 10, b'p']);
        let (ping, used) = next(&bytes).unwrap().unwrap();
        assert_eq!((ping.opcode, ping.payload), (PING, &b"beat"[..]));
        let (text, more) = next(&bytes[used..]).unwrap().unwrap();
        assert_eq!((text.opcode, text.payload), (TEXT, &b"{}"[..]));
        assert_eq!(next(&bytes[used + more..]), Ok(None));
    }

    #[test]
    fn refuses_masked_and_oversized_frames() {
        assert_eq!(next(&[0x81, 0x85, 1, 2, 3, 4, 0]), Err(BadFrame::Masked));
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(MAX_PAYLOAD + 1).to_be_bytes());
        assert_eq!(next(&huge), Err(BadFrame::TooLong(MAX_PAYLOAD + 1)));
    }

    #[test]
    fn a_pong_is_what_tungstenite_reads_as_one() {
        use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
        let bytes = pong(b"beat");
        let mut cursor = std::io::Cursor::new(bytes.as_slice());
        let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert_eq!(
            header.opcode,
            tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Control(
                tokio_tungstenite::tungstenite::protocol::frame::coding::Control::Pong
            )
        );
        assert!(header.is_final);
        assert_eq!(header.mask, Some([0; 4]));
        assert_eq!(length, 4);
        assert_eq!(&bytes[cursor.position() as usize..], b"beat");
    }

    fn tungstenite_text() -> tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        OpCode::Data(Data::Text)
    }
}
