//! Executor behaviour over the embedded backends: token binding per
//! transport, namespaces, TCP-only commands and backend failures.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::bus::{Delivery, EmbeddedBus};
use crate::cache::{CacheError, EmbeddedCache};

fn exec() -> Executor {
    Executor::new(Arc::new(EmbeddedCache::new(1000)), Arc::new(EmbeddedBus::new(16)))
}

fn tcp(addr: &str) -> Peer {
    Peer { addr: addr.parse().unwrap(), transport: Transport::Tcp }
}

fn udp(addr: &str, check_ip: bool) -> Peer {
    Peer { addr: addr.parse().unwrap(), transport: Transport::Udp { check_ip } }
}

async fn run(e: &Executor, peer: &Peer, line: &str) -> String {
    let m = CommandMetrics::new("tcp");
    let reply = e.execute(Bytes::copy_from_slice(line.as_bytes()), peer, None, &m).await;
    String::from_utf8(reply.to_line().to_vec()).unwrap()
}

async fn login(e: &Executor, peer: &Peer) -> String {
    let token = run(e, peer, "login").await;
    assert_eq!(token.len(), 37, "{token}");
    token.trim_end().to_string()
}

#[tokio::test]
async fn token_is_bound_to_the_tcp_connection() {
    let e = exec();
    let a = tcp("127.0.0.1:5000");
    let t = login(&e, &a).await;
    assert_eq!(run(&e, &a, &format!("mcset:{t}:k:v:1")).await, "success\n");
    assert_eq!(run(&e, &a, &format!("mcget:{t}:k")).await, "v:1\n");
    assert_eq!(run(&e, &a, &format!("mcget:{t}:nope")).await, "error: finding key nope\n");
    let other = tcp("127.0.0.1:5001");
    assert_eq!(run(&e, &other, &format!("mcget:{t}:k")).await, "error: invalid token\n");
    assert_eq!(run(&e, &other, &format!("mcset:{t}:k:x")).await, "error: invalid token\n");
    assert_eq!(run(&e, &other, &format!("brd:{t}:x")).await, "error: invalid token, re-login\n");
}

#[tokio::test]
async fn udp_accepts_an_existing_token_and_optionally_checks_the_ip() {
    let e = exec();
    let t = login(&e, &tcp("127.0.0.1:5000")).await;
    assert_eq!(run(&e, &udp("127.0.0.1:6000", false), &format!("mcset:{t}:k:v")).await, "success\n");
    assert_eq!(run(&e, &udp("127.0.0.2:6000", false), &format!("mcget:{t}:k")).await, "v\n");
    assert_eq!(run(&e, &udp("127.0.0.1:6001", true), &format!("mcget:{t}:k")).await, "v\n");
    assert_eq!(run(&e, &udp("127.0.0.2:6000", true), &format!("mcget:{t}:k")).await, "error: invalid token\n");
    let unknown = "0f8fad5b-d9cb-469f-a165-70867728950e";
    assert_eq!(run(&e, &udp("127.0.0.1:6000", false), &format!("mcget:{unknown}:k")).await, "error: invalid token\n");
}

#[tokio::test]
async fn login_and_brd_are_tcp_only() {
    let e = exec();
    let u = udp("127.0.0.1:6000", false);
    assert_eq!(run(&e, &u, "login").await, "error: login is only available over TCP\n");
    let t = "0f8fad5b-d9cb-469f-a165-70867728950e";
    assert_eq!(run(&e, &u, &format!("brd:{t}:hi")).await, "error: brd is only available over TCP\n");
    assert_eq!(run(&e, &u, "brd").await, "error: brd is only available over TCP\n");
    assert_eq!(run(&e, &u, "login:x").await, "error: login is only available over TCP\n");
}

#[tokio::test]
async fn brd_reaches_every_subscriber_and_has_no_direct_reply() {
    let e = exec();
    let a = tcp("127.0.0.1:5000");
    let t = login(&e, &a).await;
    let mut s1 = e.bus().subscribe();
    let mut s2 = e.bus().subscribe();
    assert_eq!(run(&e, &a, &format!("brd:{t}:hello: all")).await, "");
    for s in [&mut s1, &mut s2] {
        let mut flag = playground_common::quiet::WakeFlag::default();
        let Delivery::Line(pushed) = s.next(&mut flag).await else { panic!("no line") };
        assert_eq!(pushed.line(), &Bytes::from_static(b"hello: all\n"));
    }
}

