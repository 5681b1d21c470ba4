//! `brd:{token}:{message}`: publishes a message that every client of every
//! instance receives, the sender included. There is no direct reply: the
//! sender sees its own message arrive like everyone else.

use bytes::Bytes;
use playground_protocol::{ErrorReply, Reply, Token};

use super::{Executor, Peer};

pub(super) async fn run(exec: &Executor, peer: &Peer, token: &Token, known: bool, message: Bytes) -> Reply {
    match exec.token_valid(token, known, peer).await {
        Ok(true) => {}
        Ok(false) => return ErrorReply::InvalidTokenRelogin.into(),
        Err(e) => return e.into(),
    }
    match exec.bus.publish(peer.addr, message).await {
        Ok(()) => {
            exec.published.increment(1);
            Reply::Published
        }
        Err(_) => ErrorReply::BroadcastUnavailable.into(),
    }
}
