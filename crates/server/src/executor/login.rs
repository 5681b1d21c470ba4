//! `login`: issues a new token (a UUID v4) and stores it with the client's
//! remote address, so only that connection can use it.

use bytes::Bytes;
use playground_protocol::{ErrorReply, Reply, Token};

use super::{Executor, Peer, TOKEN_TTL};
use crate::cache::CacheKey;

pub(super) async fn run(exec: &Executor, peer: &Peer) -> Reply {
    let uuid = uuid::Uuid::new_v4().hyphenated().to_string();
    let Some(token) = Token::parse(uuid.as_bytes()) else {
        unreachable!("a hyphenated UUID always has the token shape")
    };
    let owner = Bytes::from(peer.addr.to_string());
    match exec.cache.set(&CacheKey::token(&token), owner, TOKEN_TTL).await {
        Ok(()) => Reply::Token(token),
        Err(_) => ErrorReply::CacheUnavailable.into(),
    }
}
