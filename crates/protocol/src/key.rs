//! Keys and tokens: the only two things a client can make the server look up
//! in the cache. Both are validated here, before anything reaches a backend,
//! so the memcached text protocol can never be injected into (no whitespace,
//! no control bytes, bounded length).

use bytes::Bytes;

/// Longest client key, in bytes (part of the error text of the protocol).
pub const MAX_KEY_LEN: usize = 64;
/// Longest client value, in bytes (part of the error text of the protocol).
pub const MAX_VALUE_LEN: usize = 256;
/// Length of a token the server issues (a hyphenated UUID), and of the
/// token `brd` requires.
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

/// The client-data namespace in the cache (`c-{key}`, as the original
/// stored it). A token never starts with it, so a client key can never be
/// taken for a token.
pub const CLIENT_PREFIX: &[u8] = b"c-";

/// A token as a client presents it. The server issues hyphenated UUIDs
/// ([`TOKEN_LEN`] bytes), but any token that exists in the cache is honoured,
/// whatever its shape, as the original did (instances of both may share one
/// memcached during a migration). A token is stored under itself, so it must
/// be a safe cache key: 1 to [`MAX_KEY_LEN`] bytes of printable ASCII other
/// than `:`, and outside the client-data namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token(Bytes);

impl Token {
    /// Validates a token, returning `None` if it could not be a cache key
    /// (such a token cannot exist, so it is refused without a round trip).
    pub fn parse(raw: &[u8]) -> Option<Token> {
        let safe = !raw.is_empty() && raw.len() <= MAX_KEY_LEN && raw.iter().all(|&b| is_key_byte(b));
        (safe && !raw.starts_with(CLIENT_PREFIX)).then(|| Token(Bytes::copy_from_slice(raw)))
    }

    /// The token's bytes, guaranteed safe for the memcached text protocol.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The token as text (always ASCII).
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is admitted, so this cannot fail.
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
    fn tokens_are_safe_keys_outside_the_client_namespace() {
        let uuid = b"0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(Token::parse(uuid).unwrap().as_bytes(), uuid);
        // The original's UDP tests use tokens of any shape that exist in memcached.
        assert!(Token::parse(b"abcdefghijklmnopqrstuvwxyz0123456789").is_some());
        assert!(Token::parse(b"x").is_some());
        for bad in [&b""[..], b"a b", b"a\r\nset", b"c-key", b"\x00", "é".as_bytes()] {
            assert!(Token::parse(bad).is_none(), "{bad:?}");
        }
        assert!(Token::parse(&[b't'; 65]).is_none());
    }
}
