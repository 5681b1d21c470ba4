"""Command line, time limit, signals, teardown, verdict table and exit code of scripts/e2e."""

import argparse
import os
import signal
import tempfile
import time
import uuid

from playlib import build, conclude, elapsed, failures_as_verdicts, http, raise_nofile, service, stop_all, trap_signals

from . import config
from .config import FULL, OPENSEARCH, SHORT, log, verdict
from .scenario import scenario
from .services import ensure_services, kafka_topic_tool, stop_services


def main(doc):
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="fewer clients, shorter phases (the form scripts/test runs)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, logs, reports)")
    args = parser.parse_args()
    cfg = dict(SHORT if args.short else FULL)
    cfg["timeout"] = float(os.environ.get("E2E_TIMEOUT", cfg["timeout"]))

    trap_signals(interrupt=True)
    # Children inherit the open-file limit: nginx and the load need two
    # descriptors per proxied connection.
    raise_nofile()

    run_id = f"e2e-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    work = tempfile.mkdtemp(prefix=f"{run_id}-")
    mode = "short" if args.short else "full"
    log(f"run {run_id} ({mode}), work directory {work}")
    scenario_started = None
    try:
        with failures_as_verdicts(verdict, cfg["timeout"], "E2E_TIMEOUT"):
            config.BIN = os.environ.get("PLAYGROUND_BIN") or build()["playground"]
            ensure_services()
            scenario_started = time.monotonic()
            signal.alarm(int(cfg["timeout"]))
            scenario(cfg, work, run_id)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish the teardown
        stop_all()
        if not args.keep:
            http("DELETE", f"{OPENSEARCH}/{run_id}-logs")
            if service("kafka", "status", timeout=30)[0] == 0:
                kafka_topic_tool(["--delete", "--if-exists", "--topic", f"{run_id}-.*"], timeout=60)
        stop_services()
        scenario_secs = time.monotonic() - scenario_started if scenario_started else 0
        status = conclude(verdict, "e2e", f"e2e verdict ({mode}, run {run_id}: scenario {scenario_secs:.0f} s, "
                          f"total {elapsed():.0f} s)", work, args.keep)
    return status
