//! Options of `playground logger`. Every option is a flag and an environment
//! variable with a documented default; an invalid value stops start-up with
//! a message naming the variable. The Kafka security options use the same
//! names as the servers' so one set of variables configures every role.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use playground_common::kafka::KafkaConnection;
use playground_common::{ProcessOptions as Process, parse_duration};

/// `playground logger`: Kafka log topic → Elasticsearch/OpenSearch.
#[derive(Debug, Clone, Args)]
pub struct LoggerArgs {
    #[command(flatten)]
    pub kafka: KafkaOptions,
    #[command(flatten)]
    pub search: SearchOptions,
    #[command(flatten)]
    pub pipeline: PipelineOptions,
    #[command(flatten)]
    pub process: RunOptions,
}

/// Where the log topic is and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct KafkaOptions {
    #[command(flatten)]
    pub connection: KafkaConnection,
    /// The topic every instance ships its logs to.
    #[arg(long, env = "KAFKA_LOGGING_TOPIC", default_value = "general-logs")]
    pub kafka_logging_topic: String,
    /// Consumer group: instances of the logger in one group share the partitions.
    #[arg(long, env = "KAFKA_CONSUMER_GROUP", default_value = "playground-logger")]
    pub kafka_consumer_group: String,
    /// This instance's static membership in the group (Kafka's
    /// `group.instance.id`) [default: POD_NAME, else the host name]. An
    /// instance that restarts under the same id, after a crash too, gets its
    /// partitions back at once instead of after the dead member's session
    /// timeout (45 s); it must be unique within the group. Empty: dynamic
    /// membership (a restart waits for the session timeout, but a clean
    /// stop hands the partitions over at once).
    #[arg(long, env = "LOGGER_INSTANCE_ID")]
    pub logger_instance_id: Option<String>,
    /// Where a group without committed offsets starts: `earliest` indexes what the
    /// topic still holds, `latest` only what arrives after the first start.
    #[arg(long, env = "KAFKA_AUTO_OFFSET_RESET", value_enum, default_value_t = OffsetReset::Earliest)]
    pub kafka_auto_offset_reset: OffsetReset,
    /// Maximum time between two reads of the topic before Kafka considers the
    /// logger dead and gives its partitions to another member. Reads pause
    /// while the search engine is down, so this bounds how long an outage can
    /// last before a rebalance (which is harmless: uncommitted events are
    /// indexed again under the same ids).
    #[arg(long, env = "KAFKA_MAX_POLL_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub kafka_max_poll_interval: Duration,
    /// How often the consumer lag per partition is refreshed.
    #[arg(long, env = "KAFKA_LAG_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub kafka_lag_interval: Duration,
    /// Topic that receives events that cannot be indexed (invalid JSON,
    /// rejected by the mapping), with the reason in headers [default: none,
    /// such events are only counted and logged].
    #[arg(long, env = "DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
}

/// Start position of a group without committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OffsetReset {
    Earliest,
    Latest,
}

impl KafkaOptions {
    /// The brokers (the original's localhost:9092 when KAFKA_BROKERS is unset).
    pub fn brokers(&self) -> &str {
        self.connection.kafka_brokers.as_deref().unwrap_or("localhost:9092")
    }

    /// librdkafka properties shared by the consumer and the dead-letter producer.
    pub fn client_config(&self) -> anyhow::Result<rdkafka::ClientConfig> {
        playground_common::kafka::client_config(&self.connection, self.brokers())
    }
}

/// Where the documents go.
#[derive(Debug, Clone, Args)]
pub struct SearchOptions {
    /// Base URL of Elasticsearch 8 or OpenSearch 2.
    #[arg(long, env = "ELASTICSEARCH_ENDPOINT", default_value = "https://localhost:9200")]
    pub elasticsearch_endpoint: String,
    /// Index the events go to (with ELASTICSEARCH_INDEX_MODE=daily, the prefix
    /// of the daily indices `<index>-YYYY.MM.DD`).
    #[arg(long, env = "ELASTICSEARCH_LOGGING_INDEX", default_value = "general-logs")]
    pub elasticsearch_logging_index: String,
    /// Alias that points at the log index (or every daily index).
    #[arg(long, env = "ELASTICSEARCH_ALIAS", default_value = "k8s-logs")]
    pub elasticsearch_alias: String,
    /// `single`: one index; `daily`: one index per UTC day of the event,
    /// created from an index template, so old days can be deleted whole.
    #[arg(long, env = "ELASTICSEARCH_INDEX_MODE", value_enum, default_value_t = IndexMode::Single)]
    pub elasticsearch_index_mode: IndexMode,
    /// Primary shards of an index the logger creates [default: the cluster's].
    #[arg(long, env = "ELASTICSEARCH_SHARDS", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub elasticsearch_shards: Option<u32>,
    /// Replicas of an index the logger creates [default: the cluster's].
    #[arg(long, env = "ELASTICSEARCH_REPLICAS", value_parser = clap::value_parser!(u32).range(0..=64))]
    pub elasticsearch_replicas: Option<u32>,
    /// Basic-auth user; empty for no authentication.
    #[arg(long, env = "ELASTICSEARCH_USERNAME", default_value = "elastic")]
    pub elasticsearch_username: String,
    /// Basic-auth password.
    #[arg(long, env = "ELASTICSEARCH_PASSWORD", default_value = "password", hide_env_values = true)]
    pub elasticsearch_password: String,
    /// PEM file of the CA that signed the search engine's certificate, trusted
    /// in addition to the system's.
    #[arg(long, env = "ELASTICSEARCH_CA_FILE")]
    pub elasticsearch_ca_file: Option<PathBuf>,
    /// Accept any certificate. Only for experiments: anyone on the path can
    /// read and change the logs.
    #[arg(long, env = "ELASTICSEARCH_INSECURE_SKIP_VERIFY", default_value_t = false, action = clap::ArgAction::Set)]
    pub elasticsearch_insecure_skip_verify: bool,
    /// Time limit of one request to the search engine (a bulk request included).
    #[arg(long, env = "ELASTICSEARCH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub elasticsearch_timeout: Duration,
}

