//! Replies and error strings. A reply is one line ending in `\n`, or, in the
//! original's packet framing, the same bytes with no ending ([`Ending`]). The
//! error texts of the original system are kept exactly, because existing
//! clients match on them.

use bytes::{BufMut, Bytes, BytesMut};

use crate::CommandKind;

/// A malformed command, found by parsing alone (no backend involved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// `msg` without content.
    MsgMissing,
    /// `brd` with a missing token or message.
    BrdMissing,
    /// `brd` with a token that is not 36 bytes long.
    BrdTokenLength,
    /// `brd` with a token that cannot be valid (not UUID-shaped).
    BrdInvalidToken,
    /// `mcset` with missing fields.
    McsetMissing,
    /// `mcset` with a key over 64 or a value over 256 bytes.
    McsetTooLong,
    /// `mcget` with missing fields.
    McgetMissing,
    /// `mcget` with a key over 64 bytes.
    McgetKeyTooLong,
    /// `mcset`/`mcget` with a token that cannot be valid (not UUID-shaped).
    InvalidToken,
    /// A key with bytes outside printable ASCII, or with `:`.
    InvalidKey,
    /// A value containing a line feed.
    InvalidValue,
    /// The command word is not one of the known commands.
    UnknownCommand,
    /// The line is longer than the configured maximum (TCP framing).
    LineTooLong,
}

impl ProtocolError {
    /// Every parse error, for reading replies back ([`ErrorReply::parse`]).
    pub const ALL: [ProtocolError; 13] = [
        ProtocolError::MsgMissing,
        ProtocolError::BrdMissing,
        ProtocolError::BrdTokenLength,
        ProtocolError::BrdInvalidToken,
        ProtocolError::McsetMissing,
        ProtocolError::McsetTooLong,
        ProtocolError::McgetMissing,
        ProtocolError::McgetKeyTooLong,
        ProtocolError::InvalidToken,
        ProtocolError::InvalidKey,
        ProtocolError::InvalidValue,
        ProtocolError::UnknownCommand,
        ProtocolError::LineTooLong,
    ];

    /// The exact reply text, without the line terminator.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolError::MsgMissing => "error: something is missing from msg:content",
            ProtocolError::BrdMissing => "error: token or message missing, brd:token:message",
            ProtocolError::BrdTokenLength => "error: invalid token length",
            ProtocolError::BrdInvalidToken => "error: invalid token, re-login",
            ProtocolError::McsetMissing => "error: something is missing from mcset:token:key:value",
            ProtocolError::McsetTooLong => "error: either key length > 64 or value length > 256",
            ProtocolError::McgetMissing => "error: something is missing from mcget:key",
            ProtocolError::McgetKeyTooLong => "error: key length > 64",
            ProtocolError::InvalidToken => "error: invalid token",
            ProtocolError::InvalidKey => "error: invalid key",
            ProtocolError::InvalidValue => "error: invalid value",
            ProtocolError::UnknownCommand => "error: unknown command",
            ProtocolError::LineTooLong => "error: line too long",
        }
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ProtocolError {}

/// An error found while executing a well-formed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorReply {
    /// A parse error (see [`ProtocolError`]).
    Protocol(ProtocolError),
    /// `mcset`/`mcget`: the token does not exist or belongs to someone else.
    InvalidToken,
    /// `brd`: the token does not exist or belongs to someone else.
    InvalidTokenRelogin,
    /// `mcget`: nothing stored under the key (the key is echoed back).
    NotFound(Bytes),
    /// The cache backend did not answer.
    CacheUnavailable,
    /// The broadcast bus did not accept the message.
    BroadcastUnavailable,
    /// The server holds its maximum number of connections.
    ServerFull,
    /// A TCP-only command (`login`, `brd`) arrived over UDP.
    TcpOnly(&'static str),
    /// A line was not completed within LINE_TIMEOUT; the connection closes.
    LineTimeout,
    /// The connection sent commands faster than its rate limit; the command
    /// was not executed.
    RateLimited,
}

impl From<ProtocolError> for ErrorReply {
    fn from(e: ProtocolError) -> Self {
        ErrorReply::Protocol(e)
    }
}

