//! `login`: issues a new token (a UUID v4) and stores it with the client's
//! remote address, so only that connection can use it. The connection's
//! [`Session`] remembers it, so its later commands need not ask the cache.

use std::time::Instant;

use bytes::Bytes;
use playground_protocol::{ErrorReply, Reply, Token};

use super::{Executor, Peer, Session};
use crate::cache::CacheKey;

pub(super) async fn run(exec: &Executor, peer: &Peer, session: Option<&mut Session>) -> Reply {
    let uuid = uuid::Uuid::new_v4().hyphenated().to_string();
    let Some(token) = Token::parse(uuid.as_bytes()) else {
        unreachable!("a hyphenated UUID always has the token shape")
    };
    let owner = Bytes::from(peer.addr.to_string());
    // Taken before the write is sent: the cache's clock starts later.
    let stored_at = Instant::now();
    match exec.cache.set(&CacheKey::token(&token), owner, exec.token_ttl).await {
        Ok(()) => {
            if let Some(session) = session {
                session.issued(token.clone(), stored_at, exec.token_ttl);
            }
            Reply::Token(token)
        }
        Err(_) => ErrorReply::CacheUnavailable.into(),
    }
}
