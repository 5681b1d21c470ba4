//! How requests and replies are delimited on a TCP connection (`--framing`).
//!
//! - `line` (the default): a request is a line ending in `\n`; replies and
//!   pushed messages are read line by line.
//! - `packet`: the original system's framing, to drive an original server
//!   exactly as the original client did. A request is written without a line
//!   ending, and each read from the socket is one reply or one pushed message
//!   (`reconnect`, a broadcast).
//!
//! Packet framing has no delimiter: two server writes that TCP delivers
//! together are read as one message. The original client took such a read
//! for one reply. Here it is judged like any other read: it is no right
//! reply, so it counts as a wrong reply, and, when [`looks_merged`] can tell,
//! also as a merged read. The TCP driver pairs the following replies by
//! content, so one merged read does not shift the pairing of the next ones.
//!
//! Requests go one at a time with either framing. With packet framing,
//! requests written together would reach the server as one unknown command,
//! which is why the plan refuses broadcast senders there (they write `brd`
//! and a `msg:` probe together).

use bytes::{Bytes, BytesMut};
use clap::ValueEnum;
use playground_protocol::{Ending, Frame, LineCodec, RECONNECT};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::codec::Decoder;

use super::delivery;

/// Longest line accepted from the server with line framing.
const MAX_LINE: usize = 64 * 1024;
/// Read buffer room with line framing: replies are short, and the buffer
/// grows for a longer line.
const LINE_ROOM: usize = 256;
/// Room for one read with packet framing. A read is one message, so the
/// buffer must never be what cuts it: every reply and pushed message of a
/// server with the default BUFF_SIZE (512) fits.
const PACKET_ROOM: usize = 1024;

/// How requests and replies are delimited (`--framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Framing {
    /// Requests end in `\n`; replies are read line by line.
    #[default]
    Line,
    /// The original's: requests without a line ending, each read one reply.
    Packet,
}

impl Framing {
    /// What ends each request on the wire.
    pub fn ending(self) -> Ending {
        match self {
            Framing::Line => Ending::Newline,
            Framing::Packet => Ending::Bare,
        }
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Line => "line",
            Framing::Packet => "packet",
        }
    }
}

/// Replies and pushed messages read from one connection, one at a time.
pub struct Replies<R> {
    reader: R,
    buf: BytesMut,
    framing: Framing,
    lines: LineCodec,
}

impl<R: AsyncRead + Unpin> Replies<R> {
    pub fn new(reader: R, framing: Framing) -> Self {
        Replies { reader, buf: BytesMut::new(), framing, lines: LineCodec::new(MAX_LINE) }
    }

    /// The next message, `None` once the server closed the connection. A
    /// line over the maximum comes back empty: no right reply is empty.
    /// Cancel-safe, so it can wait in a `select!`: what was read stays in
    /// the buffer.
    pub async fn next(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            let message = match self.framing {
                Framing::Line => self.lines.decode(&mut self.buf)?.map(content),
                Framing::Packet => (!self.buf.is_empty()).then(|| self.buf.split().freeze()),
            };
            if message.is_some() {
                return Ok(message);
            }
            let room = match self.framing {
                Framing::Line => LINE_ROOM,
                Framing::Packet => PACKET_ROOM,
            };
            self.buf.reserve(room);
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                // A last line without its `\n` is still a message.
                return Ok(self.lines.decode_eof(&mut self.buf)?.map(content));
            }
        }
    }
}

fn content(frame: Frame) -> Bytes {
    match frame {
        Frame::Line(line) => line,
        Frame::TooLong => Bytes::new(),
    }
}

/// Whether a packet read that is no right reply looks like two server
/// writes read as one: it begins or ends with the `expected` reply (when
/// known in advance) or with `reconnect`, and has more; or a load generator
/// broadcast starts past its first byte.
pub fn looks_merged(read: &[u8], expected: Option<&[u8]>) -> bool {
    let around = |m: &[u8]| !m.is_empty() && read.len() > m.len() && (read.starts_with(m) || read.ends_with(m));
    expected.is_some_and(around) || around(RECONNECT.as_bytes()) || delivery::starts_within(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_requests_have_no_line_end() {
        let request = |framing: Framing| {
            let mut out = BytesMut::new();
            playground_protocol::Command::Msg { content: Bytes::from_static(b"1") }.encode(&mut out, framing.ending());
            out
        };
        assert_eq!(request(Framing::Packet), &b"msg:1"[..]);
        assert_eq!(request(Framing::Line), &b"msg:1\n"[..]);
    }

    /// A peer whose reads return `reads` one by one, then the end.
    struct Reads(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Reads {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(read) = self.0.pop_front() {
                buf.put_slice(&read);
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// What `Replies` makes of `reads`.
    async fn messages(framing: Framing, reads: &[&[u8]]) -> Vec<Bytes> {
        let mut replies = Replies::new(Reads(reads.iter().map(|r| r.to_vec()).collect()), framing);
        let mut out = Vec::new();
        while let Some(m) = replies.next().await.unwrap() {
            out.push(m);
        }
        out
    }

    #[tokio::test]
    async fn each_read_is_one_packet_and_lines_are_split() {
        let reads: &[&[u8]] = &[b"12345-0-1", b"a\nb", b"\nreconnect"];
        assert_eq!(messages(Framing::Packet, reads).await, [&b"12345-0-1"[..], b"a\nb", b"\nreconnect"]);
        assert_eq!(messages(Framing::Line, reads).await, [&b"12345-0-1a"[..], b"b", b"reconnect"]);
        // Two full reads: the buffer always has room for a whole one.
        let full = vec![b'x'; PACKET_ROOM];
        assert_eq!(messages(Framing::Packet, &[&full, &full]).await, [&full[..], &full[..]]);
    }

    #[test]
    fn merged_reads_are_told_where_they_can_be() {
        let echo = Some(&b"12345-0-2"[..]);
        assert!(looks_merged(b"12345-0-112345-0-2", echo), "a late reply and the expected one");
        assert!(looks_merged(b"12345-0-2lg-ab-1:2:3", echo), "the reply and a broadcast");
        assert!(looks_merged(b"lg-ab-1:2:3lg-ab-1:3:4", None), "two broadcasts");
        assert!(looks_merged(b"12345-0-1reconnect", None), "a reply and the shutdown notice");
        assert!(!looks_merged(b"error: invalid token", Some(b"success")));
        assert!(!looks_merged(b"12345-0-1", echo), "one wrong reply is only that");
        assert!(!looks_merged(b"x", Some(b"")));
    }
}
