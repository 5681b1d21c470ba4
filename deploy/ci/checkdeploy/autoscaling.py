"""Checks of the HorizontalPodAutoscalers: targets exist, pod metrics are
adapter metrics served by a rule, utilization targets have requests, and the
default render carries the SPEC §8 bounds, targets and behaviour."""

import yaml

from .contract import SPEC_HPA
from .kube import deep_get, kname, pod_spec
from .report import fail, ok


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
