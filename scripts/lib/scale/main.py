"""Command line, time limit, teardown, verdicts and report of scripts/scale."""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

from playlib import ROOT, Failure, build, conclude, elapsed, failures_as_verdicts, run, service, stop_all, trap_signals

from . import checks, config, report
from .config import FULL, SHORT, log, verdict
from .instances_memory import kernel_tcp_bytes
from .scenario import copy_plots, scenario, stop_autoscaler


def main(doc):
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="5,000 connections, syncs every 5 s (scripts/test)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--write-docs", action="store_true", help="write docs/scale.md, plots, BENCHMARKS.md")
    args = parser.parse_args()
    cfg = dict(SHORT if args.short else FULL)
    cfg["timeout"] = float(os.environ.get("SCALE_TIMEOUT", cfg["timeout"]))
    if os.geteuid() != 0:
        print("scripts/scale needs root (network namespace, iptables)", file=sys.stderr)
        return 1
    trap_signals(interrupt=True)
    run_id = f"scale-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    netns = f"pgs{uuid.uuid4().hex[:6]}"
    work = tempfile.mkdtemp(prefix=f"{run_id}-")
    mode = "short" if args.short else "full"
    log(f"run {run_id} ({mode}), work directory {work}")
    cmd = "scripts/scale" + (" --short" if args.short else "") + " --write-docs"
    out, started = None, time.time()
    try:
        with failures_as_verdicts(verdict, cfg["timeout"], "SCALE_TIMEOUT"):
            config.BIN = os.environ.get("PLAYGROUND_BIN") or build()["playground"]
            config.WORKLOAD_BIN = os.environ.get("SCALE_WORKLOAD_BIN") or config.BIN
            for name in ("memcached", "kafka"):
                if service(name, "status", timeout=60)[0] != 0:
                    raise Failure(f"{name} is not running: start it with scripts/services/{name} start")
            baseline_kernel = kernel_tcp_bytes()
            signal.alarm(int(cfg["timeout"]))
            out = scenario(cfg, work, run_id, netns)
            signal.alarm(0)
            finish(cfg, out, work, args, cmd, baseline_kernel, started)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish the teardown
        if out:
            stop_autoscaler(out["autoscaler"])
        stop_all()
        subprocess.run(["ip", "netns", "delete", netns], stderr=subprocess.DEVNULL, check=False)
        if not args.keep:
            from e2e.services import kafka_topic_tool
            kafka_topic_tool(["--delete", "--if-exists", "--topic", f"{run_id}-.*"], timeout=60)
        status = conclude(verdict, "scale", f"scale verdict ({mode}, run {run_id}, {elapsed():.0f} s)", work,
                          args.keep)
    return status


def finish(cfg, out, work, args, cmd, baseline_kernel, started):
    """Verdicts, plots and (with --write-docs) the report."""
    import json
    ds = checks.decisions(out["scale_dir"])
    path = checks.check_decisions(ds, cfg, ROOT)
    reports = {}
    for name, (_, rep, _, _) in out["loads"].items():
        with open(rep) as f:
            reports[name] = json.load(f)
    checks.check_terminations(ds, reports, True)
    rejected = checks.rejected(out["scraper"])
    checks.check_loads(reports, rejected, checks.server_errors(out["scraper"]))
    verdict("connections held at the peak", f"{cfg['connections']:,}", f"{out['peak']:,}", out["peak"] == cfg["connections"])
    mem = checks.memory_at_peak(out["scraper"], out["peak_at"], cfg["connections"])
    mem["slab"] = out["slab"][1] - out["slab"][0]
    log(f"memory at the peak: {mem}")
    code = stop_autoscaler(out["autoscaler"])
    verdict("autoscaler stops its instances and removes the namespace", "exit 0", f"exit {code}", code == 0)
    plots = os.path.join(work, "plots")
    run([config.BIN, "scale", "plot", "--prometheus", out["scraper"].base, "--namespace", config.NAMESPACE,
         "--start", str(out["start"] - 5), "--end", str(out["end"]), "--out", plots], timeout=120)
    verdict("plots drawn from Prometheus", "5 PNG files", f"{len(os.listdir(plots))} in {plots}",
            len([f for f in os.listdir(plots) if f.endswith(".png")]) == 5)
    if args.write_docs:
        copy_plots(plots, os.path.join(ROOT, "docs", "scale"))
        report.write(cfg, ds, path, mem, baseline_kernel, cmd, rejected, started, time.time() - started)
        if not args.short:
            report.bench_section(cfg, mem, baseline_kernel, cmd)
        log("wrote docs/scale.md" + ("" if args.short else " and the scale-100k section of BENCHMARKS.md"))
