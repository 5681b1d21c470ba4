"""Debian's prometheus as the check scripts run it, scraping the instances
every second with the relabelling of a Kubernetes ServiceMonitor scrape
(deploy/ci/prometheus/prometheus.yml makes the __meta_kubernetes_* labels of a
file_sd target namespace, pod, container, job), and a client of its HTTP API."""

import json
import os
import shutil
import urllib.parse

from playlib import ROOT, Failure, free_port, http, spawn, wait_http

PROM_CONFIG = os.path.join(ROOT, "deploy", "ci", "prometheus", "prometheus.yml")
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"  # in the same Debian package


def target(admin, namespace, pod, role):
    """A file_sd group: an admin port with the labels Kubernetes service discovery gives a pod of the chart."""
    return {"targets": [f"127.0.0.1:{admin}"], "labels": {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_container_name": role,
        "__meta_kubernetes_service_name": f"playground-{role}",
        "__meta_kubernetes_service_label_app_kubernetes_io_component": role}}


class Prometheus:
    """Its own config, storage and port in <work>/prometheus; the targets
    file can be rewritten while it runs, as instances come and go."""

    def __init__(self, work, logdir):
        self.dir = os.path.join(work, "prometheus")
        os.makedirs(os.path.join(self.dir, "data"))
        shutil.copy(PROM_CONFIG, os.path.join(self.dir, "prometheus.yml"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.logdir = logdir
        self.proc = None

    def set_targets(self, groups):
        path = os.path.join(self.dir, "targets.json")
        with open(path + ".tmp", "w") as f:
            json.dump(groups, f, indent=1)
        os.replace(path + ".tmp", path)  # Prometheus never reads half a file

    def start(self, seconds):
        """Starts it; returns once /-/ready answers, at most `seconds`."""
        self.proc = spawn("prometheus", [
            PROMETHEUS, f"--config.file={self.dir}/prometheus.yml", f"--storage.tsdb.path={self.dir}/data",
            f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
            "--log.level=warn"], dict(os.environ), self.logdir)
        wait_http(f"{self.base}/-/ready", seconds, "prometheus", self.proc)

    def api(self, path, **params):
        _, body = http("GET", f"{self.base}/api/v1/{path}?" + urllib.parse.urlencode(params, doseq=True))
        data = json.loads(body)
        if data.get("status") != "success":
            raise Failure(f"Prometheus {path} {params}: {data.get('error', data)}")
        return data["data"]

    def query(self, expr):
        """[(labels, value)] of an instant vector query."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise Failure(f"{expr}: {data['resultType']}, not a vector")
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def active_targets(self):
        return self.api("targets", state="active")["activeTargets"]
