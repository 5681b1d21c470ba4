"""Checks of the rendered workloads and what refers to them: pod security,
probes, env contract and grace period (SPEC §8); Services, PDBs and
NetworkPolicies selecting pods and ports that exist."""

import re

from .contract import CONTRACT_ENV, DEFAULT_RECONNECT_GRACE, DEFAULT_SIGTERM_TIMEOUT, ROLES
from .kube import deep_get, env_map, env_value, extra_env_names, kname, matches, pod_labels, pod_spec
from .report import fail, ok


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
