//! Opening connections and UDP sockets, optionally from a chosen local address.
//!
//! One local address can reach one server address:port through about 28,000
//! ephemeral ports; many local addresses (all of 127.0.0.0/8 on Linux) pass
//! that limit. The socket is bound to its source address before connecting,
//! with `IP_BIND_ADDRESS_NO_PORT` so the kernel picks the port at connect
//! time per destination rather than reserving one at bind time, which would
//! exhaust the ports of a busy source address sooner.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// Connects to `target` from `source` (or a kernel-chosen address); an
/// error names the target.
pub async fn connect(target: SocketAddr, source: Option<IpAddr>, timeout: Duration) -> io::Result<TcpStream> {
    connect_unnamed(target, source, timeout).await.map_err(|e| naming(target, e))
}

async fn connect_unnamed(target: SocketAddr, source: Option<IpAddr>, timeout: Duration) -> io::Result<TcpStream> {
    let socket = if target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source {
        bind_address_no_port(&socket);
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = tokio::time::timeout(timeout, socket.connect(target))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {timeout:?}")))??;
    // Requests are single small lines: send each at once.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A UDP socket bound to `source` (or a kernel-chosen address) and connected
/// to `target`: the kernel then delivers only the target's datagrams to it,
/// and reports an ICMP "port unreachable" as an error on the next call.
pub async fn open_udp(target: SocketAddr, source: Option<IpAddr>) -> io::Result<UdpSocket> {
    open_udp_unnamed(target, source).await.map_err(|e| naming(target, e))
}

async fn open_udp_unnamed(target: SocketAddr, source: Option<IpAddr>) -> io::Result<UdpSocket> {
    let ip = source.unwrap_or(if target.is_ipv4() {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    });
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    socket.connect(target).await?;
    Ok(socket)
}

/// `e`, its message prefixed with the address it concerns (the report's
/// last connect error says which target failed).
fn naming(target: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{target}: {e}"))
}

#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and a pointer to a c_int that lives
    // across the call with its exact size. Failure (an old kernel) only means
    // the port is chosen at bind time, so it is ignored.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn bind_address_no_port(_: &TcpSocket) {}

/// Checks that the source addresses exist on this machine, so a typo fails
/// at once instead of as thousands of connection errors. Large ranges are
/// sampled: their first and last addresses are tried.
pub fn check_sources(sources: &[IpAddr]) -> anyhow::Result<()> {
    let sample: Vec<&IpAddr> =
        if sources.len() <= 1024 { sources.iter().collect() } else { vec![&sources[0], &sources[sources.len() - 1]] };
    for ip in sample {
        std::net::UdpSocket::bind(SocketAddr::new(*ip, 0)).with_context(|| {
            format!("cannot use source address {ip} (is it an address of this machine? On Linux all of 127.0.0.0/8 is)")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_from_the_chosen_source() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.7".parse().unwrap();
        let stream = connect(target, Some(source), Duration::from_secs(5)).await.unwrap();
        assert_eq!(stream.local_addr().unwrap().ip(), source);
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), source);
        assert!(connect(target, None, Duration::from_secs(5)).await.is_ok());
    }

    #[tokio::test]
    async fn udp_sockets_use_the_chosen_source() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let source: IpAddr = "127.0.0.8".parse().unwrap();
        let socket = open_udp(server.local_addr().unwrap(), Some(source)).await.unwrap();
        socket.send(b"hi").await.unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from.ip()), (&b"hi"[..], source));
    }

    #[test]
    fn foreign_sources_are_refused_with_a_reason() {
        assert!(check_sources(&["127.0.0.2".parse().unwrap()]).is_ok());
        let err = check_sources(&["192.0.2.1".parse().unwrap()]).unwrap_err();
        assert!(format!("{err:#}").contains("192.0.2.1"), "{err:#}");
    }
}
