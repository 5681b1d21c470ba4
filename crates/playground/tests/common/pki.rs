//! Test certificates made with the `openssl` command-line tool (what an
//! operator would use): a throw-away CA and server certificates it signs for
//! `localhost` and 127.0.0.1, in a fresh directory per test; and a rustls
//! client that trusts a given CA.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// A directory with a CA (`ca.pem`, `ca.key`).
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// A new CA named `name` in a fresh directory.
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("playground-pki-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        pki.openssl(
            &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
                .into_iter()
                .chain(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", &format!("/CN={name}")])
                .collect::<Vec<_>>(),
        );
        pki
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Makes `{stem}.pem` and `{stem}.key`: a certificate for `localhost` and
    /// 127.0.0.1 signed by the CA; returns (certificate, key).
    pub fn server(&self, stem: &str) -> (PathBuf, PathBuf) {
        let (key, csr, cert, ext) =
            (format!("{stem}.key"), format!("{stem}.csr"), format!("{stem}.pem"), format!("{stem}.ext"));
        std::fs::write(self.dir.join(&ext), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        self.openssl(
            &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout"]
                .into_iter()
                .chain([key.as_str(), "-out", &csr, "-subj", &format!("/CN={stem}")])
                .collect::<Vec<_>>(),
        );
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        (self.dir.join(cert), self.dir.join(key))
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl").args(args).current_dir(&self.dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The DER bytes of the first certificate in a PEM file.
pub fn der(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}

/// A TLS client connection over a real socket, verifying the server against
/// one CA for the name `localhost`.
pub struct TlsClient {
    pub reader: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsClient {
    /// Connects and completes the handshake, or says why it failed.
    pub fn connect(port: u16, ca: &Path) -> Result<TlsClient, std::io::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(ca).unwrap()).unwrap();
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(Arc::new(config), name).unwrap();
        let sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsClient { reader: BufReader::new(stream) })
    }

    /// The DER bytes of the certificate the server presented.
    pub fn peer_der(&self) -> Vec<u8> {
        self.reader.get_ref().conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// Sends raw bytes (one TLS record).
    pub fn send_raw(&mut self, data: &[u8]) {
        let s = self.reader.get_mut();
        s.write_all(data).unwrap();
        s.flush().unwrap();
    }

    /// Sends a line and reads the reply line (without `\n`).
    pub fn ask(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\n").as_bytes());
        self.read_line()
    }

    /// Reads one line (without `\n`).
    pub fn read_line(&mut self) -> String {
        let mut buf = String::new();
        std::io::BufRead::read_line(&mut self.reader, &mut buf).unwrap();
        buf.strip_suffix('\n').expect("a whole line").to_string()
    }

    /// What one read returns (a packet connection's reply has no line end).
    pub fn read_some(&mut self) -> Vec<u8> {
        let mut buf = [0u8; 1024];
        let n = self.reader.read(&mut buf).unwrap();
        buf[..n].to_vec()
    }
}