/// How events are spread over indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IndexMode {
    Single,
    Daily,
}

/// Batching, retries and filtering.
#[derive(Debug, Clone, Args)]
pub struct PipelineOptions {
    /// A batch is sent when it holds this many events...
    #[arg(long, env = "BATCH_MAX_EVENTS", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_max_events: u32,
    /// ...or this many bytes of bulk body (one larger event is sent alone)...
    #[arg(long, env = "BATCH_MAX_BYTES", default_value_t = 5 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    pub batch_max_bytes: u64,
    /// ...or when its first event has waited this long.
    #[arg(long, env = "BATCH_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub batch_timeout: Duration,
    /// Bulk requests in flight at once. Offsets are still committed in the order
    /// the batches were formed; at most 4 times this many batches wait for that.
    #[arg(long, env = "BULK_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub bulk_concurrency: u32,
    /// First wait before retrying a failed bulk request (doubles each time, with jitter).
    #[arg(long, env = "BULK_RETRY_INITIAL", default_value = "100ms", value_parser = parse_duration)]
    pub bulk_retry_initial: Duration,
    /// Longest wait between two retries. Retries never stop: no event is dropped
    /// because the search engine is down.
    #[arg(long, env = "BULK_RETRY_MAX", default_value = "30s", value_parser = parse_duration)]
    pub bulk_retry_max: Duration,
    /// Skip events whose Kafka timestamp is older than this many seconds when
    /// they are read [default: off, every event is indexed].
    #[arg(long, env = "IGNORE_MESSAGES_BEFORE", value_parser = parse_duration)]
    pub ignore_messages_before: Option<Duration>,
}

/// The process's options (admin port, name, logs) and shutdown.
#[derive(Debug, Clone, Args)]
pub struct RunOptions {
    #[command(flatten)]
    pub process: Process,
    /// How often Kafka and the search engine are probed for /readyz.
    #[arg(long, env = "READINESS_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub readiness_interval: Duration,
    /// After SIGTERM/SIGINT, how long the batches in flight may take to be
    /// acknowledged and committed before the logger exits anyway (what is
    /// left uncommitted is indexed again, under the same ids, next start).
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

impl LoggerArgs {
    /// Checks what clap cannot check alone.
    pub fn validate(&self) -> anyhow::Result<()> {
        let p = &self.pipeline;
        if p.batch_timeout.is_zero() {
            anyhow::bail!("BATCH_TIMEOUT must be greater than 0");
        }
        if p.bulk_retry_initial.is_zero() || p.bulk_retry_max < p.bulk_retry_initial {
            anyhow::bail!("BULK_RETRY_INITIAL must be > 0 and not above BULK_RETRY_MAX");
        }
        if self.search.elasticsearch_timeout.is_zero() {
            anyhow::bail!("ELASTICSEARCH_TIMEOUT must be greater than 0");
        }
        if self.kafka.kafka_max_poll_interval < Duration::from_secs(1) {
            anyhow::bail!("KAFKA_MAX_POLL_INTERVAL must be at least 1s");
        }
        if self.kafka.kafka_lag_interval < Duration::from_millis(100) || self.process.readiness_interval.is_zero() {
            anyhow::bail!("KAFKA_LAG_INTERVAL must be at least 100ms and READINESS_INTERVAL above 0");
        }
        valid_index_name(&self.search.elasticsearch_logging_index)
            .map_err(|e| anyhow::anyhow!("invalid ELASTICSEARCH_LOGGING_INDEX: {e}"))?;
        valid_index_name(&self.search.elasticsearch_alias)
            .map_err(|e| anyhow::anyhow!("invalid ELASTICSEARCH_ALIAS: {e}"))?;
        if self.search.elasticsearch_alias == self.search.elasticsearch_logging_index {
            anyhow::bail!("ELASTICSEARCH_ALIAS must differ from ELASTICSEARCH_LOGGING_INDEX");
        }
        let endpoint = &self.search.elasticsearch_endpoint;
        let url = reqwest::Url::parse(endpoint)
            .map_err(|e| anyhow::anyhow!("invalid ELASTICSEARCH_ENDPOINT '{endpoint}': {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("ELASTICSEARCH_ENDPOINT must be an http:// or https:// URL");
        }
        if self.kafka.kafka_logging_topic.is_empty() {
            anyhow::bail!("KAFKA_LOGGING_TOPIC must not be empty");
        }
        self.kafka.client_config()?;
        Ok(())
    }
}

/// The rules both engines apply to index and alias names, checked at start so a
/// typo fails at once instead of in every bulk request.
fn valid_index_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err("must be 1 to 200 characters".into());
    }
    if name.starts_with(['-', '_', '+']) || name == "." || name == ".." {
        return Err("must not start with -, _ or + nor be . or ..".into());
    }
    if name.chars().any(|c| c.is_ascii_uppercase() || " \"*\\<|,>/?#:".contains(c) || c.is_control()) {
        return Err("lowercase only, without spaces and \" * \\ < | , > / ? # :".into());
    }
    Ok(())
}

