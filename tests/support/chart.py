"""The Helm chart, the install bundle and the Argo CD health checks, driven by the real tools.

helm is the testbed's pinned build (e2e/testbed/build.sh), kubectl the version-matched one,
promtool comes with Debian's prometheus package and Lua 5.4 runs the Argo CD health scripts.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "frugal"
CI_VALUES = CHART / "ci"
BUNDLE = REPO / "manifests" / "bundle" / "frugal.yaml"
ARGOCD = REPO / "manifests" / "argocd"
PROFILES = ("plain", "karpenter", "eks", "gke", "aks")
NAMESPACED = ("team-a", "team-b")
"""The namespaces ci/namespaced-values.yaml watches."""


@functools.cache
def helm_path() -> str:
    from testbed import bin_dir, ensure_built

    ensure_built("helm")
    return str(bin_dir("helm") / "helm")


@functools.cache
def kubectl_path() -> str:
    from testbed import bin_dir

    path = bin_dir("kubernetes") / "kubectl"
    return str(path) if path.exists() else (shutil.which("kubectl") or "kubectl")


def run(cmd: list[str], *, check: bool = True, input: str | None = None, cwd: Path | None = None):
    out = subprocess.run(
        cmd, capture_output=True, text=True, input=input, cwd=cwd or REPO, check=False
    )
    if check and out.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return out


def helm(*args: str, check: bool = True, kubeconfig: Path | None = None):
    cmd = [helm_path(), *args]
    if kubeconfig is not None:
        cmd += ["--kubeconfig", str(kubeconfig)]
    return run(cmd, check=check)


# --- value sets ------------------------------------------------------------------------------


def value_sets() -> dict[str, dict[str, Any]]:
    """Name → values: every ci/ file, and each platform profile over the example settings."""
    sets = {p.stem.removesuffix("-values"): _load(p) for p in sorted(CI_VALUES.glob("*.yaml"))}
    example = _load(REPO / "manifests" / "settings" / "karpenter-aws.yaml")
    for profile in PROFILES:
        sets[f"profile-{profile}"] = {"settings": {**example, "profile": profile}}
    return sets


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def template(
    values: dict[str, Any] | None = None,
    *,
    namespace: str = "frugal-system",
    release: str = "frugal",
    args: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders from ``values``; fails the test if it fails."""
    out = template_process(values, namespace=namespace, release=release, args=args)
    if out.returncode:
        raise AssertionError(f"helm template failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def template_process(
    values: dict[str, Any] | None = None,
    *,
    namespace: str = "frugal-system",
    release: str = "frugal",
    args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """``helm template`` as a process (for tests that expect it to fail)."""
    cmd = [helm_path(), "template", release, str(CHART), "--namespace", namespace]
    cmd += ["--values", "-", *args]
    return run(cmd, check=False, input=yaml.safe_dump(values or {}))


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployment name → its pod spec."""
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in find(docs, "Deployment")}


def container_args(docs: list[dict[str, Any]], deployment: str) -> list[str]:
    return pod_specs(docs)[deployment]["containers"][0]["args"]


# --- stand-in CRDs for kinds whose operators are not part of the testbed ---------------------
# Written for these tests from the documented APIs of the Prometheus operator and Argo CD, with
# the fields frugal uses spelled out (so a misspelt field is refused under strict field
# validation) and everything else preserved. They stand in only where the real CRDs are absent.


def _preserve(**extra: Any) -> dict[str, Any]:
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True, **extra}


_STR = {"type": "string"}
_STRMAP = {"type": "object", "additionalProperties": _STR}
_RELABEL = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "sourceLabels": {"type": "array", "items": _STR},
            "targetLabel": _STR,
            "action": _STR,
            "regex": _STR,
            "replacement": _STR,
            "separator": _STR,
        },
    },
}
_NS_SELECTOR = {
    "type": "object",
    "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": _STR}},
}
_ENDPOINT = {
    "type": "object",
    "properties": {
        "port": _STR,
        "path": _STR,
        "interval": _STR,
        "honorLabels": {"type": "boolean"},
        "relabelings": _RELABEL,
        "metricRelabelings": _RELABEL,
    },
}


def _crd(group: str, kind: str, plural: str, version: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            "labels": {"frugal.dev/test-stand-in": "true"},
        },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": spec, "status": _preserve()},
                        }
                    },
                }
            ],
        },
    }


STAND_IN_CRDS = [
    _crd(
        "monitoring.coreos.com",
        "ServiceMonitor",
        "servicemonitors",
        "v1",
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _preserve(),
                "namespaceSelector": _NS_SELECTOR,
                "endpoints": {"type": "array", "items": _ENDPOINT},
                "jobLabel": _STR,
            },
        },
    ),
    _crd(
        "monitoring.coreos.com",
        "PodMonitor",
        "podmonitors",
        "v1",
        {
            "type": "object",
            "required": ["selector"],
            "properties": {
                "selector": _preserve(),
                "namespaceSelector": _NS_SELECTOR,
                "podMetricsEndpoints": {"type": "array", "items": _ENDPOINT},
                "jobLabel": _STR,
            },
        },
    ),
    _crd(
        "monitoring.coreos.com",
        "PrometheusRule",
        "prometheusrules",
        "v1",
        {
            "type": "object",
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": _STR,
                            "interval": _STR,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "properties": {
                                        "alert": _STR,
                                        "record": _STR,
                                        "expr": {"x-kubernetes-int-or-string": True},
                                        "for": _STR,
                                        "labels": _STRMAP,
                                        "annotations": _STRMAP,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    ),
    _crd(
        "argoproj.io",
        "Application",
        "applications",
        "v1alpha1",
        {
            "type": "object",
            "required": ["destination", "project"],
            "properties": {
                "project": _STR,
                "source": {
                    "type": "object",
                    "required": ["repoURL"],
                    "properties": {
                        "repoURL": _STR,
                        "targetRevision": _STR,
                        "path": _STR,
                        "chart": _STR,
                        "helm": _preserve(),
                        "directory": _preserve(),
                        "kustomize": _preserve(),
                    },
                },
                "destination": {
                    "type": "object",
                    "properties": {"server": _STR, "name": _STR, "namespace": _STR},
                },
                "syncPolicy": {
                    "type": "object",
                    "properties": {
                        "automated": _preserve(),
                        "syncOptions": {"type": "array", "items": _STR},
                        "managedNamespaceMetadata": _preserve(),
                        "retry": _preserve(),
                    },
                },
                "ignoreDifferences": {"type": "array", "items": _preserve()},
            },
        },
    ),
]


def install_stand_in_crds(kubectl) -> list[str]:
    """Create the stand-ins whose real CRD is absent; returns the names created."""
    created = []
    for crd in STAND_IN_CRDS:
        name = crd["metadata"]["name"]
        if kubectl("get", "crd", name, "-o", "name", check=False).startswith("customresource"):
            continue
        kubectl("apply", "--server-side", "-f", "-", input=json.dumps(crd))
        created.append(name)
    for name in created:
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    return created


# --- Lua (Argo CD health checks) ---------------------------------------------------------------


def lua_literal(value: Any) -> str:
    """A Lua table constructor for JSON-like data, the way Argo CD hands ``obj`` to a script."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        return _lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        fields = (f"[{_lua_string(k)}] = {lua_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(fields) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def _lua_string(text: str) -> str:
    """A Lua string literal (the file is UTF-8): quotes, backslashes, control bytes escaped."""
    out = []
    for char in text:
        if char in '\\"':
            out.append("\\" + char)
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\{ord(char):03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


LUA_HARNESS = """
obj = {obj}
local script = assert(io.open({path}, "r")):read("a")
local chunk = assert(load(script, "health.lua", "t", _ENV))
local hs = chunk()
io.write(tostring(hs.status), "\\t", tostring(hs.message))
"""


def lua_health(script: str, obj: dict[str, Any], workdir: Path) -> tuple[str, str]:
    """Run an Argo CD health script on ``obj`` in Lua 5.4; returns (status, message)."""
    lua = shutil.which("lua5.4")
    if lua is None:
        raise RuntimeError("lua5.4 is not installed: run `make deps`")
    path = workdir / "health.lua"
    path.write_text(script)
    harness = workdir / "harness.lua"
    harness.write_text(LUA_HARNESS.format(obj=lua_literal(obj), path=_lua_string(str(path))))
    out = subprocess.run([lua, str(harness)], capture_output=True, text=True, check=False)
    if out.returncode:
        raise AssertionError(f"Lua failed: {out.stderr}")
    status, _, message = out.stdout.partition("\t")
    return status, message


def health_scripts() -> dict[str, str]:
    """Kind → the health script in manifests/argocd/argocd-cm.yaml."""
    cm = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    prefix = "resource.customizations.health.frugal.dev_"
    return {k.removeprefix(prefix): v for k, v in cm["data"].items() if k.startswith(prefix)}
