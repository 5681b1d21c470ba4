//! The search-engine client: only REST APIs that Elasticsearch 8 and
//! OpenSearch 2 share (`_bulk`, index and alias creation, composable index
//! templates, `_cluster/health`), basic auth, and TLS verified against the
//! system's roots plus an optional CA file.
//!
//! Index set-up creates what is missing and never changes what exists, so an
//! operator's changes to the mapping or the aliases survive restarts.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::config::{IndexMode, SearchOptions};

/// The fields of a log event and their types in the index.
pub const FIELDS: [(&str, &str); 4] =
    [("pod", "keyword"), ("level", "keyword"), ("text", "text"), ("timestamp", "date")];

/// A failed request, classified for the retry policy.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Nothing usable came back (connection refused, timeout, reset...).
    #[error("search engine unreachable: {0}")]
    Transport(String),
    /// The body was too large for the engine (HTTP 413).
    #[error("request too large (HTTP 413)")]
    TooLarge,
    /// Any other status.
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// A 2xx answer that is not the expected JSON.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

/// The outcome of one document in a bulk answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Indexed,
    /// Worth sending again: 429 (engine overloaded), 5xx, or 404 (the index
    /// was deleted under us; set-up runs again before the retry).
    Retry {
        status: u16,
    },
    /// The engine will never take this document as it is.
    Rejected {
        status: u16,
        kind: String,
        reason: String,
    },
}

/// A client bound to one endpoint and one index configuration.
#[derive(Clone)]
pub struct SearchClient {
    http: reqwest::Client,
    base: Url,
    auth: Option<(String, String)>,
    opts: SearchOptions,
}

impl SearchClient {
    /// Builds the HTTP client. Fails on an unreadable or invalid CA file.
    pub fn new(opts: &SearchOptions) -> anyhow::Result<Self> {
        let mut base = Url::parse(&opts.elasticsearch_endpoint)
            .map_err(|e| anyhow::anyhow!("invalid ELASTICSEARCH_ENDPOINT: {e}"))?;
        // Join paths relative to the endpoint, which may itself have a path
        // (an engine behind a path-routing proxy).
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(opts.elasticsearch_timeout)
            .connect_timeout(opts.elasticsearch_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("playground-logger/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &opts.elasticsearch_ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read ELASTICSEARCH_CA_FILE={}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("invalid ELASTICSEARCH_CA_FILE={}: {e}", path.display()))?;
            if certs.is_empty() {
                anyhow::bail!("ELASTICSEARCH_CA_FILE={} holds no PEM certificate", path.display());
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if opts.elasticsearch_insecure_skip_verify {
            warn!("ELASTICSEARCH_INSECURE_SKIP_VERIFY is on: the search engine's certificate is not checked");
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        let auth = (!opts.elasticsearch_username.is_empty())
            .then(|| (opts.elasticsearch_username.clone(), opts.elasticsearch_password.clone()));
        Ok(SearchClient { http, base, auth, opts: opts.clone() })
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), RequestError> {
        let url = self.base.join(path).map_err(|e| RequestError::Decode(format!("bad path {path}: {e}")))?;
        let mut req = self.http.request(method, url);
        if let Some((user, password)) = &self.auth {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            // The bulk API wants NDJSON; the other calls take JSON, which is
            // valid NDJSON of one line.
            req = req.header(reqwest::header::CONTENT_TYPE, "application/x-ndjson").body(body);
        }
        let resp = req.send().await.map_err(|e| RequestError::Transport(error_chain(&e)))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| RequestError::Transport(error_chain(&e)))?;
        Ok((status, body))
    }

    async fn json_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), RequestError> {
        let body = body.map(|v| Bytes::from(v.to_string()));
        let (status, bytes) = self.request(method, path, body).await?;
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        match status.as_u16() {
            413 => Err(RequestError::TooLarge),
            s if status.is_success() || s == 404 || s == 400 => Ok((status, value)),
            s => Err(RequestError::Status { status: s, body: snippet(&bytes) }),
        }
    }

    /// Whether the engine answers (any cluster state but an error).
    pub async fn health(&self) -> Result<(), RequestError> {
        let (status, _) = self.json_call(Method::GET, "_cluster/health", None).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(RequestError::Status { status: status.as_u16(), body: String::new() })
        }
    }

    /// Sends one bulk body and returns the outcome of each document, in order.
    pub async fn bulk(&self, body: Bytes, expected: usize) -> Result<Vec<ItemOutcome>, RequestError> {
        let (status, bytes) = self.request(Method::POST, "_bulk", Some(body)).await?;
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Err(RequestError::TooLarge);
        }
        if !status.is_success() {
            return Err(RequestError::Status { status: status.as_u16(), body: snippet(&bytes) });
        }
        parse_bulk(&bytes, expected)
    }

