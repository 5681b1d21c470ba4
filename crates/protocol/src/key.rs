//! Keys and tokens: the only two things a client can make the server look up
//! in the cache. Both are validated here, before anything reaches a backend,
//! so the memcached text protocol can never be injected into (no whitespace,
//! no control bytes, bounded length).

use bytes::Bytes;

/// Longest client key, in bytes (part of the error text of the protocol).
pub const MAX_KEY_LEN: usize = 64;
/// Longest client value, in bytes (part of the error text of the protocol).
pub const MAX_VALUE_LEN: usize = 256;
/// Length of a token: a hyphenated UUID.
pub const TOKEN_LEN: usize = 36;

/// A client key: 1 to [`MAX_KEY_LEN`] bytes of printable ASCII other than `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(Bytes);

impl Key {
    /// Validates `raw` as a key. Length is checked by the caller (each command
    /// has its own length error); this checks the bytes themselves.
    pub fn new(raw: Bytes) -> Option<Key> {
        (!raw.is_empty() && raw.len() <= MAX_KEY_LEN && raw.iter().all(|&b| is_key_byte(b))).then_some(Key(raw))
    }

    /// The key's bytes, guaranteed safe for the memcached text protocol.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key as it came from the client (for `error: finding key {key}`).
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

/// True for the bytes a key may contain: printable ASCII except `:`.
pub fn is_key_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b':'
}

/// A token in the only shape the server ever issues: a hyphenated UUID
/// (`8-4-4-4-12` hexadecimal digits). Anything else cannot be a valid token,
/// so it is rejected without a cache round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token([u8; TOKEN_LEN]);

impl Token {
    /// Parses a token, returning `None` unless it has the UUID shape.
    pub fn parse(raw: &[u8]) -> Option<Token> {
        let bytes: [u8; TOKEN_LEN] = raw.try_into().ok()?;
        let shaped = bytes.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
        shaped.then_some(Token(bytes))
    }

    /// The token's 36 ASCII bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The token as text (always ASCII).
    pub fn as_str(&self) -> &str {
        // The shape check admits ASCII only, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_accept_printable_ascii_only() {
        assert!(Key::new(Bytes::from_static(b"a")).is_some());
        assert!(Key::new(Bytes::from_static(b"~!@#$%^&*()_+{}|<>?")).is_some());
        assert!(Key::new(Bytes::from(vec![b'k'; 64])).is_some());
        for bad in [&b""[..], b"a b", b"a:b", b"a\r", b"a\nset x", b"\x00", b"\x7f", "é".as_bytes()] {
            assert!(Key::new(Bytes::copy_from_slice(bad)).is_none(), "{bad:?}");
        }
        assert!(Key::new(Bytes::from(vec![b'k'; 65])).is_none());
    }

    #[test]
    fn tokens_must_be_uuid_shaped() {
        let ok = b"0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(Token::parse(ok).unwrap().as_bytes(), ok);
        assert!(Token::parse(b"0f8fad5b-d9cb-469f-a165-70867728950").is_none());
        assert!(Token::parse(b"0f8fad5bxd9cb-469f-a165-70867728950e").is_none());
        assert!(Token::parse(b"0f8fad5b-d9cb-469f-a165-70867728950 ").is_none());
        assert!(Token::parse(b"zf8fad5b-d9cb-469f-a165-70867728950e").is_none());
    }
}
