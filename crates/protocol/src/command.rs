//! Commands both ways: [`parse`] turns one line or datagram into a
//! [`Command`] (servers), [`Command::encode`] writes one (clients). Fields are
//! separated by `:`; the last field of each command is the whole remainder of
//! the line, so messages and values may themselves contain `:`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::key::{Key, MAX_KEY_LEN, MAX_VALUE_LEN, TOKEN_LEN, Token};
use crate::reply::{Ending, ProtocolError};

/// What a command is, whatever its fields: its word (also its metric label)
/// and which transports carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    Login,
    Msg,
    McSet,
    McGet,
    Brd,
}

impl CommandKind {
    /// Every command, in a fixed order (metric label tables index it).
    pub const ALL: [CommandKind; 5] =
        [CommandKind::Login, CommandKind::Msg, CommandKind::McSet, CommandKind::McGet, CommandKind::Brd];

    /// The command word, as written on the wire and used as a metric label.
    pub fn word(self) -> &'static str {
        match self {
            CommandKind::Login => "login",
            CommandKind::Msg => "msg",
            CommandKind::McSet => "mcset",
            CommandKind::McGet => "mcget",
            CommandKind::Brd => "brd",
        }
    }

    /// Whether only TCP carries it: `login` binds a token to a connection,
    /// and `brd` pushes to connections.
    pub fn tcp_only(self) -> bool {
        matches!(self, CommandKind::Login | CommandKind::Brd)
    }

    /// The kind named by a line's command word (the text before the first
    /// `:`, line end ignored), if it names one, whether or not the rest of
    /// the line is well formed.
    pub fn of_line(line: &[u8]) -> Option<CommandKind> {
        let word = line.split(|&b| b == b':').next().unwrap_or_default();
        let word = word.strip_suffix(b"\n").unwrap_or(word);
        let word = word.strip_suffix(b"\r").unwrap_or(word);
        CommandKind::ALL.into_iter().find(|k| k.word().as_bytes() == word)
    }

    /// The position of the kind in [`CommandKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A well-formed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `login`: issue a token bound to the client's address.
    Login,
    /// `msg:{content}`: echo.
    Msg { content: Bytes },
    /// `mcset:{token}:{key}:{value}`: store client data.
    McSet { token: Token, key: Key, value: Bytes },
    /// `mcget:{token}:{key}`: read client data.
    McGet { token: Token, key: Key },
    /// `brd:{token}:{message}`: broadcast to every connected client.
    Brd { token: Token, message: Bytes },
}

impl Command {
    /// What the command is.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Login => CommandKind::Login,
            Command::Msg { .. } => CommandKind::Msg,
            Command::McSet { .. } => CommandKind::McSet,
            Command::McGet { .. } => CommandKind::McGet,
            Command::Brd { .. } => CommandKind::Brd,
        }
    }

    /// Writes the command as a client sends it, followed by `ending`
    /// ([`Ending::Newline`] for line framing, [`Ending::Bare`] for packets).
    /// [`parse`] reads back exactly this command.
    pub fn encode(&self, out: &mut BytesMut, ending: Ending) {
        out.put_slice(self.kind().word().as_bytes());
        let mut field = |f: &[u8]| {
            out.put_u8(b':');
            out.put_slice(f);
        };
        match self {
            Command::Login => {}
            Command::Msg { content } => field(content),
            Command::McSet { token, key, value } => {
                field(token.as_bytes());
                field(key.as_bytes());
                field(value);
            }
            Command::McGet { token, key } => {
                field(token.as_bytes());
                field(key.as_bytes());
            }
            Command::Brd { token, message } => {
                field(token.as_bytes());
                field(message);
            }
        }
        // `parse` takes one trailing `\r` for the line end (`\r\n`), so a
        // last field that ends in `\r` needs one more to survive it (found by
        // the `command_parser` fuzz target).
        if out.last() == Some(&b'\r') {
            out.put_u8(b'\r');
        }
        out.put_slice(ending.as_bytes());
    }
}

