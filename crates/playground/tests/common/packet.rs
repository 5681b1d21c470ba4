//! A stand-in for the original server's TCP framing ("packet"): each read is
//! one command, each reply one write without a line ending. It echoes
//! `msg:X` as `X` and can tell its clients to `reconnect`, so that
//! `playground load --framing packet` is checked against the framing of the
//! server it was made to drive, not only against playground's own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The original's command buffer (`BUFF_SIZE`).
const BUFF_SIZE: usize = 512;

/// A running stand-in; its threads end with the test process.
pub struct PacketEcho {
    pub port: u16,
    /// Commands read, one per read.
    pub commands: Arc<AtomicU64>,
    /// Commands that carried a line end: the original's clients send none.
    pub line_ends: Arc<AtomicU64>,
}

impl PacketEcho {
    /// Starts the server. With `reconnect_after: Some(n)`, the command after
    /// the n-th on a connection is answered with `reconnect` and the
    /// connection closed, as the original did when it shut down.
    pub fn start(reconnect_after: Option<u64>) -> PacketEcho {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let echo = PacketEcho { port, commands: Arc::default(), line_ends: Arc::default() };
        let (commands, line_ends) = (echo.commands.clone(), echo.line_ends.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (commands, line_ends) = (commands.clone(), line_ends.clone());
                std::thread::spawn(move || serve(stream, reconnect_after, &commands, &line_ends));
            }
        });
        echo
    }
}

fn serve(mut stream: TcpStream, reconnect_after: Option<u64>, commands: &AtomicU64, line_ends: &AtomicU64) {
    let mut buf = [0u8; BUFF_SIZE];
    let mut served = 0;
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        let command = &buf[..n];
        commands.fetch_add(1, Relaxed);
        if command.contains(&b'\n') {
            line_ends.fetch_add(1, Relaxed);
        }
        if reconnect_after == Some(served) {
            let _ = stream.write_all(b"reconnect");
            return;
        }
        served += 1;
        if let Some(echo) = command.strip_prefix(b"msg:")
            && stream.write_all(echo).is_err()
        {
            return;
        }
    }
}
