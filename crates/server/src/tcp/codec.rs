//! The two TCP framings, decided per connection by its first command:
//!
//! - **line**: `\n`-terminated lines with a maximum length, through the
//!   protocol's [`LineCodec`];
//! - **packet** (the original's framing): every read is one command.
//!
//! [`FramingCodec`] starts undecided: bytes with a `\n` make it a line
//! connection at once; bytes without one are reported as
//! [`Input::Pending`] so the handler can wait a short grace period for the
//! rest of the line before it calls [`FramingCodec::decide_packet`]. Deciding
//! is the handler's job because it needs a clock; the codec only frames.
//!
//! In line framing the codec also reports [`Input::LineStarted`] when the
//! first bytes of a line arrive without its end, so the handler can hold the
//! line to LINE_TIMEOUT; a line that is too long stays started until the
//! next complete line, since the rest of it is still being discarded.

use bytes::{Bytes, BytesMut};
use playground_protocol::{Frame, LineCodec};

pub use crate::config::FramingMode;
use tokio_util::codec::Decoder;

/// Initial read buffer per connection, and the room made for every read: it
/// grows only for long lines, so idle connections stay cheap.
pub const READ_BUFFER: usize = 128;

/// What [`FramingCodec`] reads from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// A line or an over-long line, in line framing.
    Line(Frame),
    /// One read of a packet connection, as it arrived.
    Packet(Bytes),
    /// Undecided: more bytes without a line ending arrived (the handler
    /// restarts its grace period).
    Pending,
    /// Line framing: a line has begun and its end has not arrived yet.
    LineStarted,
}

/// The decoder of one connection.
#[derive(Debug)]
pub enum FramingCodec {
    /// No framing yet; `seen` bytes have been reported as pending.
    Undecided { line: LineCodec, max: usize, seen: usize },
    /// Line framing; `started` while a line is incomplete (reported once).
    Line { line: LineCodec, started: bool },
    /// Packet framing: each read is one command of at most `max` bytes.
    Packet { max: usize },
}

impl FramingCodec {
    /// A codec in `mode` for commands of at most `max` bytes (line framing
    /// admits one more for the `\r` of `\r\n`).
    pub fn new(mode: FramingMode, max: usize) -> Self {
        let line = LineCodec::new(max + 1);
        match mode {
            FramingMode::Auto => FramingCodec::Undecided { line, max, seen: 0 },
            FramingMode::Line => FramingCodec::Line { line, started: false },
            FramingMode::Packet => FramingCodec::Packet { max },
        }
    }

    /// True until the framing is decided.
    pub fn is_undecided(&self) -> bool {
        matches!(self, FramingCodec::Undecided { .. })
    }

    /// True once the connection uses packet framing.
    pub fn is_packet(&self) -> bool {
        matches!(self, FramingCodec::Packet { .. })
    }

    /// The grace period passed with no line ending: packet framing from now
    /// on, and the bytes waiting in `buf` are the first command.
    pub fn decide_packet(&mut self, buf: &mut BytesMut) -> Bytes {
        let max = match self {
            FramingCodec::Undecided { max, .. } | FramingCodec::Packet { max } => *max,
            FramingCodec::Line { .. } => usize::MAX,
        };
        *self = FramingCodec::Packet { max };
        take_packet(buf, max)
    }
}

