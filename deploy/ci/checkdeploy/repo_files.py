"""Checks of repository files beside the chart: the Argo CD Application, the
pinned versions named in docs/deploy.md, and the Dockerfile."""

import os
import re

from .kube import deep_get
from .report import fail, load_docs, ok, read_text, read_yaml
from .schema import check_schema


def check_argocd(path, repo, crds):
    for o in load_docs(path):
        check_schema(path, o, "1.33", crds)
        if o.get("kind") != "Application":
            continue
        srcs = [o["spec"]["source"]] if "source" in o["spec"] else o["spec"].get("sources", [])
        for s in srcs:
            if s.get("path"):
                chart = os.path.join(repo, s["path"])
                if not os.path.exists(os.path.join(chart, "Chart.yaml")):
                    fail(path, f"source.path {s['path']} is not a chart of this repository")
                for vf in deep_get(s, "helm", "valueFiles", default=[]) or []:
                    if not os.path.exists(os.path.join(chart, vf)):
                        fail(path, f"value file {vf} does not exist in {s['path']}")
        if not deep_get(o, "spec", "destination", "namespace"):
            fail(path, "no destination namespace")
        ok("argocd: applications")


def check_docs(doc, chart_yaml, pins):
    if not os.path.exists(doc):
        fail(doc, "missing")
        return
    text = read_text(doc)
    c = read_yaml(chart_yaml)
    for d in c.get("dependencies") or []:
        if d["name"] not in text or d["version"] not in text:
            fail(doc, f"does not name the pinned dependency {d['name']} {d['version']}")
    for p in pins:
        if p not in text:
            fail(doc, f"does not name the pinned version {p}")
    for phrase, rx in (("kubectl get hpa -w", r"kubectl (-n \S+ )?get hpa -w"),
                       ("playground load tcp 10000 <ip> 10000", r"playground load tcp 10000 \S+ 10000")):
        if not re.search(rx, text):
            fail(doc, f"does not show `{phrase}`")
    ok("docs: pinned versions")


def check_dockerfile(path, ignore):
    text = read_text(path)
    for want, why in ((r"FROM rust:\$\{RUST_VERSION\}-bookworm AS builder|FROM rust:1\.\d+-bookworm", "a rust bookworm builder"),
                      (r"cargo build --release --locked", "cargo build --release --locked"),
                      (r"^USER 1000:1000$", "USER 1000:1000"),
                      (r"distroless", "a distroless runtime")):
        if not re.search(want, text, re.M):
            fail(path, f"no {why}")
    if "ARG RUST_VERSION=1.95" not in text:
        fail(path, "the builder is not pinned to Rust 1.95")
    ign = read_text(ignore).split()
    for needed in ("!Cargo.toml", "!Cargo.lock", "!crates/"):
        if needed not in ign:
            fail(ignore, f"{needed} missing: the build needs it")
    ok("dockerfile")
