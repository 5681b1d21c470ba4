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
import functools
import json
import os
import re
import sys

import jsonschema
import kubernetes_validate.utils as kvu
import yaml

# ---------------------------------------------------------------------------
# reporting

FAILS = []
COUNTS = {}


def read_text(path):
    with open(path) as f:
        return f.read()


def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def fail(where, what):
    FAILS.append(f"{where}: {what}")
    print(f"FAIL {where}: {what}")


def ok(section):
    COUNTS[section] = COUNTS.get(section, 0) + 1


# ---------------------------------------------------------------------------
# contract

CONTRACT_ENV = {
    "PORT", "ADMIN_PORT", "BUFF_SIZE", "SIGTERM_TIMEOUT", "RECONNECT_GRACE",
    "IDLE_TIMEOUT", "MAX_CONNECTIONS", "WORKERS", "POD_NAME", "LOG_LEVEL",
    "LOG_FORMAT", "MEMCACHED_SERVICE", "MEMCACHED_PORT", "KAFKA_BROKERS",
    "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USER",
    "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CA_FILE", "KAFKA_BCAST_TOPIC",
    "KAFKA_LOGGING_TOPIC", "ELASTICSEARCH_ENDPOINT",
    "ELASTICSEARCH_LOGGING_INDEX", "ELASTICSEARCH_USERNAME",
    "ELASTICSEARCH_PASSWORD", "ELASTICSEARCH_CA_FILE",
    "ELASTICSEARCH_INSECURE_SKIP_VERIFY", "IGNORE_MESSAGES_BEFORE",
}
ROLES = {"tcp", "udp", "logger"}
DEFAULT_RECONNECT_GRACE = 5
DEFAULT_SIGTERM_TIMEOUT = 20
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
NAME_IS_LABEL = {"Service", "Namespace"}

