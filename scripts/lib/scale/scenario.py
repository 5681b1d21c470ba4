"""The run of scripts/scale in order: tools, Prometheus, the autoscaler and
its Service, the loads in two closing steps, the scale-down, the plots."""

import os
import re
import shutil
import signal
import time

import yaml

import prom
from e2e.services import kafka_topic_tool
from playlib import (KUBE_VERSION, ROOT, Failure, apt_install, chart_copy, ensure_helm, exit_code, free_port,
                     raise_nofile, run, spawn, wait_until)

from . import config
from .config import (CLIENT_IPS, NAMESPACE, RECONNECT_GRACE, SETTLE, SIGTERM_TIMEOUT, SUBNET, VIP, log, verdict)
from .instances_memory import slab_bytes

KAFKA = "127.0.0.1:9092"


def ensure_tools():
    missing = [p for p, path in (("iptables", "/usr/sbin/iptables-restore"), ("prometheus", prom.PROMETHEUS))
               if not os.path.exists(path)]
    if missing:
        log(f"installing {' '.join(missing)}")
        apt_install(missing)
    helm, how = ensure_helm()
    verdict("tools: iptables, prometheus, helm", "installed",
            f"apt-get install {' '.join(missing)}; helm {how}" if missing else f"already installed; helm {how}", True)
    return helm


def adapter_rules(helm, work):
    """The chart's prometheus-adapter config.yaml (metricsSource=servers), rendered by Helm."""
    chart = os.path.join(work, "chart")
    chart_copy(helm, chart)
    out = run([helm, "template", "playground", chart, "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION,
               "--set", "autoscaling.metricsSource=servers", "--show-only", "templates/adapter-rules.yaml"],
              timeout=60)[1]
    path = os.path.join(work, "adapter-rules.yaml")
    with open(path, "w") as f:
        f.write(yaml.safe_load(out)["data"]["config.yaml"])
    return path


def fd_ceiling(cfg):
    """The open-files limit every process here lives under (one socket per connection)."""
    soft, hard, nr_open, how = raise_nofile(cfg["connections"] + 1000)
    verdict("open files per process (ulimit -n)", "as the machine allows",
            f"{hard} ({how}; fs.nr_open {nr_open}): instances refuse beyond MAX_CONNECTIONS="
            f"{cfg['max_connections']:,}, and {len(cfg['loads'])} load processes hold at most "
            f"{max(n for _, n, _, _ in cfg['loads']):,} each", True)
    return hard


def client_ips():
    a, b, c, _ = SUBNET.split(".")
    return f"{a}.{b}.{c}.2-{a}.{b}.{c}.{1 + CLIENT_IPS}"


def start_loads(cfg, work, logdir, netns, env):
    """The load processes inside the namespace: {name: (proc, report, connections, step)}."""
    vip_ip, vip_port = VIP.split(":")
    loads = {}
    step1 = cfg["ramp"] + cfg["hold"]
    step2 = step1 + cfg["after_step1"]
    for name, n, step, broadcasts in cfg["loads"]:
        mix = cfg["mix"] if broadcasts else re.sub(r"broadcast=\d+,?", "", cfg["mix"]).strip(",")
        report = os.path.join(work, f"load-{name}.json")
        argv = ["ip", "netns", "exec", netns, config.WORKLOAD_BIN, "load", "tcp", str(n), vip_ip, vip_port,
                "--source-ips", client_ips(), "--mix", mix, "--broadcasters", "1",
                "--conn-interval", f"{cfg['ramp'] / n:.6f}", "--msg-interval", cfg["msg_interval"],
                "--alive", "7200", "--duration", str(step1 if step == 1 else step2), "--read-timeout", "10s",
                "--reconnect-delay", "1s", "--settle", SETTLE, "--threads", "1", "--progress", "plain",
                "--progress-interval", "15s", "--json", report]
        loads[name] = (spawn(f"load-{name}", argv, env, logdir), report, n, step)
    return loads, step1, step2


def start_autoscaler(cfg, work, logdir, rules, scraper, env, netns):
    scale_dir = os.path.join(work, "scale")
    admin = free_port()
    argv = [config.BIN, "scale", "run", "--values", os.path.join(ROOT, "deploy/helm/playground/values.yaml"),
            "--adapter-rules", rules, "--target", str(cfg["target"]), "--min", str(cfg["min"]),
            "--max", str(cfg["max"]), "--period", cfg["period"], "--prometheus", scraper.base,
            "--namespace", NAMESPACE, "--targets-file", os.path.join(scraper.dir, "targets.json"),
            "--netns", netns, "--subnet", SUBNET, "--client-ips", str(CLIENT_IPS), "--vip", VIP,
            "--admin-port", str(admin), "--workdir", scale_dir, "--stop-timeout", "30s",
            "--server-bin", config.WORKLOAD_BIN]
    p = spawn("autoscaler", argv, env, logdir)
    wait_until("the Service and the first instance ready", 60,
               lambda: os.path.exists(os.path.join(scale_dir, "ready")) or (p.poll() is not None and _exited(p)))
    return p, scale_dir


def _exited(p):
    raise Failure(f"playground scale run exited with {p.returncode} (see its log)")


