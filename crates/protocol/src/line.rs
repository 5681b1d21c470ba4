//! Line framing with a maximum length, over raw bytes (UTF-8 is not
//! required): the framing of `nc` sessions, shared by the TCP server and the
//! load generator. An over-long line is a normal frame ([`Frame::TooLong`]):
//! the codec discards the rest of that line, and the connection stays usable
//! (a decoder error would end a `FramedRead` stream). A codec does no I/O: it
//! only cuts bytes into frames.
//!
//! Written here rather than wrapping tokio-util's `AnyDelimiterCodec`, which
//! behaves the same but tests every byte against a set of delimiters: with
//! `memchr` finding the one `\n`, cutting a line costs a few nanoseconds, and
//! the servers cut one per command (measured: the wrapped codec was 1 % of a
//! TCP echo server's CPU samples).

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// One line read by [`LineCodec`].
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A line, without its `\n` (a trailing `\r` is left to the parser).
    Line(Bytes),
    /// A line longer than the maximum; its bytes are being discarded.
    TooLong,
}

/// `\n`-delimited lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineCodec {
    max: usize,
    /// Bytes at the front of the buffer already searched for a `\n`.
    searched: usize,
    /// The rest of an over-long line is being thrown away.
    discarding: bool,
}

impl LineCodec {
    /// A codec for lines of at most `max` bytes (the `\r` of `\r\n` included).
    pub fn new(max: usize) -> Self {
        LineCodec { max, searched: 0, discarding: false }
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        loop {
            // A line may be `max` bytes long; its `\n` may be one further.
            let limit = self.max.saturating_add(1).min(buf.len());
            let end = memchr::memchr(b'\n', &buf[self.searched..limit]).map(|i| i + self.searched);
            match (self.discarding, end) {
                (true, Some(end)) => {
                    buf.advance(end + 1);
                    self.discarding = false;
                    self.searched = 0;
                }
                (true, None) => {
                    buf.advance(limit);
                    self.searched = 0;
                    if buf.is_empty() {
                        return Ok(None);
                    }
                }
                (false, Some(end)) => {
                    self.searched = 0;
                    // Copied out, not split off: `split_to` makes the buffer
                    // shared, and every line then raises and drops a
                    // reference count in a header of its own, a cache miss
                    // per command at thousands of connections, and a line
                    // kept (a `brd` message) pins the buffer. A command is
                    // short and was just read, so the copy is cheaper, and
                    // the buffer's room is reused in place (docs/performance.md,
                    // "Lines copied out of the read buffer").
                    let line = Bytes::copy_from_slice(&buf[..end]);
                    buf.advance(end + 1);
                    return Ok(Some(Frame::Line(line)));
                }
                (false, None) if buf.len() > self.max => {
                    self.discarding = true;
                    return Ok(Some(Frame::TooLong));
                }
                (false, None) => {
                    self.searched = limit;
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            // What is left is a last line without its `\n`.
            None if !buf.is_empty() => {
                self.searched = 0;
                Ok(Some(Frame::Line(buf.split().freeze())))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(codec: &mut LineCodec, input: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(input);
        let mut out = vec![];
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn long_line_is_one_error_then_the_stream_goes_on() {
        let mut c = LineCodec::new(8);
        let mut input = vec![b'x'; 600];
        input.extend(b"\nmsg:hi\n");
        let got = frames(&mut c, &input);
        assert_eq!(got, vec![Frame::TooLong, Frame::Line(Bytes::from_static(b"msg:hi"))]);
    }

    #[test]
    fn long_line_split_over_reads() {
        let mut c = LineCodec::new(8);
        assert_eq!(frames(&mut c, &[b'x'; 20]), vec![Frame::TooLong]);
        assert_eq!(frames(&mut c, &[b'x'; 20]), vec![]);
        assert_eq!(frames(&mut c, b"xx\nok\n"), vec![Frame::Line(Bytes::from_static(b"ok"))]);
    }

    /// A line handed out is its own: the buffer it was read into is reused
    /// in place while the line is still held.
    #[test]
    fn a_line_held_does_not_pin_the_read_buffer() {
        let mut c = LineCodec::new(64);
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"brd:kept\n");
        let start = buf.as_ptr();
        let held = c.decode(&mut buf).unwrap();
        buf.reserve(64);
        assert_eq!(buf.as_ptr(), start, "the room of the read buffer is reused");
        buf.extend_from_slice(b"msg:next\n");
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::Line(Bytes::from_static(b"msg:next"))));
        assert_eq!(held, Some(Frame::Line(Bytes::from_static(b"brd:kept"))));
    }

    #[test]
    fn exactly_max_is_accepted_and_bytes_pass_through() {
        let mut c = LineCodec::new(8);
        assert_eq!(
            frames(&mut c, b"12345678\n\xff\x00\r\n"),
            vec![Frame::Line(Bytes::from_static(b"12345678")), Frame::Line(Bytes::from_static(b"\xff\x00\r"))]
        );
    }

    /// The frames of `input` cut into reads of the given sizes, then the end
    /// of the stream, through `decode`.
    fn cut<E>(
        mut decode: impl FnMut(&mut BytesMut, bool) -> Result<Option<Frame>, E>,
        input: &[u8],
        reads: &[usize],
    ) -> Vec<Frame> {
        let (mut buf, mut out, mut rest) = (BytesMut::new(), vec![], input);
        for &n in reads.iter().chain(std::iter::once(&usize::MAX)) {
            let (read, left) = rest.split_at(n.min(rest.len()));
            buf.extend_from_slice(read);
            rest = left;
            while let Ok(Some(f)) = decode(&mut buf, false) {
                out.push(f);
            }
        }
        while let Ok(Some(f)) = decode(&mut buf, true) {
            out.push(f);
        }
        out
    }

    proptest::proptest! {
        /// The same frames as tokio-util's `AnyDelimiterCodec` (which this
        /// codec replaced) for any bytes, any maximum, cut into any reads.
        #[test]
        fn frames_as_tokio_utils_delimiter_codec(
            input in proptest::collection::vec(proptest::sample::select(b"ab\r\n".to_vec()), 0..200),
            reads in proptest::collection::vec(1usize..40, 0..20),
            max in 0usize..24,
        ) {
            use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError};
            let mut ours = LineCodec::new(max);
            let mine = cut(|b, eof| if eof { ours.decode_eof(b) } else { ours.decode(b) }, &input, &reads);
            let mut theirs = AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), max);
            let map = |r: Result<Option<Bytes>, AnyDelimiterCodecError>| match r {
                Ok(frame) => Ok(frame.map(Frame::Line)),
                Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => Ok(Some(Frame::TooLong)),
                Err(e) => Err(e),
            };
            let expected = cut(|b, eof| map(if eof { theirs.decode_eof(b) } else { theirs.decode(b) }), &input, &reads);
            proptest::prop_assert_eq!(mine, expected);
        }
    }
}
