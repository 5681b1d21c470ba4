//! The command parser on any bytes: it never panics, a command it accepts
//! encodes back to a line it parses to the same command, and every reply
//! a client reads back is one it could have been sent.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use playground_protocol::{CommandKind, Ending, Reply, parse};

fuzz_target!(|data: &[u8]| {
    let line = Bytes::copy_from_slice(data);
    let kind = CommandKind::of_line(&line);
    match parse(line) {
        Ok(command) => {
            let mut out = BytesMut::new();
            command.encode(&mut out, Ending::Bare);
            assert_eq!(parse(out.freeze()), Ok(command.clone()), "{data:?}");
            assert!(kind.is_some(), "a parsed command has a kind: {data:?}");
        }
        Err(e) => assert!(e.as_str().starts_with("error: ")),
    }
    for kind in CommandKind::ALL {
        if let Some(reply) = Reply::parse(kind, data) {
            let mut out = BytesMut::new();
            reply.encode(&mut out, Ending::Bare);
            assert_eq!(reply.encoded_len(Ending::Bare), out.len());
        }
    }
});
