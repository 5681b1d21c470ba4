"""scripts/e2e's addresses, paths, drain times and run sizes (BIN is set by
main()); its time-stamped log lines and verdict table."""

import os

from playlib import progress, verdicts

KAFKA = "127.0.0.1:9092"
KAFKA_USER = os.environ.get("KAFKA_SASL_USER", "user")
KAFKA_PASSWORD = os.environ.get("KAFKA_SASL_PASSWORD", "password")
MEMCACHED_PORT = 11211
OPENSEARCH = "http://127.0.0.1:9200"
ALIAS = "k8s-logs"
NAMESPACE = "e2e"  # the Kubernetes namespace label Prometheus attaches

NGINX = "/usr/sbin/nginx"
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

# Seconds a draining instance keeps serving, and the time its clients get to
# leave after `reconnect`: short, so that the scenario is short.
SIGTERM_TIMEOUT = 3
RECONNECT_GRACE = 5
# The load's --settle: broadcasts sent this long before a client's connection
# ends are not expected to reach it. Two cores also running Kafka, OpenSearch
# and Prometheus have stalled for most of a second: the default (1 s) is short.
SETTLE = "2s"

SHORT = dict(
    broadcast_clients=60, broadcasters=3, cache_clients=30, conn_interval="10ms",
    udp_flows=10, udp_interval=0.1, probes=30, warm=4, hold_scaled_out=3, hold_scaled_in=5,
    timeout=240)
FULL = dict(
    broadcast_clients=600, broadcasters=6, cache_clients=300, conn_interval="4ms",
    udp_flows=50, udp_interval=0.1, probes=300, warm=20, hold_scaled_out=20, hold_scaled_in=30,
    timeout=900)

BIN = None  # the binary under test

log = progress("e2e", 6)
verdict = verdicts(log)


def short(pod):
    """tcp-1 for <run id>-tcp-1."""
    return "-".join(pod.split("-")[-2:])


def fmt(v):
    return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
