#!/usr/bin/env python3
"""Extract the subset of Microsoft's Azure Resource Manager models that the simulator serves.

Usage: extract.py [OUT]   (run with the Python whose site-packages hold the pinned packages)

The models ship in the PyPI packages azure-mgmt-compute, azure-mgmt-network, azure-mgmt-resource
and azure-mgmt-authorization (pinned in scripts/test.sh). Each generated model carries its REST
field map: `rest_field(name=..., visibility=[...])` attributes and their type annotations in the
TypeSpec generator (compute, network, resource), `_attribute_map` / `_validation` in the older
AutoRest generator (authorization; dotted keys such as `properties.roleDefinitionId` are nested
objects on the wire). Writes (default OUT: azure-subset.json next to this script) a JSON document:
  {"source": {PACKAGE: VERSION},
   "operations": {ID: {"method", "path", "apiVersion", "request": MODEL|null, "response": MODEL|null}},
   "models": {MODEL: {"fields": {REST_NAME: {"type": TYPE, "readOnly": bool, "required": bool}}}}}
where MODEL is `package.ClassName` (`list:MODEL` for a list operation's page, {"value": [MODEL],
"nextLink"}, which the SDK's pager reads without a model class) and TYPE is {"kind": "string"|"integer"|"number"|"boolean"|
"any"} (strings may carry "format": "date-time" and "knownValues": [...] of an extensible enum),
{"kind": "model", "model": MODEL}, {"kind": "array", "items": TYPE} or {"kind": "map",
"values": TYPE}. Every model an operation reaches is included. Python 3.11 + the packages only.
"""
import datetime
import enum
import importlib
import importlib.metadata
import json
import os
import re
import sys
import typing

# The operations the simulator serves: ID -> (package, operations module, builder function,
# request model, response model). Models are `package.ClassName`.
OPERATIONS = {
    "virtualMachines.createOrUpdate": ("compute", "azure.mgmt.compute.operations._operations",
                                       "build_virtual_machines_create_or_update_request",
                                       "compute.VirtualMachine", "compute.VirtualMachine"),
    "virtualMachines.get": ("compute", "azure.mgmt.compute.operations._operations",
                            "build_virtual_machines_get_request", None, "compute.VirtualMachine"),
    "virtualMachines.delete": ("compute", "azure.mgmt.compute.operations._operations",
                               "build_virtual_machines_delete_request", None, None),
    "virtualMachines.instanceView": ("compute", "azure.mgmt.compute.operations._operations",
                                     "build_virtual_machines_instance_view_request", None,
                                     "compute.VirtualMachineInstanceView"),
    "virtualMachines.retrieveBootDiagnosticsData": (
        "compute", "azure.mgmt.compute.operations._operations",
        "build_virtual_machines_retrieve_boot_diagnostics_data_request", None,
        "compute.RetrieveBootDiagnosticsDataResult"),
    "virtualNetworks.createOrUpdate": ("network", "azure.mgmt.network.operations._operations",
                                       "build_virtual_networks_create_or_update_request",
                                       "network.VirtualNetwork", "network.VirtualNetwork"),
    "virtualNetworks.get": ("network", "azure.mgmt.network.operations._operations",
                            "build_virtual_networks_get_request", None, "network.VirtualNetwork"),
    "networkSecurityGroups.createOrUpdate": (
        "network", "azure.mgmt.network.operations._operations",
        "build_network_security_groups_create_or_update_request",
        "network.NetworkSecurityGroup", "network.NetworkSecurityGroup"),
    "networkSecurityGroups.get": ("network", "azure.mgmt.network.operations._operations",
                                  "build_network_security_groups_get_request", None,
                                  "network.NetworkSecurityGroup"),
    "publicIPAddresses.createOrUpdate": ("network", "azure.mgmt.network.operations._operations",
                                         "build_public_ip_addresses_create_or_update_request",
                                         "network.PublicIPAddress", "network.PublicIPAddress"),
    "publicIPAddresses.get": ("network", "azure.mgmt.network.operations._operations",
                              "build_public_ip_addresses_get_request", None,
                              "network.PublicIPAddress"),
    "networkInterfaces.createOrUpdate": ("network", "azure.mgmt.network.operations._operations",
                                         "build_network_interfaces_create_or_update_request",
                                         "network.NetworkInterface", "network.NetworkInterface"),
    "networkInterfaces.get": ("network", "azure.mgmt.network.operations._operations",
                              "build_network_interfaces_get_request", None,
                              "network.NetworkInterface"),
    "resourceGroups.createOrUpdate": ("resource", "azure.mgmt.resource.resources.operations._operations",
                                      "build_resource_groups_create_or_update_request",
                                      "resource.ResourceGroup", "resource.ResourceGroup"),
    "resourceGroups.get": ("resource", "azure.mgmt.resource.resources.operations._operations",
                           "build_resource_groups_get_request", None, "resource.ResourceGroup"),
    "resourceGroups.checkExistence": ("resource", "azure.mgmt.resource.resources.operations._operations",
                                      "build_resource_groups_check_existence_request", None, None),
    "resourceGroups.delete": ("resource", "azure.mgmt.resource.resources.operations._operations",
                              "build_resource_groups_delete_request", None, None),
    "resourceGroups.list": ("resource", "azure.mgmt.resource.resources.operations._operations",
                            "build_resource_groups_list_request", None,
                            "list:resource.ResourceGroup"),
    "resources.list": ("resource", "azure.mgmt.resource.resources.operations._operations",
                       "build_resources_list_request", None, "list:resource.GenericResourceExpanded"),
    "roleAssignments.create": ("authorization",
                               "azure.mgmt.authorization.v2022_04_01.operations._role_assignments_operations",
                               "build_create_request", "authorization.RoleAssignmentCreateParameters",
                               "authorization.RoleAssignment"),
}

