"""Admission against the real kube-apiserver: what users apply is checked where they apply it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from kubernetes.client import ApiException

from frugal.api import CachePolicy, InferenceEndpoint, RoutingPolicy
from support.invalid import CASES, Case
from support.strategies import KIND_SPECS

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
MODELS = {m.__name__: m for m in (InferenceEndpoint, RoutingPolicy, CachePolicy)}


def _examples() -> list[dict]:
    return [d for p in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]


@pytest.mark.parametrize("doc", _examples(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_example_applies_and_reads_back_equal(cluster, namespace: str, doc: dict) -> None:
    doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
    cluster.apply(doc)
    stored = cluster.get(doc["kind"], namespace, doc["metadata"]["name"])
    model = MODELS[doc["kind"]]
    # The server applied its schema defaults; the models apply the same ones.
    assert model.model_validate(stored).spec == model.model_validate(doc).spec
    # And nothing the user wrote was pruned or changed on the way.
    assert_contains(stored["spec"], doc["spec"], "spec")


def assert_contains(stored: object, sent: object, path: str) -> None:
    """Everything in ``sent`` is in ``stored`` (which may also hold defaults)."""
    if isinstance(sent, dict):
        assert isinstance(stored, dict), path
        for key, value in sent.items():
            assert key in stored, f"server pruned {path}.{key}"
            assert_contains(stored[key], value, f"{path}.{key}")
    elif isinstance(sent, list):
        assert isinstance(stored, list), path
        assert len(stored) == len(sent), path
        for i, (a, b) in enumerate(zip(stored, sent, strict=True)):
            assert_contains(a, b, f"{path}[{i}]")
    else:
        assert stored == sent, f"{path}: sent {sent!r}, stored {stored!r}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_object_is_rejected_naming_the_field(cluster, namespace: str, case: Case) -> None:
    with pytest.raises(ApiException) as info:
        cluster.create(case.in_namespace(namespace), dry_run=True)
    message = json.loads(info.value.body)["message"]
    assert info.value.status == case.status, message
    assert case.expect in message, message


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_object_is_rejected_by_server_side_apply(
    cluster, namespace: str, case: Case
) -> None:
    with pytest.raises(ApiException) as info:
        cluster.apply(case.in_namespace(namespace), dry_run=True)
    message = json.loads(info.value.body)["message"]
    assert (case.ssa_expect or case.expect) in message, message


def test_at_least_25_invalid_cases() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("kind", sorted(KIND_SPECS))
def test_generated_valid_specs_round_trip(cluster, namespace: str, kind: str) -> None:
    model = MODELS[kind]
    counter = iter(range(10_000))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(KIND_SPECS[kind])
    def round_trip(spec: dict) -> None:
        name = f"gen-{next(counter)}"
        obj = {
            "apiVersion": "frugal.dev/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        try:
            cluster.apply(obj)
        except ApiException as err:
            raise AssertionError(
                f"valid {kind} rejected: {err.body}\n{yaml.safe_dump(spec)}"
            ) from err
        try:
            stored = cluster.get(kind, namespace, name)
            assert model.model_validate(stored).spec == model.model_validate(obj).spec
        finally:
            cluster.delete(kind, namespace, name)

    round_trip()


def test_kubectl_explain_documents_fields(cluster) -> None:
    out = " ".join(cluster.kubectl("explain", "ie.spec.capacity").split())
    assert "reserved (prepaid), spot, on-demand" in out
    assert "onDemandFloor" in out
    out = " ".join(cluster.kubectl("explain", "rp.spec.tiers.weight").split())
    assert "sum to 100" in out


def test_kubectl_get_frugal_lists_all_three_kinds(cluster, namespace: str) -> None:
    for doc in _examples():
        cluster.apply({**doc, "metadata": {**doc["metadata"], "namespace": namespace}})
    out = cluster.kubectl("get", "frugal", "-n", namespace)
    for kind in (
        "inferenceendpoint.frugal.dev/support-small",
        "routingpolicy.frugal.dev/support",
        "cachepolicy.frugal.dev/support",
    ):
        assert kind in out
    wide = cluster.kubectl("get", "ie", "-n", namespace)
    assert wide.splitlines()[0].split()[:8] == [
        "NAME",
        "PHASE",
        "GPU",
        "READY",
        "SPOT",
        "RESERVED",
        "ONDEMAND",
        "$/H",
    ]


def test_kubectl_apply_of_the_crds_works(cluster) -> None:
    crds = Path(__file__).resolve().parents[2] / "crds"
    out = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    assert "serverside-applied" in out
