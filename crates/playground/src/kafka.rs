//! Kafka client configuration shared by the broadcast bus, log shipping and
//! the logger: brokers, security protocol, SASL and TLS, all from options.

use rdkafka::ClientConfig;

use crate::config::{KafkaOptions, KafkaSecurity, SaslMechanism};

/// A client configuration for `opts` (which must name brokers).
pub fn client_config(opts: &KafkaOptions) -> anyhow::Result<ClientConfig> {
    let brokers = opts.kafka_brokers.as_deref().filter(|b| !b.trim().is_empty());
    let brokers = brokers.ok_or_else(|| anyhow::anyhow!("KAFKA_BROKERS is empty"))?;
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    let security = opts.kafka_security_protocol.unwrap_or(if opts.kafka_sasl_user.is_some() {
        KafkaSecurity::SaslPlaintext
    } else {
        KafkaSecurity::Plaintext
    });
    cfg.set(
        "security.protocol",
        match security {
            KafkaSecurity::Plaintext => "plaintext",
            KafkaSecurity::SaslPlaintext => "sasl_plaintext",
            KafkaSecurity::Ssl => "ssl",
            KafkaSecurity::SaslSsl => "sasl_ssl",
        },
    );
    if matches!(security, KafkaSecurity::SaslPlaintext | KafkaSecurity::SaslSsl) {
        let mechanism = match opts.kafka_sasl_mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        };
        let user = opts.kafka_sasl_user.as_deref().ok_or_else(|| anyhow::anyhow!("SASL needs KAFKA_SASL_USER"))?;
        let password = opts.kafka_sasl_password.as_deref().unwrap_or_default();
        cfg.set("sasl.mechanism", mechanism).set("sasl.username", user).set("sasl.password", password);
    }
    if let Some(ca) = &opts.kafka_ssl_ca_file {
        if !ca.is_file() {
            anyhow::bail!("KAFKA_SSL_CA_FILE {} is not a readable file", ca.display());
        }
        cfg.set("ssl.ca.location", ca.to_string_lossy());
    }
    // Keep reconnect attempts frequent enough to notice a broker coming back
    // quickly, but not so frequent that a down broker floods the logs.
    cfg.set("reconnect.backoff.max.ms", "2000").set("log_level", "3");
    Ok(cfg)
}
