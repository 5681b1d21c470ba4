"""Helpers over rendered Kubernetes objects: names, label selectors, pod
templates, env lists, a render grouped by kind, and values merging."""

from .report import load_docs


def kname(o):
    md = o.get("metadata") or {}
    return f"{o.get('kind')}/{md.get('name')}"


def matches(selector, labels):
    """Label selector (matchLabels / matchExpressions, or a plain map)."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        ml, me = selector, []
    else:
        ml, me = selector.get("matchLabels") or {}, selector.get("matchExpressions") or []
    for k, v in ml.items():
        if labels.get(k) != v:
            return False
    for e in me:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def pod_spec(o):
    return o["spec"]["template"]["spec"]


def pod_labels(o):
    return o["spec"]["template"]["metadata"].get("labels") or {}


def env_map(container):
    return {e["name"]: e for e in container.get("env") or []}


def env_value(container, name, default=None):
    e = env_map(container).get(name)
    if e is None or "value" not in e:
        return default
    return e["value"]


class Render:
    def __init__(self, name, path, values):
        self.name, self.path, self.values = name, path, values
        self.objs = load_docs(path)
        self.by_kind = {}
        for o in self.objs:
            self.by_kind.setdefault(o.get("kind"), []).append(o)

    def kind(self, *kinds):
        out = []
        for k in kinds:
            out.extend(self.by_kind.get(k, []))
        return out

    def workloads(self):
        return self.kind("Deployment", "DaemonSet", "StatefulSet")

    def find(self, kind, name):
        for o in self.by_kind.get(kind, []):
            if o["metadata"]["name"] == name:
                return o
        return None


def deep_get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def extra_env_names(values):
    names = set()
    for e in deep_get(values, "config", "extraEnv", default=[]) or []:
        names.add(e["name"])
    for c in ("tcp", "udp", "logger"):
        for e in deep_get(values, c, "extraEnv", default=[]) or []:
            names.add(e["name"])
    return names


def merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base.get(k), v) if k in base else v
        return out
    return over
