//! Start-up of `playground logger`: telemetry, the admin server, the
//! clients of Kafka and of the search engine, the signal handler, the
//! readiness probe and the index set-up, then the pipeline until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use playground_common::lifecycle::{Lifecycle, wait_for_signal};
use playground_common::{admin, telemetry};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::batch::{Encoder, Limits};
use super::config::LoggerArgs;
use super::metrics::LoggerMetrics;
use super::pipeline::Pipeline;
use super::readiness::{self, SetUp};
use super::retry::Backoff;
use super::search::SearchClient;
use super::sink::{DeadLetterTopic, Sink};
use super::source;

/// Runs the logger until SIGTERM/SIGINT.
pub async fn run(args: LoggerArgs) -> anyhow::Result<()> {
    args.validate()?;
    // No log-shipping layer: the logger's own logs would go to the topic it
    // reads, and every warning about an event would become another event.
    telemetry::init_plain(&args.process.process)?;
    let prometheus = playground_common::metrics::install(&super::metrics::BUCKETS);
    let metrics = LoggerMetrics::new();
    let lifecycle = Lifecycle::new();
    lifecycle.set_ready(false);
    admin::start(
        SocketAddr::new(args.process.process.admin_bind_address, args.process.process.admin_port),
        prometheus,
        lifecycle.clone(),
    )
    .await?;

    let search = SearchClient::new(&args.search)?;
    let instance_id = args.kafka.logger_instance_id.clone().unwrap_or_else(|| args.process.process.instance_name());
    let consumer = source::consumer(&args.kafka, &instance_id)?;
    let dead_letter = match &args.kafka.dead_letter_topic {
        Some(topic) => Some(DeadLetterTopic { producer: source::producer(&args.kafka)?, topic: topic.clone() }),
        None => None,
    };
    info!(
        topic = %args.kafka.kafka_logging_topic,
        group = %args.kafka.kafka_consumer_group,
        instance = %instance_id,
        endpoint = %args.search.elasticsearch_endpoint,
        index = %args.search.elasticsearch_logging_index,
        alias = %args.search.elasticsearch_alias,
        "Starting the logger"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        let lifecycle = lifecycle.clone();
        async move {
            let signal = wait_for_signal().await;
            lifecycle.set_ready(false);
            info!(signal, "Shutting down: finishing the batches in flight");
            shutdown.cancel();
        }
    });
    let set_up = Arc::new(SetUp::default());
    tokio::spawn(readiness::run(
        lifecycle.clone(),
        search.clone(),
        consumer.clone(),
        args.kafka.kafka_logging_topic.clone(),
        set_up.clone(),
        args.process.readiness_interval,
        shutdown.clone(),
    ));

    let backoff = Backoff { initial: args.pipeline.bulk_retry_initial, max: args.pipeline.bulk_retry_max };
    if !set_up_index(&search, backoff, &shutdown).await {
        info!("Stopped before the index was set up");
        return Ok(());
    }
    set_up.finish();

    let sink = Sink { search, metrics: metrics.clone(), backoff, dead_letter };
    let pipeline = Pipeline {
        consumer: &consumer,
        topic: &args.kafka.kafka_logging_topic,
        encoder: Encoder {
            index: args.search.elasticsearch_logging_index.clone(),
            mode: args.search.elasticsearch_index_mode,
            ignore_before: args.pipeline.ignore_messages_before,
            keep_dead_letters: args.kafka.dead_letter_topic.is_some(),
        },
        limits: Limits {
            max_events: args.pipeline.batch_max_events as usize,
            max_bytes: usize::try_from(args.pipeline.batch_max_bytes).unwrap_or(usize::MAX),
            max_age: args.pipeline.batch_timeout,
        },
        concurrency: args.pipeline.bulk_concurrency as usize,
        sink: &sink,
        metrics: &metrics,
    };
    pipeline.run(&shutdown, args.process.shutdown_timeout).await;
    info!("Logger stopped");
    Ok(())
}

/// Creates the index and alias, retrying until the engine answers.
async fn set_up_index(search: &SearchClient, backoff: Backoff, shutdown: &CancellationToken) -> bool {
    let mut attempt = 0;
    loop {
        match search.ensure_index().await {
            Ok(()) => return true,
            Err(e) => {
                attempt += 1;
                warn!(error = %e, attempt, "Cannot set up the log index yet; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff.delay(attempt)) => {}
        }
    }
}
