//! `mcget:{token}:{key}`: reads client data for a valid token.

use playground_protocol::{ErrorReply, Key, Reply, Token};

use super::{Executor, Peer};
use crate::cache::CacheKey;

pub(super) async fn run(exec: &Executor, peer: &Peer, token: &Token, known: bool, key: &Key) -> Reply {
    match exec.token_valid(token, known, peer).await {
        Ok(true) => {}
        Ok(false) => return ErrorReply::InvalidToken.into(),
        Err(e) => return e.into(),
    }
    match exec.cache.get(&CacheKey::client(key)).await {
        Ok(Some(value)) => Reply::Value(value),
        Ok(None) => ErrorReply::NotFound(key.bytes().clone()).into(),
        Err(_) => ErrorReply::CacheUnavailable.into(),
    }
}
