//! The playground wire protocol as a pure library: it cuts a TCP byte stream
//! into lines ([`LineCodec`]), turns one line (TCP) or one datagram (UDP)
//! into a [`Command`] or a [`ProtocolError`], and formats every [`Reply`] the
//! servers send. It performs no I/O, so every transport, the servers and the
//! load generator share it and it can be tested exhaustively.
//!
//! The reply strings are part of the contract: clients of the original system
//! match on them, so they are kept byte for byte.

mod command;
mod key;
mod line;
mod reply;

pub use command::{Command, CommandKind, parse, trim_packet};
pub use key::{CLIENT_PREFIX, Key, MAX_KEY_LEN, MAX_VALUE_LEN, TOKEN_LEN, Token};
pub use line::{Frame, LineCodec};
pub use reply::{Ending, ErrorReply, ProtocolError, RECONNECT, Reply};