impl ErrorReply {
    /// Reads an error reply back (clients): the error it is, if `text` (without
    /// its line end) is one the servers send. `error: invalid token` reads as
    /// [`ErrorReply::InvalidToken`], whichever of the two causes sent it.
    pub fn parse(text: &[u8]) -> Option<ErrorReply> {
        let fixed = [
            ErrorReply::InvalidToken,
            ErrorReply::InvalidTokenRelogin,
            ErrorReply::CacheUnavailable,
            ErrorReply::BroadcastUnavailable,
            ErrorReply::ServerFull,
            ErrorReply::LineTimeout,
            ErrorReply::RateLimited,
        ];
        if let Some(e) = fixed.into_iter().find(|e| e.to_text() == text) {
            return Some(e);
        }
        if let Some(e) = ProtocolError::ALL.into_iter().find(|e| e.as_str().as_bytes() == text) {
            return Some(ErrorReply::Protocol(e));
        }
        if let Some(key) = text.strip_prefix(b"error: finding key ") {
            return Some(ErrorReply::NotFound(Bytes::copy_from_slice(key)));
        }
        let command = text.strip_prefix(b"error: ")?.strip_suffix(b" is only available over TCP")?;
        let kind = crate::CommandKind::ALL.into_iter().find(|k| k.word().as_bytes() == command)?;
        Some(ErrorReply::TcpOnly(kind.word()))
    }

    /// The length of the reply text, without the line terminator.
    pub fn len(&self) -> usize {
        match self {
            ErrorReply::Protocol(e) => e.as_str().len(),
            ErrorReply::InvalidToken => b"error: invalid token".len(),
            ErrorReply::InvalidTokenRelogin => b"error: invalid token, re-login".len(),
            ErrorReply::NotFound(key) => b"error: finding key ".len() + key.len(),
            ErrorReply::CacheUnavailable => b"error: cache unavailable".len(),
            ErrorReply::BroadcastUnavailable => b"error: broadcast unavailable".len(),
            ErrorReply::ServerFull => b"error: server full".len(),
            ErrorReply::TcpOnly(command) => b"error: ".len() + command.len() + b" is only available over TCP".len(),
            ErrorReply::LineTimeout => b"error: line timeout".len(),
            ErrorReply::RateLimited => b"error: rate limited".len(),
        }
    }

    /// Never: every error reply has text. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
    }

    fn to_text(&self) -> BytesMut {
        let mut out = BytesMut::new();
        self.put(&mut out);
        out
    }

    /// Appends the reply text (without the line terminator) to `out`.
    fn put(&self, out: &mut BytesMut) {
        match self {
            ErrorReply::Protocol(e) => out.put_slice(e.as_str().as_bytes()),
            ErrorReply::InvalidToken => out.put_slice(b"error: invalid token"),
            ErrorReply::InvalidTokenRelogin => out.put_slice(b"error: invalid token, re-login"),
            ErrorReply::NotFound(key) => {
                out.put_slice(b"error: finding key ");
                out.put_slice(key);
            }
            ErrorReply::CacheUnavailable => out.put_slice(b"error: cache unavailable"),
            ErrorReply::BroadcastUnavailable => out.put_slice(b"error: broadcast unavailable"),
            ErrorReply::ServerFull => out.put_slice(b"error: server full"),
            ErrorReply::LineTimeout => out.put_slice(b"error: line timeout"),
            ErrorReply::RateLimited => out.put_slice(b"error: rate limited"),
            ErrorReply::TcpOnly(command) => {
                out.put_slice(b"error: ");
                out.put_slice(command.as_bytes());
                out.put_slice(b" is only available over TCP");
            }
        }
    }
}

/// What the server answers to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `login`: the new token.
    Token(crate::Token),
    /// `msg`: the content, echoed.
    Echo(Bytes),
    /// `mcset`: stored.
    Success,
    /// `mcget`: the stored value.
    Value(Bytes),
    /// `brd`: published; the sender gets the message as a pushed line like
    /// everyone else, so there is no direct reply.
    Published,
    /// Any error.
    Error(ErrorReply),
}

impl From<ErrorReply> for Reply {
    fn from(e: ErrorReply) -> Self {
        Reply::Error(e)
    }
}

impl From<ProtocolError> for Reply {
    fn from(e: ProtocolError) -> Self {
        Reply::Error(ErrorReply::Protocol(e))
    }
}

/// How a reply, a pushed message or a notice ends on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `\n`: line framing, and UDP requests that ended with `\n`.
    Newline,
    /// Nothing: the original's packet framing, where each read or datagram
    /// is one message.
    Bare,
}

