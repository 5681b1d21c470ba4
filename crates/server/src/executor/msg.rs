//! `msg:{content}`: echoes the content, the whole remainder of the line.

use bytes::Bytes;
use playground_protocol::Reply;

pub(super) fn run(content: Bytes) -> Reply {
    Reply::Echo(content)
}
