"""nginx (stream module, least_conn over TCP and UDP) as the balancer of scripts/e2e."""

import os
import resource
import socket

from playlib import Failure, free_port, run, spawn, wait_until

from .config import NGINX, NGINX_STREAM_MODULE


class Nginx:
    """nginx in front of the tcp and udp instances, its config, prefix, pid and logs in the work directory."""

    def __init__(self, work, logdir):
        self.dir = os.path.join(work, "nginx")
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        self.logdir = logdir
        self.tcp_port = free_port()
        self.udp_port = free_port(udp_too=True)
        self.argv = [NGINX, "-p", self.dir + "/", "-c", self.conf, "-e", self.error_log]
        self.proc = None

    def write(self, tcp_backends, udp_backends):
        def servers(ports):
            return "\n".join(f"        server 127.0.0.1:{p};" for p in ports)
        conf = f"""# Written by scripts/e2e for one run.
load_module {NGINX_STREAM_MODULE};
daemon off;
worker_processes 1;
worker_rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[1]};
pid {self.dir}/nginx.pid;
error_log {self.error_log} notice;

events {{
    worker_connections 16384;
}}

stream {{
    # One line per session when it ends: which backend a client went to.
    log_format e2e '$protocol $remote_addr:$remote_port $upstream_addr $status $session_time';
    access_log {self.access_log} e2e;

    upstream playground_tcp {{
        least_conn;
        zone playground_tcp 64k;
{servers(tcp_backends)}
    }}
    upstream playground_udp {{
        least_conn;
        zone playground_udp 64k;
{servers(udp_backends)}
    }}

    server {{
        listen 127.0.0.1:{self.tcp_port};
        proxy_pass playground_tcp;
        proxy_connect_timeout 2s;
        proxy_timeout 1h;
    }}
    server {{
        listen 127.0.0.1:{self.udp_port} udp;
        proxy_pass playground_udp;
        # One reply per datagram ends the session at once.
        proxy_responses 1;
        proxy_timeout 5s;
    }}
}}
"""
        with open(self.conf, "w") as f:
            f.write(conf)
        run([*self.argv, "-t"], timeout=30)

    def start(self, env):
        self.proc = spawn("nginx", self.argv, env, self.logdir)
        wait_until("nginx listening", 10, self._connectable)
        wait_until("nginx worker", 10, lambda: self.workers()[0])

    def _connectable(self):
        if self.proc.poll() is not None:
            raise Failure(f"nginx exited with {self.proc.returncode}; see {self.error_log}")
        socket.create_connection(("127.0.0.1", self.tcp_port), timeout=1).close()
        return True

    def workers(self):
        """(serving worker pids, worker pids shutting down) of the master."""
        out = run(["ps", "-o", "pid=,args=", "--ppid", str(self.proc.pid)], timeout=10, check=False)[1]
        serving, leaving = [], []
        for pid, title in (line.split(None, 1) for line in out.splitlines() if line.strip()):
            (leaving if "shutting down" in title else serving).append(int(pid))
        return serving, leaving

    def reload(self, tcp_backends, udp_backends):
        """Rewrites the config and reloads; returns once only workers started after the reload accept."""
        before = set(self.workers()[0])
        self.write(tcp_backends, udp_backends)
        run([*self.argv, "-s", "reload"], timeout=30)

        def new_worker_only():
            serving = set(self.workers()[0])
            return serving and not serving & before

        wait_until("nginx reload (a new worker, the old ones shutting down)", 15, new_worker_only, 0.05)

    def sessions(self):
        """[(protocol, client address, upstream address)] of the sessions ended so far."""
        if not os.path.exists(self.access_log):
            return []
        with open(self.access_log) as f:
            return [tuple(cols[:3]) for cols in map(str.split, f) if len(cols) >= 3]
