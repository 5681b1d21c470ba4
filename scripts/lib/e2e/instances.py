"""The tcp/udp instances, the Prometheus that scrapes them, the kernel's socket count."""

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
    """Prometheus scraping instances (anything with role, pod and admin),
    queried by pod."""

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
    """Established TCP sockets whose local port is `port`: what a server
    really holds, as the kernel sees it."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        count += 1
        except FileNotFoundError:
            pass
    return count
