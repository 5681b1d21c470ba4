//! The UDP server: stateless request/response on datagrams, through the same
//! executor as TCP. The [`listener`] binds several sockets to one port with
//! SO_REUSEPORT so the kernel spreads datagrams over cores, and runs one
//! receive loop per socket. Per socket:
//!
//! - [`receiver`] receives datagrams in batches and sends the replies
//!   answered at once together (on Linux through [`mmsg`]);
//! - [`admission`] bounds the commands running at once and the datagrams
//!   waiting for them, refusing (and counting) what does not fit instead of
//!   growing memory;
//! - [`dispatcher`] runs each command in the receive loop if it completes
//!   without waiting, otherwise hands it to a task holding a slot.

mod admission;
mod dispatcher;
mod guard;
mod listener;
#[cfg(target_os = "linux")]
mod mmsg;
mod receiver;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use listener::{bind, serve};

use crate::config::UdpOptions;

/// A reply and how it ends: with `\n` only if the request did, so the
/// original's clients get byte-identical replies and `nc -u` stays readable.
type Answer = (playground_protocol::Reply, playground_protocol::Ending);

/// How long commands still running when the server stops receiving (end of
/// SIGTERM_TIMEOUT) get to send their replies.
pub const DRAIN: Duration = Duration::from_secs(2);

/// The largest UDP payload over IPv4; BUFF_SIZE cannot usefully exceed it.
const MAX_DATAGRAM: usize = 65_507;

/// The UDP server's settings, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address and port to bind every socket to.
    pub addr: SocketAddr,
    /// BUFF_SIZE: longest command accepted, line end excluded.
    pub max_command: usize,
    /// Sockets bound to the port (never more than workers).
    pub sockets: usize,
    /// Commands handled at once, over all sockets.
    pub workers: usize,
    /// Datagrams that may wait for a worker, over all sockets.
    pub queue: usize,
    /// Whether a token's IP must match the sender's.
    pub check_ip: bool,
    /// Datagrams per recvmmsg / replies per sendmmsg (Linux); 1: one by one.
    pub batch: usize,
    /// SO_RCVBUF / SO_SNDBUF asked for each socket.
    pub socket_buffer: usize,
    /// Largest reply on the wire, as a multiple of its request.
    pub max_amplification: u32,
    /// Replies per second per source IP; 0: no limit.
    pub reply_rate: u32,
    /// Replies a source IP may get at once.
    pub reply_burst: u32,
}

impl Config {
    /// The settings for `bind:port` with BUFF_SIZE `buff_size` and `opts`.
    pub fn new(bind: IpAddr, port: u16, buff_size: u32, opts: &UdpOptions) -> Config {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wanted = if opts.udp_sockets == 0 { cores } else { opts.udp_sockets as usize };
        let workers = opts.workers.max(1) as usize;
        Config {
            addr: SocketAddr::new(bind, port),
            max_command: (buff_size as usize).min(MAX_DATAGRAM),
            // Each socket owns a share of the workers, so a socket without one
            // could never answer.
            sockets: wanted.clamp(1, workers),
            workers,
            queue: opts.udp_queue as usize,
            check_ip: opts.udp_check_ip,
            batch: opts.udp_batch.max(1) as usize,
            socket_buffer: opts.udp_socket_buffer as usize,
            max_amplification: opts.udp_max_amplification,
            reply_rate: opts.udp_reply_rate,
            reply_burst: opts.udp_reply_burst,
        }
    }

    /// The share of `total` that socket `index` gets (shares add up to `total`).
    fn share(&self, total: usize, index: usize) -> usize {
        total / self.sockets + usize::from(index < total % self.sockets)
    }
}

#[cfg(test)]
mod tests;
