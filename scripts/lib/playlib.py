"""The one helper library of the scripts: the binary, processes, loopback
ports and HTTP, polls, the Prometheus text format, /proc, `playground load`,
Helm and the chart, progress lines and BENCHMARKS.md. Run as a program, it
serves scripts/check-deploy: `helm` prints "PATH HELM_VERSION KUBE_VERSION",
`chart HELM DEST` writes the chart copy."""

import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVICES = os.path.join(ROOT, "scripts", "services")
CACHE = os.environ.get("PLAYGROUND_CACHE") or os.path.expanduser("~/.cache/playground")
STATE = os.environ.get("PLAYGROUND_STATE") or os.path.expanduser("~/.cache/playground/state")
START = time.monotonic()
HELM_VERSION = "v3.22.0"
KUBE_VERSION = os.environ.get("KUBE_VERSION") or "1.33.0"


class Failure(RuntimeError):
    """A step that cannot go on; the checks so far are still reported."""


class Deadline(Exception):
    """The script's time limit (SIGALRM) has passed."""


def target_dir():
    if os.environ.get("CARGO_TARGET_DIR"):
        return os.environ["CARGO_TARGET_DIR"]
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    return json.loads(meta.stdout)["target_directory"]


def binary():
    """The release binary: PLAYGROUND_BIN, or where `cargo build --release` puts it."""
    return os.environ.get("PLAYGROUND_BIN") or os.path.join(target_dir(), "release", "playground")


def build(*examples, copy_to=None, skip=False):
    """Builds the release binary and examples: {name: path}; with copy_to, private copies there."""
    if not skip:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "playground", "--bin", "playground",
                        *[a for e in examples for a in ("--example", e)]], cwd=ROOT, check=True)
    release = os.path.join(target_dir(), "release")
    paths = {"playground": os.path.join(release, "playground"),
             **{e: os.path.join(release, "examples", e) for e in examples}}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
        raise SystemExit(f"not built: {', '.join(missing)} (run without --skip-build, or set CARGO_TARGET_DIR)")
    if copy_to:
        for name, path in paths.items():
            paths[name] = os.path.join(copy_to, name)
            subprocess.run(["cp", "-p", path, paths[name]], check=True)
    return paths


def build_go_echo(dest_dir):
    """Builds bench/go-echo into dest_dir: its path, or None (said on stderr) without Go."""
    go = shutil.which("go") or shutil.which("/usr/local/go/bin/go")
    if not go:
        print("note: no Go toolchain found; the Go reference is left out", file=sys.stderr)
        return None
    out = os.path.join(dest_dir, "go-echo")
    subprocess.run([go, "build", "-o", out, "."], cwd=os.path.join(ROOT, "bench", "go-echo"), check=True)
    return out


PROCS = []  # every process started here: (name, Popen)


def spawn(name, argv, env=None, logdir=None):
    """Starts a process in its own session (Ctrl-C reaches only the script), output to <logdir>/<name>.log."""
    with open(os.path.join(logdir, f"{name}.log"), "ab") if logdir else contextlib.nullcontext(subprocess.DEVNULL) as out:
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    PROCS.append((name, p))
    return p


def signal_proc(p, sig):
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, sig)


def exit_code(p, timeout):
    """The exit status of `p` within `timeout` seconds, or None."""
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def stop(p, sig=signal.SIGTERM, grace=10.0):
    """Signals a process, waits up to `grace` seconds, then kills it."""
    signal_proc(p, sig)
    if exit_code(p, grace) is None:
        signal_proc(p, signal.SIGKILL)
    return p.wait(timeout=10)


def stop_all(grace=10.0, twice=True):
    """SIGTERM to every process started, newest first; with `twice` another
    after 0.2 s (a server skips its drain on the second). Kills what is
    still running after `grace` seconds."""
    for _ in range(2 if twice else 1):
        for _, p in reversed(PROCS):
            signal_proc(p, signal.SIGTERM)
        time.sleep(0.2 if twice else 0)
    limit = time.monotonic() + grace
    for _, p in reversed(PROCS):
        if exit_code(p, max(0.1, limit - time.monotonic())) is None:
            signal_proc(p, signal.SIGKILL)
            p.wait(timeout=10)