/// Parses the logger's options from `args` (without the program name), as
/// the binary's command line would: for tests.
#[cfg(test)]
pub(crate) fn parse_args(args: &[&str]) -> Result<LoggerArgs, clap::Error> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoggerArgs,
    }
    let argv = std::iter::once("playground-logger").chain(args.iter().copied());
    <Cli as clap::Parser>::try_parse_from(argv).map(|c| c.args)
}

#[cfg(test)]
mod tests {
    use playground_common::kafka::{KafkaSecurity, SaslMechanism};

    use super::*;

    fn parse(args: &[&str]) -> Result<LoggerArgs, String> {
        match parse_args(args) {
            Ok(a) => a.validate().map(|()| a).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.kafka.kafka_logging_topic, "general-logs");
        assert_eq!(a.search.elasticsearch_logging_index, "general-logs");
        assert_eq!(a.search.elasticsearch_alias, "k8s-logs");
        assert_eq!(a.search.elasticsearch_endpoint, "https://localhost:9200");
        assert!(!a.search.elasticsearch_insecure_skip_verify);
        assert_eq!(a.pipeline.ignore_messages_before, None);
        assert_eq!(a.pipeline.batch_max_events, 5000);
        assert_eq!(a.kafka.connection.security_protocol(), KafkaSecurity::Plaintext);
    }

    #[test]
    fn sasl_follows_the_user() {
        let a = parse(&["--kafka-sasl-user", "user", "--kafka-sasl-password", "password"]).unwrap();
        assert_eq!(a.kafka.connection.security_protocol(), KafkaSecurity::SaslPlaintext);
        let a =
            parse(&["--kafka-security-protocol", "SASL_SSL", "--kafka-sasl-user", "u", "--kafka-sasl-password", "p"])
                .unwrap();
        assert_eq!(a.kafka.connection.security_protocol(), KafkaSecurity::SaslSsl);
        let err = parse(&["--kafka-security-protocol", "sasl_ssl"]).unwrap_err();
        assert!(err.contains("KAFKA_SASL_USER"), "{err}");
        let a =
            parse(&["--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-user", "u", "--kafka-sasl-password", "p"])
                .unwrap();
        assert_eq!(a.kafka.connection.kafka_sasl_mechanism, SaslMechanism::ScramSha512);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (args, var) in [
            (&["--batch-max-events", "0"][..], "BATCH_MAX_EVENTS"),
            (&["--batch-timeout", "soon"][..], "BATCH_TIMEOUT"),
            (&["--ignore-messages-before", "x"][..], "IGNORE_MESSAGES_BEFORE"),
            (&["--elasticsearch-logging-index", "Logs"][..], "ELASTICSEARCH_LOGGING_INDEX"),
            (&["--elasticsearch-endpoint", "ftp://x"][..], "ELASTICSEARCH_ENDPOINT"),
            (&["--kafka-sasl-mechanism", "GSSAPI"][..], "KAFKA_SASL_MECHANISM"),
            (&["--elasticsearch-insecure-skip-verify", "maybe"][..], "ELASTICSEARCH_INSECURE_SKIP_VERIFY"),
            (&["--bulk-retry-initial", "1m", "--bulk-retry-max", "1s"][..], "BULK_RETRY_INITIAL"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(var), "{args:?}: {err}");
        }
    }

    #[test]
    fn index_names() {
        assert!(valid_index_name("general-logs").is_ok());
        assert!(valid_index_name("").is_err());
        assert!(valid_index_name("_x").is_err());
        assert!(valid_index_name("a b").is_err());
        assert!(valid_index_name("a/b").is_err());
    }
}
