"""Turn pydantic JSON Schema into a Kubernetes *structural* OpenAPI v3 schema (CRDs), or into
one self-contained JSON Schema subtree (the Helm chart's values.schema.json).

pydantic emits JSON Schema 2020-12 (``$ref``/``$defs``, ``anyOf`` with ``null`` for optionals,
numeric ``exclusiveMinimum``); the API server wants every node inlined, typed, and in OpenAPI
v3.0 form. The conversion is pure and total over what the API models use; anything it does not
understand raises, so an unsupported construct fails ``make crds`` instead of producing a CRD
the API server would reject.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# Keys of a JSON Schema node that Kubernetes' JSONSchemaProps accepts and we pass through.
_PASSTHROUGH = {
    "type",
    "format",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "nullable",
}
_DROPPED = {"title", "$defs", "additionalProperties", "properties", "items", "anyOf", "allOf"}


class SchemaError(ValueError):
    """The model uses a JSON Schema construct the CRD generator cannot express."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model, as a CRD wants it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}), path=model.__name__)


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline a ``$ref`` (and pydantic's single-element ``allOf`` wrapper) into one node."""
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**defs[name], **siblings}
    return node


def _strip_null(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` is just an optional X: absence, not null, is how Kubernetes says unset."""
    options = node.get("anyOf")
    if options is None or node.get("x-kubernetes-int-or-string"):
        return node
    non_null = [o for o in options if o.get("type") != "null"]
    if len(non_null) != 1:
        raise SchemaError(f"union of several types is not structural: {options}")
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if rest.get("default", ...) is None:
        del rest["default"]
    return {**_resolve(non_null[0], defs), **rest}


def _convert(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(_strip_null(_resolve(node, defs), defs), defs)
    _check_supported(node, path)
    out = _own_keywords(node)
    if "x-kubernetes-int-or-string" not in node:
        out.update(_children(node, defs, path))
    if "type" not in out and "x-kubernetes-int-or-string" not in out:
        raise SchemaError(f"{path}: no type (structural schemas need one on every node)")
    if "description" in out:
        out["description"] = " ".join(out["description"].split())
    return _canonical_order(out)


def _check_supported(node: dict[str, Any], path: str) -> None:
    known = _PASSTHROUGH | _DROPPED | {"exclusiveMinimum", "exclusiveMaximum", "const", "$ref"}
    unknown = {k for k in node if k not in known and not k.startswith("x-kubernetes-")}
    if unknown:
        raise SchemaError(f"{path}: unsupported JSON Schema keys {sorted(unknown)}")


def _own_keywords(node: dict[str, Any]) -> dict[str, Any]:
    """The node's validation keywords in OpenAPI v3.0 form (no children)."""
    out = {k: v for k, v in node.items() if k in _PASSTHROUGH or k.startswith("x-kubernetes-")}
    if "x-kubernetes-int-or-string" in node:
        out["anyOf"] = node["anyOf"]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:  # JSON Schema's numeric bound is OpenAPI 3.0's boolean flag
            out[flag] = node[bound]
            out[bound] = True
    if "const" in node:
        out["enum"] = [node["const"]]
    return out


def _children(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """properties / additionalProperties / items, converted recursively."""
    out: dict[str, Any] = {}
    extra = node.get("additionalProperties")
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {
            name: _convert(sub, defs, f"{path}.{name}") for name, sub in node["properties"].items()
        }
        if not node.get("required"):
            out["required"] = None
        if extra is True:  # extra="allow": keep what others (kopf) write there
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(extra, dict):
        out["type"] = "object"
        out["additionalProperties"] = _convert(extra, defs, f"{path}.*")
    elif node.get("type") == "object" and extra is not False:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        out["items"] = _convert(node["items"], defs, f"{path}[]")
    return out


_FIRST = ("description", "type")


def _canonical_order(node: dict[str, Any]) -> dict[str, Any]:
    """Description and type first, the rest sorted: stable, readable generated YAML."""
    node = {k: v for k, v in node.items() if v is not None}
    head = [k for k in _FIRST if k in node]
    return {k: node[k] for k in head + sorted(k for k in node if k not in _FIRST)}


def embeddable_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with every ``$ref`` inlined and titles dropped.

    A subtree to embed in another JSON Schema document: the chart's values.schema.json checks
    the operator's settings with it at ``helm install``, before a bad value reaches the
    operator (its cross-field checks still run there).
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})

    def schema(node: Any) -> Any:
        if isinstance(node, list):
            return [schema(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            node = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "title":
                continue
            if key == "properties":  # names → schemas; a property may be called "title"
                out[key] = {name: schema(sub) for name, sub in value.items()}
            elif key == "description":
                out[key] = " ".join(value.split())
            else:
                out[key] = schema(value)
        return out

    return schema(raw)
