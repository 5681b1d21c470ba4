//! The servers' tokio runtimes (RUNTIME):
//!
//! - `multi` (the default): one multi-thread runtime; tasks move between
//!   worker threads as tokio balances them.
//! - `per-core`: one current-thread runtime per core, each on its own thread
//!   with its own TCP listener and UDP sockets on the shared port
//!   (SO_REUSEPORT), so the kernel spreads clients over cores and a
//!   connection's task never leaves the core that accepted it (nor can it
//!   move when that core is busy).
//!
//! Either way there is one executor, one bus and one fan-out: a broadcast
//! reaches connections on every runtime (tokio's channels and wakers work
//! across runtimes). With memcached, each runtime gets its own connection
//! pools (MEMCACHED_POOL_SIZE shared out between them), so a cache reply
//! wakes the runtime that waits for it.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};

/// How the servers' tasks are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeMode {
    /// One multi-thread runtime.
    Multi,
    /// One current-thread runtime per core, with a listener each.
    PerCore,
}

/// The runtimes of a server process: the main one (admin server, backends,
/// and in `per-core` mode the first core's listeners) and the others.
pub struct Runtimes {
    main: Runtime,
    others: Vec<Handle>,
}

impl Runtimes {
    /// Builds the runtimes for `mode`; `per-core` uses `cores` of them (at
    /// least one). The other cores' threads run until the process exits.
    pub fn build(mode: RuntimeMode, cores: usize) -> std::io::Result<Runtimes> {
        let main = match mode {
            RuntimeMode::Multi => Builder::new_multi_thread().enable_all().build()?,
            RuntimeMode::PerCore => Builder::new_current_thread().enable_all().build()?,
        };
        let mut others = Vec::new();
        if mode == RuntimeMode::PerCore {
            for core in 1..cores.max(1) {
                let runtime = Builder::new_current_thread().enable_all().build()?;
                others.push(runtime.handle().clone());
                std::thread::Builder::new()
                    .name(format!("playground-core-{core}"))
                    .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
            }
        }
        Ok(Runtimes { main, others })
    }

    /// A runtime built elsewhere (the load generator's), alone.
    pub fn single(main: Runtime) -> Runtimes {
        Runtimes { main, others: Vec::new() }
    }

    /// The number of cores `per-core` mode uses.
    pub fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Runs `future` on the main runtime to completion.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.main.block_on(future)
    }

    /// The runtimes to spread listeners over, the main one first: one in
    /// `multi` mode, one per core in `per-core` mode.
    pub fn spread(&self) -> Spread {
        Spread(std::iter::once(self.main.handle().clone()).chain(self.others.iter().cloned()).collect())
    }
}

/// The runtimes listeners are spread over (never empty).
#[derive(Clone, Debug)]
pub struct Spread(Vec<Handle>);

impl Spread {
    /// Only the current runtime (tests, and `multi` mode).
    pub fn current() -> Spread {
        Spread(vec![Handle::current()])
    }

    /// The runtimes, the main one first.
    pub fn handles(&self) -> &[Handle] {
        &self.0
    }

    /// Whether listeners must share their port (more than one runtime).
    pub fn shares_ports(&self) -> bool {
        self.0.len() > 1
    }

    /// The runtime for listener or socket `i` (round robin).
    pub fn for_index(&self, i: usize) -> &Handle {
        &self.0[i % self.0.len()]
    }
}
