//! Kafka client configuration shared by the broadcast bus, log shipping and
//! the logger: brokers, security protocol, SASL and TLS, all from the same
//! options ([`KafkaConnection`]) in every role.

use rdkafka::ClientConfig;

use crate::config::KafkaConnection;

/// A client configuration for `conn`, connecting to `brokers`.
pub fn client_config(conn: &KafkaConnection, brokers: &str) -> anyhow::Result<ClientConfig> {
    if brokers.trim().is_empty() {
        anyhow::bail!("KAFKA_BROKERS is empty");
    }
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    let protocol = conn.security_protocol();
    cfg.set("security.protocol", protocol.as_librdkafka());
    if protocol.uses_sasl() {
        let (Some(user), Some(password)) = (&conn.kafka_sasl_user, &conn.kafka_sasl_password) else {
            anyhow::bail!(
                "KAFKA_SECURITY_PROTOCOL={} needs KAFKA_SASL_USER and KAFKA_SASL_PASSWORD",
                protocol.as_librdkafka()
            );
        };
        cfg.set("sasl.mechanism", conn.kafka_sasl_mechanism.as_librdkafka())
            .set("sasl.username", user)
            .set("sasl.password", password);
    }
    if let Some(ca) = &conn.kafka_ssl_ca_file {
        if !ca.is_file() {
            anyhow::bail!("KAFKA_SSL_CA_FILE={} is not a readable file", ca.display());
        }
        cfg.set("ssl.ca.location", ca.to_string_lossy());
    }
    // Keep reconnect attempts frequent enough to notice a broker coming back
    // quickly, but not so frequent that a down broker floods the logs.
    cfg.set("reconnect.backoff.max.ms", "2000").set("log_level", "3");
    Ok(cfg)
}

/// The servers' client configuration (KAFKA_BROKERS must be set).
pub fn server_config(opts: &crate::config::KafkaOptions) -> anyhow::Result<ClientConfig> {
    let brokers = opts.connection.kafka_brokers.as_deref().unwrap_or_default();
    client_config(&opts.connection, brokers)
}