impl Ending {
    /// The ending that mirrors a request: `\n` only if the request had one
    /// (UDP replies are byte-identical to the original's for its clients,
    /// and stay pleasant in `nc -u`).
    pub fn mirroring(request: &[u8]) -> Ending {
        if request.last() == Some(&b'\n') { Ending::Newline } else { Ending::Bare }
    }

    /// The ending's bytes.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Ending::Newline => b"\n",
            Ending::Bare => b"",
        }
    }
}

/// The notice pushed to every TCP client when its instance shuts down.
pub const RECONNECT: &str = "reconnect";

impl Reply {
    /// The reply to a `kind` command, read back by a client from `text` (one
    /// line or read, without its line end). `None` when it cannot be a reply
    /// to that command: for `brd`, which has no direct reply, anything but an
    /// error is a pushed message.
    pub fn parse(kind: CommandKind, text: &[u8]) -> Option<Reply> {
        if text.starts_with(b"error: ")
            && let Some(e) = ErrorReply::parse(text)
        {
            return Some(Reply::Error(e));
        }
        let bytes = || Bytes::copy_from_slice(text);
        match kind {
            CommandKind::Login => {
                crate::Token::parse(text).filter(|_| text.len() == crate::TOKEN_LEN).map(Reply::Token)
            }
            CommandKind::Msg => Some(Reply::Echo(bytes())),
            CommandKind::McSet => (text == b"success").then_some(Reply::Success),
            CommandKind::McGet => Some(Reply::Value(bytes())),
            CommandKind::Brd => None,
        }
    }

    /// Appends the reply and its `ending` to `out`; `Published` writes nothing.
    pub fn encode(&self, out: &mut BytesMut, ending: Ending) {
        // Room for the ending too: growing for it would copy the reply.
        out.reserve(self.encoded_len(ending));
        match self {
            Reply::Token(t) => out.put_slice(t.as_bytes()),
            Reply::Echo(b) | Reply::Value(b) => out.put_slice(b),
            Reply::Success => out.put_slice(b"success"),
            Reply::Published => return,
            Reply::Error(e) => e.put(out),
        }
        out.put_slice(ending.as_bytes());
    }

    /// The number of bytes [`Reply::encode`] appends, without encoding.
    pub fn encoded_len(&self, ending: Ending) -> usize {
        let body = match self {
            Reply::Token(_) => crate::TOKEN_LEN,
            Reply::Echo(b) | Reply::Value(b) => b.len(),
            Reply::Success => b"success".len(),
            Reply::Published => return 0,
            Reply::Error(e) => e.len(),
        };
        body + ending.as_bytes().len()
    }

