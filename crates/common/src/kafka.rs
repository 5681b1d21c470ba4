//! How every role reaches Kafka: brokers, security protocol, SASL and TLS,
//! from the same options ([`KafkaConnection`]) everywhere. With the `kafka`
//! feature, also the librdkafka client configuration they make
//! ([`client_config`]); without it (the load generator) no librdkafka is built.

use clap::{Args, ValueEnum};

/// How to reach Kafka: the same variables configure every role.
#[derive(Debug, Clone, Args)]
pub struct KafkaConnection {
    /// Comma-separated Kafka bootstrap brokers (`host:port,...`). Servers: unset
    /// means the embedded bus and no log shipping. Logger: defaults to localhost:9092.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Kafka security protocol [default: sasl_plaintext when KAFKA_SASL_USER is set, else plaintext].
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", value_enum, ignore_case = true)]
    pub kafka_security_protocol: Option<KafkaSecurity>,
    /// SASL mechanism, used with sasl_plaintext and sasl_ssl.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_enum, ignore_case = true, default_value_t = SaslMechanism::Plain)]
    pub kafka_sasl_mechanism: SaslMechanism,
    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USER")]
    pub kafka_sasl_user: Option<String>,
    /// SASL password (prefer the environment or a Kubernetes Secret to the flag).
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,
    /// PEM file of the CA that signed the brokers' certificates (ssl, sasl_ssl)
    /// [default: the system's trust store].
    #[arg(long, env = "KAFKA_SSL_CA_FILE")]
    pub kafka_ssl_ca_file: Option<std::path::PathBuf>,
}

impl KafkaConnection {
    /// The protocol in effect (see the option's default).
    pub fn security_protocol(&self) -> KafkaSecurity {
        self.kafka_security_protocol.unwrap_or(if self.kafka_sasl_user.is_some() {
            KafkaSecurity::SaslPlaintext
        } else {
            KafkaSecurity::Plaintext
        })
    }
}

/// Kafka security protocols (librdkafka's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum KafkaSecurity {
    Plaintext,
    SaslPlaintext,
    Ssl,
    SaslSsl,
}

impl KafkaSecurity {
    /// librdkafka's spelling.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            KafkaSecurity::Plaintext => "plaintext",
            KafkaSecurity::SaslPlaintext => "sasl_plaintext",
            KafkaSecurity::Ssl => "ssl",
            KafkaSecurity::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the protocol authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, KafkaSecurity::SaslPlaintext | KafkaSecurity::SaslSsl)
    }
}

/// SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's spelling.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[cfg(feature = "kafka")]
/// A client configuration for `conn`, connecting to `brokers`.
pub fn client_config(conn: &KafkaConnection, brokers: &str) -> anyhow::Result<rdkafka::ClientConfig> {
    if brokers.trim().is_empty() {
        anyhow::bail!("KAFKA_BROKERS is empty");
    }
    let mut cfg = rdkafka::ClientConfig::new();
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
