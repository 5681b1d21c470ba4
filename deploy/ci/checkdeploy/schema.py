"""Schema checks: Kubernetes objects against the pinned version's JSON
schemas (kubernetes-validate, strict), custom resources against the vendored
CRD schema excerpts, and DNS-valid names and label values."""

import functools
import json
import os
import re

import jsonschema
import kubernetes_validate.utils as kvu

from .contract import DNS_LABEL, DNS_SUBDOMAIN, NAME_IS_LABEL
from .kube import kname
from .report import fail, ok


# kubernetes-validate opens and parses the schema file again for every object
# it validates; cached, each kind's schema is parsed once per run.
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
