//! The logger (`playground logger`): reads the log topic every instance ships to and
//! indexes the events into Elasticsearch or OpenSearch, with no event lost
//! and none duplicated.
//!
//! The design is a source → batch → sink pipeline with end-to-end
//! acknowledgement, as in Vector:
//!
//! - [`source`]: a Kafka consumer group over every partition of the topic;
//! - [`batch`]: messages become bulk lines with the id `topic/partition/offset`,
//!   grouped until a count, byte or age limit;
//! - [`sink`]: bulk requests, retried with backoff until every document has
//!   a final answer; up to BULK_CONCURRENCY batches are in flight;
//! - [`acks`]: batches complete in any order, but a batch's offsets are
//!   committed only once it and every older batch are acknowledged — so a
//!   commit never runs ahead of an event that is not indexed yet;
//! - [`search`]: the REST client and the index/alias set-up;
//! - [`retry`]: what the sink sends again, and when.
//!
//! [`wiring`] starts it all, [`pipeline`] runs the stages, and [`readiness`]
//! keeps `/readyz` true only while the logger can make progress.
//!
//! Killed at any moment, the logger restarts from the last commit and
//! re-indexes the events after it under the same ids: each event ends up
//! exactly once in the index.

pub mod acks;
pub mod batch;
pub mod config;
pub mod metrics;
mod pipeline;
mod readiness;
pub mod retry;
pub mod search;
pub mod sink;
pub mod source;
mod wiring;

pub use wiring::run;
