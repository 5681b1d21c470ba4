"""The tcp/udp instances, the Prometheus that scrapes them, the kernel's
socket count; probe connections through nginx."""

import contextlib
import socket

import prom
from playlib import Failure, free_port, http, metric, spawn

from . import config
from .config import NAMESPACE


class Instance:
    def __init__(self, role, pod, env, logdir):
        self.role, self.pod = role, pod
        self.port = free_port(udp_too=(role == "udp"))
        self.admin = free_port()
        env = dict(env, PORT=str(self.port), ADMIN_PORT=str(self.admin), POD_NAME=pod)
        self.proc = spawn(pod, [config.BIN, role], env, logdir)

    def get(self, path):
        return http("GET", f"http://127.0.0.1:{self.admin}{path}", timeout=2)

    def ready(self):
        if self.proc.poll() is not None:
            raise Failure(f"{self.pod} exited with {self.proc.returncode}")
        return self.get("/readyz")[0] == 200

    def metric(self, name):
        return metric(self.admin, name)

    def connections(self):
        return int(self.metric("playground_tcp_connections") or 0)


class Scraper(prom.Prometheus):
    """Prometheus scraping instances (anything with role, pod and admin), queried by pod."""

    def set_targets(self, instances):
        self.targets = {i.pod for i in instances}
        super().set_targets([prom.target(i.admin, NAMESPACE, i.pod, i.role) for i in instances])

    def by_pod(self, expr):
        """{pod: value} of an instant query."""
        return {m.get("pod", ""): v for m, v in self.query(expr)}

    def up(self):
        """Pods of the current targets whose last scrape succeeded."""
        return {t["labels"].get("pod") for t in self.active_targets() if t["health"] == "up"} & self.targets


def established(port):
    """Established TCP sockets whose local port is `port`: what a server really holds, as the kernel sees it."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            next(f)
            count += sum(1 for cols in map(str.split, f) if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port)
    return count


def await_line(sock, want):
    """Reads until the line `want` comes (after pushed broadcasts, perhaps); False if the connection ends first."""
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
    """`count` connections through the balancer, each proved served by an echo; returns them still open."""
    probes = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        probes.append(s)
        s.settimeout(10)
        s.sendall(f"msg:probe-{tag}-{i}\n".encode())
        if not await_line(s, f"probe-{tag}-{i}".encode()):
            raise Failure(f"probe {i} was closed before its echo")
    return probes