# Answers that are not an operation's response model: ARM's error body and the status of a
# long-running operation (what `Azure-AsyncOperation` points at).
EXTRA_MODELS = ["resource.CloudError", "network.OperationStatusResult"]

PACKAGES = {
    "compute": ("azure-mgmt-compute", "azure.mgmt.compute.models"),
    "network": ("azure-mgmt-network", "azure.mgmt.network.models"),
    "resource": ("azure-mgmt-resource", "azure.mgmt.resource.resources.models"),
    "authorization": ("azure-mgmt-authorization", "azure.mgmt.authorization.v2022_04_01.models"),
}


def model_class(name):
    pkg, cls = name.split(".", 1)
    return getattr(importlib.import_module(PACKAGES[pkg][1]), cls)


def list_model(item):
    """A page of a list operation, as the SDK's pager reads it (`value`, `nextLink`): the
    generated clients have no model class for it."""
    return {"fields": {"value": {"type": {"kind": "array", "items": {"kind": "model", "model": item}},
                                 "readOnly": False, "required": True},
                       "nextLink": {"type": {"kind": "string"}, "readOnly": False, "required": False}}}


def operation(builder_module, builder):
    """method, path and api-version of a request builder, read from its source."""
    mod = importlib.import_module(builder_module)
    src = open(mod.__file__, encoding="utf-8").read()
    start = src.index(f"def {builder}(")
    nxt = src.find("\ndef ", start + 1)
    body = src[start:nxt if nxt > 0 else len(src)]
    method = re.search(r'HttpRequest\(method="([A-Z]+)"', body).group(1)
    path = re.search(r'_url = (?:kwargs\.pop\("template_url", )?"([^"]+)"', body).group(1)
    version = re.search(r'"api-version", "([^"]+)"', body).group(1)
    return method, path, version


