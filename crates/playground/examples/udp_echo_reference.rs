//! The reference for the UDP echo benchmark: the smallest reasonable tokio
//! UDP echo server (one socket, one task, `recv_from` then `send_to`, `msg:`
//! stripped and the reply ended with `\n` like the real server, so both send
//! the same bytes). `scripts/bench-udp` compares `playground udp` against it
//! in the same run.
//!
//! Usage: udp_echo_reference PORT

use tokio::net::UdpSocket;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(51000);
    let socket = UdpSocket::bind(("127.0.0.1", port)).await?;
    let mut buf = vec![0u8; 65_536];
    let mut reply = Vec::with_capacity(65_536);
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
        let datagram = &buf[..n];
        let datagram = datagram.strip_suffix(b"\n").unwrap_or(datagram);
        reply.clear();
        reply.extend_from_slice(datagram.strip_prefix(b"msg:").unwrap_or(datagram));
        reply.push(b'\n');
        let _ = socket.send_to(&reply, from).await;
    }
}
