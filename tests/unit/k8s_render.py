"""A small kustomize renderer for the features k8s/ uses, for machines without kubectl.

``kubectl kustomize`` is the reference (tests/unit/test_k8s_manifests.py renders with it
when it is on the PATH and checks this renderer gives the same objects). Supported, as
kustomize does them: ``resources`` (files and kustomization directories), ``namespace``,
``configMapGenerator`` / ``secretGenerator`` (``files``, ``literals``; behaviors
create/replace; only with ``disableNameSuffixHash``), ``patches`` (JSON 6902 with a
``target`` of kind and a name regex), ``replicas`` and ``images``. Anything else in a
kustomization raises, so that a manifest change this renderer cannot follow fails loudly.
"""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

Obj = dict[str, Any]
SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "configMapGenerator",
    "secretGenerator",
    "patches",
    "replicas",
    "images",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "IngressClass",
    "PriorityClass",
    "CustomResourceDefinition",
}


class Unsupported(Exception):
    """The kustomization uses a feature this renderer does not implement."""


def render(directory: Path) -> list[Obj]:
    """The objects ``kubectl kustomize <directory>`` would print (order aside)."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    extra = set(kust) - SUPPORTED
    if extra:
        raise Unsupported(f"{directory}: kustomization fields {sorted(extra)}")
    objects: list[Obj] = []
    for entry in kust.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects += render(path)
        else:
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for spec in kust.get("configMapGenerator", []):
        _generate(objects, directory, spec, "ConfigMap")
    for spec in kust.get("secretGenerator", []):
        _generate(objects, directory, spec, "Secret")
    for patch in kust.get("patches", []):
        _patch(objects, directory, patch)
    for spec in kust.get("replicas", []):
        for obj in objects:
            if obj["metadata"]["name"] == spec["name"] and "replicas" in obj.get("spec", {}):
                obj["spec"]["replicas"] = int(spec["count"])
    for spec in kust.get("images", []):
        _images(objects, spec)
    if "namespace" in kust:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kust["namespace"]
    return objects


def _generate(objects: list[Obj], directory: Path, spec: Obj, kind: str) -> None:
    options = spec.get("options", {})
    if not options.get("disableNameSuffixHash"):
        raise Unsupported(f"{spec['name']}: generators need disableNameSuffixHash here")
    data: dict[str, str] = {}
    for item in spec.get("files", []):
        key, _, rel = item.rpartition("=") if "=" in item else (Path(item).name, "", item)
        data[key] = (directory / rel).read_text()
    for item in spec.get("literals", []):
        key, _, value = item.partition("=")
        data[key] = value
    meta: Obj = {"name": spec["name"]}
    if options.get("labels"):
        meta["labels"] = dict(options["labels"])
    obj: Obj = {"apiVersion": "v1", "kind": kind, "metadata": meta}
    if kind == "Secret":
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        obj["type"] = "Opaque"
    else:
        obj["data"] = data
    behavior = spec.get("behavior", "create")
    same = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == spec["name"]]
    if behavior == "create":
        if same:
            raise ValueError(f"{kind} {spec['name']} already exists")
        objects.append(obj)
    elif behavior == "replace":
        if not same:
            raise ValueError(f"{kind} {spec['name']} to replace does not exist")
        old = same[0]
        old["data"] = obj["data"]
        if options.get("labels"):
            old["metadata"].setdefault("labels", {}).update(options["labels"])
    else:
        raise Unsupported(f"generator behavior {behavior}")


def _patch(objects: list[Obj], directory: Path, patch: Obj) -> None:
    target = patch.get("target", {})
    if set(target) - {"kind", "name"}:
        raise Unsupported(f"patch target fields {sorted(target)}")
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
    ops = yaml.safe_load(text)
    if not isinstance(ops, list):
        raise Unsupported("only JSON 6902 patches (a list of operations)")
    name_re = re.compile(f"^(?:{target['name']})$") if "name" in target else None
    for index, obj in enumerate(objects):
        if "kind" in target and obj["kind"] != target["kind"]:
            continue
        if name_re is not None and not name_re.match(obj["metadata"]["name"]):
            continue
        objects[index] = jsonpatch.apply_patch(copy.deepcopy(obj), ops)


def _images(objects: list[Obj], spec: Obj) -> None:
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, _, tag = container["image"].partition(":")
            if name == spec["name"]:
                new = spec.get("newName", name)
                container["image"] = (
                    f"{new}:{spec.get('newTag', tag)}" if tag or "newTag" in spec else new
                )
