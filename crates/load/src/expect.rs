//! What a request waits for ([`Expect`]) and how its reply turned out
//! ([`Verdict`]): the script writes the one and judges with the other, and a
//! driver uses [`Expect::answered_by`] to find which request a reply
//! belongs to.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use playground_protocol::{CommandKind, Ending, ErrorReply, ProtocolError, Reply};

/// The reply a request waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// `msg:`: exactly this echo.
    Echo(Bytes),
    /// `login`: a token.
    Token,
    /// `mcset` of key number `key`: `success`.
    Stored { key: u32 },
    /// `mcget` of key number `key`: the value last stored.
    Value { key: u32, value: Bytes },
    /// `brd` followed by a `msg:` probe: the server answers a failed `brd`
    /// with one `error:` line and a published one with nothing, so the probe's
    /// echo (`ack`) tells when the publication is done and whether it failed.
    Published { send_us: u64, ack: Bytes, failed: bool },
}

impl Expect {
    /// The command whose reply this waits for (for `brd`, the replies of
    /// the probe are known in advance, so only its errors are read).
    pub fn kind(&self) -> CommandKind {
        match self {
            Expect::Echo(_) => CommandKind::Msg,
            Expect::Token => CommandKind::Login,
            Expect::Stored { .. } => CommandKind::McSet,
            Expect::Value { .. } => CommandKind::McGet,
            Expect::Published { .. } => CommandKind::Brd,
        }
    }

    /// Whether `reply` is the right reply to this request, without judging
    /// it: how a driver finds, among several requests, the one a reply
    /// belongs to. A reply known in advance is compared byte for byte (no
    /// copy, and a payload that reads like an error text is still an echo).
    pub fn answered_by(&self, reply: &[u8]) -> bool {
        match self.right_reply() {
            Some(right) => reply == right,
            None => matches!(Reply::parse(self.kind(), reply), Some(Reply::Token(_))),
        }
    }

    /// The right reply, when it is known in advance (all but a token).
    pub fn right_reply(&self) -> Option<&[u8]> {
        match self {
            Expect::Echo(echo) => Some(echo),
            Expect::Token => None,
            Expect::Stored { .. } => Some(success()),
            Expect::Value { value, .. } => Some(value),
            Expect::Published { ack, .. } => Some(ack),
        }
    }
}

/// The `mcset` reply, as the server writes it without a line end. Encoded
/// once: drivers compare many replies with it.
fn success() -> &'static [u8] {
    static SUCCESS: OnceLock<Bytes> = OnceLock::new();
    SUCCESS.get_or_init(|| {
        let mut out = BytesMut::new();
        Reply::Success.encode(&mut out, Ending::Bare);
        out.freeze()
    })
}

/// Whether an error says the client's token is gone (it dies with its
/// connection or in the cache), so the client must log in again.
pub fn token_lost(error: &ErrorReply) -> bool {
    use ProtocolError::{BrdInvalidToken, BrdTokenLength, InvalidToken};
    matches!(
        error,
        ErrorReply::InvalidToken
            | ErrorReply::InvalidTokenRelogin
            | ErrorReply::Protocol(InvalidToken | BrdInvalidToken | BrdTokenLength)
    )
}

/// How a reply turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The expected reply.
    Right,
    /// Not the expected reply.
    Wrong,
    /// The server refused to publish a broadcast.
    PublishFailed,
    /// Part of the reply; more lines belong to the same request.
    More,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_the_protocol_writes_them() {
        let stored = Expect::Stored { key: 0 };
        assert!(stored.answered_by(b"success") && !stored.answered_by(b"error: cache unavailable"));
        let uuid = b"0f8fad5b-d9cb-469f-a165-70867728950e";
        assert!(Expect::Token.answered_by(uuid) && !Expect::Token.answered_by(&uuid[1..]));
        for lost in ["error: invalid token", "error: invalid token, re-login", "error: invalid token length"] {
            assert!(ErrorReply::parse(lost.as_bytes()).is_some_and(|e| token_lost(&e)), "{lost}");
        }
        assert!(!token_lost(&ErrorReply::CacheUnavailable) && !token_lost(&ErrorReply::ServerFull));
    }
}
