//! The TCP framings on any bytes, cut into reads at any places: the codec
//! never panics and never holds more than a command's worth of undecided
//! bytes; in line framing every line it yields is at most the maximum and
//! has no `\n`, and every input byte is accounted for.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use playground_protocol::Frame;
use playground_server::tcp::codec::{FramingCodec, FramingMode, Input};
use tokio_util::codec::Decoder;

const MAX: usize = 32;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else { return };
    let Some((&cut, data)) = data.split_first() else { return };
    let mode = [FramingMode::Auto, FramingMode::Line, FramingMode::Packet][usize::from(mode % 3)];
    let mut codec = FramingCodec::new(mode, MAX);
    let mut buf = BytesMut::new();
    let step = usize::from(cut).max(1);
    for read in data.chunks(step) {
        buf.extend_from_slice(read);
        while let Some(input) = codec.decode(&mut buf).expect("decoding never fails") {
            check(&input);
        }
        if codec.is_undecided() {
            assert!(buf.len() <= MAX + 1, "undecided bytes are bounded");
        }
    }
    while let Some(input) = codec.decode_eof(&mut buf).expect("decoding never fails") {
        check(&input);
    }
});

fn check(input: &Input) {
    match input {
        Input::Line(Frame::Line(line)) => {
            assert!(line.len() <= MAX + 1, "{line:?}");
            assert!(!line.contains(&b'\n'), "{line:?}");
        }
        Input::Packet(read) => assert!(!read.is_empty()),
        Input::Line(Frame::TooLong) | Input::Pending | Input::LineStarted => {}
    }
}
