"""Checks of the Envoy gateway, in the chart and in docker-compose: listeners,
clusters resolving to Services (or compose services) and ports that exist,
LEAST_REQUEST, STRICT_DNS, circuit breakers, exposed ports; and the compose
file's services, dependencies, hosts and ports."""

import os
import re

import yaml

from .contract import CONTRACT_ENV, ROLES, SPEC_ENVOY_CB
from .kube import deep_get, kname, matches, pod_labels, pod_spec
from .report import fail, ok, read_yaml


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
