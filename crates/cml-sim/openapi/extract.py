#!/usr/bin/env python3
"""Extract the subset of GitHub's OpenAPI description that the simulator serves.

Usage: extract.py PATH/TO/node_modules/@octokit/openapi/generated/api.github.com.json [OUT]

Writes (default OUT: github-subset.json next to this script) a JSON document:
  {"source": {"package": "@octokit/openapi", "version": V, "file": ...},
   "routes": {"METHOD /path/{template}": {"status": N, "response": SCHEMA|null,
                                          "request": SCHEMA|null}}}
Every `$ref` is resolved inline, `allOf` is merged into one object schema, and only
the keywords a structural check needs are kept. Python 3.11 standard library only.
"""
import json
import os
import re
import sys

# Every GitHub route the simulator serves: read from `GITHUB_ROUTES` in src/github/mod.rs, so
# the list is written once.
ROUTES_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "github", "mod.rs")


def served_routes():
    """(method, template) pairs of `GITHUB_ROUTES`, in order."""
    with open(ROUTES_SOURCE, encoding="utf-8") as f:
        text = f.read()
    block = text[text.index("pub const GITHUB_ROUTES"):]
    block = block[:block.index("];")]
    return re.findall(r'\(\s*"([A-Z]+)",\s*"([^"]+)",?\s*\)', block)


KEEP = ("type", "properties", "required", "items", "nullable", "enum",
        "oneOf", "anyOf", "additionalProperties")


def resolve(doc, node, stack=()):
    """Return `node` with every $ref inlined and allOf merged, keeping only KEEP keys."""
    if isinstance(node, list):
        return [resolve(doc, n, stack) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if ref in stack:  # recursive schema: stop with a free-form object
            return {"type": "object"}
        target = doc
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        return resolve(doc, target, stack + (ref,))
    if "allOf" in node:
        merged = {"type": "object", "properties": {}, "required": []}
        for part in node["allOf"]:
            r = resolve(doc, part, stack)
            merged["properties"].update(r.get("properties", {}))
            merged["required"] += [x for x in r.get("required", []) if x not in merged["required"]]
            if r.get("nullable"):
                merged["nullable"] = True
        rest = {k: v for k, v in node.items() if k != "allOf"}
        r = resolve(doc, rest, stack)
        merged["properties"].update(r.get("properties", {}))
        merged["required"] += [x for x in r.get("required", []) if x not in merged["required"]]
        if r.get("nullable"):
            merged["nullable"] = True
        if not merged["required"]:
            del merged["required"]
        return merged
    out = {}
    for key in KEEP:
        if key not in node:
            continue
        value = node[key]
        if key == "properties":
            out[key] = {name: resolve(doc, s, stack) for name, s in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = resolve(doc, value, stack)
        elif key in ("oneOf", "anyOf"):
            out[key] = [resolve(doc, s, stack) for s in value]
        else:
            out[key] = value
    return out


def json_schema(doc, holder):
    """The application/json schema of a response or request body, or None."""
    if holder is None:
        return None
    holder = resolve_ref_only(doc, holder)
    content = holder.get("content", {})
    media = content.get("application/json")
    if media is None or "schema" not in media:
        return None
    return resolve(doc, media["schema"])


def resolve_ref_only(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    spec_path = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "github-subset.json")
    with open(spec_path, encoding="utf-8") as f:
        doc = json.load(f)
    version = None
    pkg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(spec_path))), "package.json")
    if os.path.exists(pkg):
        with open(pkg, encoding="utf-8") as f:
            version = json.load(f).get("version")
    routes = {}
    for method, template in served_routes():
        op = doc["paths"][template][method.lower()]
        status = min(int(code) for code in op["responses"] if code.startswith("2"))
        routes[f"{method} {template}"] = {
            "status": status,
            "response": json_schema(doc, op["responses"][str(status)]),
            "request": json_schema(doc, op.get("requestBody")),
        }
    subset = {
        "source": {
            "package": "@octokit/openapi",
            "version": version,
            "file": "generated/api.github.com.json",
            "openapi": doc.get("openapi"),
        },
        "routes": routes,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(subset, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
