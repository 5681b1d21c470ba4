//! The reference for the TCP echo benchmark: the smallest reasonable tokio
//! line-echo server (one task per connection, buffered line reads, `msg:`
//! stripped like the real server does). `scripts/bench` compares playground
//! against it in the same run.
//!
//! Usage: tcp_echo_reference PORT

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(41000);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let reply = line.strip_prefix(b"msg:").unwrap_or(&line);
                if w.write_all(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}