# SPEC §8 defaults, checked on the render of the default values.
SPEC_HPA = {
    "minReplicas": 1,
    "maxReplicas": 5,
    "targets": {"tcp": ("playground_tcp_connections", "5000"),
                "udp": ("playground_udp_packets_per_second", "25000")},
    "cpu": 80,
    "memory": 80,
    "behavior": {
        "scaleUp": {"stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]},
        "scaleDown": {"stabilizationWindowSeconds": 45,
                      "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]},
    },
}
SPEC_ENVOY_CB = 50000

# ---------------------------------------------------------------------------
# helpers


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


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


# ---------------------------------------------------------------------------
# schemas


@functools.cache
def _cached_schema_contents(filename, desired_version):
    return _orig_schema_contents(filename, desired_version)


_orig_schema_contents = kvu.schema_contents
kvu.schema_contents = _cached_schema_contents


class CrdSchemas:
    def __init__(self, directory):
        self.schemas = {}
        for fn in sorted(os.listdir(directory)):
            if fn.endswith(".json"):
                with open(os.path.join(directory, fn)) as f:
                    s = json.load(f)
                jsonschema.Draft7Validator.check_schema(s)
                props = s["properties"]
                self.schemas[(props["apiVersion"]["const"], props["kind"]["const"])] = s

    def get(self, api, kind):
        return self.schemas.get((api, kind))


def check_schema(where, o, kube_version, crds):
    api, kind = o.get("apiVersion"), o.get("kind")
    if not api or not kind:
        fail(where, "object without apiVersion/kind")
        return
    crd = crds.get(api, kind)
    if crd is not None:
        errs = sorted(jsonschema.Draft7Validator(crd).iter_errors(o), key=lambda e: list(e.path))
        for e in errs[:5]:
            fail(f"{where} {kname(o)}", f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message} (CRD schema)")
        if not errs:
            ok("schema: custom resources")
        return
    try:
        kvu.validate(o, kube_version, strict=True)
        ok("schema: kubernetes objects")
    except kvu.ValidationError as e:
        fail(f"{where} {kname(o)}", f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message} (Kubernetes {e.version} schema)")
    except kvu.SchemaNotFoundError as e:
        fail(f"{where} {kname(o)}", e.message + " (no vendored CRD schema either)")
    md = o.get("metadata") or {}
    name = md.get("name") or ""
    rx = DNS_LABEL if kind in NAME_IS_LABEL else DNS_SUBDOMAIN
    if not rx.match(name):
        fail(f"{where} {kname(o)}", "name is not a valid DNS " + ("label" if kind in NAME_IS_LABEL else "subdomain"))
    for k, v in (md.get("labels") or {}).items():
        if len(str(v)) > 63 or not re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", str(v)):
            fail(f"{where} {kname(o)}", f"label {k}={v!r} is not a valid label value")


# ---------------------------------------------------------------------------
# rendered chart


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


def check_uniqueness(r):
    seen = set()
    for o in r.objs:
        key = (o.get("apiVersion", "").split("/")[0] if "/" in o.get("apiVersion", "") else "",
               o.get("kind"), (o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name"))
        if key in seen:
            fail(r.name, f"{kname(o)} rendered twice")
        seen.add(key)


def check_pods(r):
    where = r.name
    allowed_env = CONTRACT_ENV | extra_env_names(r.values)
    for w in r.workloads():
        ps = pod_spec(w)
        wn = f"{where} {kname(w)}"
        sc = ps.get("securityContext") or {}
        if sc.get("runAsNonRoot") is not True:
            fail(wn, "pod securityContext.runAsNonRoot is not true")
        if sc.get("runAsUser") != 1000:
            fail(wn, f"pod runs as uid {sc.get('runAsUser')}, not 1000")
        if deep_get(sc, "seccompProfile", "type") not in ("RuntimeDefault", "Localhost"):
            fail(wn, "no seccompProfile")
        if ps.get("automountServiceAccountToken") is not False:
            fail(wn, "automountServiceAccountToken is not false (no component uses the API)")
        sa = ps.get("serviceAccountName")
        if sa and sa != "default" and not r.find("ServiceAccount", sa):
            # a ServiceAccount that this render does not create must be a named, external one
            ext = [deep_get(r.values, c, "serviceAccount", "name") for c in ("tcp", "udp", "logger", "gateway")
                   if deep_get(r.values, c, "serviceAccount", "create") is False]
            if sa not in ext:
                fail(wn, f"serviceAccountName {sa} is neither rendered nor configured as existing")
        vols = {v["name"]: v for v in ps.get("volumes") or []}
        for v in vols.values():
            if "configMap" in v and not r.find("ConfigMap", v["configMap"]["name"]):
                fail(wn, f"volume {v['name']} uses ConfigMap {v['configMap']['name']} that is not rendered")
        for c in ps["containers"]:
            cn = f"{wn} container {c['name']}"
            csc = c.get("securityContext") or {}
            if csc.get("allowPrivilegeEscalation") is not False:
                fail(cn, "allowPrivilegeEscalation is not false")
            if csc.get("readOnlyRootFilesystem") is not True:
                fail(cn, "readOnlyRootFilesystem is not true")
            if "ALL" not in (deep_get(csc, "capabilities", "drop", default=[]) or []):
                fail(cn, "capabilities.drop does not hold ALL")
            if csc.get("privileged"):
                fail(cn, "privileged")
            res = c.get("resources") or {}
            if not res.get("requests") or not res.get("limits"):
                fail(cn, "resources.requests and resources.limits must both be set")
            for m in c.get("volumeMounts") or []:
                if m["name"] not in vols:
                    fail(cn, f"volumeMount {m['name']} has no volume")
            ports = {p["name"]: p for p in c.get("ports") or [] if "name" in p}
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    fail(cn, f"no {probe}")
                    continue
                port = deep_get(c, probe, "httpGet", "port")
                if port is not None and isinstance(port, str) and port not in ports:
                    fail(cn, f"{probe} uses port {port} that the container does not declare")
            for e in c.get("env") or []:
                if "PASSWORD" in e["name"] and "value" in e:
                    fail(cn, f"{e['name']} is a literal value; it must come from a Secret")
                ref = deep_get(e, "valueFrom", "secretKeyRef")
                if ref:
                    sec = r.find("Secret", ref["name"])
                    if sec is not None and ref["key"] not in (sec.get("data") or {}) | (sec.get("stringData") or {}):
                        fail(cn, f"{e['name']}: Secret {ref['name']} has no key {ref['key']}")
            args = c.get("args") or []
            role = args[0] if args else None
            if role not in ROLES:
                ok("pods: other containers")
                continue
            # a playground server / logger
            env = env_map(c)
            for n in env:
                if n not in allowed_env:
                    fail(cn, f"env {n} is not part of the configuration contract")
            pn = env.get("POD_NAME")
            if not pn or deep_get(pn, "valueFrom", "fieldRef", "fieldPath") != "metadata.name":
                fail(cn, "POD_NAME does not come from the downward API (metadata.name)")
            admin = env_value(c, "ADMIN_PORT", "8080")
            if "admin" not in ports or str(ports["admin"]["containerPort"]) != str(admin):
                fail(cn, f"container port 'admin' is not ADMIN_PORT ({admin})")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                hg = deep_get(c, probe, "httpGet") or {}
                if hg.get("port") != "admin" or hg.get("path") != path:
                    fail(cn, f"{probe} is not GET {path} on the admin port")
            if role in ("tcp", "udp"):
                p = ports.get(role)
                if not p or str(p["containerPort"]) != str(env_value(c, "PORT")) or p.get("protocol", "TCP") != role.upper():
                    fail(cn, f"container port '{role}' does not match PORT/{role.upper()}")
            grace = ps.get("terminationGracePeriodSeconds", 30)
            need = int(env_value(c, "SIGTERM_TIMEOUT", DEFAULT_SIGTERM_TIMEOUT)) + \
                int(env_value(c, "RECONNECT_GRACE", DEFAULT_RECONNECT_GRACE))
            if not grace > need:
                fail(cn, f"terminationGracePeriodSeconds {grace} is not longer than SIGTERM_TIMEOUT + RECONNECT_GRACE ({need})")
            for f in ("KAFKA_SSL_CA_FILE", "ELASTICSEARCH_CA_FILE"):
                v = env_value(c, f)
                if v and not any(v.startswith(m["mountPath"].rstrip("/") + "/") for m in c.get("volumeMounts") or []):
                    fail(cn, f"{f}={v} is not under a mounted volume")
            if "KAFKA_SASL_USER" in env and "KAFKA_SASL_PASSWORD" not in env:
                fail(cn, "KAFKA_SASL_USER without KAFKA_SASL_PASSWORD")
            ok("pods: playground containers")


def check_services(r):
    wls = r.workloads()
    for s in r.kind("Service"):
        sn = f"{r.name} {kname(s)}"
        sel = s["spec"].get("selector")
        if not sel:
            fail(sn, "no selector")
            continue
        targets = [w for w in wls if matches(sel, pod_labels(w))]
        if not targets:
            # Services over pods of a dependency (memcached sub-chart) select
            # pods this chart does not render.
            if (sel.get("app.kubernetes.io/name") in ("memcached", "kafka")
                    and deep_get(r.values, sel["app.kubernetes.io/name"], "enabled")):
                ok("refs: services")
                continue
            fail(sn, f"selector {sel} matches no rendered pod")
            continue
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            proto = p.get("protocol", "TCP")
            for w in targets:
                cports = [cp for c in pod_spec(w)["containers"] for cp in c.get("ports") or []]
                found = [cp for cp in cports if (cp.get("name") == tp or cp["containerPort"] == tp)
                         and cp.get("protocol", "TCP") == proto]
                if not found:
                    fail(sn, f"port {p.get('name')} -> {tp}/{proto} is not a container port of {kname(w)}")
        ok("refs: services")


def check_hpas(r, metrics):
    adapter_names = set()
    adapter_cm = None
    for cm in r.kind("ConfigMap"):
        if "config.yaml" in (cm.get("data") or {}) and "rules" in (yaml.safe_load(cm["data"]["config.yaml"]) or {}):
            adapter_cm = cm
            for rule in yaml.safe_load(cm["data"]["config.yaml"])["rules"] or []:
                adapter_names.add(deep_get(rule, "name", "as"))
    for h in r.kind("HorizontalPodAutoscaler"):
        hn = f"{r.name} {kname(h)}"
        spec = h["spec"]
        ref = spec["scaleTargetRef"]
        tgt = r.find(ref["kind"], ref["name"])
        if tgt is None:
            fail(hn, f"scaleTargetRef {ref['kind']}/{ref['name']} is not rendered")
            continue
        if "replicas" in tgt["spec"]:
            fail(hn, f"{kname(tgt)} sets spec.replicas although the HPA owns it")
        if spec.get("minReplicas", 1) > spec["maxReplicas"]:
            fail(hn, "minReplicas > maxReplicas")
        conts = pod_spec(tgt)["containers"]
        for m in spec.get("metrics") or []:
            if m["type"] == "Pods":
                name = m["pods"]["metric"]["name"]
                if not metrics.is_adapter(name):
                    fail(hn, f"pod metric {name} is not an adapter metric of deploy/metrics.txt")
                if adapter_cm is not None and name not in adapter_names:
                    fail(hn, f"pod metric {name} is served by no rule of ConfigMap {adapter_cm['metadata']['name']}")
                ok("metrics: HPA pod metrics")
            elif m["type"] == "Resource":
                res = m["resource"]["name"]
                if m["resource"]["target"]["type"] == "Utilization":
                    for c in conts:
                        if res not in (deep_get(c, "resources", "requests") or {}):
                            fail(hn, f"{res} utilization target but container {c['name']} has no {res} request")
        ok("refs: HPAs")
        if r.name == "default":
            comp = h["metadata"]["labels"].get("app.kubernetes.io/component")
            check_spec_hpa(hn, spec, comp)


def check_spec_hpa(hn, spec, comp):
    if spec.get("minReplicas") != SPEC_HPA["minReplicas"] or spec.get("maxReplicas") != SPEC_HPA["maxReplicas"]:
        fail(hn, "bounds are not SPEC §8 (min 1, max 5)")
    got = {}
    for m in spec.get("metrics") or []:
        if m["type"] == "Pods":
            got["pods"] = (m["pods"]["metric"]["name"], str(m["pods"]["target"]["averageValue"]))
        elif m["type"] == "Resource":
            got[m["resource"]["name"]] = m["resource"]["target"].get("averageUtilization")
    if got.get("pods") != SPEC_HPA["targets"].get(comp):
        fail(hn, f"protocol metric target {got.get('pods')} is not SPEC §8 {SPEC_HPA['targets'].get(comp)}")
    if got.get("cpu") != SPEC_HPA["cpu"] or got.get("memory") != SPEC_HPA["memory"]:
        fail(hn, "CPU/memory targets are not 80%")
    b = spec.get("behavior") or {}
    for d, want in SPEC_HPA["behavior"].items():
        have = b.get(d) or {}
        if have.get("stabilizationWindowSeconds") != want["stabilizationWindowSeconds"] or \
                [{k: p[k] for k in ("type", "value", "periodSeconds")} for p in have.get("policies") or []] != want["policies"]:
            fail(hn, f"behavior.{d} is not SPEC §8 ({want})")
    ok("spec: HPA defaults")


def check_pdbs(r):
    for p in r.kind("PodDisruptionBudget"):
        if not any(matches(p["spec"]["selector"], pod_labels(w)) for w in r.workloads()):
            fail(f"{r.name} {kname(p)}", "selector matches no rendered pod")
        ok("refs: PDBs")


def np_selects(np, w):
    return matches(np["spec"]["podSelector"], pod_labels(w))


def check_netpols(r):
    nps = r.kind("NetworkPolicy")
    if not nps:
        return
    deny = [n for n in nps if not n["spec"].get("ingress") and not n["spec"].get("egress")
            and set(n["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}]
    if not deny:
        fail(r.name, "NetworkPolicies without a default-deny policy")
    for w in r.workloads():
        wn = f"{r.name} {kname(w)}"
        if not any(np_selects(d, w) for d in deny):
            fail(wn, "not covered by the default-deny policy")
        allow = [n for n in nps if n not in deny and np_selects(n, w)]
        if not allow:
            fail(wn, "no NetworkPolicy opens anything for it")
            continue
        ing_ports = {(p.get("port"), p.get("protocol", "TCP")) for n in allow
                     for rule in n["spec"].get("ingress") or [] for p in rule.get("ports") or []}
        eg_ports = {(p.get("port"), p.get("protocol", "TCP")) for n in allow
                    for rule in n["spec"].get("egress") or [] for p in rule.get("ports") or []}
        for c in pod_spec(w)["containers"]:
            for cp in c.get("ports") or []:
                if (cp["containerPort"], cp.get("protocol", "TCP")) not in ing_ports:
                    fail(wn, f"container port {cp.get('name')} {cp['containerPort']}/{cp.get('protocol', 'TCP')} is not allowed in")
            env = env_map(c)
            if (53, "UDP") not in eg_ports:
                fail(wn, "DNS (53/UDP) is not allowed out")
            for var, what in (("KAFKA_BROKERS", "Kafka"), ("MEMCACHED_SERVICE", "memcached"), ("ELASTICSEARCH_ENDPOINT", "search engine")):
                if var not in env:
                    continue
                val = env[var].get("value", "")
                if var == "MEMCACHED_SERVICE":
                    ports = {int(env_value(c, "MEMCACHED_PORT", 11211))}
                elif var == "KAFKA_BROKERS":
                    ports = {int(b.rsplit(":", 1)[1]) for b in val.split(",") if ":" in b}
                else:
                    m = re.match(r"^https?://[^/:]+(?::(\d+))?", val)
                    ports = {int(m.group(1)) if m and m.group(1) else (443 if val.startswith("https") else 80)}
                for p in ports:
                    if (p, "TCP") not in eg_ports:
                        fail(wn, f"{what} port {p} (from {var}) is not allowed out")
        ok("refs: network policies")
    for n in nps:
        if n in deny:
            continue
        if not any(np_selects(n, w) for w in r.workloads()):
            fail(f"{r.name} {kname(n)}", "podSelector matches no rendered pod")


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


def envoy_config_checks(where, cfg, resolve, cb_expected=None):
    """resolve(address, port, protocol) -> None if fine, else a message."""
    clusters = {c["name"]: c for c in deep_get(cfg, "static_resources", "clusters", default=[]) or []}
    used = set()
    listeners = deep_get(cfg, "static_resources", "listeners", default=[]) or []
    lports = {}
    for ln in listeners:
        sa = ln["address"]["socket_address"]
        proto = sa.get("protocol", "TCP")
        lports[(sa["port_value"], proto)] = ln["name"]
        targets = []
        for fc in ln.get("filter_chains") or []:
            for f in fc.get("filters") or []:
                if f.get("name") == "envoy.filters.network.tcp_proxy":
                    targets.append(f["typed_config"].get("cluster"))
        for lf in ln.get("listener_filters") or []:
            if lf.get("name") == "envoy.filters.udp_listener.udp_proxy":
                tc = lf["typed_config"]
                targets.append(tc.get("cluster") or deep_get(tc, "matcher", "on_no_match", "action", "typed_config", "cluster"))
        if not targets:
            fail(where, f"listener {ln['name']} proxies to no cluster")
        for t in targets:
            if t not in clusters:
                fail(where, f"listener {ln['name']} uses cluster {t} that does not exist")
                continue
            used.add(t)
            cproto = {deep_get(e, "endpoint", "address", "socket_address", "protocol", default="TCP")
                      for le in clusters[t]["load_assignment"]["endpoints"] for e in le["lb_endpoints"]}
            if cproto != {proto}:
                fail(where, f"listener {ln['name']} ({proto}) feeds cluster {t} of protocol {cproto}")
    for name, c in clusters.items():
        if name not in used:
            fail(where, f"cluster {name} is used by no listener")
        if c.get("type") != "STRICT_DNS":
            fail(where, f"cluster {name} is not STRICT_DNS")
        if c.get("lb_policy") != "LEAST_REQUEST":
            fail(where, f"cluster {name} is not LEAST_REQUEST")
        th = deep_get(c, "circuit_breakers", "thresholds", default=[]) or []
        if not th:
            fail(where, f"cluster {name} has no circuit breakers")
        elif cb_expected is not None:
            for k in ("max_connections", "max_pending_requests", "max_requests"):
                if th[0].get(k) != cb_expected:
                    fail(where, f"cluster {name} {k} is {th[0].get(k)}, not {cb_expected}")
        if deep_get(c, "load_assignment", "cluster_name") != name:
            fail(where, f"cluster {name}: load_assignment.cluster_name differs")
        for le in c["load_assignment"]["endpoints"]:
            for e in le["lb_endpoints"]:
                sa = e["endpoint"]["address"]["socket_address"]
                msg = resolve(sa["address"], sa["port_value"], sa.get("protocol", "TCP"))
                if msg:
                    fail(where, f"cluster {name}: {msg}")
    admin = deep_get(cfg, "admin", "address", "socket_address", "port_value")
    if admin is None:
        fail(where, "no admin port")
    ok("envoy: configs")
    return lports, admin


def check_gateway(r):
    domain = r.values.get("clusterDomain", "cluster.local")
    for cm in r.kind("ConfigMap"):
        if "envoy.yaml" not in (cm.get("data") or {}):
            continue
        where = f"{r.name} {kname(cm)} envoy.yaml"
        try:
            cfg = yaml.safe_load(cm["data"]["envoy.yaml"])
        except yaml.YAMLError as e:
            fail(where, f"not YAML: {e}")
            continue

        def resolve(addr, port, proto):
            m = re.match(rf"^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.{re.escape(domain)}$", addr)
            if not m:
                return f"address {addr} is not <service>.<namespace>.svc.{domain}"
            svc = r.find("Service", m.group(1))
            if svc is None or (svc["metadata"].get("namespace") not in (None, m.group(2))):
                return f"address {addr}: Service {m.group(1)} in {m.group(2)} is not rendered"
            if svc["spec"].get("clusterIP") != "None":
                return f"Service {m.group(1)} is not headless (STRICT_DNS needs every pod address)"
            if not any(p["port"] == port and p.get("protocol", "TCP") == proto for p in svc["spec"]["ports"]):
                return f"Service {m.group(1)} has no port {port}/{proto}"
            return None

        cb = SPEC_ENVOY_CB if r.name == "default" else None
        lports, admin = envoy_config_checks(where, cfg, resolve, cb)
        # the gateway workload mounting this ConfigMap
        gws = [w for w in r.workloads() if any(deep_get(v, "configMap", "name") == cm["metadata"]["name"]
                                                 for v in pod_spec(w).get("volumes") or [])]
        if not gws:
            fail(where, "no workload mounts it")
            continue
        for w in gws:
            c = pod_spec(w)["containers"][0]
            cports = {(p["containerPort"], p.get("protocol", "TCP")) for p in c.get("ports") or []}
            for lp in lports:
                if lp not in cports:
                    fail(where, f"listener port {lp} is not a container port of {kname(w)}")
            if (admin, "TCP") not in cports:
                fail(where, f"admin port {admin} is not a container port of {kname(w)}")
            for probe in ("readinessProbe", "livenessProbe"):
                port = deep_get(c, probe, "httpGet", "port")
                named = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
                if named.get(port, port) != admin:
                    fail(where, f"{kname(w)} {probe} is not on the Envoy admin port")
            exposed = set()
            for s in r.kind("Service"):
                if matches(s["spec"].get("selector") or {}, pod_labels(w)):
                    for p in s["spec"]["ports"]:
                        tp = p.get("targetPort", p["port"])
                        num = {pp.get("name"): pp["containerPort"] for pp in c.get("ports") or []}.get(tp, tp)
                        exposed.add((num, p.get("protocol", "TCP"), s["spec"].get("type", "ClusterIP")))
            for lp in lports:
                if not any(e[0] == lp[0] and e[1] == lp[1] and e[2] in ("LoadBalancer", "NodePort") for e in exposed):
                    fail(where, f"listener {lp} is not exposed by a LoadBalancer/NodePort Service")


# ---------------------------------------------------------------------------
# compose


def check_compose(path, envoy_path, metrics):
    where = path
    try:
        d = read_yaml(path)
    except yaml.YAMLError as e:
        fail(where, f"not YAML: {e}")
        return
    base = os.path.dirname(path)
    services = d.get("services") or {}
    named_vols = set((d.get("volumes") or {}).keys())
    for need in ("memcached", "kafka", "opensearch", "envoy", "tcp", "udp", "logger"):
        if need not in services:
            fail(where, f"no service {need}")
    roles = {}
    for name, s in services.items():
        sw = f"{where} service {name}"
        img = s.get("image", "")
        if not img:
            fail(sw, "no image")
        elif "${" not in img and (":" not in img.split("/")[-1] or img.endswith(":latest")):
            fail(sw, f"image {img} is not pinned to a tag")
        deps = s.get("depends_on") or []
        for dep in (deps if isinstance(deps, list) else deps.keys()):
            if dep not in services:
                fail(sw, f"depends_on {dep} is not a service")
        for v in s.get("volumes") or []:
            src = v.split(":", 1)[0] if isinstance(v, str) else v.get("source")
            if src.startswith((".", "/")):
                if not os.path.exists(os.path.join(base, src)):
                    fail(sw, f"volume source {src} does not exist")
            elif src not in named_vols:
                fail(sw, f"named volume {src} is not declared")
        cmd = s.get("command") or []
        build = s.get("build")
        if build and not os.path.exists(os.path.join(base, build["context"], build.get("dockerfile", "Dockerfile"))):
            fail(sw, "build context has no Dockerfile")
        if cmd and cmd[0] in ROLES:
            roles[name] = cmd[0]
            env = s.get("environment") or {}
            for k in env:
                if k not in CONTRACT_ENV:
                    fail(sw, f"env {k} is not part of the configuration contract")
            for k, v in env.items():
                if "PASSWORD" in k and "${" not in str(v):
                    fail(sw, f"{k} is a literal in the compose file; take it from the environment")
            if "MEMCACHED_SERVICE" in env and env["MEMCACHED_SERVICE"] not in services:
                fail(sw, f"MEMCACHED_SERVICE {env['MEMCACHED_SERVICE']} is not a service")
            for b in str(env.get("KAFKA_BROKERS", "")).split(","):
                if b and b.split(":")[0] not in services:
                    fail(sw, f"Kafka broker {b} is not a service")
                if b and b.split(":")[0] in services:
                    adv = str(deep_get(services, b.split(":")[0], "environment", "KAFKA_ADVERTISED_LISTENERS", default=""))
                    if f":{b.split(':')[1]}" not in adv:
                        fail(sw, f"Kafka broker {b}: no advertised listener on that port")
            es = env.get("ELASTICSEARCH_ENDPOINT")
            if es:
                m = re.match(r"^https?://([^/:]+)", es)
                if not m or m.group(1) not in services:
                    fail(sw, f"ELASTICSEARCH_ENDPOINT {es} is not a service")
            user = env.get("KAFKA_SASL_USER")
            if user:
                jaas = str(deep_get(services, "kafka", "environment",
                                    "KAFKA_LISTENER_NAME_SASL_PLAINTEXT_PLAIN_SASL_JAAS_CONFIG", default=""))
                if f"user_{user}=" not in jaas:
                    fail(sw, f"SASL user {user} is not defined in Kafka's JAAS config")
        ok("compose: services")
    # the Envoy config the compose file mounts
    ev = services.get("envoy") or {}
    mounted = [v.split(":")[0] for v in ev.get("volumes") or [] if isinstance(v, str) and v.split(":")[1] == "/etc/envoy/envoy.yaml"]
    if not mounted or os.path.normpath(os.path.join(base, mounted[0])) != os.path.normpath(envoy_path):
        fail(where, f"envoy does not mount {envoy_path} at /etc/envoy/envoy.yaml")
    try:
        cfg = read_yaml(envoy_path)
    except yaml.YAMLError as e:
        fail(envoy_path, f"not YAML: {e}")
        return

    def resolve(addr, port, proto):
        if addr not in services:
            return f"address {addr} is not a compose service"
        s = services[addr]
        env = s.get("environment") or {}
        if str(env.get("PORT")) != str(port):
            return f"service {addr} listens on PORT {env.get('PORT')}, not {port}"
        exp = {str(e) for e in s.get("expose") or []}
        want = f"{port}/udp" if proto == "UDP" else str(port)
        if want not in exp:
            return f"service {addr} does not expose {want}"
        return None

    lports, admin = envoy_config_checks(envoy_path, cfg, resolve, SPEC_ENVOY_CB)
    published = set()
    for p in ev.get("ports") or []:
        p = str(p)
        proto = "UDP" if p.endswith("/udp") else "TCP"
        published.add((int(p.split("/")[0].split(":")[-1]), proto))
    for lp in lports:
        if lp not in published:
            fail(where, f"envoy listener {lp} is not published")
    if (admin, "TCP") not in published:
        fail(where, f"envoy admin port {admin} is not published")


# ---------------------------------------------------------------------------
# Argo CD, docs, Dockerfile


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


# ---------------------------------------------------------------------------


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
    for k in sorted(COUNTS):
        print(f"    {k}: {COUNTS[k]}")
    if FAILS:
        print(f"  {len(FAILS)} problem(s)")
        return 1
    return 0


def merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base.get(k), v) if k in base else v
        return out
    return over


if __name__ == "__main__":
    sys.exit(main())