impl Decoder for FramingCodec {
    type Item = Input;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Input>, Self::Error> {
        match self {
            FramingCodec::Line { line, started } => Ok(match line.decode(buf)? {
                Some(frame) => {
                    // An over-long line goes on until its `\n` is discarded.
                    *started = frame == Frame::TooLong;
                    Some(Input::Line(frame))
                }
                None if !*started && !buf.is_empty() => {
                    *started = true;
                    Some(Input::LineStarted)
                }
                None => {
                    make_room(buf);
                    None
                }
            }),
            // A packet connection reads one command per read: `FramedRead`
            // calls `decode` after every read, so taking the whole buffer
            // gives one frame per read, as the original did.
            FramingCodec::Packet { max } => Ok((!buf.is_empty()).then(|| Input::Packet(take_packet(buf, *max)))),
            FramingCodec::Undecided { line, max, seen } => {
                // A line ending decides for line framing; so does more than a
                // command's worth of bytes (it can only be an over-long line,
                // and the buffer must not grow without bound while undecided).
                if buf.contains(&b'\n') || buf.len() > *max + 1 {
                    let line = std::mem::replace(line, LineCodec::new(0));
                    *self = FramingCodec::Line { line, started: false };
                    return self.decode(buf);
                }
                if buf.len() > *seen {
                    *seen = buf.len();
                    return Ok(Some(Input::Pending));
                }
                make_room(buf);
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Input>, Self::Error> {
        match self {
            FramingCodec::Line { line, .. } => Ok(line.decode_eof(buf)?.map(Input::Line)),
            FramingCodec::Packet { .. } => self.decode(buf),
            // The client closed before the framing was decided: its last
            // bytes are a final unterminated line, as `printf msg:hi | nc -N`
            // has always been answered.
            FramingCodec::Undecided { line, .. } => {
                let line = std::mem::replace(line, LineCodec::new(0));
                *self = FramingCodec::Line { line, started: false };
                self.decode_eof(buf)
            }
        }
    }
}

/// Makes room for the next read. `FramedRead` reads only into the buffer's
/// spare capacity and reserves a single byte, and every line taken off the
/// front of the small buffer uses some up: without this, about one read in
/// seven returned part of a line and cost a second read and a wake for
/// [`Input::LineStarted`] (measured with 1,000 echo clients). When the
/// buffer is empty and its lines are gone, `reserve` reuses the allocation.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_BUFFER {
        buf.reserve(READ_BUFFER);
    }
}

/// Takes one read's bytes as a packet and makes room for the next: a read
/// only fills the buffer's spare capacity, and a command cut short by it
/// would be taken for two.
fn take_packet(buf: &mut BytesMut, max: usize) -> Bytes {
    let packet = buf.split().freeze();
    buf.reserve(max + 1);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(c: &mut FramingCodec, buf: &mut BytesMut) -> Vec<Input> {
        let mut out = vec![];
        while let Some(f) = c.decode(buf).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn a_line_ending_decides_for_lines_even_after_pending_segments() {
        let mut c = FramingCodec::new(FramingMode::Auto, 16);
        let mut buf = BytesMut::from(&b"ms"[..]);
        assert_eq!(decode_all(&mut c, &mut buf), vec![Input::Pending]);
        buf.extend_from_slice(b"g:h");
        assert_eq!(decode_all(&mut c, &mut buf), vec![Input::Pending]);
        buf.extend_from_slice(b"i\nmsg:x\n");
        let got = decode_all(&mut c, &mut buf);
        assert_eq!(
            got,
            vec![
                Input::Line(Frame::Line(Bytes::from_static(b"msg:hi"))),
                Input::Line(Frame::Line(Bytes::from_static(b"msg:x")))
            ]
        );
        assert!(!c.is_undecided() && !c.is_packet());
    }

    #[test]
    fn every_read_has_room_for_a_whole_line_and_the_buffer_is_reused() {
        let mut c = FramingCodec::new(FramingMode::Line, 64);
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        let start = buf.as_ptr();
        for i in 0..100 {
            // What one read of a 20-byte line leaves, taken off the front.
            buf.extend_from_slice(format!("msg:12345 1 {i:06}\n").as_bytes());
            let got = decode_all(&mut c, &mut buf);
            assert_eq!(got.len(), 1, "{got:?}");
            drop(got);
            assert!(buf.capacity() - buf.len() >= READ_BUFFER, "read {i}: {} bytes of room", buf.capacity());
            assert_eq!(c.decode(&mut buf).unwrap(), None);
        }
        assert_eq!(buf.as_ptr(), start, "the allocation was reused");
    }

    #[test]
    fn packet_framing_gives_one_frame_per_read() {
        let mut c = FramingCodec::new(FramingMode::Auto, 16);
        let mut buf = BytesMut::from(&b"login"[..]);
        assert_eq!(decode_all(&mut c, &mut buf), vec![Input::Pending]);
        assert_eq!(c.decide_packet(&mut buf), Bytes::from_static(b"login"));
        assert!(buf.capacity() > 16, "room for a whole command in the next read");
        assert_eq!(decode_all(&mut c, &mut buf), vec![]);
        buf.extend_from_slice(b"msg:a\nmsg:b");
        assert_eq!(decode_all(&mut c, &mut buf), vec![Input::Packet(Bytes::from_static(b"msg:a\nmsg:b"))]);
    }

    #[test]
    fn undecided_bytes_are_bounded() {
        let mut c = FramingCodec::new(FramingMode::Auto, 8);
        let mut buf = BytesMut::from(&[b'x'; 9][..]);
        assert_eq!(decode_all(&mut c, &mut buf), vec![Input::Pending]);
        buf.extend_from_slice(b"x");
        assert_eq!(decode_all(&mut c, &mut buf), vec![Input::Line(Frame::TooLong)]);
        buf.extend_from_slice(b"x\nok\n");
        assert_eq!(decode_all(&mut c, &mut buf), vec![Input::Line(Frame::Line(Bytes::from_static(b"ok")))]);
    }

    #[test]
    fn a_started_line_is_reported_once_until_it_ends() {
        let mut c = FramingCodec::new(FramingMode::Auto, 8);
        let mut buf = BytesMut::from(&b"msg:a\nms"[..]);
        let a = Input::Line(Frame::Line(Bytes::from_static(b"msg:a")));
        assert_eq!(decode_all(&mut c, &mut buf), vec![a, Input::LineStarted]);
        buf.extend_from_slice(b"g");
        assert_eq!(decode_all(&mut c, &mut buf), vec![]);
        buf.extend_from_slice(b":b\n");
        let b = Input::Line(Frame::Line(Bytes::from_static(b"msg:b")));
        assert_eq!(decode_all(&mut c, &mut buf), vec![b]);
        // An over-long line stays started while its rest is discarded.
        buf.extend_from_slice(&[b'x'; 20]);
        assert_eq!(decode_all(&mut c, &mut buf), vec![Input::Line(Frame::TooLong)]);
        buf.extend_from_slice(&[b'x'; 20]);
        assert_eq!(decode_all(&mut c, &mut buf), vec![]);
        buf.extend_from_slice(b"x\nok\n");
        assert_eq!(decode_all(&mut c, &mut buf), vec![Input::Line(Frame::Line(Bytes::from_static(b"ok")))]);
    }

    #[test]
    fn forced_modes() {
        let mut line = FramingCodec::new(FramingMode::Line, 16);
        assert_eq!(decode_all(&mut line, &mut BytesMut::from(&b"msg"[..])), vec![Input::LineStarted]);
        let mut packet = FramingCodec::new(FramingMode::Packet, 16);
        assert_eq!(
            decode_all(&mut packet, &mut BytesMut::from(&b"msg\n"[..])),
            vec![Input::Packet(Bytes::from_static(b"msg\n"))]
        );
    }
}
