//! What every playground program needs, so that no program imports from
//! another: the process options each role flattens into its arguments,
//! durations as the original's variables spell them, how to reach Kafka,
//! the shutdown phases and signals, the admin HTTP endpoint, logging, the
//! metrics recorder and its per-thread counters.

pub mod admin;
pub mod duration;
pub mod kafka;
pub mod lifecycle;
pub mod metrics;
pub mod process;
pub mod quiet;
pub mod tally;
pub mod telemetry;

pub use duration::parse_duration;
pub use lifecycle::{Lifecycle, wait_for_signal};
pub use process::{LogFormat, ProcessOptions, host_name};
