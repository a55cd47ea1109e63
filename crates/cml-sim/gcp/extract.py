#!/usr/bin/env python3
"""Extract the subset of Google's Compute Engine v1 discovery document that the simulator serves.

Usage: extract.py PATH/TO/googleapiclient/discovery_cache/documents/compute.v1.json [OUT]

The discovery document ships in the PyPI package `google-api-python-client`. Writes (default
OUT: compute-subset.json next to this script) a JSON document:
  {"source": {"package", "version", "file", "revision"},
   "parameters": {NAME: PARAM},                       # query parameters every method takes
   "methods": {"compute.instances.insert": {"httpMethod", "path", "parameters": {NAME: PARAM},
                                            "request": SCHEMA_NAME|null, "response": SCHEMA_NAME}},
   "schemas": {NAME: SCHEMA}}                         # every schema the methods reach
A SCHEMA keeps only what a structural check needs: `$ref` (by name, into "schemas"), `type`,
`format`, `properties`, `additionalProperties`, `items`, `enum`, `pattern`, plus
`outputOnly: true` for fields the server sets ("[Output Only]" / "Output only." / readOnly) and
`requiredFor: [METHOD ids]` from the `annotations.required` of the served methods.
A PARAM keeps `location`, `type`, `format`, `enum`, `pattern`, `required`, `repeated`.
Python 3.11 standard library only.
"""
import json
import os
import re
import sys

# Every method the simulator serves: read from `GCP_METHODS` in src/gcp/mod.rs, so the list is
# written once.
METHODS_SOURCE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "src", "gcp", "mod.rs")


def served_methods():
    """Method ids of `GCP_METHODS`, in order."""
    with open(METHODS_SOURCE, encoding="utf-8") as f:
        text = f.read()
    block = text[text.index("pub const GCP_METHODS"):]
    block = block[:block.index("];")]
    return re.findall(r'"(compute\.[A-Za-z]+\.[A-Za-z]+)"', block)


def output_only(node):
    desc = node.get("description", "").lstrip()
    return bool(node.get("readOnly")) or desc.startswith("[Output Only]") \
        or desc.startswith("Output only") or "[Output Only]" in desc[:40]


def slim(node, methods):
    """`node` with only the keywords a structural check needs."""
    out = {}
    for key in ("$ref", "type", "format", "enum", "pattern"):
        if key in node:
            out[key] = node[key]
    if "properties" in node:
        out["properties"] = {k: slim(v, methods) for k, v in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = slim(node["additionalProperties"], methods)
    if isinstance(node.get("items"), dict):
        out["items"] = slim(node["items"], methods)
    if output_only(node):
        out["outputOnly"] = True
    req = [m for m in node.get("annotations", {}).get("required", []) if m in methods]
    if req:
        out["requiredFor"] = req
    return out


def refs(node, found):
    if isinstance(node, dict):
        if "$ref" in node:
            found.add(node["$ref"])
        for v in node.values():
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def find_method(doc, method_id):
    def walk(resources):
        for res in resources.values():
            for m in res.get("methods", {}).values():
                if m.get("id") == method_id:
                    return m
            hit = walk(res.get("resources", {}))
            if hit:
                return hit
        return None
    m = walk(doc["resources"])
    if m is None:
        sys.exit(f"{method_id}: not in the discovery document")
    return m


def param(p):
    return {k: p[k] for k in ("location", "type", "format", "enum", "pattern", "required",
                              "repeated") if k in p}


def package_version(doc_path):
    """`__version__` of googleapiclient, found next to the discovery cache."""
    pkg = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(doc_path))))
    try:
        with open(os.path.join(pkg, "version.py"), encoding="utf-8") as f:
            m = re.search(r'__version__\s*=\s*"([^"]+)"', f.read())
            return m.group(1) if m else None
    except OSError:
        return None


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    doc_path = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "compute-subset.json")
    with open(doc_path, encoding="utf-8") as f:
        doc = json.load(f)
    served = served_methods()
    methods = {}
    for mid in served:
        m = find_method(doc, mid)
        methods[mid] = {
            "httpMethod": m["httpMethod"],
            "path": m["path"],
            "parameters": {k: param(v) for k, v in m.get("parameters", {}).items()},
            "request": m.get("request", {}).get("$ref"),
            "response": m.get("response", {}).get("$ref"),
        }
    names = {n for m in methods.values() for n in (m["request"], m["response"]) if n}
    schemas = {}
    todo = sorted(names)
    while todo:
        name = todo.pop()
        if name in schemas:
            continue
        schemas[name] = slim(doc["schemas"][name], served)
        found = set()
        refs(schemas[name], found)
        todo.extend(sorted(found - set(schemas)))
    subset = {
        "source": {
            "package": "google-api-python-client",
            "version": package_version(doc_path),
            "file": "googleapiclient/discovery_cache/documents/compute.v1.json",
            "id": doc.get("id"),
            "revision": doc.get("revision"),
            "servicePath": doc.get("servicePath"),
        },
        "parameters": {k: param(v) for k, v in doc.get("parameters", {}).items()},
        "methods": methods,
        "schemas": schemas,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(subset, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