class Walker:
    def __init__(self):
        self.models = {}
        self.todo = []

    def ref(self, cls):
        pkg = next(p for p, (_, m) in PACKAGES.items() if cls.__module__.startswith(m.rsplit(".", 1)[0]))
        name = f"{pkg}.{cls.__name__}"
        if name not in self.models and name not in self.todo:
            self.todo.append(name)
        return name

    def resolve(self, t):
        """A quoted name such as "_models.OSProfile" (a string or a ForwardRef) as its class."""
        if isinstance(t, typing.ForwardRef):
            t = t.__forward_arg__
        if isinstance(t, str):
            t = eval(t, self.ns)  # the generator's own annotation, under its own imports
        return t

    def new_type(self, t):
        """TYPE of a TypeSpec annotation."""
        t = self.resolve(t)
        origin = typing.get_origin(t)
        args = tuple(self.resolve(a) for a in typing.get_args(t))
        if origin is typing.Union:
            rest = [a for a in args if a is not type(None)]
            enums = [a for a in rest if isinstance(a, type) and issubclass(a, enum.Enum)]
            if enums:
                return {"kind": "string", "knownValues": sorted(e.value for e in enums[0])}
            if len(rest) == 1:
                return self.new_type(rest[0])
            if typing.get_origin(rest[0]) is typing.Literal:
                return self.new_type(rest[0])
            return {"kind": "any"}
        if origin is typing.Literal:
            return {"kind": "string", "knownValues": sorted(str(a) for a in args)}
        if origin is list:
            return {"kind": "array", "items": self.new_type(args[0])}
        if origin is dict:
            return {"kind": "map", "values": self.new_type(args[1])}
        if t is str:
            return {"kind": "string"}
        if t is bool:
            return {"kind": "boolean"}
        if t is int:
            return {"kind": "integer"}
        if t is float:
            return {"kind": "number"}
        if t in (datetime.datetime, datetime.date):
            return {"kind": "string", "format": "date-time"}
        if t in (datetime.timedelta,):
            return {"kind": "string", "format": "duration"}
        if isinstance(t, type) and issubclass(t, enum.Enum):
            return {"kind": "string", "knownValues": sorted(e.value for e in t)}
        if isinstance(t, type) and hasattr(t, "_attr_to_rest_field") or (
                isinstance(t, type) and t.__name__ not in ("object", "Any") and hasattr(t, "__mro__")
                and any(c.__name__ == "Model" for c in t.__mro__)):
            return {"kind": "model", "model": self.ref(t)}
        return {"kind": "any"}

    def new_model(self, cls):
        mod = sys.modules[cls.__module__]
        models_pkg = importlib.import_module(cls.__module__.rsplit(".", 1)[0])
        ns = dict(vars(mod))
        ns["_models"] = models_pkg
        self.ns = ns
        fields = {}
        for klass in reversed(cls.__mro__):
            hints = klass.__dict__.get("__annotations__", {})
            for attr, rf in klass.__dict__.items():
                if attr.startswith("_") or not hasattr(rf, "_visibility") or not hasattr(rf, "_type"):
                    continue
                ann = hints.get(attr)
                if isinstance(ann, str):
                    ann = eval(ann, ns)  # annotations are strings under the generator's imports
                optional = typing.get_origin(ann) is typing.Union and type(None) in typing.get_args(ann)
                vis = rf._visibility or []
                fields[rf._rest_name_input or attr] = {
                    "type": self.new_type(ann),
                    "readOnly": vis == ["read"],
                    "required": not optional and "create" in vis,
                }
        return {"fields": fields}

    def old_type(self, t, module):
        if t.startswith("[") and t.endswith("]"):
            return {"kind": "array", "items": self.old_type(t[1:-1], module)}
        if t.startswith("{") and t.endswith("}"):
            return {"kind": "map", "values": self.old_type(t[1:-1], module)}
        simple = {"str": {"kind": "string"}, "int": {"kind": "integer"}, "long": {"kind": "integer"},
                  "float": {"kind": "number"}, "bool": {"kind": "boolean"}, "object": {"kind": "any"},
                  "iso-8601": {"kind": "string", "format": "date-time"}}
        if t in simple:
            return simple[t]
        return {"kind": "model", "model": self.ref(getattr(module, t))}

    def old_model(self, cls):
        """An AutoRest model: dotted keys become nested objects named `MODEL.properties`."""
        module = importlib.import_module(cls.__module__.rsplit(".", 1)[0])
        validation = getattr(cls, "_validation", {})
        root = {"fields": {}}
        nested = {}
        name = self.ref(cls)
        for attr, spec in cls._attribute_map.items():
            parts = spec["key"].replace("\\.", "\0").split(".")
            parts = [p.replace("\0", ".") for p in parts]
            node, path = root, name
            for p in parts[:-1]:
                path = f"{path}.{p}"
                if p not in node["fields"]:
                    node["fields"][p] = {"type": {"kind": "model", "model": path},
                                         "readOnly": False, "required": False}
                    nested[path] = {"fields": {}}
                node = nested[path]
            v = validation.get(attr, {})
            node["fields"][parts[-1]] = {"type": self.old_type(spec["type"], module),
                                         "readOnly": bool(v.get("readonly")),
                                         "required": bool(v.get("required"))}
        return root, nested

    def run(self, names):
        self.todo.extend(names)
        while self.todo:
            name = self.todo.pop(0)
            if name in self.models:
                continue
            if name.startswith("list:"):
                self.models[name] = list_model(name[5:])
                self.todo.append(name[5:])
                continue
            cls = model_class(name)
            if hasattr(cls, "_attribute_map"):
                root, nested = self.old_model(cls)
                self.models[name] = root
                self.models.update(nested)
            else:
                self.models[name] = self.new_model(cls)
        return self.models


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "azure-subset.json")
    operations = {}
    roots = list(EXTRA_MODELS)
    for op_id, (pkg, module, builder, request, response) in OPERATIONS.items():
        method, path, version = operation(module, builder)
        operations[op_id] = {"method": method, "path": path, "apiVersion": version,
                             "request": request, "response": response}
        roots += [m for m in (request, response) if m]
    models = Walker().run(roots)
    subset = {
        "source": {dist: importlib.metadata.version(dist) for dist, _ in PACKAGES.values()},
        "operations": operations,
        "models": dict(sorted(models.items())),
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(subset, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
