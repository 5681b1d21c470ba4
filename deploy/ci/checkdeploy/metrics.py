"""The metrics catalogue (deploy/metrics.txt) and the checks of what reads
metrics: ServiceMonitors/PodMonitors, the Prometheus adapter's rules and the
Grafana dashboard's queries."""

import json
import re

import yaml

from .kube import deep_get, kname, matches, pod_labels, pod_spec
from .report import fail, ok, read_text


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right",
                "and", "or", "unless", "bool", "offset", "inf", "nan", "le"}


def promql_metrics(expr):
    """Metric names used by a PromQL expression (a small, careful lexer)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", " ", s)
    names = set()
    for m in re.finditer(r"(?<![A-Za-z0-9_.:$])[A-Za-z_:][A-Za-z0-9_:]*", s):
        tok = m.group(0)
        rest = s[m.end():].lstrip()
        if rest.startswith("("):
            continue  # function
        if tok.lower() in PROMQL_WORDS:
            continue
        names.add(tok)
    return names


class Metrics:
    def __init__(self, path):
        self.kinds = {}  # name -> set(kind)
        self.types = {}
        for n, line in enumerate(read_text(path).splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) < 3 or parts[0] not in ("exported", "adapter", "external") \
                    or parts[2] not in ("counter", "gauge", "histogram", "summary"):
                fail(f"{path}:{n}", f"expected '<exported|adapter|external> <name> <type> [help]', got {line!r}")
                continue
            kind, name, typ = parts[:3]
            if (len(parts) > 3) != (kind == "exported" and name.startswith("playground_")):
                fail(f"{path}:{n}", f"{name}: a help text belongs to (and only to) exported playground_ metrics")
            if not re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", name):
                fail(f"{path}:{n}", f"not a metric name: {name}")
            # process_*: the standard process metrics every role also exports.
            if kind == "exported" and not name.startswith(("playground_", "process_")):
                fail(f"{path}:{n}", f"exported metric without the playground_ or process_ prefix: {name}")
            if typ == "counter" and kind == "exported" and not name.endswith("_total"):
                fail(f"{path}:{n}", f"counter without _total: {name}")
            if kind in self.kinds.get(name, set()):
                fail(f"{path}:{n}", f"{name} listed twice as {kind}")
            self.kinds.setdefault(name, set()).add(kind)
            self.types[(kind, name)] = typ

    def series_ok(self, name, kinds=("exported", "external")):
        """A series name as Prometheus stores it (histograms: _bucket/_sum/_count)."""
        if any(k in self.kinds.get(name, set()) for k in kinds):
            t = [self.types[(k, name)] for k in kinds if (k, name) in self.types]
            return not (t and t[0] == "histogram")  # a histogram is never a bare series
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf):
                base = name[: -len(suf)]
                for k in kinds:
                    if self.types.get((k, base)) in ("histogram", "summary"):
                        return not (suf == "_bucket" and self.types[(k, base)] == "summary")
        return False

    def is_adapter(self, name):
        return "adapter" in self.kinds.get(name, set())


def check_monitors(r):
    svcs, wls = r.kind("Service"), r.workloads()
    for sm in r.kind("ServiceMonitor"):
        sn = f"{r.name} {kname(sm)}"
        hit = [s for s in svcs if matches(sm["spec"]["selector"], s["metadata"].get("labels") or {})]
        if not hit:
            fail(sn, "selector matches no rendered Service")
        for ep in sm["spec"]["endpoints"]:
            if not any(p.get("name") == ep.get("port") for s in hit for p in s["spec"]["ports"]):
                fail(sn, f"endpoint port {ep.get('port')} is on none of the selected Services")
        ok("refs: service monitors")
    for pm in r.kind("PodMonitor"):
        pn = f"{r.name} {kname(pm)}"
        hit = [w for w in wls if matches(pm["spec"]["selector"], pod_labels(w))]
        if not hit:
            fail(pn, "selector matches no rendered pod")
        for ep in pm["spec"]["podMetricsEndpoints"]:
            if not any(cp.get("name") == ep.get("port") for w in hit for c in pod_spec(w)["containers"] for cp in c.get("ports") or []):
                fail(pn, f"endpoint port {ep.get('port')} is on none of the selected pods")
        ok("refs: pod monitors")


def check_adapter(r, metrics):
    for cm in r.kind("ConfigMap"):
        data = cm.get("data") or {}
        if "config.yaml" not in data:
            continue
        where = f"{r.name} {kname(cm)} config.yaml"
        try:
            cfg = yaml.safe_load(data["config.yaml"])
        except yaml.YAMLError as e:
            fail(where, f"not YAML: {e}")
            continue
        rules = (cfg or {}).get("rules")
        if not rules:
            fail(where, "no rules")
            continue
        for i, rule in enumerate(rules):
            rw = f"{where} rule {i}"
            for k in ("seriesQuery", "resources", "name", "metricsQuery"):
                if k not in rule:
                    fail(rw, f"missing {k}")
            sq = rule.get("seriesQuery", "")
            m = re.match(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", sq)
            if not m:
                fail(rw, f"seriesQuery does not name one metric: {sq}")
                continue
            series = m.group(1)
            if not metrics.series_ok(series):
                fail(rw, f"series {series} is not in deploy/metrics.txt (exported or external)")
            mt = deep_get(rule, "name", "matches", default="")
            if not re.search(mt, series):
                fail(rw, f"name.matches {mt!r} does not match {series}")
            as_ = deep_get(rule, "name", "as", default="")
            if not metrics.is_adapter(as_):
                fail(rw, f"pod metric {as_} is not an adapter metric of deploy/metrics.txt")
            mq = rule.get("metricsQuery", "")
            for t in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
                if t not in mq:
                    fail(rw, f"metricsQuery lacks {t}")
            other = promql_metrics(mq.replace("<<.Series>>", series).replace("<<.LabelMatchers>>", "").replace("<<.GroupBy>>", "pod"))
            for n in other - {series}:
                if not metrics.series_ok(n):
                    fail(rw, f"metricsQuery uses {n}, not in deploy/metrics.txt")
            res = {v.get("resource") for v in (deep_get(rule, "resources", "overrides") or {}).values()}
            if not {"namespace", "pod"} <= res:
                fail(rw, "resources.overrides must map a namespace and a pod label")
            ok("metrics: adapter rules")


def check_dashboard(r, metrics):
    for cm in r.kind("ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            if not key.endswith(".json"):
                continue
            where = f"{r.name} {kname(cm)} {key}"
            try:
                d = json.loads(text)
            except ValueError as e:
                fail(where, f"not JSON: {e}")
                continue
            check_dashboard_json(where, d, metrics)


def check_dashboard_json(where, d, metrics):
    for k in ("title", "uid", "panels"):
        if k not in d:
            fail(where, f"dashboard without {k}")
    ids = set()
    variables = {v["name"] for v in deep_get(d, "templating", "list", default=[])}
    panels = list(d.get("panels", []))
    for p in list(panels):
        panels.extend(p.get("panels") or [])
    n = 0
    for p in panels:
        if p.get("id") in ids:
            fail(where, f"panel id {p.get('id')} used twice")
        ids.add(p.get("id"))
        for t in p.get("targets") or []:
            expr = t.get("expr", "")
            for v in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expr):
                if v not in variables and not v.startswith("__"):
                    fail(where, f"panel {p.get('title')!r} uses undefined variable ${v}")
            for name in promql_metrics(expr):
                if not metrics.series_ok(name):
                    fail(where, f"panel {p.get('title')!r} uses {name}, not in deploy/metrics.txt")
            n += 1
    if n == 0:
        fail(where, "no queries")
    ok("metrics: dashboard queries")
