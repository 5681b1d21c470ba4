//! The floor of the TCP echo benchmark: a line echo that does almost nothing
//! in user space, so that what it costs is nearly all the kernel's. One
//! io_uring per core, each with its own `SO_REUSEPORT` listener; no runtime,
//! no tasks, no wakers, one receive or send in flight per connection.
//! `scripts/bench-tcp` runs it beside the tokio and Go echoes: how close the
//! tokio echo (and playground) come to it shows how much any server could
//! still gain by doing less work of its own.
//!
//! Written on the `io-uring` crate directly, because a runtime on top of it
//! (tokio-uring, monoio) brings back the per-operation futures and task
//! bookkeeping this reference exists to leave out.
//!
//! Usage: tcp_echo_uring PORT

#[cfg(target_os = "linux")]
mod ring;

#[cfg(target_os = "linux")]
fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(41000);
    ring::serve(port)
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("tcp_echo_uring: io_uring is Linux only");
    std::process::exit(2);
}
