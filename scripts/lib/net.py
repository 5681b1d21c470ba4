"""Loopback helpers of the check scripts: free ports, HTTP requests,
bounded polls on a condition, and sums of Prometheus exposition samples."""

import json
import socket
import time
import urllib.error
import urllib.request

from procs import Failure


def free_port(udp_too=False):
    """A loopback port that is free (for UDP too when asked)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not udp_too:
            return port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise Failure("no free loopback port")


def wait_until(what, seconds, probe, interval=0.2):
    """Polls `probe` until it returns a true value, at most `seconds`."""
    limit = time.monotonic() + seconds
    last = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except (OSError, ValueError, urllib.error.URLError) as e:
            last = e
        if time.monotonic() > limit:
            raise Failure(f"{what}: not within {seconds:g}s (last: {last})")
        time.sleep(interval)


def http(method, url, body=None, timeout=5):
    """(status, text) of an HTTP request; HTTP errors are returned, not raised."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_http(url, seconds, what, proc=None):
    """Waits for `url` to answer 200; fails at once if `proc` exits."""
    def answers():
        if proc is not None and proc.poll() is not None:
            raise Failure(f"{what} exited with status {proc.returncode}")
        return http("GET", url, timeout=1)[0] == 200

    wait_until(f"{what} answering {url}", seconds, answers)


def metric_sum(text, name):
    """Sum of a metric's samples in a Prometheus exposition (None if absent)."""
    total = None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total
