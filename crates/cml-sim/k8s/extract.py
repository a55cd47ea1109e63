#!/usr/bin/env python3
"""Extracts the Kubernetes strict JSON schemas the simulated API server is checked against.

Reads the schemas that PyPI `kubernetes-validate` ships (strict mode: every object schema has
`additionalProperties: false`) for one Kubernetes version, keeps the root kinds the simulator
serves (ROOTS) and every definition they reference, drops documentation and `x-kubernetes-*`
annotations, and prints the subset as JSON:

    {"generator": "kubernetes-validate VERSION", "kubernetes": "1.NN",
     "roots": {"apiVersion/Kind": schema}, "defs": {"io.k8s...": schema}}

References become `#/defs/NAME`. Usage: extract.py 1.29 > k8s-1.29-subset.json
"""
import json
import os
import sys

import kubernetes_validate
from kubernetes_validate.version import __version__

# apiVersion/Kind -> the schema file kubernetes-validate names it by.
ROOTS = {
    "batch/v1/Job": "job-batch-v1.json",
    "batch/v1/JobList": "joblist-batch-v1.json",
    "v1/Pod": "pod-v1.json",
    "v1/PodList": "podlist-v1.json",
    "v1/Secret": "secret-v1.json",
    "v1/SecretList": "secretlist-v1.json",
    "v1/Event": "event-v1.json",
    "v1/EventList": "eventlist-v1.json",
    "coordination.k8s.io/v1/Lease": "lease-coordination-v1.json",
    "coordination.k8s.io/v1/LeaseList": "leaselist-coordination-v1.json",
    # The objects of the pool's Deployment manifest (deploy/kubernetes/pool.yaml).
    "apps/v1/Deployment": "deployment-apps-v1.json",
    "v1/ServiceAccount": "serviceaccount-v1.json",
    "rbac.authorization.k8s.io/v1/Role": "role-rbac-v1.json",
    "rbac.authorization.k8s.io/v1/RoleBinding": "rolebinding-rbac-v1.json",
    "v1/Status": "status-meta-v1.json",
    "v1/DeleteOptions": "deleteoptions-meta-v1.json",
    "v1/APIResourceList": "apiresourcelist-meta-v1.json",
    "v1/APIGroupList": "apigrouplist-meta-v1.json",
    "v1/APIVersions": "apiversions-meta-v1.json",
    "version/Info": "info-pkg-version.json",
}
KEEP = {"type", "properties", "additionalProperties", "items", "required", "enum", "format", "oneOf", "$ref"}
PREFIXES = ("/api/_definitions.json#/$defs/", "#/$defs/")


def clean(schema, refs):
    if isinstance(schema, list):
        return [clean(s, refs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k not in KEEP:
            continue
        if k == "$ref":
            name = next(v[len(p):] for p in PREFIXES if v.startswith(p))
            refs.append(name)
            out[k] = "#/defs/" + name
        elif k == "properties":
            out[k] = {p: clean(s, refs) for p, s in v.items()}
        else:
            out[k] = clean(v, refs)
    return out


def main():
    version = sys.argv[1]
    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema",
                        "v%s.0-local-strict" % version)
    with open(os.path.join(base, "_definitions.json")) as f:
        all_defs = json.load(f)["$defs"]
    refs, roots, defs = [], {}, {}
    for key, file in ROOTS.items():
        with open(os.path.join(base, file)) as f:
            roots[key] = clean(json.load(f), refs)
    while refs:
        name = refs.pop()
        if name not in defs:
            defs[name] = clean(all_defs[name], refs)
    json.dump({"generator": "kubernetes-validate " + __version__, "kubernetes": version,
               "roots": roots, "defs": dict(sorted(defs.items()))}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