/// Parses one command. A trailing `\n`, `\r\n` or `\r` is ignored, so the
/// same function serves TCP lines and UDP datagrams.
pub fn parse(line: Bytes) -> Result<Command, ProtocolError> {
    let mut line = trim_line_end(line);
    let colon = line.iter().position(|&b| b == b':');
    let parse_rest: fn(Option<Bytes>) -> Result<Command, ProtocolError> = match &line[..colon.unwrap_or(line.len())] {
        b"login" => return Ok(Command::Login),
        b"msg" => parse_msg,
        b"mcset" => parse_mcset,
        b"mcget" => parse_mcget,
        b"brd" => parse_brd,
        _ => return Err(ProtocolError::UnknownCommand),
    };
    // The line itself becomes what follows the word (advanced, not sliced):
    // a slice is a second handle on the line, which costs a shared header
    // for a line that owns its bytes, on every `msg`.
    parse_rest(colon.map(|i| {
        line.advance(i + 1);
        line
    }))
}

/// One read of a packet-framed TCP connection (the original's framing) as a
/// command: surrounding whitespace trimmed, as the original did.
pub fn trim_packet(read: Bytes) -> Bytes {
    let start = read.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(read.len());
    let end = read.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    read.slice(start..end.max(start))
}

fn trim_line_end(mut line: Bytes) -> Bytes {
    if line.last() == Some(&b'\n') {
        line.truncate(line.len() - 1);
    }
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    line
}

/// Splits `rest` at the first `:` into (head, tail); `None` if there is none.
fn split_field(rest: &Bytes) -> Option<(Bytes, Bytes)> {
    let i = rest.iter().position(|&b| b == b':')?;
    Some((rest.slice(..i), rest.slice(i + 1..)))
}

fn parse_msg(rest: Option<Bytes>) -> Result<Command, ProtocolError> {
    match rest {
        Some(content) if !content.is_empty() => one_line(content).map(|content| Command::Msg { content }),
        _ => Err(ProtocolError::MsgMissing),
    }
}

/// An echo or a broadcast is sent back as one line: a datagram or a packet
/// with a line feed inside would come back as two replies, or push a second,
/// forged line (a fake `reconnect`, say) to every line client.
fn one_line(text: Bytes) -> Result<Bytes, ProtocolError> {
    if text.contains(&b'\n') { Err(ProtocolError::InvalidValue) } else { Ok(text) }
}

fn parse_mcset(rest: Option<Bytes>) -> Result<Command, ProtocolError> {
    use ProtocolError::{InvalidKey, InvalidToken, InvalidValue, McsetMissing, McsetTooLong};
    let rest = rest.ok_or(McsetMissing)?;
    let (token, rest) = split_field(&rest).ok_or(McsetMissing)?;
    let (key, value) = split_field(&rest).ok_or(McsetMissing)?;
    if token.is_empty() || key.is_empty() {
        return Err(McsetMissing);
    }
    if key.len() > MAX_KEY_LEN || value.len() > MAX_VALUE_LEN {
        return Err(McsetTooLong);
    }
    let key = Key::new(key).ok_or(InvalidKey)?;
    if value.contains(&b'\n') {
        return Err(InvalidValue);
    }
    let token = Token::parse(&token).ok_or(InvalidToken)?;
    Ok(Command::McSet { token, key, value })
}

fn parse_mcget(rest: Option<Bytes>) -> Result<Command, ProtocolError> {
    use ProtocolError::{InvalidKey, InvalidToken, McgetKeyTooLong, McgetMissing};
    let rest = rest.ok_or(McgetMissing)?;
    let (token, key) = split_field(&rest).ok_or(McgetMissing)?;
    if token.is_empty() || key.is_empty() {
        return Err(McgetMissing);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(McgetKeyTooLong);
    }
    let key = Key::new(key).ok_or(InvalidKey)?;
    let token = Token::parse(&token).ok_or(InvalidToken)?;
    Ok(Command::McGet { token, key })
}

