//! The part of memcached's text protocol the cache speaks: `get` of one key,
//! `set` with a time to live, and their replies, as a tokio-util codec.
//!
//! Written by hand because no maintained Rust memcached client pipelines
//! the requests of many tasks over one connection (async-memcached serves
//! one request at a time per connection and keeps its parser private); the
//! subset is small and fixed. Values are stored with flags 0, as the
//! original servers' client stored them, so both read each other's data.

use std::io::Write;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The longest reply line accepted (a `VALUE` header is at most about 300
/// bytes: memcached keys are at most 250).
const MAX_LINE: usize = 1024;
/// A guard against a corrupt length, not a limit on data: memcached's own
/// item size limit (`-I`, 1 MiB by default, at most 1 GiB) applies first.
const MAX_VALUE: usize = 1 << 30;

/// One request to memcached.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `get <key>`.
    Get(Bytes),
    /// `set <key> 0 <ttl> <len>` and the value.
    Set { key: Bytes, value: Bytes, ttl_secs: u32 },
}

/// One reply from memcached.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `VALUE <key> <flags> <len>`, the value, `END`.
    Hit { key: Bytes, value: Bytes },
    /// `END` alone: no such key.
    Miss,
    /// `STORED`.
    Stored,
    /// `NOT_STORED`.
    NotStored,
    /// `SERVER_ERROR <text>`: this request failed, the connection is fine.
    ServerError(String),
}

/// The connection cannot be used any more.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected reply from memcached: {0:?}")]
    Unexpected(String),
}

fn unexpected(bytes: &[u8]) -> ProtocolError {
    ProtocolError::Unexpected(String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned())
}

/// Encodes [`Request`]s and decodes [`Reply`]s.
#[derive(Debug, Default)]
pub struct Codec;

impl Encoder<Request> for Codec {
    type Error = ProtocolError;

    fn encode(&mut self, request: Request, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match request {
            Request::Get(key) => {
                dst.reserve(key.len() + 6);
                dst.put_slice(b"get ");
                dst.put_slice(&key);
                dst.put_slice(b"\r\n");
            }
            Request::Set { key, value, ttl_secs } => {
                dst.reserve(key.len() + value.len() + 40);
                dst.put_slice(b"set ");
                dst.put_slice(&key);
                write!(dst.writer(), " 0 {ttl_secs} {}\r\n", value.len())?;
                dst.put_slice(&value);
                dst.put_slice(b"\r\n");
            }
        }
        Ok(())
    }
}

impl Decoder for Codec {
    type Item = Reply;
    type Error = ProtocolError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
        let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
            return if buf.len() > MAX_LINE { Err(unexpected(buf)) } else { Ok(None) };
        };
        let line = &buf[..eol];
        let reply = match line {
            b"END" => Reply::Miss,
            b"STORED" => Reply::Stored,
            b"NOT_STORED" => Reply::NotStored,
            _ if line.starts_with(b"SERVER_ERROR") => {
                Reply::ServerError(String::from_utf8_lossy(&line[12..]).trim().to_string())
            }
            _ if line.starts_with(b"VALUE ") => return decode_value(buf, eol),
            _ => return Err(unexpected(line)),
        };
        buf.advance(eol + 2);
        Ok(Some(reply))
    }
}

/// `VALUE <key> <flags> <len> [<cas>]\r\n<value>\r\nEND\r\n`, once all of it is in `buf`.
fn decode_value(buf: &mut BytesMut, eol: usize) -> Result<Option<Reply>, ProtocolError> {
    let line = &buf[..eol];
    let mut fields = line[6..].split(|&b| b == b' ');
    let (Some(key), Some(_flags), Some(len)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(unexpected(line));
    };
    let len: usize = match std::str::from_utf8(len).ok().and_then(|l| l.parse().ok()) {
        Some(len) if len <= MAX_VALUE => len,
        _ => return Err(unexpected(line)),
    };
    let start = eol + 2;
    let need = start + len + b"\r\nEND\r\n".len();
    if buf.len() < need {
        buf.reserve(need - buf.len());
        return Ok(None);
    }
    if &buf[start + len..need] != b"\r\nEND\r\n" {
        return Err(unexpected(line));
    }
    let key = Bytes::copy_from_slice(key);
    buf.advance(start);
    let value = buf.split_to(len).freeze();
    buf.advance(b"\r\nEND\r\n".len());
    Ok(Some(Reply::Hit { key, value }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Reply>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(r) = Codec.decode(&mut buf)? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn requests_are_written_as_memcached_reads_them() {
        let mut buf = BytesMut::new();
        Codec.encode(Request::Get(Bytes::from_static(b"c-k")), &mut buf).unwrap();
        let set = Request::Set { key: Bytes::from_static(b"tok"), value: Bytes::from_static(b"a b\r\n"), ttl_secs: 60 };
        Codec.encode(set, &mut buf).unwrap();
        assert_eq!(&buf[..], b"get c-k\r\nset tok 0 60 5\r\na b\r\n\r\n");
    }

    #[test]
    fn replies_in_a_row_decode_in_order() {
        let input =
            b"VALUE c-k 0 5 17\r\na\r\nb \r\nEND\r\nEND\r\nSTORED\r\nNOT_STORED\r\nSERVER_ERROR out of memory\r\n";
        let replies = decode_all(input).unwrap();
        assert_eq!(
            replies,
            vec![
                Reply::Hit { key: Bytes::from_static(b"c-k"), value: Bytes::from_static(b"a\r\nb ") },
                Reply::Miss,
                Reply::Stored,
                Reply::NotStored,
                Reply::ServerError("out of memory".into()),
            ]
        );
    }

    #[test]
    fn a_reply_split_anywhere_waits_for_the_rest() {
        let input = b"VALUE key 0 3\r\nabc\r\nEND\r\nSTORED\r\n";
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            let mut got = Vec::new();
            while let Some(r) = Codec.decode(&mut buf).unwrap() {
                got.push(r);
            }
            buf.extend_from_slice(&input[cut..]);
            while let Some(r) = Codec.decode(&mut buf).unwrap() {
                got.push(r);
            }
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn what_was_not_asked_for_closes_the_connection() {
        for bad in [
            &b"ERROR\r\n"[..],
            b"CLIENT_ERROR bad data chunk\r\n",
            b"VALUE k 0 x\r\n",
            b"VALUE k 0 3\r\nabcd\r\nEND\r\n",
            b"VALUE k 0 99999999999\r\n",
        ] {
            assert!(decode_all(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(decode_all(&[b'x'; MAX_LINE + 1]).is_err());
        assert_eq!(decode_all(&[b'x'; MAX_LINE]).unwrap(), vec![]);
    }
}