    /// The reply as one line with its `\n` (empty for `Published`).
    pub fn to_line(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_hint());
        self.encode(&mut out, Ending::Newline);
        out.freeze()
    }

    /// True for error replies.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    fn encoded_len_hint(&self) -> usize {
        match self {
            Reply::Echo(b) | Reply::Value(b) => b.len() + 1,
            _ => 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(r: Reply) -> String {
        String::from_utf8(r.to_line().to_vec()).unwrap()
    }

    #[test]
    fn every_error_starts_with_error_prefix_and_ends_the_line() {
        let all = [
            ErrorReply::InvalidToken,
            ErrorReply::InvalidTokenRelogin,
            ErrorReply::NotFound(Bytes::from_static(b"k")),
            ErrorReply::CacheUnavailable,
            ErrorReply::BroadcastUnavailable,
            ErrorReply::ServerFull,
            ErrorReply::TcpOnly("login"),
            ErrorReply::Protocol(ProtocolError::LineTooLong),
            ErrorReply::LineTimeout,
            ErrorReply::RateLimited,
        ];
        for e in all {
            let l = line(Reply::Error(e));
            assert!(l.starts_with("error: ") && l.ends_with('\n') && l.matches('\n').count() == 1, "{l}");
        }
    }

    #[test]
    fn runtime_error_texts() {
        assert_eq!(line(ErrorReply::NotFound(Bytes::from_static(b"abc")).into()), "error: finding key abc\n");
        assert_eq!(line(ErrorReply::CacheUnavailable.into()), "error: cache unavailable\n");
        assert_eq!(line(ErrorReply::BroadcastUnavailable.into()), "error: broadcast unavailable\n");
        assert_eq!(line(ErrorReply::ServerFull.into()), "error: server full\n");
        assert_eq!(line(ErrorReply::LineTimeout.into()), "error: line timeout\n");
        assert_eq!(line(ErrorReply::RateLimited.into()), "error: rate limited\n");
        assert_eq!(line(ErrorReply::InvalidToken.into()), "error: invalid token\n");
        assert_eq!(line(ErrorReply::InvalidTokenRelogin.into()), "error: invalid token, re-login\n");
        assert_eq!(line(ErrorReply::TcpOnly("brd").into()), "error: brd is only available over TCP\n");
    }

    #[test]
    fn packet_framing_has_no_ending_and_udp_mirrors_the_request() {
        let mut out = BytesMut::new();
        Reply::Success.encode(&mut out, Ending::Bare);
        ErrorReply::InvalidToken.clone().put(&mut out);
        assert_eq!(&out[..], b"successerror: invalid token");
        assert_eq!(Ending::mirroring(b"msg:x\n"), Ending::Newline);
        assert_eq!(Ending::mirroring(b"msg:x\r\n"), Ending::Newline);
        assert_eq!(Ending::mirroring(b"msg:x"), Ending::Bare);
        assert_eq!(Ending::mirroring(b"msg:x\r"), Ending::Bare);
    }

    #[test]
    fn clients_read_back_every_reply() {
        let token = crate::Token::parse(b"0f8fad5b-d9cb-469f-a165-70867728950e").unwrap();
        let cases = [
            (CommandKind::Login, Reply::Token(token)),
            (CommandKind::Msg, Reply::Echo(Bytes::from_static(b"a:b"))),
            (CommandKind::McSet, Reply::Success),
            (CommandKind::McGet, Reply::Value(Bytes::from_static(b"v"))),
            (CommandKind::McGet, Reply::Value(Bytes::new())),
            (CommandKind::McGet, ErrorReply::NotFound(Bytes::from_static(b"k:1")).into()),
            (CommandKind::McSet, ErrorReply::InvalidToken.into()),
            (CommandKind::Brd, ErrorReply::InvalidTokenRelogin.into()),
            (CommandKind::Brd, ErrorReply::BroadcastUnavailable.into()),
            (CommandKind::Msg, ErrorReply::ServerFull.into()),
            (CommandKind::Login, ErrorReply::TcpOnly("login").into()),
            (CommandKind::McGet, ErrorReply::CacheUnavailable.into()),
            (CommandKind::Msg, ErrorReply::LineTimeout.into()),
            (CommandKind::Brd, ErrorReply::RateLimited.into()),
        ];
        for (kind, reply) in cases
            .into_iter()
            .chain(ProtocolError::ALL.into_iter().map(|e| (CommandKind::Msg, Reply::Error(ErrorReply::Protocol(e)))))
        {
            let mut out = BytesMut::new();
            reply.encode(&mut out, Ending::Bare);
            // Two causes share some texts (`error: invalid token`): what is
            // read back is a reply with the same bytes.
            let parsed = Reply::parse(kind, &out).unwrap_or_else(|| panic!("{kind:?} {out:?}"));
            let mut again = BytesMut::new();
            parsed.encode(&mut again, Ending::Bare);
            assert_eq!(again, out, "{kind:?}");
            for ending in [Ending::Bare, Ending::Newline] {
                let mut encoded = BytesMut::new();
                reply.encode(&mut encoded, ending);
                assert_eq!(reply.encoded_len(ending), encoded.len(), "{reply:?}");
            }
            assert_eq!(parsed.is_error(), reply.is_error());
        }
        assert_eq!(Reply::parse(CommandKind::McSet, b"stored"), None);
        assert_eq!(Reply::parse(CommandKind::Login, b"not-a-token"), None);
        assert_eq!(Reply::parse(CommandKind::Brd, b"a pushed message"), None);
    }

    #[test]
    fn success_replies() {
        assert_eq!(line(Reply::Success), "success\n");
        assert_eq!(line(Reply::Echo(Bytes::from_static(b"a:b"))), "a:b\n");
        assert_eq!(line(Reply::Value(Bytes::new())), "\n");
        assert!(Reply::Published.to_line().is_empty());
        assert_eq!(Reply::Published.encoded_len(Ending::Newline), 0);
    }
}