def server_env(run_id, cfg):
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("MEMCACHED_", "KAFKA_", "ELASTICSEARCH_", "PLAYGROUND_", "RUST_LOG", "SCALE_"))}
    return dict(base, MEMCACHED_SERVICE="127.0.0.1", MEMCACHED_PORT="11211", KAFKA_BROKERS=KAFKA,
                KAFKA_SASL_USER=os.environ.get("KAFKA_SASL_USER", "user"),
                KAFKA_SASL_PASSWORD=os.environ.get("KAFKA_SASL_PASSWORD", "password"),
                KAFKA_BCAST_TOPIC=f"{run_id}-broadcasts", KAFKA_LOGGING_TOPIC=f"{run_id}-logs",
                SIGTERM_TIMEOUT=str(SIGTERM_TIMEOUT), RECONNECT_GRACE=f"{RECONNECT_GRACE}s",
                MAX_CONNECTIONS=str(cfg["max_connections"]), IDLE_TIMEOUT="2h", LOG_LEVEL="info"), base


def create_topics(run_id):
    for topic in (f"{run_id}-broadcasts", f"{run_id}-logs"):
        rc, out = kafka_topic_tool(["--create", "--if-not-exists", "--partitions", "3", "--replication-factor", "1",
                                    "--topic", topic])
        if rc:
            raise Failure(f"creating the run's topic {topic} failed:\n{out[-800:]}")


class Samples:
    """Prometheus samples taken while the load runs (every 5 s)."""

    def __init__(self, scraper):
        self.scraper = scraper
        self.rows = []  # (seconds, connections summed, replicas)

    def total(self):
        got = self.scraper.query(f'sum(playground_tcp_connections{{namespace="{NAMESPACE}",container="tcp"}})')
        return int(got[0][1]) if got else 0

    def take(self, t0):
        total = self.total()
        reps = self.scraper.query(f'playground_scale_replicas{{namespace="{NAMESPACE}"}}')
        self.rows.append((time.monotonic() - t0, total, int(reps[0][1]) if reps else 0))
        return total


def hold_check(samples, what, want, until):
    """Polls the summed connections until they are `want` or `until` passes."""
    got = samples.total()
    while got != want and time.monotonic() < until:
        time.sleep(1)
        got = samples.total()
    return verdict(what, f"{want:,} connections (Prometheus sum)", f"{got:,}" if got is not None else "no sample",
                   got == want)


def scenario(cfg, work, run_id, netns):
    logdir = os.path.join(work, "logs")
    os.makedirs(logdir)
    helm = ensure_tools()
    fd_ceiling(cfg)
    rules = adapter_rules(helm, work)
    create_topics(run_id)
    env, base = server_env(run_id, cfg)
    scraper = prom.Prometheus(work, logdir)
    scraper.set_targets([])
    scraper.start(60)
    autoscaler, scale_dir = start_autoscaler(cfg, work, logdir, rules, scraper, env, netns)
    log(f"Service {VIP} in namespace {netns}; first instance ready")
    samples = Samples(scraper)
    wait_until("Prometheus scraping the first instance", 30, lambda: samples.take(time.monotonic()) is not None
               and scraper.query(f'up{{namespace="{NAMESPACE}",container="tcp"}} == 1'))

    slab_before = slab_bytes()
    t0 = time.monotonic()
    start_unix = time.time()
    loads, step1, step2 = start_loads(cfg, work, logdir, netns, base)
    n = cfg["connections"]
    log(f"{len(loads)} load processes: {n:,} connections over {cfg['ramp']} s; step 1 closes at {step1} s, "
        f"step 2 at {step2} s")
    peak = 0
    while time.monotonic() - t0 < step1 - 10:
        peak = max(peak, samples.take(t0))
        if autoscaler.poll() is not None:
            raise Failure(f"playground scale run exited with {autoscaler.returncode}")
        time.sleep(5)
    hold_check(samples, "every connection held before step 1", n, t0 + step1 - 0.5)
    peak_at = time.time()
    slab_peak = slab_bytes()
    peak = max(peak, samples.take(t0))
    step2_clients = sum(c for _, _, c, s in loads.values() if s == 2)
    while time.monotonic() - t0 < step2 - 10:
        samples.take(t0)
        time.sleep(5)
    hold_check(samples, "after step 1 and the scale-down: the step-2 clients all connected", step2_clients,
               t0 + step2 - 0.5)
    for name, (p, *_rest) in loads.items():
        code = exit_code(p, 120)
        if code != 0:
            verdict(f"load {name} exit", 0, code, False)
    end_wait = time.monotonic() + cfg["after_step2"]
    while time.monotonic() < end_wait:
        samples.take(t0)
        time.sleep(5)
    end_unix = time.time()
    time.sleep(2)  # the last scrape
    return dict(scraper=scraper, autoscaler=autoscaler, scale_dir=scale_dir, loads=loads, peak=peak,
                peak_at=peak_at, slab=(slab_before, slab_peak), start=start_unix, end=end_unix, samples=samples, step1=step1, step2=step2)


def stop_autoscaler(p):
    """SIGTERM: it stops every instance and removes the namespace."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)  # not its group: the instances get one SIGTERM, from it
    return exit_code(p, 90)


def copy_plots(src, dest):
    os.makedirs(dest, exist_ok=True)
    for f in os.listdir(src):
        if f.endswith(".png"):
            shutil.copy(os.path.join(src, f), os.path.join(dest, f))