def run(argv, timeout, check=True, env=None, track=False, stdin_text=None):
    """Runs a tool to completion within `timeout` seconds: (exit code, output).
    With `track` it is in PROCS, so that stop_all() stops it too;
    `stdin_text` is written to its standard input."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL if stdin_text is None else subprocess.PIPE,
                         start_new_session=True, env=env)
    if track:
        PROCS.append((argv[0], p))
    try:
        out, _ = p.communicate(input=stdin_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        raise Failure(f"{' '.join(argv[:3])} took more than {timeout}s:\n{out[-2000:]}") from None
    if check and p.returncode != 0:
        raise Failure(f"{' '.join(argv[:4])} exited with {p.returncode}:\n{out[-3000:]}")
    return p.returncode, out


def service(name, *args, timeout=180, env=None):
    """scripts/services/NAME ARGS...: (exit code, output)."""
    return run([os.path.join(SERVICES, name), *args], timeout=timeout, check=False,
               env=dict(os.environ, **(env or {})))


def apt_install(packages, track=False):
    """Installs Debian packages with service.sh's apt_install (their own services are not started)."""
    run(["bash", "-c", '. "$0" && apt_install "$@"', os.path.join(ROOT, "scripts", "lib", "service.sh"), *packages],
        timeout=900, env=dict(os.environ, SVC_TAG="[apt]"), track=track)


def trap_signals(interrupt=False):
    """SIGALRM raises Deadline, SIGTERM KeyboardInterrupt; with `interrupt`
    SIGINT too, even when started ignored (a background job)."""
    def on_alarm(*_):
        raise Deadline()

    def on_term(*_):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    if interrupt:
        signal.signal(signal.SIGINT, on_term)


def free_port(udp_too=False):
    """A loopback port that is free (for UDP too when asked)."""
    for _ in range(100):
        with socket.socket() as s, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            with contextlib.suppress(OSError):  # taken for UDP: another one
                if udp_too:
                    u.bind(("127.0.0.1", port))
                return port
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


def poll(seconds, probe, done=bool, interval=0.2):
    """Calls `probe` until done(value) or `seconds` have passed: the last value."""
    limit = time.monotonic() + seconds
    while True:
        value = probe()
        if done(value) or time.monotonic() > limit:
            return value
        time.sleep(interval)


def http(method, url, body=None, timeout=5, ctype="application/json"):
    """(status, text); HTTP errors are returned. Dicts and lists go as JSON."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": ctype} if data else {})
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

    wait_until(f"{what} answering {url}", seconds, answers, 0.1)


def start_echo(name, argv):
    """A reference TCP echo server, `argv` and a free loopback port, once it accepts connections: (process, port)."""
    port = free_port()
    proc = spawn(name, [*argv, str(port)])

    def accepting():
        if proc.poll() is not None:
            raise Failure(f"{name} exited with status {proc.returncode} before it accepted connections")
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    wait_until(f"{name} listening on {port}", 30, accepting, 0.05)
    return proc, port


SAMPLE = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(admin):
    """The one parser of the Prometheus text format: the samples of an admin
    port's /metrics, {name: [(labels, value)]}, labels as the raw `{...}` text
    ('' when none)."""
    samples = {}
    for line in http("GET", f"http://127.0.0.1:{admin}/metrics")[1].splitlines():
        m = None if line.startswith("#") else SAMPLE.match(line)
        if m:
            samples.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return samples


def metric(admin, name):
    """Sum of a metric's samples on an admin port's /metrics (None if absent or down)."""
    try:
        found = scrape(admin).get(name)
    except OSError:
        return None
    return sum(v for _, v in found) if found else None


def histogram_summary(admins, name, q=0.99):
    """(count, mean, upper bound of the q-quantile's bucket) of histogram `name`
    summed over the /metrics of the admin ports, in its unit; None without samples."""
    buckets, count, total = {}, 0.0, 0.0
    for admin in admins:
        samples = scrape(admin)
        count += sum(v for _, v in samples.get(f"{name}_count", []))
        total += sum(v for _, v in samples.get(f"{name}_sum", []))
        for labels, v in samples.get(f"{name}_bucket", []):
            le = float(re.search(r'le="([^"]+)"', labels).group(1))
            buckets[le] = buckets.get(le, 0.0) + v
    if not count:
        return None
    bound = next(le for le, v in sorted(buckets.items()) if v >= q * count)
    return count, total / count, bound


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def cpu_times(pid):
    """(user, system) CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid):
    """User + system CPU time of a process."""
    return sum(cpu_times(pid))