#[tokio::test]
async fn client_data_cannot_reach_tokens() {
    let e = exec();
    let a = tcp("127.0.0.1:5000");
    let t = login(&e, &a).await;
    // A client key spelled like the token's cache key stays in the client namespace.
    assert_eq!(run(&e, &a, &format!("mcget:{t}:{t}")).await, format!("error: finding key {t}\n"));
    assert_eq!(run(&e, &a, &format!("mcset:{t}:{t}:127.0.0.9:1")).await, "success\n");
    assert_eq!(run(&e, &a, &format!("mcget:{t}:k")).await, "error: finding key k\n");
    // ... and the token still belongs to its connection.
    assert_eq!(run(&e, &a, &format!("mcget:{t}:{t}")).await, "127.0.0.9:1\n");
    // Client data cannot be presented as a token.
    assert_eq!(run(&e, &a, "mcset:k:x:127.0.0.1:5000").await, "error: invalid token\n");
    assert_eq!(run(&e, &a, &format!("mcset:{t}:k:127.0.0.1:5000")).await, "success\n");
    assert_eq!(run(&e, &a, "mcget:c-k:k").await, "error: invalid token\n");
}

#[tokio::test]
async fn a_token_of_any_shape_that_exists_is_honoured() {
    // As the original: its UDP tests write a 36-character token that is not
    // a UUID straight into memcached, under the token, with an `ip:port`.
    let e = exec();
    let token = "abcdefghijklmnopqrstuvwxyz0123456789";
    let key = CacheKey::token(&Token::parse(token.as_bytes()).unwrap());
    e.cache().set(&key, Bytes::from_static(b"127.0.0.1:5000"), TOKEN_TTL).await.unwrap();
    let u = udp("127.0.0.1:6000", false);
    assert_eq!(run(&e, &u, &format!("mcset:{token}:k:v")).await, "success\n");
    assert_eq!(run(&e, &u, &format!("mcget:{token}:k")).await, "v\n");
    let a = tcp("127.0.0.1:5000");
    assert_eq!(run(&e, &a, &format!("mcget:{token}:k")).await, "v\n");
    assert_eq!(run(&e, &tcp("127.0.0.1:5001"), &format!("mcget:{token}:k")).await, "error: invalid token\n");
}

/// A cache whose backend is down.
struct DownCache;

#[async_trait]
impl crate::cache::Cache for DownCache {
    async fn get(&self, _: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        Err(CacheError("down".into()))
    }
    async fn set(&self, _: &CacheKey, _: Bytes, _: Duration) -> Result<(), CacheError> {
        Err(CacheError("down".into()))
    }
    fn describe(&self) -> String {
        "down".into()
    }
}

#[tokio::test]
async fn a_cache_that_is_down_gives_a_clear_error() {
    let e = Executor::new(Arc::new(DownCache), Arc::new(EmbeddedBus::new(16)));
    let a = tcp("127.0.0.1:5000");
    let t = "0f8fad5b-d9cb-469f-a165-70867728950e";
    assert_eq!(run(&e, &a, "login").await, "error: cache unavailable\n");
    assert_eq!(run(&e, &a, &format!("mcget:{t}:k")).await, "error: cache unavailable\n");
    assert_eq!(run(&e, &a, &format!("brd:{t}:m")).await, "error: cache unavailable\n");
    assert_eq!(run(&e, &a, "msg:still works").await, "still works\n");
}

/// A cache that stores client data but loses every token at once (as an
/// eviction or a restart would).
struct ForgetfulCache(EmbeddedCache);

#[async_trait]
impl crate::cache::Cache for ForgetfulCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        if key.as_bytes().starts_with(playground_protocol::CLIENT_PREFIX) { self.0.get(key).await } else { Ok(None) }
    }
    async fn set(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        self.0.set(key, value, ttl).await
    }
    fn describe(&self) -> String {
        "forgetful".into()
    }
}

#[tokio::test]
async fn the_connection_that_was_issued_a_token_checks_it_without_the_cache() {
    let e = Executor::new(Arc::new(ForgetfulCache(EmbeddedCache::new(100))), Arc::new(EmbeddedBus::new(16)));
    let a = tcp("127.0.0.1:5000");
    let m = CommandMetrics::new("tcp");
    let mut session = Session::default();
    let ask = async |session: Option<&mut Session>, line: &str| {
        let reply = e.execute(Bytes::copy_from_slice(line.as_bytes()), &a, session, &m).await;
        String::from_utf8(reply.to_line().to_vec()).unwrap()
    };
    let t = ask(Some(&mut session), "login").await;
    let t = t.trim_end();
    assert_eq!(ask(Some(&mut session), &format!("mcset:{t}:k:v")).await, "success\n");
    assert_eq!(ask(Some(&mut session), &format!("mcget:{t}:k")).await, "v\n");
    // Without the connection's record, the cache is asked, and it has lost the token.
    assert_eq!(ask(None, &format!("mcget:{t}:k")).await, "error: invalid token\n");
    assert_eq!(ask(Some(&mut Session::default()), &format!("mcget:{t}:k")).await, "error: invalid token\n");
}
