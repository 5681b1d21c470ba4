//! What a request waits for ([`Expect`]) and how its reply turned out
//! ([`Verdict`]): the script writes the one and judges with the other, and a
//! driver uses [`Expect::answered_by`] to find which request a reply
//! belongs to.

use bytes::Bytes;

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
    /// Whether `reply` is the right reply to this request, without judging
    /// it: how a driver finds, among several requests, the one a reply
    /// belongs to.
    pub fn answered_by(&self, reply: &[u8]) -> bool {
        match self.right_reply() {
            Some(right) => reply == right,
            None => reply.len() == playground_protocol::TOKEN_LEN && !reply.starts_with(b"error"),
        }
    }

    /// The right reply, when it is known in advance (all but a token).
    pub fn right_reply(&self) -> Option<&[u8]> {
        match self {
            Expect::Echo(echo) => Some(echo),
            Expect::Token => None,
            Expect::Stored { .. } => Some(b"success"),
            Expect::Value { value, .. } => Some(value),
            Expect::Published { ack, .. } => Some(ack),
        }
    }
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

impl Verdict {
    /// Right if `ok`, else wrong.
    pub fn of(ok: bool) -> Verdict {
        if ok { Verdict::Right } else { Verdict::Wrong }
    }
}