def cpu_us_per_reply(pid, cpu_before, report):
    """CPU µs a process used per reply since `cpu_before` (its cpu_seconds then), for the replies that a load
    report counted over its measured window."""
    replies = report["received_per_sec"] * report["measured_secs"]
    return (cpu_seconds(pid) - cpu_before) * 1e6 / max(replies, 1)


def tcp_segments_sent():
    """TCP segments sent so far in this network namespace (`OutSegs` of /proc/net/snmp): over loopback,
    both ends of every connection."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("OutSegs")])


def open_files(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def machine():
    cpu = "unknown cpu"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{os.cpu_count()} cores ({cpu}), {mem / 2**30:.0f} GiB, {platform.system()} {platform.release()}"


def raise_nofile(wanted=0):
    """Raises RLIMIT_NOFILE: hard toward `wanted` (up to fs.nr_open), soft to hard: (soft, hard, nr_open, how)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with open("/proc/sys/fs/nr_open") as f:
        nr_open = int(f.read())
    how = "unchanged"
    if hard < wanted:
        new = min(wanted, nr_open)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, new))
            how = f"hard limit raised from {hard} to {new}"
        except (ValueError, OSError) as e:
            how = f"the hard limit cannot be raised ({e}: no CAP_SYS_RESOURCE)"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard, hard, nr_open, how


def start_server(role="tcp", extra=None, bin_path=None):
    """A quiet `playground ROLE` on free loopback ports: (process, port, admin port) once /readyz answers."""
    port, admin = free_port(udp_too=role == "udp"), free_port()
    env = dict(os.environ, PORT=str(port), TCP_PORT=str(port), ADMIN_PORT=str(admin), BIND_ADDRESS="127.0.0.1",
               ADMIN_BIND_ADDRESS="127.0.0.1", LOG_LEVEL="warn", SIGTERM_TIMEOUT="0", **(extra or {}))
    proc = spawn(role, [bin_path or binary(), role], env)
    wait_http(f"http://127.0.0.1:{admin}/readyz", 60, f"playground {role}", proc)
    return proc, port, admin


class Load:
    """A running `playground load ARGS`; finish() returns its JSON report."""

    def __init__(self, args, bin_path=None, env=None, logdir=None, name="load", progress="off"):
        fd, self.path = tempfile.mkstemp(prefix="load-", suffix=".json", dir=logdir)
        os.close(fd)
        self.keep = logdir is not None  # the report stays beside the logs
        argv = [bin_path or binary(), "load", *args, "--json", self.path]
        if progress:
            argv += ["--progress", progress]
        self.proc = spawn(name, argv, env, logdir)

    def finish(self, timeout=None):
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(self.proc, signal.SIGKILL)
            raise Failure(f"the load took more than {timeout}s") from None
        try:
            with open(self.path) as f:
                report = json.load(f)
        except (OSError, ValueError):
            raise Failure(f"the load exited with {code} and wrote no report") from None
        if not self.keep:
            os.unlink(self.path)
        if code != 0:
            why = "; ".join(report.get("failures") or [])
            raise Failure(f"the load exited with {code}" + (f": {why}" if why else ""))
        return report


def load(args, timeout=600, bin_path=None):
    """Runs `playground load ARGS` to its end: its JSON report."""
    return Load(args, bin_path).finish(timeout)


