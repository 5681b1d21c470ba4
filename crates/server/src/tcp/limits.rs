//! Per-connection rate limits: a token bucket for commands (COMMAND_RATE,
//! COMMAND_BURST) and one for broadcasts (BRD_RATE, BRD_BURST). A command
//! over a limit is not executed; it gets `error: rate limited`, so a client
//! always learns what did not happen. Lines that name no command are not
//! counted: they cost nothing and get their own error.
//!
//! The buckets are governor's (GCRA, one atomic word of state each), a
//! well-kept crate rather than hand-written arithmetic. A limit that is off
//! costs a connection one empty pointer.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use playground_protocol::CommandKind;

use crate::config::TcpOptions;

/// Which limit refused a command (the metric's `limit` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Command,
    Brd,
}

/// The limits every connection gets, from the options.
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    command: Option<Quota>,
    brd: Option<Quota>,
}

impl Quotas {
    /// The quotas `opts` asks for; a rate of 0 turns a limit off.
    pub fn new(opts: &TcpOptions) -> Self {
        let quota = |rate: u32, burst: u32| {
            NonZeroU32::new(rate)
                .map(|rate| Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)))
        };
        Quotas { command: quota(opts.command_rate, opts.command_burst), brd: quota(opts.brd_rate, opts.brd_burst) }
    }

    /// Fresh, full buckets for one connection.
    pub fn buckets(&self) -> Buckets {
        let bucket = |q: Option<Quota>| q.map(|q| Box::new(RateLimiter::direct(q)));
        Buckets { command: bucket(self.command), brd: bucket(self.brd) }
    }
}

/// One connection's buckets.
pub struct Buckets {
    command: Option<Box<DefaultDirectRateLimiter>>,
    brd: Option<Box<DefaultDirectRateLimiter>>,
}

impl Buckets {
    /// Takes the tokens a `kind` command needs, or says which limit refuses it.
    pub fn admit(&self, kind: Option<CommandKind>) -> Result<(), Limit> {
        let Some(kind) = kind else { return Ok(()) };
        if self.command.as_ref().is_some_and(|b| b.check().is_err()) {
            return Err(Limit::Command);
        }
        if kind == CommandKind::Brd && self.brd.as_ref().is_some_and(|b| b.check().is_err()) {
            return Err(Limit::Brd);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(args: &[&str]) -> Quotas {
        Quotas::new(&TcpOptions::from_args(args))
    }

    #[test]
    fn off_by_default_and_each_bucket_counts_its_own() {
        let unlimited = quotas(&[]).buckets();
        assert!((0..10_000).all(|_| unlimited.admit(Some(CommandKind::Brd)).is_ok()));
        assert!(unlimited.command.is_none() && unlimited.brd.is_none());

        let limited = quotas(&["--command-rate", "1", "--command-burst", "3", "--brd-rate", "1", "--brd-burst", "1"]);
        let b = limited.buckets();
        assert_eq!(b.admit(Some(CommandKind::Brd)), Ok(()));
        assert_eq!(b.admit(Some(CommandKind::Brd)), Err(Limit::Brd));
        assert_eq!(b.admit(Some(CommandKind::Msg)), Ok(()));
        assert_eq!(b.admit(Some(CommandKind::Msg)), Err(Limit::Command));
        // Lines that name no command are never refused.
        assert_eq!(b.admit(None), Ok(()));
        // A new connection starts with full buckets.
        assert_eq!(limited.buckets().admit(Some(CommandKind::Msg)), Ok(()));
    }
}
