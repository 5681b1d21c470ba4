//! The open-files limit. Every connection is a file descriptor, and the
//! usual soft limit (1024) is far below what a load test opens, so the run
//! raises the soft limit to the hard one by itself and, if that is still too
//! low, stops before connecting with a message that says how to raise it:
//! a run that starts failing with "too many open files" halfway measures
//! nothing.

use anyhow::bail;

/// The soft and hard `RLIMIT_NOFILE`.
// `rlim_t` is u64 on 64-bit Linux but not everywhere.
#[allow(clippy::unnecessary_cast)]
fn get() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
}

fn set_soft(soft: u64, hard: u64) -> std::io::Result<()> {
    let lim = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
    // SAFETY: setrlimit only reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes sure `needed` descriptors can be open at once: raises the soft limit
/// toward the hard limit if it helps; returns the limit now in force.
// `rlim_t` is u64 on 64-bit Linux but not everywhere.
#[allow(clippy::unnecessary_cast)]
pub fn ensure_open_files(needed: u64, connections: u32) -> anyhow::Result<u64> {
    let (soft, hard) = get()?;
    if soft >= needed {
        return Ok(soft);
    }
    // An unlimited hard limit still cannot be used as a soft one beyond the
    // kernel's nr_open, so ask only for what is needed then.
    let target = if hard == libc::RLIM_INFINITY as u64 { needed } else { hard };
    if target > soft && set_soft(target, hard).is_ok() {
        let (now, _) = get()?;
        if now >= needed {
            return Ok(now);
        }
    }
    let (soft, hard) = get()?;
    bail!(
        "{connections} connections need about {needed} open files, but this process may open only {soft} \
         (hard limit {hard}).\n\
         Raise the limit in the shell that starts the load, e.g. `ulimit -n {needed}`; above the hard limit \
         that needs root (or `nofile` in /etc/security/limits.conf, or LimitNOFILE= for a systemd unit). \
         Or run fewer connections."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_need_is_met_and_an_impossible_one_explained() {
        assert!(ensure_open_files(16, 1).unwrap() >= 16);
        let err = ensure_open_files(u64::MAX / 2, 7).unwrap_err().to_string();
        assert!(err.contains("7 connections need about"), "{err}");
        assert!(err.contains("ulimit -n"), "{err}");
    }
}
