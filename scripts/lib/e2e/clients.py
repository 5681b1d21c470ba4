"""Probe connections through nginx, and one echo straight to a server."""

import socket

from playlib import Failure


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
