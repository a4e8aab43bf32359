"""Server-side apply and reads on top of the official ``kubernetes`` client's transport.

The generated API classes are bypassed for apply on purpose. Apply patches are decoded as
YAML, and the client's JSON encoding is not always valid YAML: it escapes characters outside
the Basic Multilingual Plane as UTF-16 surrogate pairs (which YAML refuses), and leaves DEL and
C1 control characters raw (which YAML also refuses). :func:`yaml_safe_json` produces text that
is both. One generic function then serves every kind frugal writes, with no per-kind API class.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient, ApiException, rest

from frugal.controller.metrics import API_REQUESTS

APPLY_PATCH = "application/apply-patch+yaml"
# Characters JSON leaves raw but YAML must not see raw: non-printable ones (DEL, C1 controls,
# U+FFFE/U+FFFF), and line breaks (NEL, U+2028, U+2029) that a quoted scalar would fold.
_NOT_YAML_SAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def yaml_safe_json(obj: Any) -> bytes:
    """UTF-8 JSON that is also valid YAML, for apply patches."""
    text = json.dumps(obj, ensure_ascii=False)
    return _NOT_YAML_SAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8")


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API."""

    plural: str
    namespaced: bool = True


# Every kind frugal reads or writes; adding a child kind means adding it here.
RESOURCES: dict[tuple[str, str], Resource] = {
    ("v1", "ConfigMap"): Resource("configmaps"),
    ("v1", "Service"): Resource("services"),
    ("v1", "Namespace"): Resource("namespaces", namespaced=False),
    ("v1", "Secret"): Resource("secrets"),
    ("v1", "Node"): Resource("nodes", namespaced=False),
    ("v1", "Pod"): Resource("pods"),
    ("apps/v1", "Deployment"): Resource("deployments"),
    ("policy/v1", "PodDisruptionBudget"): Resource("poddisruptionbudgets"),
    ("frugal.dev/v1alpha1", "InferenceEndpoint"): Resource("inferenceendpoints"),
    ("frugal.dev/v1alpha1", "RoutingPolicy"): Resource("routingpolicies"),
    ("frugal.dev/v1alpha1", "CachePolicy"): Resource("cachepolicies"),
    ("karpenter.sh/v1", "NodePool"): Resource("nodepools", namespaced=False),
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): Resource("ec2nodeclasses", namespaced=False),
}


def ensure_pool_size(api: ApiClient, size: int) -> None:
    """Let ``api`` keep ``size`` connections open (the client's default is 5 per CPU).

    urllib3 opens extra connections beyond its pool when more threads send at once, and closes
    them afterwards: every such request then pays a TLS handshake with the API server.
    """
    config = api.configuration
    if (config.connection_pool_maxsize or 0) >= size:
        return
    config.connection_pool_maxsize = size
    api.rest_client.pool_manager.clear()
    api.rest_client = rest.RESTClientObject(config)


def resource_path(
    api_version: str, kind: str, namespace: str | None = None, name: str | None = None
) -> str:
    """The REST path of a collection (no name) or of one object."""
    res = RESOURCES.get((api_version, kind))
    if res is None:
        raise KeyError(f"frugal does not know the REST path of {api_version} {kind}")
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [root]
    if res.namespaced:
        if not namespace:
            raise ValueError(f"{kind} is namespaced: a namespace is required")
        parts.append(f"namespaces/{namespace}")
    parts.append(res.plural)
    if name:
        parts.append(name)
    return "/".join(parts)


def request(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    body: bytes | dict[str, Any] | list[Any] | None = None,
    content_type: str = "application/json",
    timeout: float | None = 30.0,
) -> dict[str, Any]:
    """One REST call; returns the decoded JSON body or raises ``ApiException``.

    ``body`` is bytes for YAML content types (sent as they are) and a JSON-able object for JSON
    ones (the client encodes it).
    """
    API_REQUESTS.labels(method).inc()
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    _method, url, headers, _body, _post = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params=headers,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
    response.read()
    text = response.data.decode("utf-8") if response.data else ""
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=text, data=None)
    return json.loads(text) if text else {}


def apply(
    api: ApiClient,
    obj: dict[str, Any],
    field_manager: str,
    *,
    force: bool = True,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Server-side apply ``obj`` under ``field_manager``; returns the object as stored."""
    meta = obj["metadata"]
    query = [("fieldManager", field_manager), ("fieldValidation", "Strict")]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
    return request(
        api, "PATCH", path, query=query, body=yaml_safe_json(obj), content_type=APPLY_PATCH
    )


def create_if_missing(api: ApiClient, obj: dict[str, Any]) -> None:
    """Create ``obj`` unless an object of that name exists (never overwrites)."""
    meta = obj["metadata"]
    path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
    try:
        request(api, "POST", path, body=obj)
    except ApiException as err:
        if err.status != 409:
            raise


def get(
    api: ApiClient, api_version: str, kind: str, namespace: str | None, name: str
) -> dict[str, Any] | None:
    """The object, or None when it does not exist."""
    try:
        return request(api, "GET", resource_path(api_version, kind, namespace, name))
    except ApiException as err:
        if err.status == 404:
            return None
        raise