fn parse_brd(rest: Option<Bytes>) -> Result<Command, ProtocolError> {
    use ProtocolError::{BrdInvalidToken, BrdMissing, BrdTokenLength};
    let rest = rest.ok_or(BrdMissing)?;
    let (token, message) = split_field(&rest).ok_or(BrdMissing)?;
    if token.is_empty() || message.is_empty() {
        return Err(BrdMissing);
    }
    if token.len() != TOKEN_LEN {
        return Err(BrdTokenLength);
    }
    let token = Token::parse(&token).ok_or(BrdInvalidToken)?;
    let message = one_line(message)?;
    Ok(Command::Brd { token, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolError::*;

    const T: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn p(s: &str) -> Result<Command, ProtocolError> {
        parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn tok() -> Token {
        Token::parse(T.as_bytes()).unwrap()
    }

    fn key(s: &str) -> Key {
        Key::new(b(s)).unwrap()
    }

    #[test]
    fn login() {
        assert_eq!(p("login"), Ok(Command::Login));
        assert_eq!(p("login\r\n"), Ok(Command::Login));
        assert_eq!(p("loginx"), Err(UnknownCommand));
        assert_eq!(p("LOGIN"), Err(UnknownCommand));
    }

    #[test]
    fn msg_echoes_whole_remainder() {
        assert_eq!(p("msg:hello"), Ok(Command::Msg { content: b("hello") }));
        assert_eq!(p("msg:a:b:c\r"), Ok(Command::Msg { content: b("a:b:c") }));
        assert_eq!(p("msg: "), Ok(Command::Msg { content: b(" ") }));
        assert_eq!(p("msg"), Err(MsgMissing));
        assert_eq!(p("msg:"), Err(MsgMissing));
        assert_eq!(p("msg:\r\n"), Err(MsgMissing));
        assert_eq!(p("msgx:hello"), Err(UnknownCommand));
        // One command, one line back: never a second line inside.
        assert_eq!(p("msg:a\nmsg:b"), Err(InvalidValue));
        assert_eq!(p("msg:a\n"), Ok(Command::Msg { content: b("a") }));
    }

    #[test]
    fn mcset() {
        let ok = p(&format!("mcset:{T}:k1:v:with:colons"));
        assert_eq!(ok, Ok(Command::McSet { token: tok(), key: key("k1"), value: b("v:with:colons") }));
        let empty_value = p(&format!("mcset:{T}:k1:"));
        assert_eq!(empty_value, Ok(Command::McSet { token: tok(), key: key("k1"), value: b("") }));
        for missing in ["mcset", "mcset:", "mcset:tok", "mcset:tok:key", "mcset::k:v", &format!("mcset:{T}::v")] {
            assert_eq!(p(missing), Err(McsetMissing), "{missing}");
        }
        let long_key = "k".repeat(65);
        assert_eq!(p(&format!("mcset:{T}:{long_key}:v")), Err(McsetTooLong));
        let long_value = "v".repeat(257);
        assert_eq!(p(&format!("mcset:{T}:k:{long_value}")), Err(McsetTooLong));
        let max = p(&format!("mcset:{T}:{}:{}", "k".repeat(64), "v".repeat(256)));
        assert!(max.is_ok());
        assert_eq!(p(&format!("mcset:{T}:a b:v")), Err(InvalidKey));
        assert_eq!(p(&format!("mcset:{T}:a\tb:v")), Err(InvalidKey));
        assert_eq!(p(&format!("mcset:{T}:k:a\nb")), Err(InvalidValue));
        assert_eq!(p("mcset:not a token:k:v"), Err(InvalidToken));
        assert_eq!(p("mcset:c-k1:k:v"), Err(InvalidToken));
    }

    #[test]
    fn mcget() {
        assert_eq!(p(&format!("mcget:{T}:k1")), Ok(Command::McGet { token: tok(), key: key("k1") }));
        for missing in ["mcget", "mcget:", "mcget:tok", &format!("mcget:{T}:"), "mcget::k"] {
            assert_eq!(p(missing), Err(McgetMissing), "{missing}");
        }
        assert_eq!(p(&format!("mcget:{T}:{}", "k".repeat(65))), Err(McgetKeyTooLong));
        assert_eq!(p(&format!("mcget:{T}:a:b")), Err(InvalidKey));
        assert_eq!(p(&format!("mcget:{T}:a\x00b")), Err(InvalidKey));
        assert_eq!(p("mcget:c-k:k"), Err(InvalidToken));
        assert!(matches!(p("mcget:any-shape:k"), Ok(Command::McGet { .. })));
    }

    #[test]
    fn brd() {
        assert_eq!(p(&format!("brd:{T}:hi: all")), Ok(Command::Brd { token: tok(), message: b("hi: all") }));
        for missing in ["brd", "brd:", "brd:tok", &format!("brd:{T}:"), "brd::msg"] {
            assert_eq!(p(missing), Err(BrdMissing), "{missing}");
        }
        assert_eq!(p("brd:short:msg"), Err(BrdTokenLength));
        assert_eq!(p(&format!("brd:{T}x:msg")), Err(BrdTokenLength));
        assert_eq!(p(&format!("brd:{}:msg", " ".repeat(36))), Err(BrdInvalidToken));
        assert!(matches!(p(&format!("brd:{}:msg", "z".repeat(36))), Ok(Command::Brd { .. })));
        assert_eq!(p(&format!("brd:{T}:hi\nreconnect")), Err(InvalidValue));
    }

    #[test]
    fn error_texts_are_the_originals() {
        assert_eq!(MsgMissing.as_str(), "error: something is missing from msg:content");
        assert_eq!(BrdMissing.as_str(), "error: token or message missing, brd:token:message");
        assert_eq!(BrdTokenLength.as_str(), "error: invalid token length");
        assert_eq!(BrdInvalidToken.as_str(), "error: invalid token, re-login");
        assert_eq!(McsetMissing.as_str(), "error: something is missing from mcset:token:key:value");
        assert_eq!(InvalidToken.as_str(), "error: invalid token");
        assert_eq!(McsetTooLong.as_str(), "error: either key length > 64 or value length > 256");
        assert_eq!(McgetMissing.as_str(), "error: something is missing from mcget:key");
        assert_eq!(McgetKeyTooLong.as_str(), "error: key length > 64");
        assert_eq!(UnknownCommand.as_str(), "error: unknown command");
        assert_eq!(LineTooLong.as_str(), "error: line too long");
        assert_eq!(InvalidKey.as_str(), "error: invalid key");
    }

    #[test]
    fn packets_are_trimmed_like_the_original() {
        let t = |s: &str| trim_packet(b(s));
        assert_eq!(t(" msg:hi \r\n"), b("msg:hi"));
        assert_eq!(t("\tlogin"), b("login"));
        assert_eq!(t("msg: a b "), b("msg: a b"));
        assert_eq!(t(" \r\n "), b(""));
        assert_eq!(t(""), b(""));
    }

    #[test]
    fn kinds_words_and_transport_rule() {
        assert_eq!(CommandKind::of_line(b"msg:x"), Some(CommandKind::Msg));
        assert_eq!(CommandKind::of_line(b"login\r\n"), Some(CommandKind::Login));
        assert_eq!(CommandKind::of_line(b"brd"), Some(CommandKind::Brd));
        assert_eq!(CommandKind::of_line(b"mcgetx:1"), None);
        assert!(CommandKind::Login.tcp_only() && CommandKind::Brd.tcp_only());
        assert!(!CommandKind::Msg.tcp_only() && !CommandKind::McGet.tcp_only() && !CommandKind::McSet.tcp_only());
        for (i, k) in CommandKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn a_last_field_ending_in_cr_survives_the_line_end() {
        let token = Token::parse(T.as_bytes()).unwrap();
        let key = Key::new(Bytes::from_static(b"k")).unwrap();
        let cr = |s: &'static [u8]| Bytes::from_static(s);
        for command in [
            Command::Msg { content: cr(b"ms\xff\r") },
            Command::Msg { content: cr(b"\r") },
            Command::McSet { token: token.clone(), key, value: cr(b"v\r\r") },
            Command::Brd { token, message: cr(b"hi\r") },
        ] {
            for ending in [Ending::Bare, Ending::Newline] {
                let mut out = BytesMut::new();
                command.encode(&mut out, ending);
                assert_eq!(parse(out.freeze()), Ok(command.clone()), "{command:?} {ending:?}");
            }
        }
        // The fuzzer's input, as a server reads it.
        assert_eq!(parse(cr(b"msg:ms\xff\r\r\n")), Ok(Command::Msg { content: cr(b"ms\xff\r") }));
    }

    #[test]
    fn clients_encode_what_servers_parse() {
        let commands = [
            Command::Login,
            Command::Msg { content: b("a:b c") },
            Command::McSet { token: tok(), key: key("k1"), value: b("v:1") },
            Command::McSet { token: tok(), key: key("k1"), value: b("") },
            Command::McGet { token: tok(), key: key("k1") },
            Command::Brd { token: tok(), message: b("hi: all") },
        ];
        for c in commands {
            for ending in [Ending::Newline, Ending::Bare] {
                let mut out = BytesMut::new();
                c.encode(&mut out, ending);
                assert_eq!(out.ends_with(b"\n"), ending == Ending::Newline);
                assert_eq!(parse(out.freeze()), Ok(c.clone()));
            }
        }
        let mut out = BytesMut::new();
        Command::McGet { token: tok(), key: key("k") }.encode(&mut out, Ending::Newline);
        assert_eq!(&out[..], format!("mcget:{T}:k\n").as_bytes());
    }

    #[test]
    fn unknown_and_empty() {
        assert_eq!(p(""), Err(UnknownCommand));
        assert_eq!(p("\r\n"), Err(UnknownCommand));
        assert_eq!(p(":msg"), Err(UnknownCommand));
        assert_eq!(p(" msg:x"), Err(UnknownCommand));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any byte string parses to a command or an error, never a panic.
        #[test]
        fn any_bytes_parse_without_panic(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = parse(Bytes::from(data));
        }

        /// Lines that start with a command word exercise the field parsers.
        #[test]
        fn command_shaped_lines_parse_without_panic(
            word in prop::sample::select(vec!["login", "msg", "mcset", "mcget", "brd"]),
            fields in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..5),
        ) {
            let mut line = word.as_bytes().to_vec();
            for f in fields { line.push(b':'); line.extend(f); }
            let _ = parse(Bytes::from(line));
        }

        /// No accepted key or token can inject into the memcached text
        /// protocol: only printable ASCII, no whitespace, no `:`, bounded.
        #[test]
        fn accepted_keys_are_memcached_safe(
            token in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            key in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            for word in ["mcget", "mcset"] {
                let mut line = format!("{word}:{token}:").into_bytes();
                line.extend(&key);
                if word == "mcset" { line.extend(b":v"); }
                match parse(Bytes::from(line)) {
                    Ok(Command::McGet { key, token }) | Ok(Command::McSet { key, token, .. }) => {
                        prop_assert!(!key.as_bytes().is_empty() && key.as_bytes().len() <= 64);
                        prop_assert!(key.as_bytes().iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b':'));
                        prop_assert!(token.as_bytes().iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b':'));
                    }
                    Ok(other) => prop_assert!(false, "unexpected {other:?}"),
                    Err(_) => {}
                }
            }
        }

        /// No accepted token can inject into memcached or name client data.
        #[test]
        fn accepted_tokens_are_memcached_safe(token in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut line = b"mcget:".to_vec();
            line.extend(&token);
            line.extend(b":k");
            if let Ok(Command::McGet { token, .. }) = parse(Bytes::from(line)) {
                let t = token.as_bytes();
                prop_assert!(!t.is_empty() && t.len() <= 64 && !t.starts_with(b"c-"));
                prop_assert!(t.iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b':'));
            }
        }

        /// Echo returns the whole remainder, colons included.
        #[test]
        fn msg_round_trips(content in proptest::collection::vec(any::<u8>().prop_filter("no line end", |b| *b != b'\n' && *b != b'\r'), 1..300)) {
            let mut line = b"msg:".to_vec();
            line.extend(&content);
            prop_assert_eq!(parse(Bytes::from(line)), Ok(Command::Msg { content: Bytes::from(content) }));
        }
    }
}