def ensure_helm():
    """(path, how) of the pinned Helm, built once into the cache with `go install`."""
    helm = os.path.join(CACHE, "bin", f"helm-{HELM_VERSION}")
    if os.access(helm, os.X_OK):
        return helm, "cached"
    if not shutil.which("go"):
        raise Failure("go is needed to build Helm")
    print(f"installing helm {HELM_VERSION} (go install, a few minutes once)", file=sys.stderr, flush=True)
    os.makedirs(os.path.dirname(helm), exist_ok=True)
    with tempfile.TemporaryDirectory() as gobin:
        run(["go", "install", "-ldflags", f"-s -w -X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
             f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"], timeout=900, track=True,
            env=dict(os.environ, GOBIN=gobin, GOFLAGS="-mod=mod"))
        shutil.move(os.path.join(gobin, "helm"), helm)
    return helm, "go install"


def chart_copy(helm, dest):
    """A copy of the chart at dest with empty stand-ins of the same names and
    pinned versions for its remote dependencies (offline); their lines."""
    src = os.path.join(ROOT, "deploy", "helm", "playground")
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    lines = []
    for name, version, repo, *_ in (ln.split() for ln in run([helm, "dependency", "list", src], 60)[1].splitlines()[1:]
                                    if ln.strip()):
        if not version[:1].isdigit() or any(c in version for c in "^~*x><= |"):
            raise Failure(f"dependency {name} is not pinned to an exact version: {version}")
        os.makedirs(os.path.join(dest, "charts", name))
        with open(os.path.join(dest, "charts", name, "Chart.yaml"), "w") as f:
            f.write(f"apiVersion: v2\nname: {name}\nversion: {version}\n"
                    "description: stand-in for the pinned dependency (offline check)\n")
        lines.append(f"  stand-in {name} {version} ({repo})")
    return lines


def elapsed():
    return time.monotonic() - START


def progress(name, width):
    """A log(msg) function printing `[<name> <seconds>s] msg` at once."""
    def log(msg):
        print(f"[{name} {elapsed():{width}.1f}s] {msg}", flush=True)

    return log


def verdicts(log):
    """A verdict(check, expected, observed, ok) that logs each check and keeps it in `results`; ok None: skipped."""
    results = []

    def verdict(check, expected, observed, ok):
        results.append((check, str(expected), str(observed), None if ok is None else bool(ok)))
        log(f"{'SKIP' if ok is None else 'ok  ' if ok else 'FAIL'} {check}: expected {expected}; observed {observed}")
        return ok

    verdict.results = results
    return verdict


def conclude(verdict, name, title, work, keep):
    """Ends a scripted run: prints the verdict table under `title`, keeps the
    work directory when asked or on a failure (removes it otherwise) and
    says the outcome. Returns the exit status, 1 if any check failed."""
    results = verdict.results
    status = 0 if results and all(ok is not False for *_, ok in results) else 1
    rows = [("check", "expected", "observed", "ok")] + [
        (c, e, o, "SKIP" if k is None else "ok" if k else "FAIL") for c, e, o, k in results]
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(3)]
    print(f"\n{title}")
    for i, r in enumerate(rows):
        print("  " + "  ".join(r[j].ljust(widths[j]) for j in range(3)) + "  " + r[3])
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths) + "  ----")
    if keep or status:
        print(f"  logs and reports kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{name}: " + ("all checks passed" if status == 0 else "FAILED"))
    return status


@contextlib.contextmanager
def failures_as_verdicts(verdict, limit, limit_env):
    """The ways a scripted run ends early (its time limit, a signal, a Failure, a bug), each made a failed verdict."""
    try:
        yield
    except Deadline:
        verdict("time limit", f"done within {limit:.0f} s", f"not done ({limit_env})", False)
    except KeyboardInterrupt:
        verdict("interrupted", "run to the end", "interrupted", False)
    except Failure as e:
        verdict("error", "no error", str(e).splitlines()[0], False)
        print(str(e), file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - reported as a verdict, with the traceback
        traceback.print_exc()
        verdict("error", "no error", f"{type(e).__name__}: {e}", False)


def step(text):
    print(f"\n==> {text}", flush=True)


def write_section(name, markdown):
    """Replaces (or adds) the section `name` of BENCHMARKS.md: the text between its markers."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    start_m, end_m = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start_m}\n{markdown.rstrip()}\n{end_m}"
    with open(path) as f:  # tracked: its introduction is kept as it is
        text = f.read()
    if start_m in text:
        text = re.sub(re.escape(start_m) + r".*?" + re.escape(end_m), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    try:
        if sys.argv[1:2] == ["helm"]:
            print(ensure_helm()[0], HELM_VERSION, KUBE_VERSION)
        elif sys.argv[1:2] == ["chart"] and len(sys.argv) == 4:
            print("\n".join(chart_copy(*sys.argv[2:])))
        else:
            sys.exit("usage: playlib.py helm | chart HELM DEST")
    except Failure as e:
        sys.exit(str(e))