    /// Creates the index (or the daily template) and the alias when missing.
    pub async fn ensure_index(&self) -> Result<(), RequestError> {
        match self.opts.elasticsearch_index_mode {
            IndexMode::Single => self.ensure_single().await,
            IndexMode::Daily => self.ensure_template().await,
        }
    }

    fn index_body(&self) -> Value {
        let mut settings = serde_json::Map::new();
        if let Some(n) = self.opts.elasticsearch_shards {
            settings.insert("number_of_shards".into(), n.into());
        }
        if let Some(n) = self.opts.elasticsearch_replicas {
            settings.insert("number_of_replicas".into(), n.into());
        }
        let properties: serde_json::Map<String, Value> =
            FIELDS.iter().map(|(name, ty)| ((*name).to_string(), json!({ "type": ty }))).collect();
        json!({
            "settings": { "index": settings },
            // Fields beyond the four are kept in _source but not indexed, so a
            // stray field in some pod's events cannot grow the mapping.
            "mappings": { "dynamic": false, "properties": properties },
            "aliases": { self.opts.elasticsearch_alias.clone(): {} },
        })
    }

    async fn ensure_single(&self) -> Result<(), RequestError> {
        let index = &self.opts.elasticsearch_logging_index;
        let alias = &self.opts.elasticsearch_alias;
        let (status, _) = self.json_call(Method::HEAD, index, None).await?;
        if status == StatusCode::NOT_FOUND {
            let (status, answer) = self.json_call(Method::PUT, index, Some(self.index_body())).await?;
            if status.is_success() {
                info!(index = %index, alias = %alias, "Created the log index and its alias");
                return Ok(());
            }
            // Another logger replica may have created it in between.
            if error_type(&answer) != Some("resource_already_exists_exception") {
                return Err(RequestError::Status { status: status.as_u16(), body: answer.to_string() });
            }
        }
        let (status, _) = self.json_call(Method::HEAD, &format!("{index}/_alias/{alias}"), None).await?;
        if status == StatusCode::NOT_FOUND {
            let (status, answer) = self.json_call(Method::PUT, &format!("{index}/_alias/{alias}"), None).await?;
            if !status.is_success() {
                return Err(RequestError::Status { status: status.as_u16(), body: answer.to_string() });
            }
            info!(index = %index, alias = %alias, "Added the missing alias to the existing index");
        } else {
            info!(index = %index, alias = %alias, "Using the existing index and alias");
        }
        self.check_mapping(index).await;
        Ok(())
    }

    async fn ensure_template(&self) -> Result<(), RequestError> {
        let prefix = &self.opts.elasticsearch_logging_index;
        let path = format!("_index_template/{prefix}");
        let (status, _) = self.json_call(Method::HEAD, &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            let body = json!({
                "index_patterns": [format!("{prefix}-*")],
                "template": self.index_body(),
                // Above the engines' built-in templates, so ours applies.
                "priority": 500,
            });
            let (status, answer) = self.json_call(Method::PUT, &path, Some(body)).await?;
            if !status.is_success() {
                return Err(RequestError::Status { status: status.as_u16(), body: answer.to_string() });
            }
            info!(template = %prefix, "Created the index template of the daily log indices");
        } else {
            info!(template = %prefix, "Using the existing index template");
        }
        Ok(())
    }

    /// Warns when an existing index maps the event fields differently: the
    /// logger keeps it as it is, but searches may not behave as expected.
    async fn check_mapping(&self, index: &str) {
        let Ok((status, answer)) = self.json_call(Method::GET, &format!("{index}/_mapping"), None).await else {
            return;
        };
        if !status.is_success() {
            return;
        }
        let Some(props) =
            answer.as_object().and_then(|m| m.values().next()).and_then(|v| v.pointer("/mappings/properties"))
        else {
            return;
        };
        for (name, want) in FIELDS {
            let have = props.get(name).and_then(|f| f.get("type")).and_then(Value::as_str);
            if have != Some(want) {
                warn!(index = %index, field = name, expected = want, found = ?have, "The existing index maps a log field differently");
            }
        }
    }
}

#[derive(Deserialize)]
struct BulkHead {
    errors: bool,
}

