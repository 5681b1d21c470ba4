//! Toxiproxy, the fault proxy (`scripts/services/toxiproxy`), through its
//! HTTP API: a proxy per test in front of a real service, and toxics added
//! and removed on it.

use super::http;

/// The Toxiproxy API port from PLAYGROUND_TOXIPROXY (host:port); `None` (the
/// test says so and passes) when unset, unless PLAYGROUND_REQUIRE_SERVICES is.
pub fn api() -> Option<u16> {
    match std::env::var("PLAYGROUND_TOXIPROXY") {
        Ok(addr) => Some(addr.rsplit(':').next().unwrap().parse().expect("PLAYGROUND_TOXIPROXY is host:port")),
        Err(_) => {
            assert!(
                std::env::var("PLAYGROUND_REQUIRE_SERVICES").is_err(),
                "PLAYGROUND_TOXIPROXY must be set (scripts/test does it)"
            );
            eprintln!("skipped: PLAYGROUND_TOXIPROXY not set; run scripts/test");
            None
        }
    }
}

/// A proxy, deleted when dropped.
pub struct Proxy {
    api: u16,
    name: String,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Proxy {
    /// A proxy named `name` (made unique) from `listen` (`127.0.0.1:0` for any
    /// free port) to `upstream`.
    pub fn new(api: u16, name: &str, listen: &str, upstream: &str) -> Proxy {
        let name = format!("{name}-{}", uuid::Uuid::new_v4().simple());
        let body = format!(r#"{{"name":"{name}","listen":"{listen}","upstream":"{upstream}","enabled":true}}"#);
        let (status, reply) = http(api, "POST", "/proxies", &body).expect("Toxiproxy API");
        assert_eq!(status, 201, "creating proxy {name}: {reply}");
        let json: serde_json::Value = serde_json::from_str(&reply).unwrap();
        let listen = json["listen"].as_str().unwrap();
        let port = listen.rsplit(':').next().unwrap().parse().unwrap();
        Proxy { api, name, port }
    }

    /// Adds toxic `kind` on `stream` (`upstream` or `downstream`) with
    /// `attributes` (a JSON object); returns its name for [`Proxy::remove`].
    pub fn add(&self, kind: &str, stream: &str, attributes: &str) -> String {
        let toxic = format!("{kind}-{stream}");
        let body = format!(
            r#"{{"name":"{toxic}","type":"{kind}","stream":"{stream}","toxicity":1.0,"attributes":{attributes}}}"#
        );
        let (status, reply) = http(self.api, "POST", &format!("/proxies/{}/toxics", self.name), &body).unwrap();
        assert_eq!(status, 200, "adding {toxic}: {reply}");
        toxic
    }

    /// Removes a toxic.
    pub fn remove(&self, toxic: &str) {
        let (status, reply) = http(self.api, "DELETE", &format!("/proxies/{}/toxics/{toxic}", self.name), "").unwrap();
        assert_eq!(status, 204, "removing {toxic}: {reply}");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = http(self.api, "DELETE", &format!("/proxies/{}", self.name), "");
    }
}
