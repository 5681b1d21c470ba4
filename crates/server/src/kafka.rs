//! The servers' Kafka client configuration: the shared connection settings
//! (`playground_common::kafka`) with the servers' brokers.

use rdkafka::ClientConfig;

use crate::config::KafkaOptions;

/// The servers' client configuration (KAFKA_BROKERS must be set).
pub fn server_config(opts: &KafkaOptions) -> anyhow::Result<ClientConfig> {
    let brokers = opts.connection.kafka_brokers.as_deref().unwrap_or_default();
    playground_common::kafka::client_config(&opts.connection, brokers)
}
