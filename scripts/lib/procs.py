"""Processes of the check scripts (scripts/e2e, scripts/check-metrics): each
started in its own session and remembered, so that one call stops them all
at the end, also on failure, timeout or Ctrl-C; tools run to completion
within a time limit; Debian packages installed when missing."""

import os
import signal
import subprocess
import time


class Failure(RuntimeError):
    """A step that cannot go on; the checks so far are still reported."""


class Deadline(Exception):
    """The script's time limit (SIGALRM) has passed."""


PROCS = []  # every process started here: (name, Popen)


def spawn(name, argv, env, logdir):
    """Starts a process in its own session (a Ctrl-C on the terminal reaches
    only the script, which then stops everything in order); its output goes
    to <logdir>/<name>.log."""
    out = open(os.path.join(logdir, f"{name}.log"), "ab")
    p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    PROCS.append((name, p))
    return p


def signal_proc(p, sig):
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass


def stop_proc(p, sig=signal.SIGTERM, grace=10.0):
    """Signals a process, waits up to `grace` seconds, then kills it."""
    signal_proc(p, sig)
    try:
        return p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_proc(p, signal.SIGKILL)
        return p.wait(timeout=10)


def stop_all(grace=10.0, twice=True):
    """SIGTERM to every process started, the newest first; with `twice` a
    second one after 0.2 s (the servers drain for SIGTERM_TIMEOUT on the
    first and skip the wait on a second one, so teardown is quick). What is
    still running after `grace` seconds is killed."""
    for _, p in reversed(PROCS):
        signal_proc(p, signal.SIGTERM)
    if twice:
        time.sleep(0.2)
        for _, p in reversed(PROCS):
            signal_proc(p, signal.SIGTERM)
    limit = time.monotonic() + grace
    for _, p in reversed(PROCS):
        try:
            p.wait(timeout=max(0.1, limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_proc(p, signal.SIGKILL)
            p.wait(timeout=10)


def run(argv, timeout, check=True, env=None, track=False):
    """Runs a tool to completion within `timeout` seconds: (exit code, output).
    With `track` it is in PROCS, so that stop_all() stops it too."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    if track:
        PROCS.append((argv[0], p))
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        raise Failure(f"{' '.join(argv[:3])} took more than {timeout}s:\n{out[-2000:]}")
    if check and p.returncode != 0:
        raise Failure(f"{' '.join(argv[:4])} exited with {p.returncode}:\n{out[-3000:]}")
    return p.returncode, out


def apt_install(packages, track=False):
    """Installs Debian packages (apt-get update first). A policy-rc.d keeps
    their own services (nginx on :80, a system Prometheus) from starting:
    the binaries run with the scripts' own configs."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = "/usr/sbin/policy-rc.d"
    created = False
    if os.geteuid() == 0 and not os.path.exists(policy):
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        created = True
    try:
        run(["apt-get", "-o", "DPkg::Lock::Timeout=120", "update", "-qq"], timeout=300, env=env, track=track)
        run(["apt-get", "-o", "DPkg::Lock::Timeout=120", "install", "-y", "-qq",
             "--no-install-recommends", *packages], timeout=600, env=env, track=track)
    finally:
        if created:
            os.remove(policy)


def trap_signals(interrupt=False):
    """SIGALRM (the script's time limit) raises Deadline, SIGTERM raises
    KeyboardInterrupt, as Ctrl-C does; with `interrupt` SIGINT is set to do
    so too, also when the script was started with it ignored (a background
    job of a shell script)."""
    def on_alarm(*_):
        raise Deadline()

    def on_term(*_):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    if interrupt:
        signal.signal(signal.SIGINT, on_term)
