"""scripts/scale's run sizes, addresses and verdict table."""

from playlib import progress, verdicts

NAMESPACE = "scale"  # the Kubernetes namespace label Prometheus attaches
VIP = "10.96.0.10:40000"
SUBNET = "10.201.0.0"
CLIENT_IPS = 4  # each opens at most ~64,000 connections to the VIP
SIGTERM_TIMEOUT = 3
RECONNECT_GRACE = 5
SETTLE = "2s"

# Load processes: (name, connections, closes in step, sends broadcasts).
# A process holds at most 20,000 open files (the hard limit here). An instance
# refuses clients beyond MAX_CONNECTIONS=19,500: the rest is for its memcached
# and Kafka connections (at 19,900 its memcached pool hit EMFILE).
SHORT = dict(
    connections=5000, target=2000, min=1, max=6, period="5s", ramp=80, hold=15,
    loads=[("a", 4000, 1, True), ("b", 1000, 2, True)],
    # After step 1: the scale-down window (45 s) and one pod per 30 s, twice.
    after_step1=45 + 2 * 30 + 20, after_step2=10, max_connections=19500,
    mix="echo=10,cache=5,broadcast=5,idle=80", msg_interval="2s", timeout=420)
FULL = dict(
    connections=100_000, target=16_000, min=1, max=6, period="15s", ramp=420, hold=60,
    loads=[*((f"a{i}", 15_000, 1, i == 1) for i in range(1, 5)),
           *((f"b{i}", 10_000, 2, i == 1) for i in range(1, 5))],
    # After step 1: 45 s window, then 6 -> 3 at one pod per 30 s; after step 2 down to 1.
    after_step1=45 + 3 * 30 + 45, after_step2=45 + 2 * 30 + 30, max_connections=19500,
    mix="echo=5,cache=3,broadcast=2,idle=90", msg_interval="10s", timeout=1500)

BIN = None  # the binary under test
WORKLOAD_BIN = None  # the one running the instances and the loads (SCALE_WORKLOAD_BIN, default BIN)

log = progress("scale", 6)
verdict = verdicts(log)
RESULTS = verdict.results  # (check, expected, observed, ok)


def table_markdown():
    rows = ["| check | expected | observed | ok |", "|---|---|---|---|"]
    for c, e, o, k in RESULTS:
        rows.append(f"| {c} | {e} | {o} | {'ok' if k else 'FAIL'} |")
    return "\n".join(rows)
