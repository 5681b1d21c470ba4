"""The clients scripts/e2e runs itself, next to `playground load`: a UDP
echo client through nginx, probe connections through nginx, and one echo
straight to a server."""

import socket
import threading
import time

from net import wait_until
from procs import Failure


class UdpEcho(threading.Thread):
    """`msg:` datagrams through the balancer from `flows` sockets, one
    outstanding request per socket, one every `interval` seconds per socket,
    at most `limit` in all; each echo is checked.

    `quiet()` holds new requests until `resume()`: nginx loses the replies
    of the UDP sessions its old worker still has when it reloads (the old
    worker closes the listening socket those replies go out through), so
    the client is quiet while nginx reloads. A Kubernetes Service or Envoy
    changes endpoints without that loss."""

    TIMEOUT = 2.0

    def __init__(self, port, flows, interval, limit, tag):
        super().__init__(daemon=True)
        self.port, self.flows, self.interval, self.limit, self.tag = port, flows, interval, limit, tag
        self.stop = threading.Event()
        self.hold = threading.Event()
        self.outstanding = 0
        self.rounds = 0  # turns of the loop, to know one ran wholly while held
        self.sent = self.answered = self.wrong = self.lost = self.late = 0
        self.error = None

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported by the verdict
            self.error = e

    def _run(self):
        socks = []
        for _ in range(self.flows):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(("127.0.0.1", self.port))
            s.setblocking(False)
            socks.append(s)
        waiting = [None] * self.flows  # (payload, sent at) per flow
        due = [time.monotonic() + i * self.interval / self.flows for i in range(self.flows)]
        seq = 0
        try:
            while True:
                now = time.monotonic()
                stopping = self.stop.is_set() or self.sent >= self.limit
                if stopping and not any(waiting):
                    return
                holding = stopping or self.hold.is_set()
                for i, s in enumerate(socks):
                    w = waiting[i]
                    if w is not None and now - w[1] > self.TIMEOUT:
                        self.lost += 1
                        waiting[i] = None
                    if waiting[i] is None and not holding and now >= due[i] and self.sent < self.limit:
                        seq += 1
                        payload = f"e2e-{self.tag}-{i}-{seq}".encode()
                        s.send(b"msg:" + payload)
                        self.sent += 1
                        waiting[i] = (payload, now)
                        due[i] = max(due[i] + self.interval, now)
                    try:
                        while True:
                            reply = s.recv(2048).rstrip(b"\r\n")
                            w = waiting[i]
                            if w is not None and reply == w[0]:
                                self.answered += 1
                                waiting[i] = None
                            elif reply.startswith(f"e2e-{self.tag}-{i}-".encode()):
                                self.late += 1  # the echo of a request already counted lost
                            else:
                                self.wrong += 1
                    except BlockingIOError:
                        pass
                self.outstanding = sum(1 for w in waiting if w is not None)
                self.rounds += 1
                time.sleep(0.005)
        finally:
            for s in socks:
                s.close()

    def quiet(self):
        """Holds new requests; returns once none is outstanding."""
        self.hold.set()
        # A turn that began before the hold may still send: wait for one
        # that began after it.
        after = self.rounds + 2
        wait_until("UDP requests in flight answered", self.TIMEOUT + 2,
                   lambda: not self.is_alive() or (self.rounds >= after and self.outstanding == 0), 0.01)

    def resume(self):
        self.hold.clear()


def await_line(sock, want):
    """Reads until the line `want` comes (pushed broadcasts may come first);
    False if the connection ends before. Bounded by the socket's timeout."""
    buf = b""
    while True:
        lines = buf.split(b"\n")
        if want in lines[:-1]:
            return True
        chunk = sock.recv(65536)
        if not chunk:
            return False
        # Keep only the unfinished last line: broadcasts can be many.
        buf = lines[-1] + chunk


def open_probes(port, count, tag):
    """`count` connections through the balancer, each proved served by an
    echo; returns them still open."""
    probes = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        probes.append(s)
        s.settimeout(10)
        s.sendall(f"msg:probe-{tag}-{i}\n".encode())
        if not await_line(s, f"probe-{tag}-{i}".encode()):
            raise Failure(f"probe {i} was closed before its echo")
    return probes


def echo_once(port, text):
    """One connection straight to a server: whether it echoes `text`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            s.sendall(f"msg:{text}\n".encode())
            return await_line(s, text.encode())
    except OSError:
        return False