#[derive(Deserialize)]
struct BulkFull {
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// Reads a bulk answer. When `errors` is false every document was indexed
/// and the items are not even looked at.
fn parse_bulk(bytes: &[u8], expected: usize) -> Result<Vec<ItemOutcome>, RequestError> {
    let head: BulkHead =
        serde_json::from_slice(bytes).map_err(|e| RequestError::Decode(format!("{e}: {}", snippet(bytes))))?;
    if !head.errors {
        return Ok(vec![ItemOutcome::Indexed; expected]);
    }
    let full: BulkFull =
        serde_json::from_slice(bytes).map_err(|e| RequestError::Decode(format!("{e}: {}", snippet(bytes))))?;
    if full.items.len() != expected {
        return Err(RequestError::Decode(format!("{} items for {expected} documents", full.items.len())));
    }
    Ok(full
        .items
        .into_iter()
        .map(|m| match m.into_values().next() {
            None => ItemOutcome::Retry { status: 0 },
            Some(item) => classify(item.status, item.error.as_ref()),
        })
        .collect())
}

fn classify(status: u16, error: Option<&Value>) -> ItemOutcome {
    match status {
        200..=299 => ItemOutcome::Indexed,
        404 | 429 | 500..=599 => ItemOutcome::Retry { status },
        _ => {
            let kind = error.and_then(|e| e.get("type")).and_then(Value::as_str).unwrap_or("unknown").to_string();
            let reason = error
                .map(|e| {
                    let mut r = e.get("reason").and_then(Value::as_str).unwrap_or_default().to_string();
                    if let Some(cause) = e.pointer("/caused_by/reason").and_then(Value::as_str) {
                        r = format!("{r}: {cause}");
                    }
                    r
                })
                .unwrap_or_default();
            ItemOutcome::Rejected { status, kind, reason }
        }
    }
}

/// Whether a per-document error comes from the mapping (the document does
/// not fit the field types). ES 8 says `document_parsing_exception`,
/// OpenSearch `mapper_parsing_exception`.
pub fn is_mapping_error(kind: &str) -> bool {
    kind.contains("mapper") || kind.contains("parsing_exception") || kind.contains("illegal_argument")
}

fn error_type(answer: &Value) -> Option<&str> {
    answer.pointer("/error/type").and_then(Value::as_str)
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]);
    s.into_owned()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_answers() {
        let ok = br#"{"took":3,"errors":false,"items":[{"index":{"status":201}},{"index":{"status":200}}]}"#;
        assert_eq!(parse_bulk(ok, 2).unwrap(), vec![ItemOutcome::Indexed, ItemOutcome::Indexed]);
        let mixed = br#"{"took":3,"errors":true,"items":[
            {"index":{"_id":"a","status":201}},
            {"index":{"_id":"b","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [timestamp]","caused_by":{"type":"x","reason":"bad date"}}}},
            {"index":{"_id":"c","status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"index":{"_id":"d","status":503}}]}"#;
        let got = parse_bulk(mixed, 4).unwrap();
        assert_eq!(got[0], ItemOutcome::Indexed);
        let ItemOutcome::Rejected { status: 400, kind, reason } = &got[1] else { panic!("{got:?}") };
        assert!(is_mapping_error(kind));
        assert_eq!(reason, "failed to parse field [timestamp]: bad date");
        assert_eq!(got[2], ItemOutcome::Retry { status: 429 });
        assert_eq!(got[3], ItemOutcome::Retry { status: 503 });
        assert!(matches!(parse_bulk(mixed, 3), Err(RequestError::Decode(_))));
        assert!(matches!(parse_bulk(b"<html>", 1), Err(RequestError::Decode(_))));
    }

    fn search_options(extra: &[&str]) -> SearchOptions {
        crate::config::parse_args(extra).unwrap().search
    }

    #[test]
    fn a_bad_ca_file_stops_start_up_naming_the_variable() {
        let missing = search_options(&["--elasticsearch-ca-file", "/nonexistent/ca.pem"]);
        let err = SearchClient::new(&missing).err().unwrap().to_string();
        assert!(err.contains("ELASTICSEARCH_CA_FILE"), "{err}");
        let path = std::env::temp_dir().join(format!("playground-not-a-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let junk = search_options(&["--elasticsearch-ca-file", path.to_str().unwrap()]);
        let err = SearchClient::new(&junk).err().unwrap().to_string();
        let _ = std::fs::remove_file(&path);
        assert!(err.contains("ELASTICSEARCH_CA_FILE"), "{err}");
    }

    #[test]
    fn the_index_body_has_the_mapping_and_the_alias() {
        let args = crate::config::parse_args(&[
            "--elasticsearch-endpoint",
            "http://127.0.0.1:9/base",
            "--elasticsearch-replicas",
            "0",
        ])
        .unwrap();
        let c = SearchClient::new(&args.search).unwrap();
        assert_eq!(c.base.as_str(), "http://127.0.0.1:9/base/");
        let body = c.index_body();
        assert_eq!(body.pointer("/mappings/properties/timestamp/type"), Some(&json!("date")));
        assert_eq!(body.pointer("/mappings/properties/pod/type"), Some(&json!("keyword")));
        assert_eq!(body.pointer("/settings/index/number_of_replicas"), Some(&json!(0)));
        assert!(body.pointer("/aliases/k8s-logs").is_some());
    }
}
