//! Line framing with a maximum length, over raw bytes (UTF-8 is not
//! required): the framing of `nc` sessions, shared by the TCP server and the
//! load generator. It wraps tokio-util's `AnyDelimiterCodec` because a
//! decoder error ends a `FramedRead` stream: here an over-long line is a
//! normal frame ([`Frame::TooLong`]), the codec discards the rest of that
//! line, and the connection stays usable. A codec does no I/O: it only cuts
//! bytes into frames.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder};

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
    inner: AnyDelimiterCodec,
}

impl LineCodec {
    /// A codec for lines of at most `max` bytes (the `\r` of `\r\n` included).
    pub fn new(max: usize) -> Self {
        LineCodec { inner: AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), max) }
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        map(self.inner.decode(buf))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        map(self.inner.decode_eof(buf))
    }
}

fn map(r: Result<Option<Bytes>, AnyDelimiterCodecError>) -> Result<Option<Frame>, std::io::Error> {
    match r {
        Ok(frame) => Ok(frame.map(Frame::Line)),
        Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => Ok(Some(Frame::TooLong)),
        Err(AnyDelimiterCodecError::Io(e)) => Err(e),
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

    #[test]
    fn exactly_max_is_accepted_and_bytes_pass_through() {
        let mut c = LineCodec::new(8);
        assert_eq!(
            frames(&mut c, b"12345678\n\xff\x00\r\n"),
            vec![Frame::Line(Bytes::from_static(b"12345678")), Frame::Line(Bytes::from_static(b"\xff\x00\r"))]
        );
    }
}
