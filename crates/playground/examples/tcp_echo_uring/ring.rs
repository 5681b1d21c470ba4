//! The Linux part of `tcp_echo_uring`: one io_uring per core and the
//! connections of its listener.

use io_uring::{IoUring, opcode, squeue, types};
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The most a request line may hold; a longer one closes the connection.
const LINE: usize = 4096;
/// Submission queue entries per ring (the completion queue gets twice as many).
const ENTRIES: u32 = 4096;
/// The `user_data` of the listener's accept; a connection's is its slot.
const ACCEPT: u64 = u64::MAX;

/// One client. The kernel writes into `input[filled..]` while a receive is in
/// flight and reads `output[sent..]` while a send is; `Box` and `Vec` keep
/// those bytes in place when `Ring::conns` grows.
struct Conn {
    fd: OwnedFd,
    input: Box<[u8]>,
    filled: usize,
    output: Vec<u8>,
    sent: usize,
}

/// Serves `port` on 127.0.0.1 with one thread and ring per core, until killed.
pub fn serve(port: u16) -> io::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Every listener is bound before the first accept, so the port accepts
    // connections as soon as this process is up.
    let listeners = (0..cores).map(|_| listen(port)).collect::<io::Result<Vec<_>>>()?;
    let workers: Vec<_> = listeners.into_iter().map(|l| std::thread::spawn(move || run(&l))).collect();
    for worker in workers {
        worker.join().map_err(|_| io::Error::other("a worker panicked"))??;
    }
    Ok(())
}

fn listen(port: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    socket.listen(4096)?;
    Ok(socket)
}

/// One core's ring and the connections its listener accepted.
struct Ring {
    ring: IoUring,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
}

fn run(listener: &Socket) -> io::Result<()> {
    // Completions are only reaped by this thread: let the kernel skip the
    // interrupts that would hurry them (both flags need Linux 6.0 or later).
    let ring = IoUring::builder().setup_single_issuer().setup_coop_taskrun().build(ENTRIES);
    let mut r = Ring { ring: ring.or_else(|_| IoUring::new(ENTRIES))?, conns: Vec::new(), free: Vec::new() };
    let accept = opcode::Accept::new(types::Fd(listener.as_raw_fd()), std::ptr::null_mut(), std::ptr::null_mut());
    let accept = accept.build().user_data(ACCEPT);
    r.push(&accept)?;
    let mut done = Vec::new();
    loop {
        match r.ring.submit_and_wait(1) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        };
        done.extend(r.ring.completion().map(|c| (c.user_data(), c.result())));
        for (id, result) in done.drain(..) {
            if id == ACCEPT {
                if result >= 0 {
                    // SAFETY: a successful accept returns a new descriptor
                    // that nothing else owns.
                    r.open(unsafe { OwnedFd::from_raw_fd(result) })?;
                }
                r.push(&accept)?;
            } else {
                r.completed(id as usize, result)?;
            }
        }
    }
}

impl Ring {
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: every entry points into a `Conn` that stays in `conns`
        // until the completion of that entry (one operation in flight per
        // connection, and a connection is dropped only on its completion).
        while unsafe { self.ring.submission().push(entry) }.is_err() {
            self.ring.submit()?;
        }
        Ok(())
    }

    /// Takes a new connection. `TCP_NODELAY` is not set (the other echoes
    /// set it) because it changes nothing here: the client's next request
    /// carries the acknowledgement of the last reply, so Nagle's algorithm
    /// never has unacknowledged data to wait for.
    fn open(&mut self, fd: OwnedFd) -> io::Result<()> {
        let conn = Conn { fd, input: vec![0; LINE].into_boxed_slice(), filled: 0, output: Vec::new(), sent: 0 };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        self.conns[slot] = Some(conn);
        self.next(slot)
    }

    /// A connection's receive or send finished with `result` bytes (or an error).
    fn completed(&mut self, slot: usize, result: i32) -> io::Result<()> {
        let Some(conn) = self.conns[slot].as_mut() else { return Ok(()) };
        let Ok(n @ 1..) = usize::try_from(result) else {
            self.close(slot);
            return Ok(());
        };
        if conn.output.is_empty() {
            conn.filled += n;
        } else {
            conn.sent += n;
            if conn.sent < conn.output.len() {
                return self.next(slot);
            }
            conn.output.clear();
            conn.sent = 0;
        }
        self.next(slot)
    }

    /// Queues what the connection needs next: the rest of its replies, the
    /// replies to the lines it holds, or a receive for more.
    fn next(&mut self, slot: usize) -> io::Result<()> {
        let Some(conn) = self.conns[slot].as_mut() else { return Ok(()) };
        if conn.output.is_empty() {
            take_lines(conn);
        }
        let fd = types::Fd(conn.fd.as_raw_fd());
        let entry = if !conn.output.is_empty() {
            let rest = &conn.output[conn.sent..];
            opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32).build()
        } else if conn.filled < LINE {
            let room = &mut conn.input[conn.filled..];
            opcode::Recv::new(fd, room.as_mut_ptr(), room.len() as u32).build()
        } else {
            self.close(slot);
            return Ok(());
        };
        self.push(&entry.user_data(slot as u64))
    }

    fn close(&mut self, slot: usize) {
        self.conns[slot] = None;
        self.free.push(slot);
    }
}

/// Moves the complete lines of `input` to `output`, `msg:` stripped as the
/// real server does, and keeps the unfinished rest at the front of `input`.
fn take_lines(conn: &mut Conn) {
    let mut start = 0;
    while let Some(end) = conn.input[start..conn.filled].iter().position(|&b| b == b'\n') {
        let line = &conn.input[start..=start + end];
        conn.output.extend_from_slice(line.strip_prefix(b"msg:").unwrap_or(line));
        start += end + 1;
    }
    conn.input.copy_within(start..conn.filled, 0);
    conn.filled -= start;
}
