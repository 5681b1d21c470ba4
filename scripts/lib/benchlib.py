"""Helpers shared by the benchmark scripts: building, starting processes on
free ports, reading /proc, parsing load reports, and rewriting one section of
BENCHMARKS.md between markers so each script owns its own section."""

import os
import platform
import re
import signal
import socket
import subprocess
import time
import urllib.request

from net import free_port  # noqa: F401 - one loopback port finder for every script
from procs import stop_proc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release", "playground")


def build(examples=()):
    cmd = ["cargo", "build", "--release", "--locked", "--bin", "playground"]
    for e in examples:
        cmd += ["--example", e]
    subprocess.run(cmd, cwd=ROOT, check=True)


def example(name):
    return os.path.join(TARGET, "release", "examples", name)


def machine():
    cores = os.cpu_count()
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cores} cores ({cpu}), {mem_kib / 1024 / 1024:.0f} GiB, {platform.system()} {platform.release()}"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return None, ""


def metric(admin, name):
    _, body = http_get(admin, "/metrics")
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def wait_ready(admin, limit=60):
    until = time.time() + limit
    while time.time() < until:
        if http_get(admin, "/readyz")[0] == 200:
            return
        time.sleep(0.1)
    raise SystemExit(f"server on admin port {admin} never became ready")


def wait_port(port, limit=30):
    until = time.time() + limit
    while time.time() < until:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def start(cmd, env=None, log=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc, sig=signal.SIGKILL):
    stop_proc(proc, sig, grace=30)


def start_server(role="tcp", env=None):
    port, admin = free_port(), free_port()
    base = {"PORT": str(port), "TCP_PORT": str(port), "ADMIN_PORT": str(admin), "BIND_ADDRESS": "127.0.0.1",
            "ADMIN_BIND_ADDRESS": "127.0.0.1", "LOG_LEVEL": "warn", "SIGTERM_TIMEOUT": "0"}
    base.update(env or {})
    proc = start([BIN, role], base)
    wait_ready(admin)
    return proc, port, admin


def report_value(text, label):
    """A number from a `playground load` report line starting with `label`."""
    for line in text.splitlines():
        if line.startswith(label):
            m = re.search(r"[-+]?\d+(\.\d+)?", line[len(label):])
            if m:
                return float(m.group(0))
    raise ValueError(f"no '{label}' in report:\n{text}")


def load(args, timeout=600):
    r = subprocess.run([BIN, "load", *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"load failed: {r.stderr}")
    return r.stdout


def write_section(name, markdown):
    """Replaces the section `name` of BENCHMARKS.md (creating it if absent)."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    start_m, end_m = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start_m}\n{markdown.rstrip()}\n{end_m}"
    text = open(path).read() if os.path.exists(path) else (
        "# Benchmarks\n\nEvery figure is measured next to a reference or ceiling run in the same "
        "session on the same machine; ratios are what count on shared, noisy machines. "
        "`scripts/bench` reruns everything and rewrites the sections below.\n")
    if start_m in text:
        text = re.sub(re.escape(start_m) + r".*?" + re.escape(end_m), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)
