//! Optional TLS on the TCP listener (rustls, ring provider). The certificate
//! chain and private key come from PEM files (TLS_CERT, TLS_KEY), read at
//! start-up (a bad pair stops start-up with the reason) and read again when
//! either file's modification time or size changes, checked every
//! TLS_RELOAD_INTERVAL: a renewed certificate (a rotated Kubernetes secret,
//! cert-manager) serves new connections without a restart. A pair that fails
//! to load is logged and the previous one kept; it is tried again when the
//! files change again. Connections already open keep the certificate they
//! were handshaken with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use metrics::counter;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::TlsOptions;

/// The two files of a pair.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

/// The TLS side of the listener: accepts handshakes with the current pair.
/// Cloned into every listener (one per runtime with RUNTIME=per-core); the
/// clones share the reloading certificate.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("handshake_timeout", &self.handshake_timeout).finish_non_exhaustive()
    }
}

impl Tls {
    /// `None` without TLS_CERT; otherwise loads the pair (an error names the
    /// file and what is wrong with it) and watches the files until `stop`.
    pub fn start(opts: &TlsOptions, stop: CancellationToken) -> anyhow::Result<Option<Tls>> {
        let (Some(cert), Some(key)) = (&opts.tls_cert, &opts.tls_key) else { return Ok(None) };
        let files = Files { cert: cert.clone(), key: key.clone() };
        let stamp = Stamp::of(&files);
        let resolver = Arc::new(Reloading { current: RwLock::new(load(&files.cert, &files.key)?) });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        info!(cert = %files.cert.display(), "TLS on the TCP listener");
        tokio::spawn(watch(files, opts.tls_reload_interval, stamp, resolver, stop));
        let acceptor = TlsAcceptor::from(Arc::new(config));
        Ok(Some(Tls { acceptor, handshake_timeout: opts.tls_handshake_timeout }))
    }

    /// The server side of a handshake, within TLS_HANDSHAKE_TIMEOUT; the
    /// error says why it failed (for the debug log: a scanner's bytes or a
    /// client that does not trust the certificate are routine).
    pub async fn accept(&self, stream: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no handshake within {:?}", self.handshake_timeout)),
        }
    }
}

/// Hands every handshake the pair loaded last.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// What decides that the files changed: modification time and size of both.
#[derive(Debug, PartialEq, Eq)]
struct Stamp([Option<(SystemTime, u64)>; 2]);

impl Stamp {
    fn of(files: &Files) -> Stamp {
        let one = |p: &Path| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        Stamp([one(&files.cert), one(&files.key)])
    }
}

async fn watch(files: Files, every: Duration, mut stamp: Stamp, resolver: Arc<Reloading>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Stamp::of(&files);
        if now == stamp {
            continue;
        }
        stamp = now;
        match load(&files.cert, &files.key) {
            Ok(pair) => {
                *resolver.current.write().unwrap_or_else(|e| e.into_inner()) = pair;
                counter!("playground_tls_reloads_total", "result" => "ok").increment(1);
                info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                counter!("playground_tls_reloads_total", "result" => "error").increment(1);
                error!(error = format!("{e:#}"), "TLS certificate not reloaded; still serving the previous one");
            }
        }
    }
}

/// Reads a PEM certificate chain and its PEM private key (PKCS#8, PKCS#1 or
/// SEC1) and checks that they belong together.
fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("TLS_CERT {}: cannot read a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "TLS_CERT {}: no PEM certificate in the file", cert.display());
    let der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("TLS_KEY {}: cannot read a PEM private key", key.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .with_context(|| format!("TLS_KEY {}: unsupported private key", key.display()))?;
    let pair = CertifiedKey::new(chain, signer);
    pair.keys_match().with_context(|| {
        format!("TLS_KEY {} is not the key of the certificate in TLS_CERT {}", key.display(), cert.display())
    })?;
    Ok(Arc::new(pair))
}
