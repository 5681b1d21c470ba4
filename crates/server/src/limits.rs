//! The open-files limit. Every client connection is a file descriptor, and
//! the usual soft limit (1024) is far below `MAX_CONNECTIONS`. At start the
//! servers raise the soft limit to the hard one (as the Go runtime does for
//! the original), and warn, naming the numbers, when even that cannot hold
//! `MAX_CONNECTIONS`: past the limit `accept` fails with "too many open
//! files" instead of answering `error: server full`.

use rlimit::Resource;
use tracing::{info, warn};

/// Descriptors a server needs besides its clients: listeners, UDP sockets,
/// the admin server, memcached pools, librdkafka's sockets and pipes.
pub const RESERVED_FILES: u64 = 100;

/// What [`raise_open_files`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (the ceiling without privileges).
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (with an unlimited hard
/// limit: to the kernel's `nr_open`), logs the change, and warns when
/// `max_connections` clients (plus [`RESERVED_FILES`]) cannot be open at once.
/// `None` where the platform has no such limit or it cannot be read.
pub fn raise_open_files(max_connections: Option<u64>) -> Option<OpenFiles> {
    if !Resource::NOFILE.is_supported() {
        return None;
    }
    let (before, hard) = match Resource::NOFILE.get() {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "Cannot read the open-files limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    let target = if hard == rlimit::INFINITY { nr_open().unwrap_or(before) } else { hard };
    let soft = match rlimit::increase_nofile_limit(target) {
        Ok(now) => now,
        Err(e) => {
            warn!(error = %e, soft = before, hard, "Cannot raise the open-files limit (RLIMIT_NOFILE)");
            before
        }
    };
    if soft > before {
        info!(from = before, to = soft, hard, "Raised the open-files limit (RLIMIT_NOFILE)");
    }
    let files = OpenFiles { before, soft, hard };
    if let Some(max) = max_connections {
        let needed = max.saturating_add(RESERVED_FILES);
        if soft < needed {
            warn!(
                soft,
                hard,
                max_connections = max,
                needed,
                "The open-files limit is {soft} (hard limit {hard}), too low for MAX_CONNECTIONS={max}: \
                 about {needed} are needed, so accepting fails before MAX_CONNECTIONS is reached. Raise \
                 the hard limit (`ulimit -Hn`, LimitNOFILE= of a systemd unit, the container runtime's \
                 nofile) or lower MAX_CONNECTIONS"
            );
        }
    }
    Some(files)
}

/// The kernel's ceiling of any process' open-files limit (Linux).
fn nr_open() -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        rlimit::SysLimits::read().ok().and_then(|l| l.nr_open)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one_or_the_kernel_ceiling() {
        let files = raise_open_files(Some(10)).expect("RLIMIT_NOFILE exists on unix");
        assert!(files.soft >= files.before);
        assert_eq!(Resource::NOFILE.get().unwrap().0, files.soft);
        if files.hard != rlimit::INFINITY {
            assert_eq!(files.soft, files.hard);
        }
    }
}
