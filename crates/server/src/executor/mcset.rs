//! `mcset:{token}:{key}:{value}`: stores client data for a valid token.

use bytes::Bytes;
use playground_protocol::{ErrorReply, Key, Reply, Token};

use super::{CLIENT_DATA_TTL, Executor, Peer};
use crate::cache::CacheKey;

pub(super) async fn run(exec: &Executor, peer: &Peer, token: &Token, known: bool, key: &Key, value: Bytes) -> Reply {
    match exec.token_valid(token, known, peer).await {
        Ok(true) => {}
        Ok(false) => return ErrorReply::InvalidToken.into(),
        Err(e) => return e.into(),
    }
    match exec.cache.set(&CacheKey::client(key), value, CLIENT_DATA_TTL).await {
        Ok(()) => Reply::Success,
        Err(_) => ErrorReply::CacheUnavailable.into(),
    }
}
