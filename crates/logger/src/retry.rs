//! The sink's retry policy as pure functions of what the engine answered:
//! whether a bulk request, or some of its documents, must be sent again, and
//! how long to wait first. Kept apart from the delivery loop so that every
//! case is unit-tested without an engine (as in Vector's `retry.rs`).

use std::time::Duration;

use super::search::{ItemOutcome, RequestError};

/// What to do after one bulk request.
#[derive(Debug, PartialEq, Eq)]
pub enum Retry {
    /// Every document has a final answer: indexed or rejected.
    No,
    /// Some documents may succeed later (per-document 429, 5xx or 404): send
    /// those again after a backoff; the others have their final answer.
    Documents {
        /// Their positions in the request.
        positions: Vec<usize>,
        /// A 404 said the index is gone (deleted under us): set it up again,
        /// with the mapping, before the retry rather than let auto-creation
        /// guess.
        index_missing: bool,
    },
    /// The request failed as a whole (unreachable, 429, 5xx, any other
    /// status, an answer that is not the expected JSON): send all of it again
    /// after a backoff, with no limit; the stream waits for the engine rather
    /// than dropping events.
    Request,
    /// HTTP 413 for several documents: send them again in halves, at once,
    /// until the requests fit.
    Halve,
    /// HTTP 413 for a single document: it will never fit; reject it.
    Reject,
}

/// The retry decision for a request of `documents` documents that got
/// `result`.
pub fn decide(result: &Result<Vec<ItemOutcome>, RequestError>, documents: usize) -> Retry {
    match result {
        Ok(outcomes) => {
            let mut positions = Vec::new();
            let mut index_missing = false;
            for (position, outcome) in outcomes.iter().enumerate() {
                if let ItemOutcome::Retry { status } = outcome {
                    index_missing |= *status == 404;
                    positions.push(position);
                }
            }
            if positions.is_empty() { Retry::No } else { Retry::Documents { positions, index_missing } }
        }
        Err(RequestError::TooLarge) if documents > 1 => Retry::Halve,
        Err(RequestError::TooLarge) => Retry::Reject,
        Err(RequestError::Transport(_) | RequestError::Status { .. } | RequestError::Decode(_)) => Retry::Request,
    }
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry number `attempt` (1-based): half of the
    /// exponential step plus a random part of the other half, so replicas that
    /// failed together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let step = self.initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(self.max);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> Result<Vec<ItemOutcome>, RequestError> {
        Err(RequestError::Status { status, body: String::new() })
    }

    fn rejected() -> ItemOutcome {
        ItemOutcome::Rejected { status: 400, kind: "mapper_parsing_exception".into(), reason: "bad".into() }
    }

    #[test]
    fn a_request_that_fails_as_a_whole_is_sent_again_whole() {
        assert_eq!(decide(&status(429), 3), Retry::Request, "engine overloaded");
        assert_eq!(decide(&status(500), 3), Retry::Request);
        assert_eq!(decide(&status(503), 1), Retry::Request);
        assert_eq!(decide(&status(400), 3), Retry::Request, "any other status waits for the engine too");
        assert_eq!(decide(&status(401), 3), Retry::Request);
        assert_eq!(decide(&Err(RequestError::Transport("refused".into())), 3), Retry::Request);
        assert_eq!(decide(&Err(RequestError::Decode("not JSON".into())), 3), Retry::Request);
    }

    #[test]
    fn too_large_halves_until_a_single_document_is_rejected() {
        assert_eq!(decide(&Err(RequestError::TooLarge), 8), Retry::Halve);
        assert_eq!(decide(&Err(RequestError::TooLarge), 2), Retry::Halve);
        assert_eq!(decide(&Err(RequestError::TooLarge), 1), Retry::Reject);
    }

    #[test]
    fn final_answers_are_not_retried() {
        assert_eq!(decide(&Ok(vec![ItemOutcome::Indexed; 3]), 3), Retry::No);
        assert_eq!(decide(&Ok(vec![ItemOutcome::Indexed, rejected()]), 2), Retry::No, "rejections are final");
    }

    #[test]
    fn partial_failures_retry_only_the_documents_that_may_succeed() {
        let outcomes = vec![
            ItemOutcome::Indexed,
            ItemOutcome::Retry { status: 429 },
            rejected(),
            ItemOutcome::Retry { status: 503 },
        ];
        assert_eq!(decide(&Ok(outcomes), 4), Retry::Documents { positions: vec![1, 3], index_missing: false });
    }

    #[test]
    fn a_missing_index_is_set_up_again_before_the_retry() {
        let outcomes = vec![ItemOutcome::Retry { status: 404 }, ItemOutcome::Retry { status: 404 }];
        assert_eq!(decide(&Ok(outcomes), 2), Retry::Documents { positions: vec![0, 1], index_missing: true });
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2) };
        for _ in 0..100 {
            let d1 = b.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100), "{d1:?}");
            let d3 = b.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400), "{d3:?}");
            let d = b.delay(u32::MAX);
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2), "{d:?}");
        }
    }
}
