#!/usr/bin/env python3
"""Offline checks of the deployment files (run by scripts/check-deploy).

Input: the manifests that `helm template` rendered (one file per values
file), plus the files of the repository (compose, Envoy, Argo CD, metrics
list, docs). Every problem is printed as "FAIL <where>: <what>"; the exit
status is 1 when there was any.

Checks:
  schema     every rendered object against the Kubernetes JSON schemas of the
             pinned version (kubernetes-validate, strict: unknown fields fail),
             custom resources against the CRD schema excerpts in
             deploy/ci/crd-schemas; a kind without a schema fails
  refs       Services, PDBs, HPAs, NetworkPolicies, ServiceMonitors and
             PodMonitors select or name objects that exist, with ports that
             exist; ConfigMap volumes exist
  pods       pod security of SPEC §8, resources, probes on the admin port,
             POD_NAME from the downward API, grace period longer than
             SIGTERM_TIMEOUT + RECONNECT_GRACE, env names of the contract,
             no password as a literal value
  envoy      the rendered and the compose Envoy configs: listeners use
             clusters that exist, clusters resolve to Services (or compose
             services) and ports that exist, LEAST_REQUEST, STRICT_DNS,
             circuit breakers; gateway container/Service ports match
  metrics    every metric of the HPAs, adapter rules and dashboard is listed
             in deploy/metrics.txt with the right kind
  compose    docker-compose: services, dependencies, hosts and ports
  argocd     the Application: schema, chart path and value files exist
  docs       docs/deploy.md names every pinned version
"""

import argparse
import json
import os
import sys

from checkdeploy import report
from checkdeploy.autoscaling import check_hpas
from checkdeploy.envoy import check_compose, check_gateway
from checkdeploy.kube import Render, merge
from checkdeploy.metrics import Metrics, check_adapter, check_dashboard, check_dashboard_json, check_monitors
from checkdeploy.repo_files import check_argocd, check_docs, check_dockerfile
from checkdeploy.schema import CrdSchemas, check_schema
from checkdeploy.report import fail, read_text, read_yaml
from checkdeploy.workloads import check_netpols, check_pdbs, check_pods, check_services, check_uniqueness


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--kube-version", required=True)
    ap.add_argument("--render", action="append", default=[], metavar="NAME=MANIFESTS=VALUES",
                    help="a helm template output and the values file it used (empty: defaults)")
    ap.add_argument("--pin", action="append", default=[], help="a pinned version the docs must name")
    a = ap.parse_args()
    repo = a.repo
    metrics = Metrics(os.path.join(repo, "deploy/metrics.txt"))
    crds = CrdSchemas(os.path.join(repo, "deploy/ci/crd-schemas"))
    defaults = read_yaml(os.path.join(repo, "deploy/helm/playground/values.yaml"))
    for spec in a.render:
        name, manifests, values_file = spec.split("=", 2)
        values = json.loads(json.dumps(defaults))
        if values_file:
            over = read_yaml(values_file) or {}
            values = merge(values, over)
        r = Render(name, manifests, values)
        if not r.objs:
            fail(name, "rendered nothing")
            continue
        for o in r.objs:
            check_schema(name, o, a.kube_version, crds)
        check_uniqueness(r)
        check_pods(r)
        check_services(r)
        check_hpas(r, metrics)
        check_pdbs(r)
        check_netpols(r)
        check_monitors(r)
        check_adapter(r, metrics)
        check_dashboard(r, metrics)
        check_gateway(r)
        print(f"  checked render {name}: {len(r.objs)} objects")
    check_dashboard_json("deploy/helm/playground/dashboards/playground.json",
                         json.loads(read_text(os.path.join(repo, "deploy/helm/playground/dashboards/playground.json"))), metrics)
    check_compose(os.path.join(repo, "deploy/compose/docker-compose.yaml"),
                  os.path.join(repo, "deploy/compose/envoy.yaml"), metrics)
    check_argocd(os.path.join(repo, "deploy/argocd/application.yaml"), repo, crds)
    check_docs(os.path.join(repo, "docs/deploy.md"), os.path.join(repo, "deploy/helm/playground/Chart.yaml"), a.pin)
    check_dockerfile(os.path.join(repo, "Dockerfile"), os.path.join(repo, ".dockerignore"))
    print("  checks passed:")
    for k in sorted(report.COUNTS):
        print(f"    {k}: {report.COUNTS[k]}")
    if report.FAILS:
        print(f"  {len(report.FAILS)} problem(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
